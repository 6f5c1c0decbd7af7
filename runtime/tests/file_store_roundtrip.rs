//! The FILE store through the `Store` port: what is written comes back after a
//! restart; slices roll and are removed; flushes fsync as configured; compaction.

#[path = "file_store_common.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use stan_core::store::{MsgsState, RecoveredSub, Store};
use stan_core::streaming::pb::{
    encode, ClientInfo, MsgProto, ServerInfo, SubState, SubStateUpdate,
};
use stan_runtime::store::{ChannelLimits, FileStore, FileStoreOptions};

fn open(dir: &TempDir, opts: FileStoreOptions) -> FileStore {
    FileStore::open(dir.path(), opts).unwrap()
}

fn open_fs(dir: &TempDir, fs: &TestFs, opts: FileStoreOptions) -> FileStore {
    FileStore::open_with(Arc::new(fs.clone()), dir.path(), opts).unwrap()
}

fn client(id: &str) -> ClientInfo {
    ClientInfo {
        id: id.into(),
        hb_inbox: format!("_INBOX.{id}"),
        conn_id: vec![7; 22],
        protocol: 1,
        ping_interval: 5,
        ping_max_out: 3,
    }
}

fn info() -> ServerInfo {
    ServerInfo {
        cluster_id: "c".into(),
        discovery: "_STAN.discover.c".into(),
        publish: "_STAN.pub.c".into(),
        ..ServerInfo::default()
    }
}

fn size(m: &MsgProto) -> u64 {
    encode(m).len() as u64 + 40
}

#[test]
fn everything_comes_back_after_a_restart() {
    let dir = TempDir::new("roundtrip");
    let mut s = open(&dir, FileStoreOptions::default());
    assert_eq!(s.kind(), "FILE");
    s.recover().unwrap();
    s.init_server_info(&info()).unwrap();
    for id in ["a", "b", "c"] {
        s.add_client(&client(id)).unwrap();
    }
    s.delete_client("b").unwrap();
    s.create_channel("foo").unwrap();
    s.create_channel("bar").unwrap();
    let mut foo = Vec::new();
    for seq in 1..=50u64 {
        let m = MsgProto {
            reply: if seq % 3 == 0 {
                "_INBOX.x".into()
            } else {
                String::new()
            },
            ..msg(
                "foo",
                seq,
                &vec![seq as u8; seq as usize * 7],
                1_000 + seq as i64 * 10,
            )
        };
        s.store_msg("foo", &m).unwrap();
        foo.push(m);
    }
    let bar = msg("bar", 1, b"", -3);
    s.store_msg("bar", &bar).unwrap();
    for _ in 0..5 {
        s.remove_oldest("foo").unwrap();
    }
    let durable = SubState {
        durable_name: "d".into(),
        is_durable: true,
        ..sub(1, "a")
    };
    s.create_sub("foo", &durable).unwrap();
    s.create_sub("foo", &sub(2, "c")).unwrap();
    s.create_sub("foo", &sub(3, "c")).unwrap();
    for seq in 6..=12 {
        s.add_pending("foo", 1, seq).unwrap();
    }
    s.ack_pending("foo", 1, 7).unwrap();
    s.ack_pending("foo", 1, 99).unwrap();
    s.add_pending("foo", 2, 40).unwrap();
    s.delete_sub("foo", 3).unwrap();
    s.delete_sub("foo", 3).unwrap();
    let resumed = SubState {
        last_sent: 12,
        is_closed: true,
        ..durable.clone()
    };
    s.update_sub("foo", &resumed).unwrap();
    s.create_sub("bar", &sub(1, "a")).unwrap();
    s.flush().unwrap();
    let foo_state = s.msgs_state("foo");
    assert_eq!(foo_state.count, 45);
    assert_eq!(foo_state.first, 6);
    assert_eq!(foo_state.bytes, foo[5..].iter().map(size).sum::<u64>());
    drop(s);

    let mut s = open(&dir, FileStoreOptions::default());
    let r = s.recover().unwrap();
    assert_eq!(r.server_info, Some(info()));
    assert_eq!(r.clients, vec![client("a"), client("c")]);
    let names: Vec<&str> = r.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bar", "foo"]);
    let rfoo = &r.channels[1];
    // Removal is logical: the removed messages of the remaining slice come back and
    // limits are re-applied by the server after recovery.
    assert_eq!(
        rfoo.msgs,
        MsgsState {
            count: 50,
            bytes: foo.iter().map(size).sum(),
            first: 1,
            last: 50
        }
    );
    assert_eq!(
        rfoo.subs,
        vec![
            RecoveredSub {
                state: resumed,
                pending: vec![6, 8, 9, 10, 11, 12]
            },
            RecoveredSub {
                state: SubState {
                    last_sent: 40,
                    ..sub(2, "c")
                },
                pending: vec![40]
            },
        ]
    );
    assert_eq!(rfoo.max_sub_id, 3);
    assert_eq!(
        r.channels[0].msgs,
        MsgsState {
            count: 1,
            bytes: size(&bar),
            first: 1,
            last: 1
        }
    );
    assert_eq!(r.channels[0].subs.len(), 1);
    for m in &foo {
        assert_eq!(s.lookup("foo", m.sequence).unwrap().as_ref(), Some(m));
        assert_eq!(s.timestamp("foo", m.sequence).unwrap(), Some(m.timestamp));
    }
    assert_eq!(s.lookup("bar", 1).unwrap(), Some(bar));

    // Appending continues after the recovered messages, and survives another restart.
    let next = msg("foo", 51, b"after restart", 99_999);
    s.store_msg("foo", &next).unwrap();
    s.ack_pending("foo", 1, 6).unwrap();
    s.flush().unwrap();
    drop(s);
    let mut s = open(&dir, FileStoreOptions::default());
    let r = s.recover().unwrap();
    assert_eq!(r.channels[1].msgs.last, 51);
    assert_eq!(r.channels[1].subs[0].pending, vec![8, 9, 10, 11, 12]);
    assert_eq!(s.lookup("foo", 51).unwrap(), Some(next));
}

#[test]
fn mem_store_semantics_of_each_call() {
    let dir = TempDir::new("semantics");
    let mut s = open(&dir, FileStoreOptions::default());
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    assert_eq!(
        s.create_channel("foo").unwrap_err().0,
        "channel \"foo\" already exists"
    );
    assert_eq!(
        s.store_msg("nope", &msg("nope", 1, b"", 1)).unwrap_err().0,
        "channel \"nope\" does not exist"
    );
    assert_eq!(s.msgs_state("nope"), MsgsState::default());
    assert_eq!(s.msgs_state("foo"), MsgsState::default());
    assert_eq!(
        s.remove_oldest("foo").unwrap_err().0,
        "channel \"foo\": no message to remove"
    );
    s.store_msg("foo", &msg("foo", 1, b"a", 1)).unwrap();
    assert_eq!(
        s.store_msg("foo", &msg("foo", 1, b"a", 1)).unwrap_err().0,
        "channel \"foo\": expected sequence 2, got 1"
    );
    s.create_sub("foo", &sub(1, "x")).unwrap();
    assert_eq!(
        s.create_sub("foo", &sub(1, "x")).unwrap_err().0,
        "channel \"foo\": subscription 1 already exists"
    );
    assert_eq!(
        s.update_sub("foo", &sub(2, "x")).unwrap_err().0,
        "channel \"foo\": subscription 2 does not exist"
    );
    assert_eq!(
        s.add_pending("foo", 2, 1).unwrap_err().0,
        "channel \"foo\": subscription 2 does not exist"
    );
    assert_eq!(
        s.ack_pending("foo", 2, 1).unwrap_err().0,
        "channel \"foo\": subscription 2 does not exist"
    );
    s.delete_sub("foo", 2).unwrap();
    s.remove_oldest("foo").unwrap();
    assert_eq!(
        s.msgs_state("foo"),
        MsgsState {
            count: 0,
            bytes: 0,
            first: 2,
            last: 1
        }
    );
    assert_eq!(s.lookup("foo", 1).unwrap(), None);
    s.store_msg("foo", &msg("foo", 2, b"b", 2)).unwrap();
    assert_eq!(s.msgs_state("foo").first, 2);
    assert_eq!(
        s.delete_channel("nope").unwrap_err().0,
        "channel \"nope\" does not exist"
    );
    s.delete_channel("foo").unwrap();
    assert!(!dir.join("foo").exists());
    // The name is free again, with a fresh directory.
    s.create_channel("foo").unwrap();
    assert_eq!(s.msgs_state("foo"), MsgsState::default());
    assert!(s.create_channel("a/b").is_err());
    assert!(s.create_channel("..").is_err());
    s.flush().unwrap();
}

#[test]
fn gaps_are_filled_with_placeholders() {
    let dir = TempDir::new("gaps");
    let mut s = open(&dir, FileStoreOptions::default());
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    s.store_msg("foo", &msg("foo", 1, b"one", 10)).unwrap();
    let four = msg("foo", 4, b"four", 40);
    s.store_msg("foo", &four).unwrap();
    assert_eq!(s.msgs_state("foo").count, 4);
    assert_eq!(s.lookup("foo", 2).unwrap(), Some(msg("foo", 2, b"", 40)));
    assert_eq!(s.lookup("foo", 3).unwrap(), Some(msg("foo", 3, b"", 40)));
    assert_eq!(s.lookup("foo", 4).unwrap(), Some(four));
}

#[test]
fn slices_roll_on_message_count_and_are_removed_when_emptied() {
    let dir = TempDir::new("slices");
    let opts = FileStoreOptions {
        slice_max_msgs: 3,
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts.clone());
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    let msgs: Vec<MsgProto> = (1..=10)
        .map(|i| msg("foo", i, &[i as u8; 10], i as i64))
        .collect();
    for m in &msgs {
        s.store_msg("foo", m).unwrap();
    }
    s.flush().unwrap();
    assert_eq!(
        ls(dir.join("foo")),
        [
            "msgs.1.dat",
            "msgs.1.idx",
            "msgs.2.dat",
            "msgs.2.idx",
            "msgs.3.dat",
            "msgs.3.idx",
            "msgs.4.dat",
            "msgs.4.idx",
            "subs.dat"
        ]
    );
    let idx = parse_idx(&read(dir.join("foo/msgs.2.idx")), IEEE);
    assert_eq!(idx.iter().map(|i| i.seq).collect::<Vec<_>>(), [4, 5, 6]);
    assert_eq!(idx[0].offset, 4);
    for _ in 0..4 {
        s.remove_oldest("foo").unwrap();
    }
    assert!(!dir.join("foo/msgs.1.dat").exists());
    assert!(!dir.join("foo/msgs.1.idx").exists());
    assert!(dir.join("foo/msgs.2.dat").exists());
    assert_eq!(
        s.msgs_state("foo"),
        MsgsState {
            count: 6,
            bytes: msgs[4..].iter().map(size).sum(),
            first: 5,
            last: 10
        }
    );
    assert_eq!(s.lookup("foo", 3).unwrap(), None);
    assert_eq!(s.lookup("foo", 4).unwrap(), None);
    for m in &msgs[4..] {
        assert_eq!(s.lookup("foo", m.sequence).unwrap().as_ref(), Some(m));
    }
    drop(s);
    let mut s = open(&dir, opts.clone());
    let r = s.recover().unwrap();
    // Slice 2's removed message 4 is back; slice 1 is gone for good.
    assert_eq!(
        r.channels[0].msgs,
        MsgsState {
            count: 7,
            bytes: msgs[3..].iter().map(size).sum(),
            first: 4,
            last: 10
        }
    );
    // Removing everything keeps the last slice.
    for _ in 0..7 {
        s.remove_oldest("foo").unwrap();
    }
    assert_eq!(
        s.msgs_state("foo"),
        MsgsState {
            count: 0,
            bytes: 0,
            first: 11,
            last: 10
        }
    );
    assert_eq!(
        ls(dir.join("foo")),
        ["msgs.4.dat", "msgs.4.idx", "subs.dat"]
    );
    // It is filled up, emptied again, and the next slice then takes its place.
    s.store_msg("foo", &msg("foo", 11, b"x", 11)).unwrap();
    s.store_msg("foo", &msg("foo", 12, b"x", 12)).unwrap();
    s.remove_oldest("foo").unwrap();
    s.remove_oldest("foo").unwrap();
    let last = msg("foo", 13, b"x", 13);
    s.store_msg("foo", &last).unwrap();
    s.flush().unwrap();
    assert_eq!(
        ls(dir.join("foo")),
        ["msgs.5.dat", "msgs.5.idx", "subs.dat"]
    );
    assert_eq!(
        s.msgs_state("foo"),
        MsgsState {
            count: 1,
            bytes: size(&last),
            first: 13,
            last: 13
        }
    );
    drop(s);
    let mut s = open(&dir, opts);
    let r = s.recover().unwrap();
    assert_eq!(
        r.channels[0].msgs,
        MsgsState {
            count: 1,
            bytes: size(&last),
            first: 13,
            last: 13
        }
    );
}

#[test]
fn slices_roll_on_bytes_and_on_age() {
    let dir = TempDir::new("slice-bytes");
    // Each message counts 9 + 40 bytes: the fourth starts at 147, under 150.
    let opts = FileStoreOptions {
        slice_max_bytes: 150,
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts);
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    for i in 1..=7u64 {
        let m = msg("foo", i, b"", i as i64);
        assert_eq!(size(&m), 49);
        s.store_msg("foo", &m).unwrap();
    }
    s.flush().unwrap();
    let seqs = |n: u32| {
        parse_idx(&read(dir.join(&format!("foo/msgs.{n}.idx"))), IEEE)
            .iter()
            .map(|i| i.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(1), [1, 2, 3, 4]);
    assert_eq!(seqs(2), [5, 6, 7]);

    let dir = TempDir::new("slice-age");
    let opts = FileStoreOptions {
        slice_max_bytes: 0,
        slice_max_age: Duration::from_secs(1),
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts);
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    for i in 0..5u64 {
        let ts = 1_000_000_000_000 + i as i64 * 600_000_000;
        s.store_msg("foo", &msg("foo", i + 1, b"", ts)).unwrap();
    }
    s.flush().unwrap();
    let seqs = |n: u32| {
        parse_idx(&read(dir.join(&format!("foo/msgs.{n}.idx"))), IEEE)
            .iter()
            .map(|i| i.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(1), [1, 2]);
    assert_eq!(seqs(2), [3, 4]);
    assert_eq!(seqs(3), [5]);
}

#[test]
fn slice_limits_derive_from_channel_limits_when_none_is_set() {
    let dir = TempDir::new("slice-derived");
    let opts = FileStoreOptions {
        slice_max_bytes: 0,
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts);
    s.set_channel_limits(Arc::new(|name: &str| ChannelLimits {
        max_msgs: if name == "foo" { 8 } else { 0 },
        ..ChannelLimits::default()
    }));
    s.recover().unwrap();
    for ch in ["foo", "bar"] {
        s.create_channel(ch).unwrap();
        for i in 1..=5 {
            s.store_msg(ch, &msg(ch, i, b"", i as i64)).unwrap();
        }
    }
    s.flush().unwrap();
    // max_msgs 8 → slices of 2 messages; no limit → a single slice.
    assert_eq!(ls(dir.join("foo")).len(), 7);
    assert_eq!(
        ls(dir.join("bar")),
        ["msgs.1.dat", "msgs.1.idx", "subs.dat"]
    );
}

#[test]
fn an_archive_script_receives_removed_slices() {
    let dir = TempDir::new("archive");
    let out = dir.join("archived.txt");
    let script = dir.join("archive.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $2 $3\" >> {}\necho done\n",
            out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.join("store");
    let opts = FileStoreOptions {
        slice_max_msgs: 2,
        slice_archive_script: script.display().to_string(),
        ..FileStoreOptions::default()
    };
    let mut s = FileStore::open(&root, opts).unwrap();
    let logs = Logs::default();
    s.set_log_sink(logs.sink());
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    for i in 1..=3 {
        s.store_msg("foo", &msg("foo", i, b"x", i as i64)).unwrap();
    }
    s.remove_oldest("foo").unwrap();
    s.remove_oldest("foo").unwrap();
    let dat = root.join("foo/msgs.1.dat.bak");
    let idx = root.join("foo/msgs.1.idx.bak");
    let expected_log = format!(
        "Output of archive script for foo ({} and {}): done\n",
        dat.display(),
        idx.display()
    );
    for _ in 0..200 {
        if logs.contains(&expected_log) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(logs.contains(&expected_log), "{:?}", logs.lines());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("foo {} {}\n", dat.display(), idx.display())
    );
    assert!(dat.exists() && idx.exists());
    assert!(!root.join("foo/msgs.1.dat").exists());
    // The backups are not slices: a restart ignores them.
    drop(s);
    let mut s = FileStore::open(&root, FileStoreOptions::default()).unwrap();
    assert_eq!(s.recover().unwrap().channels[0].msgs.first, 3);
}

#[test]
fn flush_writes_the_batch_and_fsyncs_once_when_sync_is_on() {
    let dir = TempDir::new("sync-on");
    let fs = TestFs::default();
    let mut s = open_fs(&dir, &fs, FileStoreOptions::default());
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    s.create_channel("bar").unwrap();
    s.create_sub("foo", &sub(1, "c")).unwrap();
    s.flush().unwrap();
    let base = fs.syncs();
    for i in 1..=3 {
        s.store_msg("foo", &msg("foo", i, b"payload", i as i64))
            .unwrap();
        s.add_pending("foo", 1, i).unwrap();
    }
    s.store_msg("bar", &msg("bar", 1, b"payload", 1)).unwrap();
    // Buffered: nothing reached the files yet.
    assert_eq!(read(dir.join("foo/msgs.1.dat")).len(), 4);
    assert_eq!(read(dir.join("foo/msgs.1.idx")).len(), 4);
    assert_eq!(fs.syncs(), base);
    // Lookups are served from the buffer.
    assert_eq!(s.lookup("foo", 2).unwrap().unwrap().data, b"payload");
    s.flush().unwrap();
    // One fsync per written file: foo's .dat, .idx and subs.dat, bar's .dat and .idx.
    assert_eq!(fs.syncs() - base, 5);
    assert_eq!(parse_idx(&read(dir.join("foo/msgs.1.idx")), IEEE).len(), 3);
    assert_eq!(
        parse_dat(&read(dir.join("foo/subs.dat")), true, IEEE).len(),
        4
    );
    // Nothing new, nothing to sync.
    s.flush().unwrap();
    assert_eq!(fs.syncs() - base, 5);
}

#[test]
fn flush_does_not_fsync_when_sync_is_off_but_auto_sync_does() {
    let dir = TempDir::new("sync-off");
    let fs = TestFs::default();
    let opts = FileStoreOptions {
        sync: false,
        ..FileStoreOptions::default()
    };
    let mut s = open_fs(&dir, &fs, opts);
    let now = Arc::new(AtomicU64::new(0));
    let clock = now.clone();
    s.set_clock(Arc::new(move || {
        Duration::from_millis(clock.load(Ordering::SeqCst))
    }));
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    s.create_sub("foo", &sub(1, "c")).unwrap();
    s.store_msg("foo", &msg("foo", 1, b"x", 1)).unwrap();
    s.add_pending("foo", 1, 1).unwrap();
    let base = fs.syncs();
    s.flush().unwrap();
    assert_eq!(fs.syncs(), base);
    // Written out, not synced.
    assert_eq!(parse_idx(&read(dir.join("foo/msgs.1.idx")), IEEE).len(), 1);
    // A minute later (the default --file_auto_sync) a flush also syncs.
    now.store(60_000, Ordering::SeqCst);
    s.flush().unwrap();
    assert_eq!(fs.syncs() - base, 3);
    s.auto_sync().unwrap();
    assert_eq!(fs.syncs() - base, 3);
    s.store_msg("foo", &msg("foo", 2, b"x", 2)).unwrap();
    s.auto_sync().unwrap();
    assert_eq!(fs.syncs() - base, 5);
    assert_eq!(parse_idx(&read(dir.join("foo/msgs.1.idx")), IEEE).len(), 2);
}

#[test]
fn unbuffered_records_are_written_at_once() {
    let dir = TempDir::new("unbuffered");
    let opts = FileStoreOptions {
        buffer_size: 0,
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts);
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    let m = msg("foo", 1, b"hello", 5);
    s.store_msg("foo", &m).unwrap();
    s.create_sub("foo", &sub(1, "c")).unwrap();
    assert_eq!(
        parse_dat(&read(dir.join("foo/msgs.1.dat")), false, IEEE),
        [(0, encode(&m))]
    );
    assert_eq!(parse_idx(&read(dir.join("foo/msgs.1.idx")), IEEE).len(), 1);
    assert_eq!(
        parse_dat(&read(dir.join("foo/subs.dat")), true, IEEE).len(),
        1
    );
}

#[test]
fn large_records_bypass_a_small_buffer() {
    let dir = TempDir::new("small-buffer");
    let opts = FileStoreOptions {
        buffer_size: 1000,
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts);
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    let msgs: Vec<MsgProto> = (1..=20)
        .map(|i| msg("foo", i, &vec![i as u8; (i * 97 % 1500) as usize], i as i64))
        .collect();
    for m in &msgs {
        s.store_msg("foo", m).unwrap();
        assert_eq!(s.lookup("foo", m.sequence).unwrap().as_ref(), Some(m));
    }
    s.flush().unwrap();
    assert_eq!(
        parse_dat(&read(dir.join("foo/msgs.1.dat")), false, IEEE),
        msgs.iter().map(|m| (0, encode(m))).collect::<Vec<_>>()
    );
    let idx = parse_idx(&read(dir.join("foo/msgs.1.idx")), IEEE);
    assert_eq!(
        idx.iter().map(|i| i.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}

#[test]
fn lookups_with_and_without_read_ahead_agree() {
    for read_buffer_size in [0, 1, 300, 2 * 1024 * 1024] {
        let dir = TempDir::new("read-ahead");
        let opts = FileStoreOptions {
            read_buffer_size,
            slice_max_msgs: 40,
            ..FileStoreOptions::default()
        };
        let mut s = open(&dir, opts.clone());
        s.recover().unwrap();
        s.create_channel("foo").unwrap();
        let msgs: Vec<MsgProto> = (1..=100)
            .map(|i| msg("foo", i, &vec![i as u8; i as usize], i as i64))
            .collect();
        for m in &msgs {
            s.store_msg("foo", m).unwrap();
        }
        s.flush().unwrap();
        drop(s);
        let mut s = open(&dir, opts);
        s.recover().unwrap();
        for m in &msgs {
            assert_eq!(
                s.lookup("foo", m.sequence).unwrap().as_ref(),
                Some(m),
                "{read_buffer_size}"
            );
        }
        for m in msgs.iter().rev() {
            assert_eq!(s.lookup("foo", m.sequence).unwrap().as_ref(), Some(m));
        }
        assert_eq!(s.lookup("foo", 101).unwrap(), None);
    }
}

/// Files open after writing and reading five channels of three slices each.
fn open_files_with(fds_limit: i64) -> usize {
    let dir = TempDir::new("fds");
    let fs = TestFs::default();
    let opts = FileStoreOptions {
        fds_limit,
        slice_max_msgs: 2,
        ..FileStoreOptions::default()
    };
    let mut s = open_fs(&dir, &fs, opts);
    s.recover().unwrap();
    let names = ["a", "b", "c", "d", "e"];
    for ch in names {
        s.create_channel(ch).unwrap();
        for i in 1..=6 {
            s.store_msg(ch, &msg(ch, i, b"x", i as i64)).unwrap();
        }
    }
    s.flush().unwrap();
    for ch in names {
        for i in 1..=6 {
            assert_eq!(s.lookup(ch, i).unwrap().unwrap().sequence, i);
        }
    }
    fs.open_files()
}

#[test]
fn the_fds_limit_closes_other_channels_files() {
    // server.dat, clients.dat and five subs.dat stay open.
    let unlimited = open_files_with(0);
    assert_eq!(unlimited, 7 + 5 * 3 * 2);
    // Message files of other channels are closed down to the limit; the channel in
    // use keeps its write slice and the slice being read.
    let limited = open_files_with(4);
    assert!(limited <= 7 + 4 + 4, "{limited}");
}

#[test]
fn clients_file_is_compacted() {
    let dir = TempDir::new("compact-clients");
    let opts = FileStoreOptions {
        compact_min_size: 0,
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts.clone());
    s.recover().unwrap();
    s.init_server_info(&info()).unwrap();
    s.add_client(&client("a")).unwrap();
    s.add_client(&client("b")).unwrap();
    s.add_client(&client("c")).unwrap();
    s.delete_client("a").unwrap();
    // 1 delete for 2 live clients: 33% < 50%.
    assert_eq!(
        parse_dat(&read(dir.join("clients.dat")), true, IEEE).len(),
        4
    );
    s.delete_client("b").unwrap();
    // 2 of 3: compacted to the live client.
    assert_eq!(
        parse_dat(&read(dir.join("clients.dat")), true, IEEE),
        [(1, encode(&client("c")))]
    );
    assert_eq!(
        ls(dir.path()),
        [".rootdir.lck", "clients.dat", "server.dat"]
    );
    // Appends go to the new file.
    s.add_client(&client("d")).unwrap();
    // Not again before the compaction interval.
    s.delete_client("c").unwrap();
    assert_eq!(
        parse_dat(&read(dir.join("clients.dat")), true, IEEE).len(),
        3
    );
    drop(s);
    let mut s = open(&dir, opts);
    assert_eq!(s.recover().unwrap().clients, vec![client("d")]);
}

#[test]
fn subs_file_is_compacted() {
    let dir = TempDir::new("compact-subs");
    let opts = FileStoreOptions {
        compact_min_size: 0,
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts.clone());
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    let a = sub(1, "c");
    s.create_sub("foo", &a).unwrap();
    for seq in 1..=3 {
        s.add_pending("foo", 1, seq).unwrap();
    }
    s.ack_pending("foo", 1, 1).unwrap();
    s.flush().unwrap();
    assert_eq!(
        parse_dat(&read(dir.join("foo/subs.dat")), true, IEEE).len(),
        5
    );
    // 2 obsolete records of 4: compacted.
    s.ack_pending("foo", 1, 2).unwrap();
    s.flush().unwrap();
    assert_eq!(
        parse_dat(&read(dir.join("foo/subs.dat")), true, IEEE),
        [
            (
                1,
                encode(&SubState {
                    last_sent: 3,
                    ..a.clone()
                })
            ),
            (5, encode(&SubStateUpdate { id: 1, seqno: 3 })),
        ]
    );
    assert_eq!(
        ls(dir.path()),
        [".rootdir.lck", "clients.dat", "foo", "server.dat"]
    );
    s.add_pending("foo", 1, 4).unwrap();
    s.flush().unwrap();
    drop(s);
    let mut s = open(&dir, opts);
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].subs[0].pending, vec![3, 4]);
    assert_eq!(r.channels[0].subs[0].state.last_sent, 4);
}

#[test]
fn a_torn_write_is_undone_and_retried() {
    let dir = TempDir::new("torn");
    let fs = TestFs::default();
    let mut s = open_fs(&dir, &fs, FileStoreOptions::default());
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    s.store_msg("foo", &msg("foo", 1, b"one", 1)).unwrap();
    s.flush().unwrap();
    let before = read(dir.join("foo/msgs.1.dat"));
    s.store_msg("foo", &msg("foo", 2, b"two", 2)).unwrap();
    fs.tear_next("msgs.1.dat", 5);
    let e = s.flush().unwrap_err().0;
    assert!(e.contains("injected torn write"), "{e}");
    assert_eq!(read(dir.join("foo/msgs.1.dat")), before);
    // The batch is still buffered: the next flush writes it.
    s.flush().unwrap();
    drop(s);
    let mut s = open(&dir, FileStoreOptions::default());
    assert_eq!(s.recover().unwrap().channels[0].msgs.last, 2);
    assert_eq!(s.lookup("foo", 2).unwrap().unwrap().data, b"two");
}

#[test]
fn parallel_recovery_recovers_every_channel() {
    let dir = TempDir::new("parallel");
    let mut s = open(&dir, FileStoreOptions::default());
    s.recover().unwrap();
    s.init_server_info(&info()).unwrap();
    for c in 0..12 {
        let ch = format!("ch{c:02}");
        s.create_channel(&ch).unwrap();
        for i in 1..=c + 1 {
            s.store_msg(&ch, &msg(&ch, i, b"x", 1)).unwrap();
        }
    }
    s.flush().unwrap();
    drop(s);
    let opts = FileStoreOptions {
        parallel_recovery: 4,
        ..FileStoreOptions::default()
    };
    let mut s = open(&dir, opts);
    let r = s.recover().unwrap();
    assert_eq!(r.channels.len(), 12);
    for (c, ch) in r.channels.iter().enumerate() {
        assert_eq!(ch.name, format!("ch{c:02}"));
        assert_eq!(ch.msgs.count, c as u64 + 1);
    }
}

#[test]
fn the_store_lock_is_exclusive_between_processes() {
    let dir = TempDir::new("ft-lock");
    let s = open(&dir, FileStoreOptions::default());
    assert!(dir.join(".rootdir.lck").exists());
    // Another process cannot take it while we hold it.
    let probe = "import fcntl,sys\nf=open(sys.argv[1],'a')\ntry:\n fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\n print('locked')\nexcept OSError:\n print('busy')\n";
    let run = || {
        std::process::Command::new("python3")
            .args(["-c", probe, &dir.join(".rootdir.lck").display().to_string()])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(out) = run() {
        assert_eq!(out, "busy");
        drop(s);
        assert_eq!(run().unwrap(), "locked");
    }
}

#[test]
fn idle_read_slices_are_closed() {
    let dir = TempDir::new("idle");
    let fs = TestFs::default();
    let opts = FileStoreOptions {
        slice_max_msgs: 2,
        ..FileStoreOptions::default()
    };
    let mut s = open_fs(&dir, &fs, opts);
    let now = Arc::new(AtomicU64::new(0));
    let clock = now.clone();
    s.set_clock(Arc::new(move || {
        Duration::from_millis(clock.load(Ordering::SeqCst))
    }));
    s.recover().unwrap();
    s.create_channel("foo").unwrap();
    for i in 1..=6 {
        s.store_msg("foo", &msg("foo", i, b"x", i as i64)).unwrap();
    }
    s.flush().unwrap();
    // server.dat, clients.dat, subs.dat and the write slice.
    assert_eq!(fs.open_files(), 5);
    s.lookup("foo", 1).unwrap().unwrap();
    assert_eq!(fs.open_files(), 7);
    now.store(500, Ordering::SeqCst);
    s.flush().unwrap();
    assert_eq!(fs.open_files(), 7);
    now.store(1500, Ordering::SeqCst);
    s.flush().unwrap();
    assert_eq!(fs.open_files(), 5);
    // Reopened on demand.
    assert_eq!(s.lookup("foo", 2).unwrap().unwrap().sequence, 2);
}
