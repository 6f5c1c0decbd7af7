//! A store wrapper that encrypts message payloads at rest (shared/spec/STORES.md §4.4).
//!
//! Only `MsgProto.data` is sealed, and only when non-empty: sequences, subjects,
//! replies and timestamps stay in clear, and so do the server, client and
//! subscription records. Byte accounting is the wrapped store's, over what it stores,
//! so limits and monitoring count the 29 bytes each sealed payload adds, as the Go
//! server does.

use std::collections::BTreeMap;

use super::crypto::{MasterKey, PayloadCipher};
use super::{MsgsState, Recovered, Result, Store, StoreError};
use crate::streaming::pb::{ClientInfo, MsgProto, ServerInfo, SubState};

/// Where the four random bytes that start each channel's nonce come from. Called
/// when a channel is created or recovered; the runtime reads the operating system's
/// random source, tests return fixed bytes.
pub type NonceRandom = Box<dyn FnMut() -> std::result::Result<[u8; 4], String> + Send>;

/// Any [`Store`] with its message payloads encrypted.
pub struct EncryptedStore {
    inner: Box<dyn Store>,
    key: MasterKey,
    random: NonceRandom,
    channels: BTreeMap<String, PayloadCipher>,
    /// The message handed to the wrapped store, its buffers reused.
    sealed: MsgProto,
}

impl std::fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("kind", &self.inner.kind())
            .field("key", &self.key)
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl EncryptedStore {
    pub fn new(inner: Box<dyn Store>, key: MasterKey, random: NonceRandom) -> EncryptedStore {
        EncryptedStore {
            inner,
            key,
            random,
            channels: BTreeMap::new(),
            sealed: MsgProto::default(),
        }
    }

    /// The wrapped store, which holds the encrypted payloads.
    pub fn into_inner(self) -> Box<dyn Store> {
        self.inner
    }

    /// Sets up the channel's nonce from its last stored sequence, so that no nonce
    /// sealed before this open is used again.
    fn open_channel(&mut self, name: &str, last_seq: u64) -> Result<&mut PayloadCipher> {
        let random = (self.random)()
            .map_err(|e| StoreError(format!("unable to initialize encryption nonce: {e}")))?;
        let cipher = self.key.channel_cipher(name, random, last_seq);
        self.channels.insert(name.to_owned(), cipher);
        Ok(self.channels.get_mut(name).expect("just inserted"))
    }

    /// The channel's cipher, set up on first use for a channel this wrapper did not
    /// see created or recovered.
    fn cipher(&mut self, channel: &str) -> Result<&mut PayloadCipher> {
        if self.channels.contains_key(channel) {
            return Ok(self.channels.get_mut(channel).expect("present"));
        }
        let last = self.inner.msgs_state(channel).last;
        self.open_channel(channel, last)
    }

    fn decrypted(&mut self, channel: &str, msg: Option<MsgProto>) -> Result<Option<MsgProto>> {
        let Some(mut msg) = msg else {
            return Ok(None);
        };
        if msg.data.is_empty() {
            return Ok(Some(msg));
        }
        let cipher = self.cipher(channel)?;
        let plain = cipher
            .decrypt(&msg.data)
            .map_err(|e| StoreError(e.to_string()))?;
        if let std::borrow::Cow::Owned(plain) = plain {
            msg.data = plain;
        }
        Ok(Some(msg))
    }
}

impl Store for EncryptedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn recover(&mut self) -> Result<Recovered> {
        let recovered = self.inner.recover()?;
        self.channels.clear();
        for ch in &recovered.channels {
            self.open_channel(&ch.name, ch.msgs.last)?;
        }
        Ok(recovered)
    }

    fn init_server_info(&mut self, info: &ServerInfo) -> Result<()> {
        self.inner.init_server_info(info)
    }

    fn add_client(&mut self, info: &ClientInfo) -> Result<()> {
        self.inner.add_client(info)
    }

    fn delete_client(&mut self, client_id: &str) -> Result<()> {
        self.inner.delete_client(client_id)
    }

    fn create_channel(&mut self, name: &str) -> Result<()> {
        self.inner.create_channel(name)?;
        let last = self.inner.msgs_state(name).last;
        self.open_channel(name, last).map(|_| ())
    }

    fn delete_channel(&mut self, name: &str) -> Result<()> {
        self.channels.remove(name);
        self.inner.delete_channel(name)
    }

    fn store_msg(&mut self, channel: &str, msg: &MsgProto) -> Result<u64> {
        if msg.data.is_empty() {
            return self.inner.store_msg(channel, msg);
        }
        let mut sealed = std::mem::take(&mut self.sealed);
        // Every field named, so that a field added to `MsgProto` cannot be dropped
        // here unnoticed; the buffers of the previous message are reused.
        let MsgProto {
            sequence,
            subject,
            reply,
            data,
            timestamp,
            redelivered,
            redelivery_count,
            crc32,
        } = msg;
        sealed.sequence = *sequence;
        sealed.subject.clone_from(subject);
        sealed.reply.clone_from(reply);
        sealed.timestamp = *timestamp;
        sealed.redelivered = *redelivered;
        sealed.redelivery_count = *redelivery_count;
        sealed.crc32 = *crc32;
        let sealed_data = self
            .cipher(channel)
            .map(|cipher| cipher.encrypt_into(data, &mut sealed.data));
        let stored = sealed_data.and_then(|()| self.inner.store_msg(channel, &sealed));
        self.sealed = sealed;
        stored
    }

    fn lookup(&mut self, channel: &str, seq: u64) -> Result<Option<MsgProto>> {
        let msg = self.inner.lookup(channel, seq)?;
        self.decrypted(channel, msg)
    }

    fn timestamp(&mut self, channel: &str, seq: u64) -> Result<Option<i64>> {
        self.inner.timestamp(channel, seq)
    }

    fn msgs_state(&self, channel: &str) -> MsgsState {
        self.inner.msgs_state(channel)
    }

    fn remove_oldest(&mut self, channel: &str) -> Result<()> {
        self.inner.remove_oldest(channel)
    }

    fn create_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        self.inner.create_sub(channel, state)
    }

    fn update_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        self.inner.update_sub(channel, state)
    }

    fn delete_sub(&mut self, channel: &str, sub_id: u64) -> Result<()> {
        self.inner.delete_sub(channel, sub_id)
    }

    fn add_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        self.inner.add_pending(channel, sub_id, seq)
    }

    fn ack_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        self.inner.ack_pending(channel, sub_id, seq)
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypto::OVERHEAD;
    use crate::store::MemStore;
    use prost::Message;

    fn msg(seq: u64, data: &[u8]) -> MsgProto {
        MsgProto {
            sequence: seq,
            subject: "foo".into(),
            reply: "r".into(),
            data: data.to_vec(),
            timestamp: 1_700_000_000_000_000_000 + seq as i64,
            ..MsgProto::default()
        }
    }

    fn fixed_random(bytes: [u8; 4]) -> NonceRandom {
        Box::new(move || Ok(bytes))
    }

    fn encrypted(key: &str) -> EncryptedStore {
        EncryptedStore::new(
            Box::new(MemStore::new()),
            MasterKey::new("AES", key.as_bytes()).unwrap(),
            fixed_random([0, 1, 2, 3]),
        )
    }

    #[test]
    fn memory_store_round_trip_counts_sealed_bytes() {
        let mut store = encrypted("mykey");
        assert_eq!(store.kind(), "MEMORY");
        store.create_channel("foo").unwrap();
        let plain = [msg(1, b"hello"), msg(2, b""), msg(3, &[1; 300])];
        let mut total = 0;
        for m in &plain {
            let counted = store.store_msg("foo", m).unwrap();
            let extra = if m.data.is_empty() { 0 } else { OVERHEAD };
            let sealed = MsgProto {
                data: vec![0; m.data.len() + extra],
                ..m.clone()
            };
            assert_eq!(counted, sealed.encoded_len() as u64);
            total += counted;
        }
        assert_eq!(store.msgs_state("foo").bytes, total);
        for m in &plain {
            assert_eq!(store.lookup("foo", m.sequence).unwrap().as_ref(), Some(m));
            assert_eq!(
                store.timestamp("foo", m.sequence).unwrap(),
                Some(m.timestamp)
            );
        }
        // Underneath, the payload is sealed, in the Go server's format.
        let mut inner = store.into_inner();
        let stored = inner.lookup("foo", 1).unwrap().unwrap();
        let key = MasterKey::new("AES", b"mykey").unwrap();
        let mut expected = key.channel_cipher("foo", [0, 1, 2, 3], 0);
        assert_eq!(stored.data, expected.encrypt(b"hello"));
        assert_eq!(inner.lookup("foo", 2).unwrap().unwrap().data, b"");
        let third = inner.lookup("foo", 3).unwrap().unwrap();
        assert_eq!(third.data.len(), 300 + OVERHEAD);
        // The empty payload took no nonce.
        assert_eq!(&third.data[5..13], &2u64.to_be_bytes());
        assert_eq!(
            inner.msgs_state("foo").bytes,
            [stored, inner.lookup("foo", 2).unwrap().unwrap(), third]
                .iter()
                .map(|m| m.encoded_len() as u64)
                .sum::<u64>()
        );
    }

    #[test]
    fn unencrypted_payloads_read_back_unchanged() {
        let mut inner = MemStore::new();
        inner.create_channel("foo").unwrap();
        inner.store_msg("foo", &msg(1, b"legacy")).unwrap();
        inner.store_msg("foo", &msg(2, &[1, 2])).unwrap();
        let mut store = EncryptedStore::new(
            Box::new(inner),
            MasterKey::new("", b"k").unwrap(),
            fixed_random([0; 4]),
        );
        assert_eq!(store.lookup("foo", 1).unwrap().unwrap().data, b"legacy");
        // A legacy payload starting with a cipher code cannot be told apart.
        assert_eq!(
            store.lookup("foo", 2).unwrap_err().0,
            "trying to decrypt data that is not (len=2)"
        );
        // New messages of the channel are sealed, past the existing sequences.
        store.store_msg("foo", &msg(3, b"new")).unwrap();
        assert_eq!(store.lookup("foo", 3).unwrap().unwrap().data, b"new");
        let mut inner = store.into_inner();
        let sealed = inner.lookup("foo", 3).unwrap().unwrap().data;
        assert_eq!(&sealed[5..13], &3u64.to_be_bytes());
    }

    #[test]
    fn a_wrong_key_fails_on_read() {
        let mut store = encrypted("right");
        store.create_channel("foo").unwrap();
        store.store_msg("foo", &msg(1, b"hello")).unwrap();
        let mut wrong = EncryptedStore::new(
            store.into_inner(),
            MasterKey::new("AES", b"wrong").unwrap(),
            fixed_random([0; 4]),
        );
        assert_eq!(
            wrong.lookup("foo", 1).unwrap_err().0,
            "cipher: message authentication failed"
        );
    }

    #[test]
    fn a_recreated_channel_takes_fresh_random_bytes() {
        let mut n = 0u8;
        let mut store = EncryptedStore::new(
            Box::new(MemStore::new()),
            MasterKey::new("CHACHA", b"k").unwrap(),
            Box::new(move || {
                n += 1;
                Ok([n; 4])
            }),
        );
        store.create_channel("foo").unwrap();
        store.store_msg("foo", &msg(1, b"a")).unwrap();
        store.delete_channel("foo").unwrap();
        store.create_channel("foo").unwrap();
        store.store_msg("foo", &msg(1, b"a")).unwrap();
        assert_eq!(store.lookup("foo", 1).unwrap().unwrap().data, b"a");
        let mut inner = store.into_inner();
        let sealed = inner.lookup("foo", 1).unwrap().unwrap().data;
        assert_eq!(sealed[0], 2);
        assert_eq!(&sealed[1..13], &[2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn random_source_failure_refuses_the_channel() {
        let mut store = EncryptedStore::new(
            Box::new(MemStore::new()),
            MasterKey::new("AES", b"k").unwrap(),
            Box::new(|| Err("no entropy".into())),
        );
        assert_eq!(
            store.create_channel("foo").unwrap_err().0,
            "unable to initialize encryption nonce: no entropy"
        );
    }
}
