//! The PostgreSQL client: statements in PostgreSQL's form, values by column type,
//! and the Go driver's DSN with its `readTimeout`/`writeTimeout` extras (STORES §3.1).

use std::collections::HashMap;
use std::time::Duration;

use stan_core::config::parse_go_duration;

use super::conn::{Conn, Row, Val};

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

pub(super) fn connect(source: &str) -> Result<Box<dyn Conn>, String> {
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
}
