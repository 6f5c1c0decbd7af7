//! The SQL store at the `Store` trait, against real PostgreSQL and MariaDB servers:
//! what it writes reads back after a restart, the rows are the Go server's, and a
//! database written by the Go server opens.

#[path = "support/sqldb.rs"]
mod sqldb;

use std::time::{Duration, Instant};

use sqldb::{fresh_db, fresh_db_with, schema, Cell, Driver, TestDb};
use stan_core::store::{MsgsState, Store};
use stan_core::streaming::pb::{encode, ClientInfo, MsgProto, ServerInfo, SubState};
use stan_runtime::store::{SqlLock, SqlStore, SqlStoreOptions};

fn opts(db: &TestDb, no_caching: bool) -> SqlStoreOptions {
    SqlStoreOptions {
        driver: db.driver.name().into(),
        source: db.source(),
        no_caching,
        max_open_conns: 0,
        bulk_insert_limit: 0,
    }
}

fn open(db: &TestDb, no_caching: bool) -> SqlStore {
    SqlStore::open(opts(db, no_caching)).unwrap_or_else(|e| panic!("open: {e}"))
}

fn info() -> ServerInfo {
    ServerInfo {
        cluster_id: "test-cluster".into(),
        discovery: "_STAN.discover.test-cluster".into(),
        publish: "_STAN.pub.x".into(),
        subscribe: "_STAN.sub.x".into(),
        unsubscribe: "_STAN.unsub.x".into(),
        close: "_STAN.close.x".into(),
        sub_close: "_STAN.subclose.x".into(),
        ..ServerInfo::default()
    }
}

fn client(id: &str) -> ClientInfo {
    ClientInfo {
        id: id.into(),
        hb_inbox: format!("_INBOX.{id}"),
        conn_id: b"conn".to_vec(),
        protocol: 1,
        ping_interval: 5,
        ping_max_out: 3,
    }
}

fn msg(seq: u64, data: &[u8]) -> MsgProto {
    MsgProto {
        sequence: seq,
        subject: "foo".into(),
        data: data.to_vec(),
        timestamp: 1_000 + seq as i64,
        ..MsgProto::default()
    }
}

fn sub(id: u64, durable: &str) -> SubState {
    SubState {
        id,
        client_id: "me".into(),
        inbox: "_INBOX.me".into(),
        ack_inbox: format!("_ACK.{id}"),
        max_in_flight: 100,
        ack_wait_in_secs: 30,
        durable_name: durable.into(),
        is_durable: !durable.is_empty(),
        ..SubState::default()
    }
}

/// A fresh store holding server info, a client and channel `foo` with `n` messages.
fn seeded(db: &TestDb, no_caching: bool, n: u64) -> SqlStore {
    let mut s = open(db, no_caching);
    let r = s.recover().unwrap();
    assert!(r.server_info.is_none() && r.channels.is_empty());
    s.init_server_info(&info()).unwrap();
    s.add_client(&client("me")).unwrap();
    s.create_channel("foo").unwrap();
    for seq in 1..=n {
        s.store_msg("foo", &msg(seq, format!("m{seq}").as_bytes()))
            .unwrap();
    }
    s
}

fn round_trip(driver: Driver, no_caching: bool) {
    let db = fresh_db(driver);
    let mut s = seeded(&db, no_caching, 3);
    s.create_sub("foo", &sub(1, "dur")).unwrap();
    // Rewriting a subscription with what it already holds is no error.
    s.update_sub("foo", &sub(1, "dur")).unwrap();
    s.update_sub("foo", &sub(1, "dur")).unwrap();
    for seq in 1..=3 {
        s.add_pending("foo", 1, seq).unwrap();
    }
    s.flush().unwrap();
    s.ack_pending("foo", 1, 2).unwrap();
    s.flush().unwrap();
    // What was flushed is in the tables, whatever happens to this process.
    std::mem::forget(s);

    let mut s = open(&db, no_caching);
    let r = s.recover().unwrap();
    assert_eq!(r.server_info, Some(info()));
    assert_eq!(r.clients, vec![client("me")]);
    assert_eq!(r.channels.len(), 1);
    let ch = &r.channels[0];
    assert_eq!(ch.name, "foo");
    let bytes: u64 = (1..=3)
        .map(|i| encode(&msg(i, format!("m{i}").as_bytes())).len() as u64)
        .sum();
    assert_eq!(
        ch.msgs,
        MsgsState {
            count: 3,
            bytes,
            first: 1,
            last: 3
        }
    );
    assert_eq!(ch.subs.len(), 1);
    assert_eq!(ch.subs[0].pending, vec![1, 3]);
    assert_eq!(ch.subs[0].state.last_sent, 3);
    assert_eq!(ch.subs[0].state.durable_name, "dur");
    assert_eq!(ch.max_sub_id, ch.subs[0].state.id);
    assert_eq!(s.lookup("foo", 2).unwrap(), Some(msg(2, b"m2")));
    assert_eq!(s.timestamp("foo", 3).unwrap(), Some(1_003));
    assert_eq!(s.lookup("foo", 4).unwrap(), None);

    // Acknowledging the rest leaves no pending row behind.
    let id = ch.subs[0].state.id;
    s.ack_pending("foo", id, 1).unwrap();
    s.ack_pending("foo", id, 3).unwrap();
    s.flush().unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM SubsPending"), 0);
    drop(s);
    let mut s = open(&db, no_caching);
    let r = s.recover().unwrap();
    assert!(r.channels[0].subs[0].pending.is_empty());
    assert_eq!(r.channels[0].subs[0].state.last_sent, 3);
}

fn caching_rows_are_the_go_servers(driver: Driver) {
    let db = fresh_db(driver);
    let mut s = seeded(&db, false, 3);
    // Nothing is written before the flush in caching mode.
    assert_eq!(db.int("SELECT COUNT(*) FROM Messages"), 0);
    s.create_sub("foo", &sub(1, "")).unwrap();
    for seq in [1, 2, 3] {
        s.add_pending("foo", 1, seq).unwrap();
    }
    s.flush().unwrap();
    let rows = db.rows("SELECT id, seq, timestamp, size, data FROM Messages ORDER BY seq");
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        let seq = i as u64 + 1;
        let data = encode(&msg(seq, format!("m{seq}").as_bytes()));
        assert_eq!(r[0].int(), 1);
        assert_eq!(r[1].int(), seq as i64);
        assert_eq!(r[2].int(), 1_000 + seq as i64);
        assert_eq!(r[3].int(), data.len() as i64);
        assert_eq!(r[4], Cell::Bytes(data));
    }
    let subid = db.int("SELECT subid FROM Subscriptions");
    let rows = db.rows("SELECT subid, seq, lastsent, pending, acks FROM SubsPending");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].int(), subid);
    assert_eq!(rows[0][1].int(), 0);
    assert_eq!(rows[0][2].int(), 3);
    assert_eq!(rows[0][3].text().as_deref(), Some("[1,2,3]"));
    assert_eq!(rows[0][4], Cell::Null);
    // An ack of a flushed send is a row of its own.
    s.ack_pending("foo", 1, 2).unwrap();
    s.flush().unwrap();
    let rows = db.rows("SELECT pending, acks FROM SubsPending ORDER BY 1");
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .any(|r| r[0] == Cell::Null && r[1].text().as_deref() == Some("[2]")));
    // Sent and acknowledged between two flushes: only the last sent moves.
    s.store_msg("foo", &msg(4, b"m4")).unwrap();
    s.add_pending("foo", 1, 4).unwrap();
    s.ack_pending("foo", 1, 4).unwrap();
    s.flush().unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM SubsPending"), 2);
    assert_eq!(db.int("SELECT lastsent FROM Subscriptions"), 4);
    // The channel row carries the limits in effect.
    let ch = db.rows("SELECT id, name, maxseq, maxmsgs, maxbytes, maxage, deleted FROM Channels");
    assert_eq!(ch[0][1].text().as_deref(), Some("foo"));
    assert_eq!((ch[0][0].int(), ch[0][2].int(), ch[0][6].int()), (1, 0, 0));
    // Server info and client rows hold the encoded protos.
    let si = db.rows("SELECT id, proto, version FROM ServerInfo");
    assert_eq!(si[0][0].text().as_deref(), Some("test-cluster"));
    assert_eq!(si[0][1], Cell::Bytes(encode(&info())));
    assert_eq!(si[0][2].int(), 1);
    let c = db.rows("SELECT id, hbinbox, proto FROM Clients");
    assert_eq!(c[0][1].text().as_deref(), Some("_INBOX.me"));
    assert_eq!(c[0][2], Cell::Bytes(encode(&client("me"))));
}

fn no_caching_rows_are_the_go_servers(driver: Driver) {
    let db = fresh_db(driver);
    let mut s = seeded(&db, true, 2);
    // Written through: no flush needed.
    assert_eq!(db.int("SELECT COUNT(*) FROM Messages"), 2);
    s.create_sub("foo", &sub(1, "")).unwrap();
    s.add_pending("foo", 1, 1).unwrap();
    s.add_pending("foo", 1, 2).unwrap();
    let rows = db.rows(
        "SELECT `row`, seq, pending, acks FROM SubsPending ORDER BY seq"
            .replace(
                "`row`",
                if driver == Driver::Postgres {
                    "row"
                } else {
                    "`row`"
                },
            )
            .as_str(),
    );
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0][0].int(), rows[0][1].int()), (1, 1));
    assert_eq!((rows[1][0].int(), rows[1][1].int()), (2, 2));
    assert_eq!(
        (rows[0][2].clone(), rows[0][3].clone()),
        (Cell::Null, Cell::Null)
    );
    // Acking the last sent records it in the subscription's row.
    s.ack_pending("foo", 1, 2).unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM SubsPending"), 1);
    assert_eq!(db.int("SELECT lastsent FROM Subscriptions"), 2);
    s.ack_pending("foo", 1, 1).unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM SubsPending"), 0);
}

fn bulk_inserts_store_every_message(driver: Driver) {
    let db = fresh_db(driver);
    let mut o = opts(&db, false);
    o.bulk_insert_limit = 5;
    let mut s = SqlStore::open(o).unwrap();
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    // More than the write cache holds: it is written out on its own once full.
    for seq in 1..=1030 {
        s.store_msg("foo", &msg(seq, b"x")).unwrap();
    }
    assert_eq!(db.int("SELECT COUNT(*) FROM Messages"), 1024);
    s.flush().unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM Messages"), 1030);
    assert_eq!(db.int("SELECT MAX(seq) FROM Messages"), 1030);
    // The oldest are read back from the table, the newest from memory.
    assert_eq!(s.lookup("foo", 1).unwrap(), Some(msg(1, b"x")));
    assert_eq!(s.lookup("foo", 1030).unwrap(), Some(msg(1030, b"x")));
    assert_eq!(s.timestamp("foo", 2).unwrap(), Some(1_002));
    s.remove_oldest("foo").unwrap();
    assert_eq!(s.lookup("foo", 1).unwrap(), None);
    assert_eq!(db.int("SELECT MIN(seq) FROM Messages"), 2);
}

fn deleted_subscription_keeps_the_highest_id(driver: Driver) {
    let db = fresh_db(driver);
    let mut s = seeded(&db, false, 0);
    s.create_channel("bar").unwrap();
    s.create_sub("foo", &sub(1, "")).unwrap();
    // The core numbers per channel; the rows are numbered across channels.
    s.create_sub("bar", &sub(1, "")).unwrap();
    let ids: Vec<i64> = db
        .rows("SELECT subid FROM Subscriptions ORDER BY subid")
        .iter()
        .map(|r| r[0].int())
        .collect();
    assert_eq!(ids, vec![1, 2]);
    // The highest is only marked deleted; any other goes.
    s.delete_sub("bar", 1).unwrap();
    s.delete_sub("foo", 1).unwrap();
    let rows = db.rows("SELECT subid, deleted FROM Subscriptions");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0][0].int(), rows[0][1].int()), (2, 1));
    drop(s);

    let mut s = open(&db, false);
    let r = s.recover().unwrap();
    let bar = r.channels.iter().find(|c| c.name == "bar").unwrap();
    assert!(bar.subs.is_empty());
    assert_eq!(bar.max_sub_id, 2);
    s.create_sub("foo", &sub(1, "")).unwrap();
    s.create_sub("bar", &sub(3, "")).unwrap();
    // New IDs follow the marked one, which the next creation in its channel purges.
    let rows = db.rows("SELECT id, subid, deleted FROM Subscriptions ORDER BY subid");
    let rows: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| (r[0].int(), r[1].int(), r[2].int()))
        .collect();
    assert_eq!(rows, vec![(1, 3, 0), (2, 4, 0)]);
}

fn channel_delete_removes_its_rows(driver: Driver) {
    let db = fresh_db(driver);
    let mut s = seeded(&db, false, 2);
    s.create_sub("foo", &sub(1, "")).unwrap();
    s.add_pending("foo", 1, 1).unwrap();
    s.flush().unwrap();
    s.delete_channel("foo").unwrap();
    for table in ["Messages", "Subscriptions", "SubsPending", "Channels"] {
        assert_eq!(
            db.int(&format!("SELECT COUNT(*) FROM {table}")),
            0,
            "{table}"
        );
    }
    s.create_channel("foo").unwrap();
    drop(s);
    let mut s = open(&db, false);
    let r = s.recover().unwrap();
    assert_eq!(r.channels.len(), 1);
    assert_eq!(r.channels[0].msgs, MsgsState::default());
    // A row marked deleted by a run that stopped half-way is not recovered.
    db.run("UPDATE Channels SET deleted=TRUE");
    drop(s);
    let mut s = open(&db, false);
    assert!(s.recover().unwrap().channels.is_empty());
    // Channel IDs are not reused while the old row exists.
    s.create_channel("baz").unwrap();
    assert_eq!(db.int("SELECT MAX(id) FROM Channels"), 3);
}

fn removing_every_message_keeps_the_sequence(driver: Driver) {
    let db = fresh_db(driver);
    let mut s = seeded(&db, false, 4);
    s.flush().unwrap();
    // Oldest first, whether still cached or already written.
    s.store_msg("foo", &msg(5, b"m5")).unwrap();
    for _ in 0..3 {
        s.remove_oldest("foo").unwrap();
    }
    assert_eq!(s.msgs_state("foo").first, 4);
    assert_eq!(s.lookup("foo", 3).unwrap(), None);
    assert_eq!(s.lookup("foo", 4).unwrap(), Some(msg(4, b"m4")));
    s.remove_oldest("foo").unwrap();
    s.remove_oldest("foo").unwrap();
    let st = s.msgs_state("foo");
    assert_eq!((st.count, st.bytes, st.first, st.last), (0, 0, 6, 5));
    s.flush().unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM Messages"), 0);
    assert_eq!(db.int("SELECT maxseq FROM Channels"), 5);
    drop(s);
    let mut s = open(&db, false);
    let r = s.recover().unwrap();
    assert_eq!(
        r.channels[0].msgs,
        MsgsState {
            count: 0,
            bytes: 0,
            first: 6,
            last: 5
        }
    );
}

fn server_info_mismatches_are_refused(driver: Driver) {
    let db = fresh_db(driver);
    drop(seeded(&db, false, 0));
    db.run("UPDATE ServerInfo SET version=2");
    let mut s = open(&db, false);
    assert_eq!(
        s.recover().unwrap_err().to_string(),
        "sql: unsupported version: 2 (supports [1..1])"
    );
    db.run("UPDATE ServerInfo SET version=1, id='other'");
    assert_eq!(
        s.recover().unwrap_err().to_string(),
        "sql: id \"other\" in column does not match cluster ID in data \"test-cluster\""
    );
    db.run("UPDATE ServerInfo SET id='test-cluster', proto=NULL");
    let mut s = open(&db, false);
    assert!(s.recover().is_err());
}

/// A database as the Go server leaves it: a client row without proto, pending rows
/// of both modes, a subscription marked deleted, stale pending below the first
/// message.
fn go_written_rows_are_served(driver: Driver) {
    let row = if driver == Driver::Postgres {
        "row"
    } else {
        "`row`"
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let blob = |b: &[u8]| match driver {
        Driver::Postgres => format!("'\\x{}'", hex(b)),
        Driver::MySql => format!("X'{}'", hex(b)),
    };
    let mut script = format!(
        "INSERT INTO ServerInfo (id, proto, version) VALUES ('test-cluster', {}, 1);\n",
        blob(&encode(&info()))
    );
    script += "INSERT INTO Clients (id, hbinbox) VALUES ('old', '_INBOX.old');\n";
    script += "INSERT INTO Channels (id, name, maxseq, maxmsgs) VALUES (7, 'foo', 0, 0);\n";
    script += "INSERT INTO Channels (id, name, deleted) VALUES (9, 'gone', TRUE);\n";
    for seq in 3..=6u64 {
        let m = encode(&msg(seq, b"go"));
        script += &format!(
            "INSERT INTO Messages VALUES (7, {seq}, {}, {}, {});\n",
            1_000 + seq,
            m.len(),
            blob(&m)
        );
    }
    let mut durable = sub(40, "dur");
    durable.last_sent = 4;
    script += &format!(
        "INSERT INTO Subscriptions (id, subid, lastsent, proto) VALUES (7, 40, 3, {});\n",
        blob(&encode(&durable))
    );
    script += &format!(
        "INSERT INTO Subscriptions (id, subid, proto, deleted) VALUES (7, 41, {}, TRUE);\n",
        blob(&encode(&sub(41, "")))
    );
    // Write-through rows (2 is below the first message and goes), then caching rows
    // in an order the query does not guarantee.
    script += &format!("INSERT INTO SubsPending (subid, {row}, seq) VALUES (40, 1, 2);\n");
    script += &format!("INSERT INTO SubsPending (subid, {row}, seq) VALUES (40, 2, 3);\n");
    script += &format!(
        "INSERT INTO SubsPending (subid, {row}, lastsent, pending, acks) VALUES (40, 4, 6, NULL, {});\n",
        blob(b"[4]")
    );
    script += &format!(
        "INSERT INTO SubsPending (subid, {row}, lastsent, pending, acks) VALUES (40, 3, 5, {}, NULL);\n",
        blob(b"[5,4]")
    );
    let db = fresh_db_with(driver, &(schema(driver) + &script));

    let mut s = open(&db, false);
    let r = s.recover().unwrap();
    assert_eq!(r.server_info, Some(info()));
    assert_eq!(
        r.clients,
        vec![ClientInfo {
            id: "old".into(),
            hb_inbox: "_INBOX.old".into(),
            ..ClientInfo::default()
        }]
    );
    assert_eq!(r.channels.len(), 1);
    let ch = &r.channels[0];
    assert_eq!(ch.name, "foo");
    assert_eq!((ch.msgs.count, ch.msgs.first, ch.msgs.last), (4, 3, 6));
    assert_eq!(ch.max_sub_id, 41);
    assert_eq!(ch.subs.len(), 1);
    assert_eq!(ch.subs[0].state.id, 40);
    assert_eq!(ch.subs[0].pending, vec![3, 5]);
    // The highest of the row's, the proto's and every pending row's.
    assert_eq!(ch.subs[0].state.last_sent, 6);
    assert_eq!(db.int("SELECT COUNT(*) FROM SubsPending WHERE seq=2"), 0);
    assert_eq!(s.lookup("foo", 5).unwrap(), Some(msg(5, b"go")));
    // New channels and subscriptions number after everything in the tables.
    s.create_channel("bar").unwrap();
    assert_eq!(db.int("SELECT id FROM Channels WHERE name='bar'"), 10);
    s.create_sub("bar", &sub(1, "")).unwrap();
    assert_eq!(db.int("SELECT subid FROM Subscriptions WHERE id=10"), 42);
    // Served further: acking what was pending clears the rows.
    s.ack_pending("foo", 40, 3).unwrap();
    s.ack_pending("foo", 40, 5).unwrap();
    s.flush().unwrap();
    drop(s);
    let mut s = open(&db, false);
    let r = s.recover().unwrap();
    let ch = r.channels.iter().find(|c| c.name == "foo").unwrap();
    assert!(ch.subs[0].pending.is_empty());
    assert_eq!(db.int("SELECT COUNT(*) FROM SubsPending"), 0);
}

fn missing_tables_and_bad_sources_fail_clearly(driver: Driver) {
    let db = fresh_db_with(driver, "CREATE TABLE ServerInfo (uniquerow INTEGER DEFAULT 1, id VARCHAR(1024), proto BLOB, version INTEGER);".replace(
        "BLOB",
        if driver == Driver::Postgres { "BYTEA" } else { "BLOB" },
    ).as_str());
    let e = SqlStore::open(opts(&db, false)).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "unable to prepare statement \"SELECT id, tick from StoreLock FOR UPDATE\": "
        ),
        "{e}"
    );
    let mut o = opts(&db, false);
    o.source = match driver {
        Driver::Postgres => format!(
            "host=127.0.0.1 port={} user=postgres dbname=nope_{} sslmode=disable",
            db.port, db.name
        ),
        Driver::MySql => format!("root@tcp(127.0.0.1:{})/nope_{}", db.port, db.name),
    };
    let e = SqlStore::open(o.clone()).unwrap_err().to_string();
    assert!(e.contains(&format!("nope_{}", db.name)), "{e}");
    o.source = "garbage".into();
    assert!(SqlStore::open(o.clone()).is_err());
    // Connections to the database are not encrypted: asking for TLS is refused.
    o.source = match driver {
        Driver::Postgres => db.source().replace("sslmode=disable", "sslmode=require"),
        Driver::MySql => format!("{}?tls=true", db.source()),
    };
    let e = SqlStore::open(o).unwrap_err().to_string();
    assert!(e.to_lowercase().contains("tls"), "{e}");
}

/// Rows that do not decode are reported with what they belong to, never a panic.
fn corrupt_rows_are_reported(driver: Driver) {
    let db = fresh_db(driver);
    let mut s = seeded(&db, true, 2);
    s.create_sub("foo", &sub(1, "")).unwrap();
    drop(s);
    let garbage = match driver {
        Driver::Postgres => "'\\xffffffff'",
        Driver::MySql => "X'ffffffff'",
    };
    db.run(&format!("UPDATE Messages SET data={garbage} WHERE seq=2"));
    let mut s = open(&db, true);
    s.recover().unwrap();
    assert_eq!(s.lookup("foo", 1).unwrap(), Some(msg(1, b"m1")));
    let e = s.lookup("foo", 2).unwrap_err().to_string();
    assert!(
        e.starts_with("sql: unable to decode message 2 of channel \"foo\": "),
        "{e}"
    );
    db.run(&format!("UPDATE Subscriptions SET proto={garbage}"));
    let e = open(&db, true).recover().unwrap_err().to_string();
    assert!(
        e.starts_with("sql: unable to decode a subscription of channel \"foo\": "),
        "{e}"
    );
    db.run(&format!("UPDATE Clients SET proto={garbage}"));
    let e = open(&db, true).recover().unwrap_err().to_string();
    assert!(
        e.starts_with("sql: unable to decode client \"me\": "),
        "{e}"
    );
    db.run("UPDATE Clients SET proto=NULL");
    db.run(&format!(
        "UPDATE Subscriptions SET proto={}",
        match driver {
            Driver::Postgres => format!("'\\x{}'", hex(&encode(&sub(1, "")))),
            Driver::MySql => format!("X'{}'", hex(&encode(&sub(1, "")))),
        }
    ));
    db.run(
        "INSERT INTO SubsPending (subid, seq, lastsent, pending) VALUES (1, 0, 0, '[1,')"
            .replace(
                "subid, seq",
                if driver == Driver::Postgres {
                    "subid, row, seq"
                } else {
                    "subid, `row`, seq"
                },
            )
            .replace("VALUES (1, 0,", "VALUES (1, 9, 0,")
            .as_str(),
    );
    let e = open(&db, true).recover().unwrap_err().to_string();
    assert!(
        e.starts_with("sql: unable to decode pending of subscription 1: "),
        "{e}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The drivers' timeout keywords, and PostgreSQL's URL form, connect.
fn sources_with_timeouts_connect(driver: Driver) {
    let db = fresh_db(driver);
    let mut o = opts(&db, false);
    o.source = match driver {
        Driver::Postgres => format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable&readTimeout=5s&WriteTimeout=2s",
            db.port, db.name
        ),
        Driver::MySql => format!("{}?timeout=5s&readTimeout=5s&writeTimeout=2s", db.source()),
    };
    let mut s = SqlStore::open(o.clone()).unwrap();
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    if driver == Driver::Postgres {
        o.source = format!("{} readTimeout=1m writeTimeout=30s", db.source());
        SqlStore::open(o).unwrap();
    }
}

/// The `StoreLock` row: taken when free, renewed by its owner, freed when the owner
/// lets go, stolen once abandoned.
fn store_lock_row(driver: Driver) {
    let db = fresh_db(driver);
    let o = opts(&db, false);
    let mut a = SqlLock::connect(&o).unwrap();
    let mut b = SqlLock::connect(&o).unwrap();
    assert!(a.try_lock().unwrap());
    assert!(!b.try_lock().unwrap());
    let row = db.rows("SELECT id, tick FROM StoreLock");
    assert_eq!(row.len(), 1);
    assert_eq!(row[0][1].int(), 1);
    let held = a.hold(Box::new(|why| panic!("{why}")));
    // The owner renews its row: the tick moves on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.int("SELECT tick FROM StoreLock") < 2 {
        assert!(Instant::now() < deadline, "the lock was not renewed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!b.try_lock().unwrap());
    drop(held);
    let row = db.rows("SELECT id, tick FROM StoreLock");
    assert_eq!(
        (row[0][0].text().as_deref(), row[0][1].int()),
        (Some(""), 0)
    );
    assert!(b.try_lock().unwrap());
    // B now owns the row but never renews it: a third contender steals it once it
    // has stopped changing.
    let mut c = SqlLock::connect(&o).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.try_lock().unwrap() {
        assert!(
            Instant::now() < deadline,
            "the abandoned row was not stolen"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(db.int("SELECT tick FROM StoreLock"), 1);
}

fn a_lost_connection_is_replaced(driver: Driver) {
    let db = fresh_db(driver);
    let mut s = seeded(&db, true, 1);
    // Every other session of the database is ended, the store's included.
    match driver {
        Driver::Postgres => {
            db.rows(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='{}' AND pid <> pg_backend_pid()",
                db.name
            ));
        }
        Driver::MySql => {
            let ids = db.rows(&format!(
                "SELECT id FROM information_schema.processlist WHERE db='{}' AND id <> CONNECTION_ID()",
                db.name
            ));
            assert!(!ids.is_empty());
            for id in ids {
                db.run(&format!("KILL {}", id[0].int()));
            }
        }
    }
    // The statement that meets the dead connection fails; the next ones get a new one.
    if s.store_msg("foo", &msg(2, b"m2")).is_err() {
        s.store_msg("foo", &msg(2, b"m2")).unwrap();
    }
    s.store_msg("foo", &msg(3, b"m3")).unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM Messages"), 3);
}

macro_rules! both {
    ($($name:ident $(($($arg:expr),*))?),* $(,)?) => {
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(super::Driver::Postgres $($(, $arg)*)?)
            })*
        }
        mod mysql {
            $(#[test]
            fn $name() {
                super::$name(super::Driver::MySql $($(, $arg)*)?)
            })*
        }
    };
}

fn round_trip_caching(driver: Driver) {
    round_trip(driver, false)
}

fn round_trip_no_caching(driver: Driver) {
    round_trip(driver, true)
}

both!(
    round_trip_caching,
    round_trip_no_caching,
    caching_rows_are_the_go_servers,
    no_caching_rows_are_the_go_servers,
    bulk_inserts_store_every_message,
    deleted_subscription_keeps_the_highest_id,
    channel_delete_removes_its_rows,
    removing_every_message_keeps_the_sequence,
    server_info_mismatches_are_refused,
    go_written_rows_are_served,
    missing_tables_and_bad_sources_fail_clearly,
    a_lost_connection_is_replaced,
    sources_with_timeouts_connect,
    store_lock_row,
    corrupt_rows_are_reported,
);
