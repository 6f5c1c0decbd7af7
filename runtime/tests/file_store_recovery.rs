//! Recovery of damaged FILE store directories (shared/spec/STORES.md §1.2, §1.4,
//! §1.8, §1.9): the Go server's error texts, nothing on disk made worse without
//! `--file_truncate_bad_eof`, truncation with it.

#[path = "file_store_common.rs"]
mod common;

use common::*;
use stan_core::store::{MsgsState, Store};
use stan_core::streaming::pb::{encode, ClientInfo, MsgProto, ServerInfo, SubStateUpdate};
use stan_runtime::store::{FileStore, FileStoreOptions};

fn info() -> ServerInfo {
    ServerInfo {
        cluster_id: "c".into(),
        ..ServerInfo::default()
    }
}

fn client(id: &str) -> ClientInfo {
    ClientInfo {
        id: id.into(),
        hb_inbox: format!("_INBOX.{id}"),
        ..ClientInfo::default()
    }
}

fn q(p: std::path::PathBuf) -> String {
    format!("{:?}", p.display().to_string())
}

/// A store with server info, two clients and channel `foo` holding messages 1..=5
/// and subscription 1 with sequence 5 pending.
fn populated(dir: &TempDir) -> Vec<MsgProto> {
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    s.recover().unwrap();
    s.init_server_info(&info()).unwrap();
    s.add_client(&client("a")).unwrap();
    s.add_client(&client("b")).unwrap();
    s.create_channel("foo").unwrap();
    let msgs: Vec<MsgProto> = (1..=5)
        .map(|i| msg("foo", i, &[i as u8; 20], i as i64 * 1000))
        .collect();
    for m in &msgs {
        s.store_msg("foo", m).unwrap();
    }
    s.create_sub("foo", &sub(1, "a")).unwrap();
    s.add_pending("foo", 1, 5).unwrap();
    s.flush().unwrap();
    msgs
}

fn recover_err(dir: &TempDir, opts: FileStoreOptions) -> (String, Logs) {
    let mut s = FileStore::open(dir.path(), opts).unwrap();
    let logs = Logs::default();
    s.set_log_sink(logs.sink());
    (s.recover().unwrap_err().0, logs)
}

fn truncating() -> FileStoreOptions {
    FileStoreOptions {
        truncate_bad_eof: true,
        ..FileStoreOptions::default()
    }
}

fn set_len(p: impl AsRef<std::path::Path>, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip(p: impl AsRef<std::path::Path>, at_from_end: usize) {
    let mut b = read(&p);
    let i = b.len() - at_from_end;
    b[i] ^= 0xff;
    std::fs::write(p, b).unwrap();
}

fn append(p: impl AsRef<std::path::Path>, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn open_checks_its_arguments() {
    assert_eq!(
        FileStore::open("", FileStoreOptions::default())
            .unwrap_err()
            .0,
        "for FILE stores, root directory must be specified"
    );
    let dir = TempDir::new("bad-opts");
    let opts = FileStoreOptions {
        compact_frag: 0,
        ..FileStoreOptions::default()
    };
    assert_eq!(
        FileStore::open(dir.path(), opts).unwrap_err().0,
        "compact fragmentation value must at least be 1"
    );
    // The root is created, nested directories included.
    let nested = dir.join("a/b/c");
    FileStore::open(&nested, FileStoreOptions::default()).unwrap();
    assert!(nested.is_dir());
}

#[test]
fn unknown_file_versions_are_refused() {
    let dir = TempDir::new("version-server");
    std::fs::write(dir.join("server.dat"), [2, 0, 0, 0]).unwrap();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(e, "unable to recover server file \"server.dat\": unsupported file version: 2 (supports [1..1])");

    let dir = TempDir::new("version-clients");
    std::fs::write(dir.join("clients.dat"), []).unwrap();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover client file \"clients.dat\": unable to verify file version: EOF"
    );
    std::fs::write(dir.join("clients.dat"), [1, 0]).unwrap();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover client file \"clients.dat\": unable to verify file version: unexpected EOF"
    );

    let dir = TempDir::new("version-subs");
    populated(&dir);
    std::fs::write(dir.join("foo/subs.dat"), [0, 0, 0, 0]).unwrap();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(e, "unable to recover subscription store for [foo]: unsupported file version: 0 (supports [1..1])");

    let dir = TempDir::new("version-msgs");
    populated(&dir);
    let mut dat = read(dir.join("foo/msgs.1.dat"));
    dat[0] = 3;
    std::fs::write(dir.join("foo/msgs.1.dat"), &dat).unwrap();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover message store for [foo](file: \"foo/msgs.1.dat\"): unsupported file version: 3 (supports [1..1])"
    );
    // Refused files are left as they were.
    assert_eq!(read(dir.join("foo/msgs.1.dat")), dat);
}

#[test]
fn server_file_problems() {
    let dir = TempDir::new("server-size");
    populated(&dir);
    append(dir.join("server.dat"), &[0]);
    let len = encode(&info()).len();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        format!(
            "unable to recover server file {}: incorrect file size, expected {} bytes, got {} bytes",
            q(dir.join("server.dat")),
            12 + len,
            13 + len
        )
    );

    let dir = TempDir::new("server-crc");
    populated(&dir);
    flip(dir.join("server.dat"), 1);
    let (e, logs) = recover_err(&dir, FileStoreOptions::default());
    assert!(
        e.starts_with(&format!(
            "unable to recover server file {}: corrupted data, expected crc to be 0x",
            q(dir.join("server.dat"))
        )),
        "{e}"
    );
    assert!(logs.lines()[0].starts_with(&format!(
        "Server file {} corrupted: corrupted data",
        q(dir.join("server.dat"))
    )));
    assert!(logs.contains("Follow instructions in documentation in order to recover from this"));

    // Only the header: no stored state, even with a clients file.
    let dir = TempDir::new("server-empty");
    std::fs::write(dir.join("server.dat"), VERSION).unwrap();
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    assert_eq!(s.recover().unwrap(), Default::default());
}

#[test]
fn channels_without_server_info_are_still_returned() {
    let dir = TempDir::new("no-server");
    populated(&dir);
    std::fs::remove_file(dir.join("server.dat")).unwrap();
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.server_info, None);
    assert_eq!(r.channels.len(), 1);
    assert_eq!(r.clients.len(), 2);
    // The server then writes a fresh ServerInfo.
    s.init_server_info(&info()).unwrap();
    drop(s);
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    assert_eq!(s.recover().unwrap().server_info, Some(info()));
}

#[test]
fn a_corrupt_record_fails_recovery_even_with_truncation() {
    let dir = TempDir::new("crc-clients");
    populated(&dir);
    let path = dir.join("clients.dat");
    flip(&path, 1);
    let before = read(&path);
    let (e, logs) = recover_err(&dir, truncating());
    assert!(
        e.starts_with(&format!(
            "unable to recover client file {}: corrupted data, expected crc to be 0x",
            q(path.clone())
        )),
        "{e}"
    );
    assert!(logs.lines()[0].starts_with(&format!(
        "Corrupted record in file {}: corrupted data",
        q(path.clone())
    )));
    assert!(logs.contains("Record header:"));
    assert!(logs.contains("Record payload:"));
    assert_eq!(read(&path), before);

    // Without CRC verification the damaged byte is read as data.
    let dir = TempDir::new("crc-off");
    populated(&dir);
    let subs = dir.join("foo/subs.dat");
    let mut b = read(&subs);
    *b.last_mut().unwrap() = 7;
    std::fs::write(&subs, b).unwrap();
    let opts = FileStoreOptions {
        crc: false,
        ..FileStoreOptions::default()
    };
    let mut s = FileStore::open(dir.path(), opts).unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].subs[0].pending, vec![7]);
}

#[test]
fn a_partial_last_record_fails_without_the_truncate_option() {
    let dir = TempDir::new("eof-subs");
    populated(&dir);
    let path = dir.join("foo/subs.dat");
    let full = read(&path);
    set_len(&path, full.len() as u64 - 2);
    let before = read(&path);
    let (e, logs) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover subscription store for [foo]: unexpected EOF"
    );
    let off = full.len() - 12;
    let header: Vec<String> = full[off..off + 8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let crc = crc32(IEEE, &encode(&SubStateUpdate { id: 1, seqno: 5 }));
    let expected = [
        format!("Unexpected EOF for file {}", q(path.clone())),
        format!("It is recommended that you make a copy of the whole datatstore {}.", q(dir.0.clone())),
        format!("Restart with the ContinueOnUnexpectedEOF flag to truncate this file to this offset: {off}."),
        "Dataloss may occur. Details about the first corrupted record follows...".to_owned(),
        "Record header:".to_owned(),
        " Bytes:".to_owned(),
        header.join(" "),
        " Type: 5".to_owned(),
        " Size: 4".to_owned(),
        format!(" CRC : 0x{crc:08x}"),
        "Record payload:".to_owned(),
        format!("08 01{} - ..", " ".repeat(3 * 18)),
        "record payload expected to be 4 bytes, only read 2".to_owned(),
    ];
    assert_eq!(full[off..off + 4], [4, 0, 0, 5]);
    assert_eq!(full[off + 4..off + 8], crc.to_le_bytes());
    assert_eq!(logs.lines(), expected);
    // Nothing changed on disk.
    assert_eq!(read(&path), before);
}

#[test]
fn the_truncate_option_cuts_a_partial_last_record_once() {
    let dir = TempDir::new("eof-truncate");
    populated(&dir);
    let clients = dir.join("clients.dat");
    let full = read(&clients);
    // Half of the second client's header.
    let second = 4 + 8 + encode(&client("a")).len();
    set_len(&clients, second as u64 + 3);
    let subs = dir.join("foo/subs.dat");
    let subs_len = read(&subs).len();
    set_len(&subs, subs_len as u64 - 1);

    let mut s = FileStore::open(dir.path(), truncating()).unwrap();
    assert!(dir.join(".truncate.lck").exists());
    let logs = Logs::default();
    s.set_log_sink(logs.sink());
    let r = s.recover().unwrap();
    assert_eq!(r.clients, vec![client("a")]);
    assert_eq!(r.channels[0].subs[0].pending, Vec::<u64>::new());
    assert_eq!(read(&clients), full[..second]);
    assert_eq!(read(&subs).len(), subs_len - 12);
    assert!(logs.contains(&format!(
        "File {} has been truncated to offset: {second}",
        q(clients.clone())
    )));
    assert!(logs.contains("Recovery resumes..."));
    assert!(!logs.lines().iter().any(|l| l.starts_with("Restart with")));
    drop(s);
    // The witness refuses a second start with the option ...
    assert_eq!(
        FileStore::open(dir.path(), truncating()).unwrap_err().0,
        "file store should not be opened consecutively with the TruncateUnexpectedEOF option set to true"
    );
    // ... and a start without it removes the witness.
    FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    assert!(!dir.join(".truncate.lck").exists());
}

#[test]
fn zero_filled_tails_are_cut() {
    let dir = TempDir::new("zeros");
    let msgs = populated(&dir);
    let sizes: Vec<usize> = ["clients.dat", "foo/subs.dat", "foo/msgs.1.dat"]
        .iter()
        .map(|f| {
            let n = read(dir.join(f)).len();
            append(dir.join(f), &[0; 100]);
            n
        })
        .collect();
    // Without its index, the data file is scanned.
    std::fs::remove_file(dir.join("foo/msgs.1.idx")).unwrap();
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.clients.len(), 2);
    assert_eq!(r.channels[0].msgs.count, 5);
    assert_eq!(r.channels[0].subs[0].pending, vec![5]);
    for (f, n) in ["clients.dat", "foo/subs.dat", "foo/msgs.1.dat"]
        .iter()
        .zip(sizes)
    {
        assert_eq!(read(dir.join(f)).len(), n, "{f}");
    }
    assert_eq!(s.lookup("foo", 5).unwrap().as_ref(), Some(&msgs[4]));
    // Appends continue where the data ended.
    s.store_msg("foo", &msg("foo", 6, b"six", 6)).unwrap();
    s.flush().unwrap();
    assert_eq!(
        parse_dat(&read(dir.join("foo/msgs.1.dat")), false, IEEE).len(),
        6
    );

    // A zero index record ends the index.
    let idx = dir.join("foo/msgs.1.idx");
    let idx_len = read(&idx).len();
    append(&idx, &[0; 64]);
    drop(s);
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    assert_eq!(s.recover().unwrap().channels[0].msgs.count, 6);
    assert_eq!(read(&idx).len(), idx_len);
}

#[test]
fn a_missing_index_is_rebuilt_from_the_data_file() {
    let dir = TempDir::new("no-idx");
    let msgs = populated(&dir);
    let idx = dir.join("foo/msgs.1.idx");
    let original = read(&idx);
    std::fs::remove_file(&idx).unwrap();
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].msgs.count, 5);
    assert_eq!(read(&idx), original);
    for m in &msgs {
        assert_eq!(s.lookup("foo", m.sequence).unwrap().as_ref(), Some(m));
    }
}

#[test]
fn a_missing_data_file_drops_its_slice() {
    let dir = TempDir::new("no-dat");
    let mut s = FileStore::open(
        dir.path(),
        FileStoreOptions {
            slice_max_msgs: 2,
            ..FileStoreOptions::default()
        },
    )
    .unwrap();
    s.recover().unwrap();
    s.init_server_info(&info()).unwrap();
    s.create_channel("foo").unwrap();
    let msgs: Vec<MsgProto> = (1..=6).map(|i| msg("foo", i, b"m", i as i64)).collect();
    for m in &msgs {
        s.store_msg("foo", m).unwrap();
    }
    s.flush().unwrap();
    drop(s);
    // Only `.dat` files name slices: slice 2 is gone, its orphan index is ignored.
    std::fs::remove_file(dir.join("foo/msgs.2.dat")).unwrap();
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let r = s.recover().unwrap();
    let per_msg = encode(&msgs[0]).len() as u64 + 40;
    assert_eq!(
        r.channels[0].msgs,
        MsgsState {
            count: 4,
            bytes: 4 * per_msg,
            first: 1,
            last: 6
        }
    );
    assert_eq!(s.lookup("foo", 3).unwrap(), None);
    assert_eq!(s.timestamp("foo", 4).unwrap(), None);
    assert_eq!(s.lookup("foo", 5).unwrap().as_ref(), Some(&msgs[4]));
    // Removal walks over the hole.
    s.remove_oldest("foo").unwrap();
    s.remove_oldest("foo").unwrap();
    assert_eq!(s.msgs_state("foo").first, 5);
    assert_eq!(s.msgs_state("foo").count, 2);
    assert!(!dir.join("foo/msgs.1.dat").exists());
}

#[test]
fn a_bad_index_is_rebuilt_from_the_data_file() {
    let dir = TempDir::new("bad-idx");
    let msgs = populated(&dir);
    let idx = dir.join("foo/msgs.1.idx");
    let original = read(&idx);
    flip(&idx, 1);
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let logs = Logs::default();
    s.set_log_sink(logs.sink());
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].msgs.count, 5);
    assert!(logs.lines()[0].starts_with(&format!(
        "Error with index file {}: corrupted data, expected crc to be 0x",
        q(idx.clone())
    )));
    assert!(logs.lines()[0].ends_with(". Truncating and recovering from data file"));
    assert_eq!(read(&idx), original);
    assert_eq!(s.lookup("foo", 5).unwrap().as_ref(), Some(&msgs[4]));

    // A partial index record: the same.
    set_len(&idx, original.len() as u64 - 5);
    drop(s);
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    s.recover().unwrap();
    assert_eq!(read(&idx), original);
}

#[test]
fn a_truncated_data_file_fails_and_keeps_the_data() {
    let dir = TempDir::new("short-dat");
    populated(&dir);
    let dat = dir.join("foo/msgs.1.dat");
    let full = read(&dat);
    set_len(&dat, full.len() as u64 - 3);
    let (e, logs) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover message store for [foo](file: \"foo/msgs.1.idx\"): unexpected EOF"
    );
    let lines = logs.lines();
    assert!(lines[0].starts_with(&format!(
        "Verification of last message for file {} failed: unable to read last record: unexpected EOF",
        q(dat.clone())
    )), "{lines:?}");
    assert!(lines[1].starts_with("Error with index file"));
    assert!(logs.contains(&format!("Unexpected EOF for file {}", q(dat.clone()))));
    // The data file is untouched; the index is deleted so that the next start
    // rebuilds it.
    assert_eq!(read(&dat), full[..full.len() - 3]);
    assert!(!dir.join("foo/msgs.1.idx").exists());

    // With the option, the partial message goes and the rest is recovered.
    let mut s = FileStore::open(dir.path(), truncating()).unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].msgs.count, 4);
    assert_eq!(r.channels[0].msgs.last, 4);
    s.store_msg("foo", &msg("foo", 5, b"again", 5)).unwrap();
    s.flush().unwrap();
    assert_eq!(parse_dat(&read(&dat), false, IEEE).len(), 5);
}

#[test]
fn data_written_but_not_indexed_is_recovered_or_cut() {
    let dir = TempDir::new("unindexed");
    let msgs = populated(&dir);
    let dat = dir.join("foo/msgs.1.dat");
    // A complete sixth message whose index record never made it ...
    let sixth = msg("foo", 6, b"six", 6000);
    append(&dat, &record(0, &encode(&sixth), IEEE));
    // ... followed by a torn seventh.
    let end = read(&dat).len();
    append(
        &dat,
        &record(0, &encode(&msg("foo", 7, b"seven", 7000)), IEEE)[..10],
    );
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].msgs.last, 6);
    assert_eq!(s.lookup("foo", 6).unwrap(), Some(sixth));
    assert_eq!(read(&dat).len(), end);
    assert_eq!(parse_idx(&read(dir.join("foo/msgs.1.idx")), IEEE).len(), 6);
    assert_eq!(s.lookup("foo", 1).unwrap().as_ref(), Some(&msgs[0]));
}

#[test]
fn unknown_record_types_and_names_fail() {
    let dir = TempDir::new("types-subs");
    populated(&dir);
    append(dir.join("foo/subs.dat"), &record(9, &[], IEEE));
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover subscription store for [foo]: unexpected record type: 9"
    );

    let dir = TempDir::new("types-clients");
    populated(&dir);
    append(dir.join("clients.dat"), &record(3, &[], IEEE));
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        format!(
            "unable to recover client file {}: invalid client record type: 3",
            q(dir.join("clients.dat"))
        )
    );

    let dir = TempDir::new("bad-name");
    populated(&dir);
    std::fs::write(dir.join("foo/msgs.x.dat"), VERSION).unwrap();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover message store for [foo](file: \"foo/msgs.1.idx\"): message log has an invalid name: msgs.x.dat"
    );

    let dir = TempDir::new("bad-payload");
    populated(&dir);
    append(dir.join("foo/subs.dat"), &record(1, &[0x0a], IEEE));
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover subscription store for [foo]: unexpected EOF"
    );
}

#[test]
fn empty_slices_are_ignored_and_reused() {
    let dir = TempDir::new("empty-slice");
    populated(&dir);
    std::fs::write(dir.join("foo/msgs.2.dat"), VERSION).unwrap();
    let mut s = FileStore::open(
        dir.path(),
        FileStoreOptions {
            slice_max_msgs: 5,
            ..FileStoreOptions::default()
        },
    )
    .unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].msgs.count, 5);
    // The next slice is number 2: the empty leftover is reused.
    s.store_msg("foo", &msg("foo", 6, b"six", 6)).unwrap();
    s.flush().unwrap();
    assert_eq!(parse_idx(&read(dir.join("foo/msgs.2.idx")), IEEE)[0].seq, 6);
    assert_eq!(
        parse_dat(&read(dir.join("foo/msgs.2.dat")), false, IEEE).len(),
        1
    );
}

/// A data file whose sequences do not grow was not written by a server: recovering it
/// would leave the channel with a first sequence above its last.
#[test]
fn sequences_out_of_order_are_refused() {
    let dir = TempDir::new("out-of-order");
    std::fs::create_dir_all(dir.join("foo")).unwrap();
    let records = |seqs: &[u64]| {
        let recs: Vec<Vec<u8>> = seqs
            .iter()
            .map(|&s| record(0, &encode(&msg("foo", s, b"x", s as i64)), IEEE))
            .collect();
        dat_file(&recs)
    };
    std::fs::write(dir.join("foo/msgs.1.dat"), records(&[1, 3, 2])).unwrap();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover message store for [foo](file: \"foo/msgs.1.idx\"): message sequence 2 found after sequence 3"
    );
    assert!(!dir.join("foo/msgs.1.idx").exists());

    // An index out of order is rebuilt from a data file in order.
    std::fs::write(dir.join("foo/msgs.1.dat"), records(&[1, 2, 3])).unwrap();
    let mut idx = VERSION.to_vec();
    let mut offset = 4;
    for (i, s) in [2u64, 1, 3].into_iter().enumerate() {
        let size = encode(&msg("foo", [1, 2, 3][i], b"x", 0)).len() as u32;
        idx.extend(idx_record(s, offset, s as i64, size, IEEE));
        offset += 8 + u64::from(size);
    }
    std::fs::write(dir.join("foo/msgs.1.idx"), &idx).unwrap();
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let logs = Logs::default();
    s.set_log_sink(logs.sink());
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].msgs.first, 1);
    assert_eq!(r.channels[0].msgs.last, 3);
    assert!(logs.lines()[0].contains(": message sequence 1 found after sequence 2. Truncating"));
    drop(s);

    // Slices follow each other.
    std::fs::write(dir.join("foo/msgs.2.dat"), records(&[3, 4])).unwrap();
    let (e, _) = recover_err(&dir, FileStoreOptions::default());
    assert_eq!(
        e,
        "unable to recover message store for [foo](file: \"foo/msgs.2.dat\"): slice 2 starts at sequence 3 but slice 1 ends at sequence 3"
    );
}

/// The size of the last index record is checked against the data file without
/// reading (or allocating) more than the file holds.
#[test]
fn an_index_announcing_a_huge_message_is_rebuilt() {
    let dir = TempDir::new("huge-idx");
    let msgs = populated(&dir);
    let idx_path = dir.join("foo/msgs.1.idx");
    let mut records = parse_idx(&read(&idx_path), IEEE);
    let last = records.last_mut().unwrap();
    last.size = u32::MAX - 8;
    let mut idx = VERSION.to_vec();
    for r in &records {
        idx.extend(idx_record(r.seq, r.offset, r.ts, r.size, IEEE));
    }
    std::fs::write(&idx_path, idx).unwrap();
    let mut s = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let logs = Logs::default();
    s.set_log_sink(logs.sink());
    let r = s.recover().unwrap();
    assert_eq!(r.channels[0].msgs.count, 5);
    assert!(
        logs.lines()[0].contains("expected record size to be 4294967287 bytes, got"),
        "{:?}",
        logs.lines()
    );
    assert_eq!(s.lookup("foo", 5).unwrap().as_ref(), Some(&msgs[4]));
}
