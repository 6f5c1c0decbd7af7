//! The FILE store's bytes on disk, both ways: directories built by hand from the
//! rules and test vectors of shared/spec/STORES.md §1 are recovered, and what the
//! store writes is parsed back record by record by the independent reader in
//! `file_store_common.rs`.

#[path = "file_store_common.rs"]
mod common;

use common::*;
use stan_core::store::{MsgsState, Store};
use stan_core::streaming::pb::{
    encode, ClientDelete, ClientInfo, MsgProto, ServerInfo, SubState, SubStateDelete,
    SubStateUpdate,
};
use stan_runtime::store::{FileStore, FileStoreOptions};

/// STORES §1.12: the message of the test vectors and its encoding.
const VECTOR_MSG: [u8; 24] = [
    0x08, 0x01, 0x12, 0x03, 0x66, 0x6f, 0x6f, 0x22, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x28, 0x80,
    0x80, 0x80, 0xc5, 0xdd, 0xf0, 0x95, 0x9a, 0x16,
];
const VECTOR_TS: i64 = 1_600_000_000_000_000_000;
const VECTOR_DAT_HEADER: [u8; 8] = [0x18, 0x00, 0x00, 0x00, 0x62, 0x84, 0xc2, 0x28];
const VECTOR_IDX: [u8; 32] = [
    0x01, 0, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0xa0, 0xd8, 0x85, 0x57, 0x34,
    0x16, 0x18, 0, 0, 0, 0x33, 0x8c, 0xe0, 0xd1,
];
const VECTOR_SUB_MSG: [u8; 12] = [
    0x04, 0x00, 0x00, 0x05, 0x03, 0xbf, 0xf7, 0xd8, 0x08, 0x01, 0x10, 0x01,
];

fn vector_msg() -> MsgProto {
    msg("foo", 1, b"hello", VECTOR_TS)
}

fn server_info() -> ServerInfo {
    ServerInfo {
        cluster_id: "test-cluster".into(),
        discovery: "_STAN.discover.test-cluster".into(),
        publish: "_STAN.pub.test-cluster".into(),
        subscribe: "_STAN.sub.test-cluster".into(),
        unsubscribe: "_STAN.unsub.test-cluster".into(),
        close: "_STAN.close.test-cluster".into(),
        sub_close: "_STAN.subclose.test-cluster".into(),
        acks_subs: "_STAN.ack.test-cluster".into(),
        node_id: String::new(),
    }
}

fn client(id: &str) -> ClientInfo {
    ClientInfo {
        id: id.into(),
        hb_inbox: format!("_INBOX.hb.{id}"),
        conn_id: id.as_bytes().to_vec(),
        protocol: 1,
        ping_interval: 5,
        ping_max_out: 3,
    }
}

#[test]
fn the_spec_vectors_are_what_we_compute() {
    assert_eq!(encode(&vector_msg()), VECTOR_MSG);
    assert_eq!(record(0, &VECTOR_MSG, IEEE)[..8], VECTOR_DAT_HEADER);
    assert_eq!(idx_record(1, 4, VECTOR_TS, 24, IEEE), VECTOR_IDX);
    assert_eq!(
        record(5, &encode(&SubStateUpdate { id: 1, seqno: 1 }), IEEE),
        VECTOR_SUB_MSG
    );
}

#[test]
fn the_store_writes_the_spec_vectors_byte_for_byte() {
    let dir = TempDir::new("vectors");
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    assert_eq!(s.store_msg("foo", &vector_msg()).unwrap(), 24 + 40);
    let state = sub(1, "me");
    s.create_sub("foo", &state).unwrap();
    s.add_pending("foo", 1, 1).unwrap();
    s.flush().unwrap();

    let mut dat = VERSION.to_vec();
    dat.extend_from_slice(&VECTOR_DAT_HEADER);
    dat.extend_from_slice(&VECTOR_MSG);
    assert_eq!(read(dir.join("foo/msgs.1.dat")), dat);
    let mut idx = VERSION.to_vec();
    idx.extend_from_slice(&VECTOR_IDX);
    assert_eq!(read(dir.join("foo/msgs.1.idx")), idx);
    let mut subs = dat_file(&[record(1, &encode(&state), IEEE)]);
    subs.extend_from_slice(&VECTOR_SUB_MSG);
    assert_eq!(read(dir.join("foo/subs.dat")), subs);
}

/// A directory as the Go server would leave it, written from the spec's rules.
fn go_directory(dir: &TempDir) -> (SubState, MsgProto) {
    let root = dir.path();
    std::fs::write(
        root.join("server.dat"),
        dat_file(&[record(0, &encode(&server_info()), IEEE)]),
    )
    .unwrap();
    std::fs::write(
        root.join("clients.dat"),
        dat_file(&[
            record(1, &encode(&client("a")), IEEE),
            record(1, &encode(&client("b")), IEEE),
            record(2, &encode(&ClientDelete { id: "a".into() }), IEEE),
            // A replacement of an existing client.
            record(
                1,
                &encode(&ClientInfo {
                    protocol: 0,
                    ..client("b")
                }),
                IEEE,
            ),
        ]),
    )
    .unwrap();
    // A regular file in the root is not a channel.
    std::fs::write(root.join("notes.txt"), b"hello").unwrap();
    std::fs::create_dir(root.join("foo")).unwrap();
    let durable = SubState {
        durable_name: "dur".into(),
        is_durable: true,
        last_sent: 0,
        ..sub(1, "b")
    };
    let update = |id, seqno| encode(&SubStateUpdate { id, seqno });
    std::fs::write(
        root.join("foo/subs.dat"),
        dat_file(&[
            record(1, &encode(&durable), IEEE),
            record(5, &update(1, 1), IEEE),
            record(5, &update(1, 2), IEEE),
            record(1, &encode(&sub(2, "b")), IEEE),
            record(5, &update(2, 2), IEEE),
            record(4, &update(1, 1), IEEE),
            // Queue redelivery: the same sequence twice.
            record(5, &update(1, 2), IEEE),
            record(3, &encode(&SubStateDelete { id: 2 }), IEEE),
            // Records about unknown or deleted subscriptions are ignored.
            record(5, &update(2, 2), IEEE),
            record(4, &update(9, 1), IEEE),
            record(3, &encode(&SubStateDelete { id: 7 }), IEEE),
            record(
                2,
                &encode(&SubState {
                    is_closed: true,
                    ..durable.clone()
                }),
                IEEE,
            ),
        ]),
    )
    .unwrap();
    let second = MsgProto {
        reply: "_INBOX.r".into(),
        ..msg("foo", 2, &[0, 1, 2, 255], VECTOR_TS + 5)
    };
    let second_bytes = encode(&second);
    let mut dat = dat_file(&[]);
    dat.extend_from_slice(&VECTOR_DAT_HEADER);
    dat.extend_from_slice(&VECTOR_MSG);
    let second_off = dat.len() as u64;
    dat.extend_from_slice(&record(0, &second_bytes, IEEE));
    std::fs::write(root.join("foo/msgs.1.dat"), &dat).unwrap();
    let mut idx = VERSION.to_vec();
    idx.extend_from_slice(&VECTOR_IDX);
    idx.extend_from_slice(&idx_record(
        2,
        second_off,
        second.timestamp,
        second_bytes.len() as u32,
        IEEE,
    ));
    std::fs::write(root.join("foo/msgs.1.idx"), &idx).unwrap();
    // The update replaced the whole state: its lastSent (0) wins over the earlier
    // "sent" records; the pending set is kept.
    (
        SubState {
            is_closed: true,
            ..durable
        },
        second,
    )
}

#[test]
fn a_go_directory_is_recovered() {
    let dir = TempDir::new("go-dir");
    let (durable, second) = go_directory(&dir);
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.server_info, Some(server_info()));
    assert_eq!(
        r.clients,
        vec![ClientInfo {
            protocol: 0,
            ..client("b")
        }]
    );
    assert_eq!(r.channels.len(), 1);
    let ch = &r.channels[0];
    assert_eq!(ch.name, "foo");
    assert_eq!(
        ch.msgs,
        MsgsState {
            count: 2,
            bytes: 24 + 40 + second.encoded_len_for_test() + 40,
            first: 1,
            last: 2
        }
    );
    assert_eq!(ch.subs.len(), 1);
    assert_eq!(ch.subs[0].state, durable);
    assert_eq!(ch.subs[0].pending, vec![2]);
    assert_eq!(ch.max_sub_id, 7);
    assert_eq!(s.lookup("foo", 1).unwrap(), Some(vector_msg()));
    assert_eq!(s.lookup("foo", 2).unwrap(), Some(second));
    assert_eq!(s.timestamp("foo", 1).unwrap(), Some(VECTOR_TS));
    assert_eq!(s.lookup("foo", 3).unwrap(), None);
}

trait EncodedLen {
    fn encoded_len_for_test(&self) -> u64;
}

impl EncodedLen for MsgProto {
    fn encoded_len_for_test(&self) -> u64 {
        encode(self).len() as u64
    }
}

#[test]
fn appends_to_a_go_directory_continue_its_files() {
    let dir = TempDir::new("go-dir-append");
    go_directory(&dir);
    let before_dat = read(dir.join("foo/msgs.1.dat"));
    let before_subs = read(dir.join("foo/subs.dat"));
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    s.recover().unwrap();
    let third = msg("foo", 3, b"third", VECTOR_TS + 9);
    s.store_msg("foo", &third).unwrap();
    s.ack_pending("foo", 1, 2).unwrap();
    s.flush().unwrap();
    drop(s);

    let dat = read(dir.join("foo/msgs.1.dat"));
    assert_eq!(dat[..before_dat.len()], before_dat[..]);
    assert_eq!(
        dat[before_dat.len()..],
        record(0, &encode(&third), IEEE)[..]
    );
    let idx = parse_idx(&read(dir.join("foo/msgs.1.idx")), IEEE);
    assert_eq!(idx.len(), 3);
    assert_eq!(
        idx[2],
        Idx {
            seq: 3,
            offset: before_dat.len() as u64,
            ts: third.timestamp,
            size: encode(&third).len() as u32
        }
    );
    let subs = read(dir.join("foo/subs.dat"));
    assert_eq!(subs[..before_subs.len()], before_subs[..]);
    assert_eq!(
        subs[before_subs.len()..],
        record(4, &encode(&SubStateUpdate { id: 1, seqno: 2 }), IEEE)[..]
    );
}

/// Writes a bit of everything and checks each file record by record.
#[test]
fn a_directory_we_write_follows_the_format() {
    let dir = TempDir::new("ours");
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let r = s.recover().unwrap();
    assert!(r.server_info.is_none() && r.clients.is_empty() && r.channels.is_empty());
    s.init_server_info(&ServerInfo {
        node_id: "old".into(),
        ..server_info()
    })
    .unwrap();
    // Re-initialisation rewrites the single record.
    s.init_server_info(&server_info()).unwrap();
    s.add_client(&client("c1")).unwrap();
    s.add_client(&client("c2")).unwrap();
    s.delete_client("c1").unwrap();
    s.create_channel("bar.baz").unwrap();
    let msgs: Vec<MsgProto> = (1..=5)
        .map(|i| MsgProto {
            reply: if i % 2 == 0 {
                format!("_INBOX.{i}")
            } else {
                String::new()
            },
            ..msg(
                "bar.baz",
                i,
                &vec![i as u8; i as usize * 100],
                1_700_000_000_000_000_000 + i as i64,
            )
        })
        .collect();
    for m in &msgs {
        assert_eq!(
            s.store_msg("bar.baz", m).unwrap(),
            encode(m).len() as u64 + 40
        );
    }
    let a = sub(1, "c2");
    s.create_sub("bar.baz", &a).unwrap();
    s.add_pending("bar.baz", 1, 1).unwrap();
    s.add_pending("bar.baz", 1, 2).unwrap();
    s.ack_pending("bar.baz", 1, 1).unwrap();
    let updated = SubState {
        last_sent: 2,
        is_closed: true,
        ..a.clone()
    };
    s.update_sub("bar.baz", &updated).unwrap();
    s.create_sub("bar.baz", &sub(2, "c2")).unwrap();
    s.delete_sub("bar.baz", 2).unwrap();
    s.flush().unwrap();

    assert_eq!(
        parse_dat(&read(dir.join("server.dat")), false, IEEE),
        vec![(0, encode(&server_info()))]
    );
    assert_eq!(
        parse_dat(&read(dir.join("clients.dat")), true, IEEE),
        vec![
            (1, encode(&client("c1"))),
            (1, encode(&client("c2"))),
            (2, encode(&ClientDelete { id: "c1".into() })),
        ]
    );
    let upd = |id, seqno| encode(&SubStateUpdate { id, seqno });
    assert_eq!(
        parse_dat(&read(dir.join("bar.baz/subs.dat")), true, IEEE),
        vec![
            (1, encode(&a)),
            (5, upd(1, 1)),
            (5, upd(1, 2)),
            (4, upd(1, 1)),
            (2, encode(&updated)),
            (1, encode(&sub(2, "c2"))),
            (3, encode(&SubStateDelete { id: 2 })),
        ]
    );
    let dat = read(dir.join("bar.baz/msgs.1.dat"));
    let records = parse_dat(&dat, false, IEEE);
    assert_eq!(
        records,
        msgs.iter().map(|m| (0, encode(m))).collect::<Vec<_>>()
    );
    let idx = parse_idx(&read(dir.join("bar.baz/msgs.1.idx")), IEEE);
    let mut offset = 4u64;
    for (i, m) in msgs.iter().enumerate() {
        let size = encode(m).len() as u32;
        assert_eq!(
            idx[i],
            Idx {
                seq: m.sequence,
                offset,
                ts: m.timestamp,
                size
            }
        );
        offset += 8 + u64::from(size);
    }
    assert_eq!(offset, dat.len() as u64);
    // The lock file of a fault-tolerant group, taken by every server here.
    assert_eq!(
        ls(dir.path()),
        vec![".rootdir.lck", "bar.baz", "clients.dat", "server.dat"]
    );
    assert_eq!(
        ls(dir.join("bar.baz")),
        vec!["msgs.1.dat", "msgs.1.idx", "subs.dat"]
    );
}

#[test]
fn redelivery_fields_are_not_stored() {
    let dir = TempDir::new("redelivered");
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    let plain = msg("foo", 1, b"x", 7);
    let m = MsgProto {
        redelivered: true,
        redelivery_count: 3,
        crc32: 9,
        ..plain.clone()
    };
    assert_eq!(
        s.store_msg("foo", &m).unwrap(),
        encode(&plain).len() as u64 + 40
    );
    assert_eq!(s.lookup("foo", 1).unwrap(), Some(plain.clone()));
    s.flush().unwrap();
    assert_eq!(
        parse_dat(&read(dir.join("foo/msgs.1.dat")), false, IEEE),
        vec![(0, encode(&plain))]
    );
}

#[test]
fn a_custom_polynomial_is_used_for_every_checksum() {
    const CASTAGNOLI: u32 = 0x82F6_3B78;
    let dir = TempDir::new("poly");
    let opts = FileStoreOptions {
        crc_poly: i64::from(CASTAGNOLI),
        ..FileStoreOptions::default()
    };
    let mut s = FileStore::open(dir.path(), opts.clone()).unwrap();
    s.recover().unwrap();
    s.init_server_info(&server_info()).unwrap();
    s.add_client(&client("c")).unwrap();
    s.create_channel("foo").unwrap();
    s.store_msg("foo", &vector_msg()).unwrap();
    s.create_sub("foo", &sub(1, "c")).unwrap();
    s.add_pending("foo", 1, 1).unwrap();
    s.flush().unwrap();
    drop(s);

    // The independent reader agrees on every CRC with that polynomial.
    parse_dat(&read(dir.join("server.dat")), false, CASTAGNOLI);
    parse_dat(&read(dir.join("clients.dat")), true, CASTAGNOLI);
    parse_dat(&read(dir.join("foo/subs.dat")), true, CASTAGNOLI);
    parse_dat(&read(dir.join("foo/msgs.1.dat")), false, CASTAGNOLI);
    parse_idx(&read(dir.join("foo/msgs.1.idx")), CASTAGNOLI);

    let mut s = FileStore::open(dir.path(), opts).unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.server_info, Some(server_info()));
    assert_eq!(r.clients, vec![client("c")]);
    assert_eq!(r.channels[0].subs[0].pending, vec![1]);
    assert_eq!(s.lookup("foo", 1).unwrap(), Some(vector_msg()));
    drop(s);

    // Read with the default polynomial, the same bytes are corrupt.
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let e = s.recover().unwrap_err().0;
    let info = encode(&server_info());
    assert_eq!(
        e,
        format!(
            "unable to recover server file {:?}: corrupted data, expected crc to be 0x{:08x}, got 0x{:08x}",
            dir.join("server.dat").display().to_string(),
            crc32(CASTAGNOLI, &info),
            crc32(IEEE, &info)
        )
    );
    drop(s);
    // With verification off the data is read whatever the polynomial.
    let opts = FileStoreOptions {
        crc: false,
        ..FileStoreOptions::default()
    };
    let mut s = FileStore::open(dir.path(), opts).unwrap();
    assert_eq!(s.recover().unwrap().server_info, Some(server_info()));
}

/// The hand-built directory served by the real binary: its messages reach a new
/// subscriber, the durable resumes where the directory left it, and publishing
/// continues the sequence.
#[test]
fn stan_server_serves_a_go_directory() {
    use stan_runtime::stan_client::{StanConn, StanOptions, StartAt, SubscribeOptions};
    use std::time::{Duration, Instant};

    let dir = TempDir::new("go-dir-serve");
    go_directory(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-st",
            "FILE",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let conn = loop {
            match StanConn::connect(&addr, "test-cluster", "reader", StanOptions::default()).await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no connect: {e:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let mut all = conn
            .subscribe(
                "foo",
                SubscribeOptions {
                    start: StartAt::First,
                    ..SubscribeOptions::default()
                },
            )
            .await
            .unwrap();
        let first = next(&mut all).await;
        assert_eq!((first.sequence, first.data.as_slice()), (1, &b"hello"[..]));
        assert_eq!(first.timestamp, VECTOR_TS);
        let second = next(&mut all).await;
        assert_eq!(
            (second.sequence, second.data.as_slice()),
            (2, &[0, 1, 2, 255][..])
        );
        conn.publish("foo", b"after").await.unwrap();
        let third = next(&mut all).await;
        assert_eq!((third.sequence, third.data.as_slice()), (3, &b"after"[..]));

        // The durable of client "b" (closed, cursor at 0, 2 pending) resumes under
        // a client of that name: its pending 2 comes again, which moves the cursor
        // past it as the Go server does, then 3.
        let b = StanConn::connect(&addr, "test-cluster", "b", StanOptions::default())
            .await
            .unwrap();
        let mut dur = b
            .subscribe(
                "foo",
                SubscribeOptions {
                    durable_name: Some("dur".into()),
                    start: StartAt::First,
                    ..SubscribeOptions::default()
                },
            )
            .await
            .unwrap();
        let again = next(&mut dur).await;
        assert_eq!((again.sequence, again.redelivered), (2, true));
        let new = next(&mut dur).await;
        assert_eq!((new.sequence, new.redelivered), (3, false));
    });
}

async fn next(
    sub: &mut stan_runtime::stan_client::StanSubscription,
) -> stan_runtime::stan_client::Msg {
    tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}
