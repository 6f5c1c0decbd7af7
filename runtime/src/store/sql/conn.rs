//! The two database clients behind one small interface, run on a thread of their own.
//!
//! The PostgreSQL client blocks on a private runtime and refuses to run on a thread
//! that is already driving one (the server's tokio workers are), so every statement
//! goes to a dedicated thread and the store waits for its answer, as it waits for a
//! disk write.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use stan_core::config::parse_go_duration;

/// A statement's text in the MySQL form (`?` placeholders, `` `row` `` quoted); the
/// PostgreSQL client rewrites it once.
pub type Sql = Cow<'static, str>;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
}

impl Val {
    pub fn u64(v: u64) -> Val {
        Val::Int(v as i64)
    }

    /// The value as an integer; MySQL sends sums and some counts as decimal text.
    pub fn int(&self) -> Result<i64, String> {
        match self {
            Val::Int(v) => Ok(*v),
            Val::Null => Ok(0),
            Val::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    format!(
                        "sql: expected an integer, got {:?}",
                        String::from_utf8_lossy(b)
                    )
                }),
            Val::Text(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("sql: expected an integer, got {s:?}")),
        }
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Val::Bytes(b) => Some(b),
            Val::Text(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Val::Null => String::new(),
            Val::Int(v) => v.to_string(),
            Val::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Val::Text(s) => s.clone(),
        }
    }
}

pub type Row = Vec<Val>;

/// One connection to the database.
trait Conn {
    /// The statement as sent to this database (for error texts).
    fn text(&self, sql: &str) -> String;
    fn prepare(&mut self, sql: &str) -> Result<(), String>;
    /// Runs a statement; the number of rows it changed.
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, String>;
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, String>;
    fn raw(&mut self, sql: &str) -> Result<(), String>;
    /// The connection was lost: the next statement needs a new one.
    fn broken(&self) -> bool;
}

/// `sql: error executing "<stmt>": <err>`, the text clients see.
fn exec_error(conn: &dyn Conn, sql: &str, e: String) -> String {
    format!("sql: error executing {:?}: {e}", conn.text(sql))
}

// ---- PostgreSQL ----

struct Pg {
    client: postgres::Client,
    stmts: HashMap<String, postgres::Statement>,
    broken: bool,
}

/// `?` → `$1, $2, …` and `` `row` `` → `row`, as the schema names it on PostgreSQL.
pub fn pg_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.replace("`row`", "row").chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

impl Pg {
    /// Notes a lost connection on the way: an error of the connection rather than
    /// of the statement, or the server ending the session.
    fn check<T>(&mut self, r: Result<T, postgres::Error>) -> Result<T, String> {
        r.map_err(|e| {
            if e.as_db_error()
                .is_none_or(|d| matches!(d.severity(), "FATAL" | "PANIC"))
            {
                self.broken = true;
            }
            pg_error(e)
        })
    }

    fn stmt(&mut self, sql: &str) -> Result<postgres::Statement, String> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let r = self.client.prepare(&pg_text(sql));
        let st = self.check(r)?;
        self.stmts.insert(sql.to_owned(), st.clone());
        Ok(st)
    }
}

fn pg_error(e: postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("pq: {}", db.message());
    }
    // The client's own text says what failed, its source why.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match self {
            Val::Null => Ok(postgres::types::IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Val::Bytes(b) => b.as_slice().to_sql(ty, out),
            Val::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<Val, String> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    let e = |e: postgres::Error| e.to_string();
    Ok(match ty {
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(e)?
            .map(i64::from)
            .map_or(Val::Null, Val::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(e)?
            .map(i64::from)
            .map_or(Val::Null, Val::Int),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map_err(e)?
            .map_or(Val::Null, Val::Int),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(e)?
            .map_or(Val::Null, |b| Val::Int(b as i64)),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(e)?
            .map_or(Val::Null, Val::Bytes),
        _ => row
            .try_get::<_, Option<String>>(i)
            .map_err(e)?
            .map_or(Val::Null, Val::Text),
    })
}

impl Conn for Pg {
    fn text(&self, sql: &str) -> String {
        pg_text(sql)
    }

    fn prepare(&mut self, sql: &str) -> Result<(), String> {
        self.stmt(sql).map(|_| ())
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, String> {
        let st = self.stmt(sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let r = self.client.execute(&st, &refs);
        self.check(r)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, String> {
        let st = self.stmt(sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let r = self.client.query(&st, &refs);
        let rows = self.check(r)?;
        rows.iter()
            .map(|r| (0..r.len()).map(|i| pg_value(r, i)).collect())
            .collect()
    }

    fn raw(&mut self, sql: &str) -> Result<(), String> {
        let r = self.client.batch_execute(sql);
        self.check(r)
    }

    fn broken(&self) -> bool {
        self.broken || self.client.is_closed()
    }
}

/// Splits the `readTimeout`/`writeTimeout` keywords (any case) out of a PostgreSQL
/// DSN, in key=value or URL form (STORES §3.1).
fn pg_source(source: &str) -> Result<(String, Option<Duration>, Option<Duration>), String> {
    let mut read = None;
    let mut write = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        let which = match key.to_ascii_lowercase().as_str() {
            "readtimeout" => "readTimeout",
            "writetimeout" => "writeTimeout",
            _ => return Ok(false),
        };
        let ns = parse_go_duration(value).map_err(|e| format!("unable to parse {which}: {e}"))?;
        let d = Some(Duration::from_nanos(u64::try_from(ns).unwrap_or(0)));
        if which == "readTimeout" {
            read = d;
        } else {
            write = d;
        }
        Ok(true)
    };
    let lower = source.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let (base, query) = match source.split_once('?') {
            Some((b, q)) => (b, q),
            None => (source, ""),
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(k, v)? {
                kept.push(pair);
            }
        }
        let dsn = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((dsn, read, write));
    }
    let mut kept = Vec::new();
    for word in source.split_whitespace() {
        let (k, v) = word.split_once('=').unwrap_or((word, ""));
        if !take(k, v.trim_matches('\''))? {
            kept.push(word);
        }
    }
    Ok((kept.join(" "), read, write))
}

fn connect_pg(source: &str) -> Result<Box<dyn Conn>, String> {
    let (dsn, read, write) = pg_source(source)?;
    let mut config: postgres::Config = dsn.parse().map_err(|e: postgres::Error| e.to_string())?;
    // The Go driver's default; only `disable` (or no TLS at all) works without TLS.
    if config.get_hosts().is_empty() {
        config.host("localhost");
    }
    if config.get_user().is_none() {
        config.user(&std::env::var("USER").unwrap_or_else(|_| "postgres".into()));
    }
    if let Some(d) = write.or(read) {
        // The closest the blocking client offers to per-operation deadlines: a
        // connection whose writes (or reads, through keepalives) stall that long is
        // dropped by the kernel.
        config.tcp_user_timeout(d);
        config.connect_timeout(d);
    }
    let client = config.connect(postgres::NoTls).map_err(pg_error)?;
    Ok(Box::new(Pg {
        client,
        stmts: HashMap::new(),
        broken: false,
    }))
}

// ---- MySQL / MariaDB ----

struct My {
    conn: mysql::Conn,
    broken: bool,
}

impl My {
    /// Notes a lost connection on the way.
    fn check<T>(&mut self, r: Result<T, mysql::Error>) -> Result<T, String> {
        r.map_err(|e| {
            if matches!(
                e,
                mysql::Error::IoError(_)
                    | mysql::Error::DriverError(_)
                    | mysql::Error::CodecError(_)
            ) {
                self.broken = true;
            }
            my_error(e)
        })
    }
}

fn my_error(e: mysql::Error) -> String {
    match e {
        mysql::Error::MySqlError(e) => format!("Error {}: {}", e.code, e.message),
        e => e.to_string(),
    }
}

fn my_params(params: &[Val]) -> mysql::Params {
    if params.is_empty() {
        return mysql::Params::Empty;
    }
    mysql::Params::Positional(
        params
            .iter()
            .map(|p| match p {
                Val::Null => mysql::Value::NULL,
                Val::Int(v) => mysql::Value::Int(*v),
                Val::Bytes(b) => mysql::Value::Bytes(b.clone()),
                Val::Text(s) => mysql::Value::Bytes(s.as_bytes().to_vec()),
            })
            .collect(),
    )
}

fn my_value(v: mysql::Value) -> Val {
    match v {
        mysql::Value::NULL => Val::Null,
        mysql::Value::Int(i) => Val::Int(i),
        mysql::Value::UInt(u) => Val::Int(u as i64),
        mysql::Value::Bytes(b) => Val::Bytes(b),
        other => Val::Text(other.as_sql(true)),
    }
}

impl Conn for My {
    fn text(&self, sql: &str) -> String {
        sql.to_owned()
    }

    fn prepare(&mut self, sql: &str) -> Result<(), String> {
        use mysql::prelude::Queryable;
        let r = self.conn.prep(sql).map(|_| ());
        self.check(r)
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, String> {
        use mysql::prelude::Queryable;
        let r = self
            .conn
            .exec_iter(sql, my_params(params))
            .map(|r| r.affected_rows());
        self.check(r)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, String> {
        use mysql::prelude::Queryable;
        let r: Result<Vec<mysql::Row>, _> = self.conn.exec(sql, my_params(params));
        let rows = self.check(r)?;
        Ok(rows
            .into_iter()
            .map(|r| r.unwrap().into_iter().map(my_value).collect())
            .collect())
    }

    fn raw(&mut self, sql: &str) -> Result<(), String> {
        use mysql::prelude::Queryable;
        let r = self.conn.query_drop(sql);
        self.check(r)
    }

    fn broken(&self) -> bool {
        self.broken
    }
}

/// Reads a DSN of the Go MySQL driver: `[user[:password]@][net[(addr)]]/dbname[?params]`.
fn my_opts(source: &str) -> Result<mysql::Opts, String> {
    let invalid = || "invalid DSN: missing the slash separating the database name".to_string();
    let (head, rest) = source.rsplit_once('/').ok_or_else(invalid)?;
    let (db, params) = rest.split_once('?').unwrap_or((rest, ""));
    let (cred, addr) = match head.rfind('@') {
        Some(i) => (Some(&head[..i]), &head[i + 1..]),
        None => (None, head),
    };
    // Found rather than changed rows: an update that rewrites a row with the same
    // values must not read as "no such row".
    let mut b = mysql::OptsBuilder::new()
        .stmt_cache_size(Some(256))
        .additional_capabilities(mysql::consts::CapabilityFlags::CLIENT_FOUND_ROWS);
    if let Some(cred) = cred {
        let (user, pass) = cred.split_once(':').unwrap_or((cred, ""));
        b = b.user(Some(user)).pass(Some(pass));
    }
    let (net, target) = match addr.split_once('(') {
        Some((net, t)) => (
            net,
            t.strip_suffix(')').ok_or_else(|| {
                "invalid DSN: network address not terminated (missing closing brace)".to_string()
            })?,
        ),
        None => (addr, ""),
    };
    match net {
        "" | "tcp" => {
            let target = if target.is_empty() {
                "127.0.0.1:3306"
            } else {
                target
            };
            let (host, port) = match target.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse::<u16>()
                        .map_err(|_| format!("invalid DSN: bad port in {target:?}"))?,
                ),
                None => (target, 3306),
            };
            b = b
                .ip_or_hostname(Some(host.trim_matches(['[', ']'])))
                .tcp_port(port)
                .prefer_socket(false);
        }
        "unix" => {
            let target = if target.is_empty() {
                "/tmp/mysql.sock"
            } else {
                target
            };
            b = b.socket(Some(target));
        }
        other => return Err(format!("invalid DSN: unknown network {other:?}")),
    }
    b = b.db_name(Some(db).filter(|d| !d.is_empty()));
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dur = || {
            parse_go_duration(v)
                .map(|ns| Some(Duration::from_nanos(u64::try_from(ns).unwrap_or(0))))
                .map_err(|e| format!("invalid DSN: {k}: {e}"))
        };
        match k {
            "timeout" => b = b.tcp_connect_timeout(dur()?),
            "readTimeout" => b = b.read_timeout(dur()?),
            "writeTimeout" => b = b.write_timeout(dur()?),
            "tls" if v != "false" => {
                return Err(format!(
                    "tls={v} is not supported: the SQL store connects without TLS"
                ))
            }
            // Options of the Go driver that change nothing here (character set,
            // time parsing, authentication variants).
            _ => {}
        }
    }
    Ok(b.into())
}

fn connect_my(source: &str) -> Result<Box<dyn Conn>, String> {
    let opts = my_opts(source)?;
    let conn = mysql::Conn::new(opts).map_err(my_error)?;
    Ok(Box::new(My {
        conn,
        broken: false,
    }))
}

// ---- the database thread ----

/// One request to the database thread.
enum Job {
    Prepare(Sql),
    Exec(Sql, Vec<Val>),
    Query(Sql, Vec<Val>),
    /// Statements run in one transaction, all or nothing.
    Tx(Vec<(Sql, Vec<Val>)>),
    /// One step on the `StoreLock` row, for the owner ID given.
    Lock {
        me: String,
        steal: Option<(String, i64)>,
    },
}

/// What one step on the `StoreLock` row found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockSeen {
    /// The row is ours now (taken, renewed or stolen).
    Ours,
    /// Another server holds it, with this heartbeat count.
    Held { id: String, tick: i64 },
}

enum Answer {
    Done(u64),
    Rows(Vec<Row>),
    Lock(LockSeen),
}

type Reply = mpsc::Sender<Result<Answer, String>>;

/// The database connection, owned by its thread; dropping this ends the thread.
pub struct Db {
    jobs: Option<mpsc::Sender<(Job, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub postgres: bool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("postgres", &self.postgres)
            .finish()
    }
}

/// The Go server's answer to a driver name it does not know.
pub fn unknown_driver(driver: &str) -> String {
    format!("sql: unknown driver {driver:?} (forgotten import?)")
}

impl Db {
    /// Connects with `driver` (`postgres` or `mysql`) to `source`, on a new thread.
    pub fn connect(driver: &str, source: &str) -> Result<Db, String> {
        let postgres = match driver {
            "postgres" => true,
            "mysql" => false,
            other => return Err(unknown_driver(other)),
        };
        let source = source.to_owned();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (jobs, rx) = mpsc::channel::<(Job, Reply)>();
        let thread = std::thread::Builder::new()
            .name("sql-store".into())
            .spawn(move || {
                let connect = || {
                    if postgres {
                        connect_pg(&source)
                    } else {
                        connect_my(&source)
                    }
                };
                let mut conn = match connect() {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok((job, reply)) = rx.recv() {
                    // A lost connection (the database restarted, or dropped it) failed
                    // the statement that met it; the next one gets a new connection, if
                    // the database answers again.
                    if conn.broken() {
                        if let Ok(c) = connect() {
                            conn = c;
                        }
                    }
                    let _ = reply.send(run(&mut *conn, job));
                }
            })
            .map_err(|e| format!("unable to start the SQL thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Db {
                jobs: Some(jobs),
                thread: Some(thread),
                postgres,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err("sql: the database thread stopped".into())
            }
        }
    }

    fn call(&self, job: Job) -> Result<Answer, String> {
        let (tx, rx) = mpsc::channel();
        let jobs = self.jobs.as_ref().ok_or("sql: database is closed")?;
        jobs.send((job, tx))
            .map_err(|_| "sql: the database thread stopped".to_string())?;
        rx.recv()
            .map_err(|_| "sql: the database thread stopped".to_string())?
    }

    /// Prepares `sql` once, so that a missing table or column fails at startup.
    pub fn prepare(&self, sql: impl Into<Sql>) -> Result<(), String> {
        self.call(Job::Prepare(sql.into())).map(|_| ())
    }

    pub fn exec(&self, sql: impl Into<Sql>, params: Vec<Val>) -> Result<u64, String> {
        match self.call(Job::Exec(sql.into(), params))? {
            Answer::Done(n) => Ok(n),
            _ => Ok(0),
        }
    }

    pub fn query(&self, sql: impl Into<Sql>, params: Vec<Val>) -> Result<Vec<Row>, String> {
        match self.call(Job::Query(sql.into(), params))? {
            Answer::Rows(r) => Ok(r),
            _ => Ok(Vec::new()),
        }
    }

    /// The first row's first column, 0 when there is none.
    pub fn query_int(&self, sql: impl Into<Sql>, params: Vec<Val>) -> Result<i64, String> {
        let rows = self.query(sql, params)?;
        rows.first().and_then(|r| r.first()).map_or(Ok(0), Val::int)
    }

    /// Takes, renews or (when `steal` is what the row still holds) steals the
    /// `StoreLock` row for `me`, in one transaction that locks the row (STORES §3.7).
    pub fn lock_step(&self, me: &str, steal: Option<(String, i64)>) -> Result<LockSeen, String> {
        match self.call(Job::Lock {
            me: me.to_owned(),
            steal,
        })? {
            Answer::Lock(seen) => Ok(seen),
            _ => Err("sql: unexpected answer to a lock step".into()),
        }
    }

    pub fn tx(&self, stmts: Vec<(Sql, Vec<Val>)>) -> Result<(), String> {
        if stmts.is_empty() {
            return Ok(());
        }
        self.call(Job::Tx(stmts)).map(|_| ())
    }
}

fn lock_step(
    conn: &mut dyn Conn,
    me: &str,
    steal: Option<(String, i64)>,
) -> Result<LockSeen, String> {
    use super::{LOCK_INSERT, LOCK_SELECT, LOCK_UPDATE};
    let rows = conn
        .query(LOCK_SELECT, &[])
        .map_err(|e| exec_error(conn, LOCK_SELECT, e))?;
    let Some(row) = rows.first() else {
        conn.exec(LOCK_INSERT, &[Val::Text(me.to_owned()), Val::Int(1)])
            .map_err(|e| exec_error(conn, LOCK_INSERT, e))?;
        return Ok(LockSeen::Ours);
    };
    let id = row[0].text();
    let tick = row[1].int()?;
    let next = if id.is_empty() || id == me {
        tick + 1
    } else if steal.as_ref() == Some(&(id.clone(), tick)) {
        1
    } else {
        return Ok(LockSeen::Held { id, tick });
    };
    conn.exec(LOCK_UPDATE, &[Val::Text(me.to_owned()), Val::Int(next)])
        .map_err(|e| exec_error(conn, LOCK_UPDATE, e))?;
    Ok(LockSeen::Ours)
}

fn run(conn: &mut dyn Conn, job: Job) -> Result<Answer, String> {
    match job {
        Job::Lock { me, steal } => {
            conn.raw("BEGIN")?;
            match lock_step(conn, &me, steal) {
                Ok(seen) => {
                    conn.raw("COMMIT")?;
                    Ok(Answer::Lock(seen))
                }
                Err(e) => {
                    let _ = conn.raw("ROLLBACK");
                    Err(e)
                }
            }
        }
        Job::Prepare(sql) => conn
            .prepare(&sql)
            .map(|()| Answer::Done(0))
            .map_err(|e| format!("unable to prepare statement {:?}: {e}", conn.text(&sql))),
        Job::Exec(sql, params) => conn
            .exec(&sql, &params)
            .map(Answer::Done)
            .map_err(|e| exec_error(conn, &sql, e)),
        Job::Query(sql, params) => conn
            .query(&sql, &params)
            .map(Answer::Rows)
            .map_err(|e| exec_error(conn, &sql, e)),
        Job::Tx(stmts) => {
            conn.raw("BEGIN")?;
            for (sql, params) in &stmts {
                if let Err(e) = conn.exec(sql, params) {
                    let _ = conn.raw("ROLLBACK");
                    return Err(exec_error(conn, sql, e));
                }
            }
            conn.raw("COMMIT")?;
            Ok(Answer::Done(0))
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_statements_are_numbered() {
        assert_eq!(
            pg_text("INSERT INTO SubsPending (subid, `row`, seq) VALUES (?, ?, ?)"),
            "INSERT INTO SubsPending (subid, row, seq) VALUES ($1, $2, $3)"
        );
    }

    #[test]
    fn postgres_timeouts_leave_the_dsn() {
        let (dsn, r, w) = pg_source("host=h readtimeout=2s dbname=x WriteTimeout=1m").unwrap();
        assert_eq!(dsn, "host=h dbname=x");
        assert_eq!(r, Some(Duration::from_secs(2)));
        assert_eq!(w, Some(Duration::from_secs(60)));
        let (dsn, r, _) = pg_source("postgres://u@h/db?readTimeout=5s&sslmode=disable").unwrap();
        assert_eq!(dsn, "postgres://u@h/db?sslmode=disable");
        assert_eq!(r, Some(Duration::from_secs(5)));
        assert_eq!(
            pg_source("host=h readTimeout=abc").unwrap_err(),
            "unable to parse readTimeout: time: invalid duration \"abc\""
        );
        assert_eq!(
            pg_source("postgres://h/db?writeTimeout=-").unwrap_err(),
            "unable to parse writeTimeout: time: invalid duration \"-\""
        );
    }

    #[test]
    fn mysql_dsns_are_read_like_the_go_driver() {
        assert!(my_opts("user:pwd@tcp(127.0.0.1:3306)/db?timeout=2s").is_ok());
        assert!(my_opts("user@unix(/tmp/s.sock)/db").is_ok());
        assert!(my_opts("nodb").is_err());
        assert!(my_opts("u@tcp(h:3306/db").is_err());
        assert!(my_opts("u@tcp(h:x)/db").is_err());
        assert!(my_opts("u@/db?tls=true").is_err());
    }

    #[test]
    fn unknown_drivers_are_refused_with_the_go_text() {
        assert_eq!(
            Db::connect("sqlite", "x").unwrap_err(),
            "sql: unknown driver \"sqlite\" (forgotten import?)"
        );
        assert_eq!(
            Db::connect("", "x").unwrap_err(),
            "sql: unknown driver \"\" (forgotten import?)"
        );
    }
}
