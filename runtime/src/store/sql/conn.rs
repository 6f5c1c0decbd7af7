//! The database connection behind one small interface, run on a thread of its own.
//!
//! The PostgreSQL client blocks on a private runtime and refuses to run on a thread
//! that is already driving one (the server's tokio workers are), so every statement
//! goes to a dedicated thread and the store waits for its answer, as it waits for a
//! disk write.

use std::borrow::Cow;
use std::sync::mpsc;

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

/// One connection to the database ([`super::pg`] or [`super::my`]).
pub(super) trait Conn {
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
pub(super) fn exec_error(conn: &dyn Conn, sql: &str, e: String) -> String {
    format!("sql: error executing {:?}: {e}", conn.text(sql))
}

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
fn unknown_driver(driver: &str) -> String {
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
                        super::pg::connect(&source)
                    } else {
                        super::my::connect(&source)
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
    use super::stmts::{LOCK_INSERT, LOCK_SELECT, LOCK_UPDATE};
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
