//! Throwaway database servers for the SQL store's tests: one PostgreSQL and one
//! MariaDB server per test binary, started on first use in a temporary directory,
//! listening on loopback, and stopped when the test process exits. Each test gets a
//! database of its own, with the schema scripts the project ships already run.
//!
//! The servers come from the distribution's packages (`postgresql`,
//! `mariadb-server`); without them the tests fail and say which package to install.

// Each test crate uses its own part of this.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections after it was started.
const STARTUP: Duration = Duration::from_secs(90);
/// Where the throwaway data directories go; a run removes those of dead runs.
const PREFIX: &str = "stan-rs-sqltest-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Postgres,
    MySql,
}

impl Driver {
    /// The `--sql_driver` value.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Postgres => "postgres",
            Driver::MySql => "mysql",
        }
    }
}

/// A running database server.
pub struct DbServer {
    pub driver: Driver,
    pub port: u16,
    pub dir: PathBuf,
}

/// One database of a test, with the schema loaded.
pub struct TestDb {
    pub driver: Driver,
    pub port: u16,
    pub name: String,
}

static POSTGRES: OnceLock<DbServer> = OnceLock::new();
static MYSQL: OnceLock<DbServer> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The schema script the project ships for `driver`.
pub fn schema(driver: Driver) -> String {
    let file = match driver {
        Driver::Postgres => "postgres.db.sql",
        Driver::MySql => "mysql.db.sql",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The server for `driver`, started on first use.
pub fn server(driver: Driver) -> &'static DbServer {
    match driver {
        Driver::Postgres => POSTGRES.get_or_init(|| DbServer::start(driver)),
        Driver::MySql => MYSQL.get_or_init(|| DbServer::start(driver)),
    }
}

/// A new database on `driver`'s server, with the schema loaded.
pub fn fresh_db(driver: Driver) -> TestDb {
    fresh_db_with(driver, &schema(driver))
}

/// A new database on `driver`'s server, with `script` run in it.
pub fn fresh_db_with(driver: Driver, script: &str) -> TestDb {
    off_runtime(|| fresh_db_here(driver, script))
}

fn fresh_db_here(driver: Driver, script: &str) -> TestDb {
    let srv = server(driver);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let db = TestDb {
        driver,
        port: srv.port,
        name,
    };
    match driver {
        Driver::Postgres => {
            let mut admin = pg_connect(srv.port, "postgres");
            admin
                .batch_execute(&format!("CREATE DATABASE {}", db.name))
                .expect("CREATE DATABASE");
        }
        Driver::MySql => {
            use mysql::prelude::Queryable;
            let mut admin = my_connect(srv.port, None);
            admin
                .query_drop(format!("CREATE DATABASE {}", db.name))
                .expect("CREATE DATABASE");
        }
    }
    db.run_here(script);
    db
}

/// Runs `f` on a thread of its own: the PostgreSQL client refuses to block a
/// thread that drives a tokio runtime, as `#[tokio::test]` threads do.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn pg_connect(port: u16, db: &str) -> postgres::Client {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(db)
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL server: {e}"))
}

fn my_connect(port: u16, db: Option<&str>) -> mysql::Conn {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some("root"))
        .db_name(db);
    mysql::Conn::new(opts).unwrap_or_else(|e| panic!("connecting to the test MariaDB server: {e}"))
}

/// One value read back, for comparing rows with what a test expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Bytes(Vec<u8>),
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(v) => *v,
            Cell::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not an integer: {b:?}")),
            Cell::Null => panic!("NULL where an integer was expected"),
        }
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Cell::Bytes(b) => Some(b),
            Cell::Null => None,
            Cell::Int(v) => panic!("{v} where bytes were expected"),
        }
    }

    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

impl TestDb {
    /// `--sql_source` for this database.
    pub fn source(&self) -> String {
        match self.driver {
            Driver::Postgres => format!(
                "host=127.0.0.1 port={} user=postgres dbname={} sslmode=disable",
                self.port, self.name
            ),
            Driver::MySql => format!("root@tcp(127.0.0.1:{})/{}", self.port, self.name),
        }
    }

    /// Runs a script of `;`-terminated statements.
    pub fn run(&self, script: &str) {
        off_runtime(|| self.run_here(script))
    }

    fn run_here(&self, script: &str) {
        let statements: Vec<String> = script
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        match self.driver {
            Driver::Postgres => {
                let mut c = pg_connect(self.port, &self.name);
                for s in statements {
                    c.batch_execute(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
            Driver::MySql => {
                use mysql::prelude::Queryable;
                let mut c = my_connect(self.port, Some(&self.name));
                for s in statements {
                    c.query_drop(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
        }
    }

    /// The rows of a query, every column as an integer, bytes or NULL.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Cell>> {
        off_runtime(|| self.rows_here(sql))
    }

    fn rows_here(&self, sql: &str) -> Vec<Vec<Cell>> {
        match self.driver {
            Driver::Postgres => {
                use postgres::types::Type;
                let mut c = pg_connect(self.port, &self.name);
                let rows = c.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| match *r.columns()[i].type_() {
                                Type::INT2 => r
                                    .get::<_, Option<i16>>(i)
                                    .map(i64::from)
                                    .map_or(Cell::Null, Cell::Int),
                                Type::INT4 => r
                                    .get::<_, Option<i32>>(i)
                                    .map(i64::from)
                                    .map_or(Cell::Null, Cell::Int),
                                Type::INT8 => {
                                    r.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int)
                                }
                                Type::BOOL => r
                                    .get::<_, Option<bool>>(i)
                                    .map_or(Cell::Null, |b| Cell::Int(b as i64)),
                                Type::BYTEA => r
                                    .get::<_, Option<Vec<u8>>>(i)
                                    .map_or(Cell::Null, Cell::Bytes),
                                _ => r
                                    .get::<_, Option<String>>(i)
                                    .map_or(Cell::Null, |s| Cell::Bytes(s.into_bytes())),
                            })
                            .collect()
                    })
                    .collect()
            }
            Driver::MySql => {
                use mysql::prelude::Queryable;
                let mut c = my_connect(self.port, Some(&self.name));
                let rows: Vec<mysql::Row> = c.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.into_iter()
                    .map(|r| {
                        r.unwrap()
                            .into_iter()
                            .map(|v| match v {
                                mysql::Value::NULL => Cell::Null,
                                mysql::Value::Int(i) => Cell::Int(i),
                                mysql::Value::UInt(u) => Cell::Int(u as i64),
                                mysql::Value::Bytes(b) => Cell::Bytes(b),
                                other => panic!("unexpected value {other:?}"),
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// The first column of the first row, as an integer.
    pub fn int(&self, sql: &str) -> i64 {
        self.rows(sql)
            .first()
            .and_then(|r| r.first())
            .unwrap_or_else(|| panic!("{sql}: no row"))
            .int()
    }
}

/// A binary of the package, or a failure naming the package to install.
fn binary(candidates: &[PathBuf], package: &str) -> PathBuf {
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the SQL store tests need a real database server: install the Debian package \
                 `{package}` (apt-get install -y {package}); looked for {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn postgres_bin(name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = dirs.flatten().map(|d| d.path()).collect();
        versions.sort();
        versions.reverse();
        candidates.extend(versions.into_iter().map(|v| v.join("bin").join(name)));
    }
    candidates.push(PathBuf::from("/usr/bin").join(name));
    binary(&candidates, "postgresql")
}

/// Databases refuse to run as root: as root, they run as their packages' users.
fn run_as(user: &str) -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new(user).expect("no NUL");
    // SAFETY: getpwnam reads a static buffer, used before any other call here.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        // `nobody` always exists.
        return Some((65534, 65534));
    }
    // SAFETY: checked non-null above.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Removes the data directories of earlier runs whose process is gone.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn command(program: &Path, owner: Option<(u32, u32)>, death_signal: libc::c_int) -> Command {
    let mut cmd = Command::new(program);
    // The test's own directory may be closed to the database's user.
    cmd.current_dir(std::env::temp_dir());
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe; the server stops when the thread that
    // started it (which lives as long as the test process) ends.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

impl DbServer {
    fn start(driver: Driver) -> DbServer {
        // Looked up here, so that a missing package fails the test with its name.
        let (init, server) = programs(driver);
        remove_stale_dirs();
        let user = match driver {
            Driver::Postgres => "postgres",
            Driver::MySql => "mysql",
        };
        let owner = run_as(user);
        let dir =
            std::env::temp_dir().join(format!("{PREFIX}{}-{}", std::process::id(), driver.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
        }
        let data = dir.join("data");
        let port = stan_runtime::harness::free_port().expect("a free port");
        let log = dir.join("server.log");
        // The server is started from a thread that never ends, so that it is
        // stopped when the test process exits, not when the first test does.
        let (tx, rx) = mpsc::channel();
        let (d, l) = (dir.clone(), log.clone());
        std::thread::spawn(move || {
            let setup = Setup {
                dir: &d,
                data: &data,
                log: &l,
                port,
                owner,
                init: &init,
                server: &server,
            };
            let started = match driver {
                Driver::Postgres => start_postgres(setup),
                Driver::MySql => start_mariadb(setup),
            };
            let _ = tx.send(started);
            loop {
                std::thread::park();
            }
        });
        if let Err(e) = rx.recv().expect("the starter thread answers") {
            panic!("{e}");
        }
        let srv = DbServer { driver, port, dir };
        srv.wait_ready(&log);
        srv
    }

    fn wait_ready(&self, log: &Path) {
        let deadline = Instant::now() + STARTUP;
        loop {
            let ok = match self.driver {
                Driver::Postgres => postgres::Config::new()
                    .host("127.0.0.1")
                    .port(self.port)
                    .user("postgres")
                    .dbname("postgres")
                    .connect(postgres::NoTls)
                    .is_ok(),
                Driver::MySql => mysql::Conn::new(
                    mysql::OptsBuilder::new()
                        .ip_or_hostname(Some("127.0.0.1"))
                        .tcp_port(self.port)
                        .prefer_socket(false)
                        .user(Some("root")),
                )
                .is_ok(),
            };
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the test {} server did not start:\n{}",
                    self.driver.name(),
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Removes `dir` once both this test process and the database server `server` have
/// exited, so that a run leaves no data directory behind (the next run removes it
/// otherwise).
fn remove_when_done(dir: &Path, server: u32) {
    let script = format!(
        "while kill -0 {} 2>/dev/null || kill -0 {server} 2>/dev/null; do sleep 0.5; done; rm -rf '{}'",
        std::process::id(),
        dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn run_setup(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The programs that set up and run `driver`'s server, or a failure naming the
/// package to install.
fn programs(driver: Driver) -> (PathBuf, PathBuf) {
    match driver {
        Driver::Postgres => (postgres_bin("initdb"), postgres_bin("postgres")),
        Driver::MySql => (
            binary(
                &[
                    PathBuf::from("/usr/bin/mariadb-install-db"),
                    PathBuf::from("/usr/bin/mysql_install_db"),
                ],
                "mariadb-server",
            ),
            binary(
                &[
                    PathBuf::from("/usr/sbin/mariadbd"),
                    PathBuf::from("/usr/sbin/mysqld"),
                ],
                "mariadb-server",
            ),
        ),
    }
}

struct Setup<'a> {
    dir: &'a Path,
    data: &'a Path,
    log: &'a Path,
    port: u16,
    owner: Option<(u32, u32)>,
    init: &'a Path,
    server: &'a Path,
}

fn start_postgres(setup: Setup<'_>) -> Result<(), String> {
    let Setup {
        dir,
        data,
        log,
        port,
        owner,
        init: initdb,
        server,
    } = setup;
    let mut init = command(initdb, owner, libc::SIGKILL);
    init.arg("-D")
        .arg(data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
    run_setup(init, "initdb")?;
    let log_file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(log, Some(uid), Some(gid));
    }
    let mut cmd = command(server, owner, libc::SIGINT);
    cmd.arg("-D")
        .arg(data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file);
    let child = cmd.spawn().map_err(|e| format!("postgres: {e}"))?;
    remove_when_done(dir, child.id());
    Ok(())
}

fn start_mariadb(setup: Setup<'_>) -> Result<(), String> {
    let Setup {
        dir,
        data,
        log,
        port,
        owner,
        init: install,
        server,
    } = setup;
    let mut init = command(install, owner, libc::SIGKILL);
    init.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db");
    run_setup(init, "mariadb-install-db")?;
    let log_file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    // Started as its user directly rather than with `--user`: switching users
    // itself would drop the signal that stops it with the tests.
    let mut cmd = command(server, owner, libc::SIGTERM);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .args([
            "--skip-grant-tables",
            "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            "--max-allowed-packet=64M",
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file);
    let child = cmd.spawn().map_err(|e| format!("mariadbd: {e}"))?;
    remove_when_done(dir, child.id());
    Ok(())
}
