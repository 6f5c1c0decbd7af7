//! The FILE store under encryption at rest (shared/spec/STORES.md §4): payloads are
//! sealed on disk in the Go server's format, read back in clear, recovered after a
//! restart with their nonces never used again, and refused with the wrong key.

#[path = "file_store_common.rs"]
mod common;

use common::*;
use prost::Message;
use stan_core::store::crypto::{MasterKey, OVERHEAD};
use stan_core::store::{EncryptedStore, Store};
use stan_core::streaming::pb::{encode, MsgProto, ServerInfo};
use stan_runtime::store::{FileStore, FileStoreOptions};

/// Few messages per slice, so that payloads spread over several files.
fn options() -> FileStoreOptions {
    FileStoreOptions {
        slice_max_msgs: 8,
        ..FileStoreOptions::default()
    }
}

/// The store in `dir`, recovered, with payloads sealed under `key` by `cipher`, every
/// channel's nonce starting with the bytes 00 01 02 03. Returns what it recovered.
fn open(dir: &TempDir, cipher: &str, key: &str) -> (EncryptedStore, Vec<(String, u64)>) {
    let file = FileStore::open(dir.path(), options()).unwrap();
    let mut s = EncryptedStore::new(
        Box::new(file),
        MasterKey::new(cipher, key.as_bytes()).unwrap(),
        Box::new(|| Ok([0, 1, 2, 3])),
    );
    let r = s.recover().unwrap();
    if r.server_info.is_none() {
        s.init_server_info(&ServerInfo {
            cluster_id: "c".into(),
            ..ServerInfo::default()
        })
        .unwrap();
    }
    let channels = r
        .channels
        .iter()
        .map(|c| (c.name.clone(), c.msgs.last))
        .collect();
    (s, channels)
}

fn payload(seq: u64) -> Vec<u8> {
    format!("plaintext-payload-{seq:04}").into_bytes()
}

fn msg(seq: u64) -> MsgProto {
    common::msg(
        "foo",
        seq,
        &payload(seq),
        1_700_000_000_000_000_000 + seq as i64,
    )
}

/// The payloads as the slice files hold them, oldest first.
fn stored_payloads(dir: &TempDir) -> Vec<(u64, Vec<u8>)> {
    let mut slices: Vec<(u64, String)> = ls(dir.join("foo"))
        .into_iter()
        .filter_map(|name| {
            let n = name.strip_prefix("msgs.")?.strip_suffix(".dat")?;
            Some((n.parse().unwrap(), name))
        })
        .collect();
    slices.sort();
    let mut out = Vec::new();
    for (_, name) in slices {
        for (_, record) in parse_dat(&read(dir.join("foo").join(name)), false, IEEE) {
            let m = MsgProto::decode(record.as_slice()).unwrap();
            out.push((m.sequence, m.data));
        }
    }
    out
}

/// Every `msgs.*.dat` file of the directory, with its bytes.
fn slice_files(dir: &TempDir) -> Vec<(String, Vec<u8>)> {
    ls(dir.join("foo"))
        .into_iter()
        .filter(|n| n.starts_with("msgs.") && n.ends_with(".dat"))
        .map(|n| (n.clone(), read(dir.join("foo").join(&n))))
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn payloads_are_sealed_on_disk_and_read_back_in_clear() {
    let dir = TempDir::new("enc-roundtrip");
    let (mut s, recovered) = open(&dir, "AES", "mykey");
    assert!(recovered.is_empty());
    s.create_channel("foo").unwrap();
    // The first message is the spec's test vector: key `mykey`, channel `foo`.
    let first = common::msg("foo", 1, b"hello", 5);
    let mut counted = s.store_msg("foo", &first).unwrap();
    let empty = common::msg("foo", 2, b"", 6);
    counted += s.store_msg("foo", &empty).unwrap();
    for seq in 3..=30 {
        counted += s.store_msg("foo", &msg(seq)).unwrap();
    }
    s.flush().unwrap();
    let state = s.msgs_state("foo");
    assert_eq!((state.count, state.last, state.bytes), (30, 30, counted));
    assert_eq!(s.lookup("foo", 1).unwrap(), Some(first.clone()));
    assert_eq!(s.lookup("foo", 2).unwrap(), Some(empty.clone()));
    for seq in 3..=30 {
        assert_eq!(s.lookup("foo", seq).unwrap(), Some(msg(seq)), "{seq}");
    }
    drop(s);

    let files = slice_files(&dir);
    assert!(files.len() >= 4, "{files:?}");
    for (name, bytes) in &files {
        assert!(
            !bytes.windows(18).any(|w| w == b"plaintext-payload-"),
            "{name} holds a plaintext payload"
        );
        assert!(!bytes.windows(5).any(|w| w == b"hello"), "{name}");
    }
    let stored = stored_payloads(&dir);
    assert_eq!(stored.len(), 30);
    assert_eq!(
        stored[0].1,
        hex("01 000102030000000000000001 cdc81ce5d3 79ff25d65041df6552871cd881b51a0a")
    );
    // Empty payloads are stored as they are and take no nonce.
    assert_eq!(stored[1], (2, Vec::new()));
    let mut bytes = 0;
    for (seq, data) in &stored {
        let reference = match seq {
            1 => first.clone(),
            2 => empty.clone(),
            _ => msg(*seq),
        };
        if !reference.data.is_empty() {
            assert_eq!(data.len(), reference.data.len() + OVERHEAD, "{seq}");
            assert_eq!(data[0], 1, "{seq}: AES");
            assert_eq!(&data[1..5], &[0, 1, 2, 3], "{seq}");
            // The empty payload of message 2 took no nonce.
            let counter = if *seq == 1 { 1 } else { seq - 1 };
            assert_eq!(&data[5..13], &counter.to_be_bytes(), "{seq}");
        }
        // FILE accounting: the record as stored, plus its header and index entry.
        let stored = MsgProto {
            data: data.clone(),
            ..reference
        };
        bytes += encode(&stored).len() as u64 + 40;
    }
    assert_eq!(bytes, counted);
}

#[test]
fn a_reopened_store_recovers_and_never_reuses_a_nonce() {
    let dir = TempDir::new("enc-reopen");
    let (mut s, _) = open(&dir, "AES", "k1");
    s.create_channel("foo").unwrap();
    for seq in 1..=10 {
        s.store_msg("foo", &msg(seq)).unwrap();
    }
    s.flush().unwrap();
    drop(s);

    // Same key and, at worst, the same random bytes: the counter part moves on.
    let (mut s, recovered) = open(&dir, "AES", "k1");
    assert_eq!(recovered, vec![("foo".to_string(), 10)]);
    let bytes_before = s.msgs_state("foo").bytes;
    for seq in 1..=10 {
        assert_eq!(s.lookup("foo", seq).unwrap(), Some(msg(seq)), "{seq}");
    }
    for seq in 11..=15 {
        s.store_msg("foo", &msg(seq)).unwrap();
    }
    assert!(s.msgs_state("foo").bytes > bytes_before);
    s.flush().unwrap();
    drop(s);

    // A third run with the other cipher reads both kinds and seals with ChaCha.
    let (mut s, recovered) = open(&dir, "CHACHA", "k1");
    assert_eq!(recovered, vec![("foo".to_string(), 15)]);
    s.store_msg("foo", &msg(16)).unwrap();
    for seq in 1..=16 {
        assert_eq!(s.lookup("foo", seq).unwrap(), Some(msg(seq)), "{seq}");
    }
    s.flush().unwrap();
    drop(s);

    let stored = stored_payloads(&dir);
    assert_eq!(stored.len(), 16);
    let mut nonces = std::collections::BTreeSet::new();
    for (seq, data) in &stored {
        // One nonce per message, numbered by sequence across the restarts.
        assert_eq!(&data[5..13], &seq.to_be_bytes(), "{seq}");
        assert_eq!(data[0], if *seq == 16 { 2 } else { 1 }, "{seq}");
        assert!(nonces.insert(data[1..13].to_vec()), "{seq} reuses a nonce");
    }
}

#[test]
fn the_wrong_key_fails_on_read() {
    let dir = TempDir::new("enc-wrong-key");
    let (mut s, _) = open(&dir, "AES", "right");
    s.create_channel("foo").unwrap();
    for seq in 1..=3 {
        s.store_msg("foo", &msg(seq)).unwrap();
    }
    s.flush().unwrap();
    drop(s);

    // Recovery reads no payload, so it succeeds; every read then fails.
    let (mut s, recovered) = open(&dir, "CHACHA", "wrong");
    assert_eq!(recovered, vec![("foo".to_string(), 3)]);
    assert_eq!(s.msgs_state("foo").count, 3);
    for seq in 1..=3 {
        // The stored value names AES, whatever cipher is configured.
        assert_eq!(
            s.lookup("foo", seq).unwrap_err().0,
            "cipher: message authentication failed"
        );
    }
    assert!(s.timestamp("foo", 1).unwrap().is_some());
    drop(s);

    // Without encryption the sealed bytes come back as stored.
    let mut plain = FileStore::open(dir.path(), options()).unwrap();
    plain.recover().unwrap();
    let sealed = plain.lookup("foo", 1).unwrap().unwrap();
    assert_eq!(sealed.data.len(), payload(1).len() + OVERHEAD);
    assert_eq!(sealed.data[0], 1);
    drop(plain);

    let (mut s, _) = open(&dir, "AES", "right");
    assert_eq!(s.lookup("foo", 2).unwrap(), Some(msg(2)));
}

#[test]
fn limits_remove_sealed_messages_by_their_stored_size() {
    let dir = TempDir::new("enc-limits");
    let (mut s, _) = open(&dir, "AES", "k");
    s.create_channel("foo").unwrap();
    let mut sizes = Vec::new();
    for seq in 1..=5 {
        sizes.push(s.store_msg("foo", &msg(seq)).unwrap());
    }
    let plain_size = encode(&msg(1)).len() as u64 + 40;
    assert_eq!(sizes[0], plain_size + OVERHEAD as u64);
    s.remove_oldest("foo").unwrap();
    s.remove_oldest("foo").unwrap();
    let state = s.msgs_state("foo");
    assert_eq!((state.first, state.count), (3, 3));
    assert_eq!(state.bytes, sizes[2..].iter().sum::<u64>());
    assert_eq!(s.lookup("foo", 1).unwrap(), None);
    assert_eq!(s.lookup("foo", 3).unwrap(), Some(msg(3)));
}
