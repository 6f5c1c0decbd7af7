//! The MySQL/MariaDB client, with the Go driver's DSN syntax.

use std::time::Duration;

use stan_core::config::parse_go_duration;

use super::conn::{Conn, Row, Val};

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

pub(super) fn connect(source: &str) -> Result<Box<dyn Conn>, String> {
    let opts = my_opts(source)?;
    let conn = mysql::Conn::new(opts).map_err(my_error)?;
    Ok(Box::new(My {
        conn,
        broken: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_dsns_are_read_like_the_go_driver() {
        assert!(my_opts("user:pwd@tcp(127.0.0.1:3306)/db?timeout=2s").is_ok());
        assert!(my_opts("user@unix(/tmp/s.sock)/db").is_ok());
        assert!(my_opts("nodb").is_err());
        assert!(my_opts("u@tcp(h:3306/db").is_err());
        assert!(my_opts("u@tcp(h:x)/db").is_err());
        assert!(my_opts("u@/db?tls=true").is_err());
    }
}
