//! Encryption at rest as `stan-server` sets it up (shared/spec/STORES.md §4.1): when it
//! is on, which key bytes, and the operating system's randomness for the nonces.

use std::ffi::OsStr;
use std::io::Read;

use stan_core::store::crypto::MasterKey;
use stan_core::store::{EncryptedStore, NonceRandom, Store};

use crate::cli::Options;

/// Environment variable whose value, when not empty, is the key instead of the
/// configured one. Operators are told to prefer it: a key on the command line shows
/// in the process list.
pub const KEY_ENV: &str = "NATS_STREAMING_ENCRYPTION_KEY";

/// Whether the options turn encryption on: `--encrypt`, or any configured key.
pub fn enabled(opts: &Options) -> bool {
    opts.encrypt || opts.encryption_key.is_some()
}

/// The key bytes: the environment variable's raw bytes when it is set and not empty,
/// else the configured key's UTF-8 bytes (empty when there is none).
pub fn key_bytes(env: Option<&OsStr>, configured: Option<&str>) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    match env.map(OsStrExt::as_bytes).filter(|k| !k.is_empty()) {
        Some(k) => k.to_vec(),
        None => configured.unwrap_or_default().as_bytes().to_vec(),
    }
}

/// `store` with its payloads encrypted when the options ask for it, the key taken
/// from the process environment first. The error is the Go server's
/// (`encryption key required`, `encryption cipher not supported`).
pub fn wrap(store: Box<dyn Store>, opts: &Options) -> Result<Box<dyn Store>, String> {
    wrap_with(
        store,
        opts,
        std::env::var_os(KEY_ENV).as_deref(),
        os_random(),
    )
}

/// [`wrap`] with the environment variable's value and the random source supplied.
pub fn wrap_with(
    store: Box<dyn Store>,
    opts: &Options,
    env_key: Option<&OsStr>,
    random: NonceRandom,
) -> Result<Box<dyn Store>, String> {
    if !enabled(opts) {
        return Ok(store);
    }
    let key = key_bytes(env_key, opts.encryption_key.as_deref());
    let cipher = opts.encryption_cipher.as_deref().unwrap_or_default();
    let key = MasterKey::new(cipher, &key).map_err(|e| e.to_string())?;
    Ok(Box::new(EncryptedStore::new(store, key, random)))
}

/// Four bytes from the operating system's random source for each channel's nonce.
pub fn os_random() -> NonceRandom {
    Box::new(|| {
        let mut bytes = [0u8; 4];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stan_core::store::MemStore;
    use stan_core::streaming::pb::MsgProto;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn opts(encrypt: bool, cipher: Option<&str>, key: Option<&str>) -> Options {
        Options {
            encrypt,
            encryption_cipher: cipher.map(Into::into),
            encryption_key: key.map(Into::into),
            ..Options::default()
        }
    }

    fn wrapped(o: &Options, env: Option<&str>) -> Result<Box<dyn Store>, String> {
        let env = env.map(OsString::from);
        wrap_with(
            Box::new(MemStore::new()),
            o,
            env.as_deref(),
            Box::new(|| Ok([0; 4])),
        )
    }

    /// A MEMORY store holding "hello" in channel `foo`, sealed with `key`.
    fn sealed_with(key: &[u8]) -> MemStore {
        let mut store = MemStore::new();
        store.create_channel("foo").unwrap();
        let data = MasterKey::new("", key)
            .unwrap()
            .channel_cipher("foo", [9; 4], 0)
            .encrypt(b"hello");
        let msg = MsgProto {
            sequence: 1,
            subject: "foo".into(),
            data,
            ..MsgProto::default()
        };
        store.store_msg("foo", &msg).unwrap();
        store
    }

    /// What the wrapped store reads back from a store sealed with `sealed_key`.
    fn read(o: &Options, env: Option<&str>, sealed_key: &[u8]) -> Result<Vec<u8>, String> {
        let env = env.map(OsString::from);
        let mut store = wrap_with(
            Box::new(sealed_with(sealed_key)),
            o,
            env.as_deref(),
            Box::new(|| Ok([0; 4])),
        )?;
        match store.lookup("foo", 1) {
            Ok(m) => Ok(m.unwrap().data),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn off_unless_asked() {
        assert!(!enabled(&Options::default()));
        assert!(!enabled(&opts(false, Some("AES"), None)));
        assert!(enabled(&opts(true, None, None)));
        assert!(enabled(&opts(false, None, Some("k"))));
        // Off, the store is handed back as it is and the environment is not read.
        let s = wrapped(&opts(false, Some("bogus"), None), Some("envkey")).unwrap();
        assert_eq!(s.kind(), "MEMORY");
    }

    #[test]
    fn go_errors() {
        assert_eq!(
            wrapped(&opts(true, None, None), None).err().unwrap(),
            "encryption key required"
        );
        assert_eq!(
            wrapped(&opts(true, None, None), Some("")).err().unwrap(),
            "encryption key required"
        );
        assert_eq!(
            wrapped(&opts(true, Some("blowfish"), Some("k")), None)
                .err()
                .unwrap(),
            "encryption cipher not supported"
        );
        // The cipher is checked before the key.
        assert_eq!(
            wrapped(&opts(true, Some("blowfish"), None), None)
                .err()
                .unwrap(),
            "encryption cipher not supported"
        );
        assert!(wrapped(&opts(true, None, None), Some("envkey")).is_ok());
        assert!(wrapped(&opts(true, Some("chacha"), Some("k")), None).is_ok());
    }

    #[test]
    fn environment_key_wins_when_not_empty() {
        assert_eq!(key_bytes(None, Some("conf")), b"conf");
        assert_eq!(key_bytes(Some(OsStr::new("")), Some("conf")), b"conf");
        assert_eq!(key_bytes(Some(OsStr::new("env")), Some("conf")), b"env");
        assert_eq!(key_bytes(Some(OsStr::new("env")), None), b"env");
        assert_eq!(key_bytes(None, None), b"");
        // Raw bytes, not necessarily UTF-8.
        let raw = OsString::from_vec(vec![0xff, 0x00, 0x41]);
        assert_eq!(key_bytes(Some(&raw), Some("conf")), vec![0xff, 0x00, 0x41]);
    }

    #[test]
    fn the_key_in_use_is_the_one_that_opens() {
        let conf = opts(true, Some("CHACHA"), Some("conf"));
        assert_eq!(read(&conf, None, b"conf").unwrap(), b"hello");
        assert_eq!(read(&conf, Some(""), b"conf").unwrap(), b"hello");
        assert_eq!(read(&conf, Some("env"), b"env").unwrap(), b"hello");
        let refused = read(&conf, Some("env"), b"conf").unwrap_err();
        assert!(
            refused.ends_with("message authentication failed"),
            "{refused}"
        );
        // `--encrypt` alone, the key from the environment.
        assert_eq!(
            read(&opts(true, None, None), Some("env"), b"env").unwrap(),
            b"hello"
        );
    }

    #[test]
    fn os_random_gives_bytes() {
        let mut random = os_random();
        let draws: Vec<[u8; 4]> = (0..8).map(|_| random().unwrap()).collect();
        // Eight equal draws of 32 random bits would mean the source is not random.
        assert!(draws.iter().any(|d| *d != draws[0]), "{draws:?}");
    }
}
