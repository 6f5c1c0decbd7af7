//! Encryption at rest of message payloads, byte-compatible with the Go server
//! (shared/spec/STORES.md §4), so that a data directory encrypted by either server
//! opens in the other with the same key.
//!
//! An encrypted value is `code ‖ nonce ‖ AEAD-seal(plaintext)`: one byte naming the
//! cipher, the 12-byte nonce, then the ciphertext and its 16-byte tag, with no
//! additional authenticated data. Nothing here reads a clock or a random source: the
//! four random bytes of each nonce are an argument, supplied by the caller.

use std::borrow::Cow;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use chacha20poly1305::ChaCha20Poly1305;
use sha2::{Digest, Sha256};

/// Length of the nonce of both ciphers.
pub const NONCE_LEN: usize = 12;
/// Length of the authentication tag of both ciphers.
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted value adds to its plaintext: cipher code, nonce and tag.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// A refusal of the encryption settings, or a value that cannot be decrypted. The
/// texts are the Go server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("encryption key required")]
    KeyRequired,
    #[error("encryption cipher not supported")]
    CipherNotSupported,
    /// A value tagged with a cipher code but too short to hold a nonce and anything
    /// after it.
    #[error("trying to decrypt data that is not (len={0})")]
    NotEncrypted(usize),
    /// AES-GCM refused the value: another key, or altered bytes.
    #[error("cipher: message authentication failed")]
    AesAuthentication,
    /// ChaCha20-Poly1305 refused the value: another key, or altered bytes.
    #[error("chacha20poly1305: message authentication failed")]
    ChaChaAuthentication,
}

/// The cipher new values are sealed with. Values sealed with either one are always
/// readable, whichever is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-256-GCM, code 1.
    Aes,
    /// ChaCha20-Poly1305 (IETF, 12-byte nonce), code 2.
    ChaCha,
}

impl Cipher {
    const AES_CODE: u8 = 1;
    const CHACHA_CODE: u8 = 2;

    /// `AES` or `CHACHA` in any case; an empty name picks [`Cipher::platform_default`].
    pub fn from_name(name: &str) -> Result<Cipher, CryptoError> {
        if name.is_empty() {
            return Ok(Cipher::platform_default());
        }
        match name.to_uppercase().as_str() {
            "AES" => Ok(Cipher::Aes),
            "CHACHA" => Ok(Cipher::ChaCha),
            _ => Err(CryptoError::CipherNotSupported),
        }
    }

    /// AES where x86 processors accelerate it, ChaCha20-Poly1305 elsewhere, as the Go
    /// server picks for its builds.
    pub fn platform_default() -> Cipher {
        if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
            Cipher::Aes
        } else {
            Cipher::ChaCha
        }
    }

    /// The first byte of every value this cipher seals.
    pub fn code(self) -> u8 {
        match self {
            Cipher::Aes => Cipher::AES_CODE,
            Cipher::ChaCha => Cipher::CHACHA_CODE,
        }
    }
}

/// The configured key, hashed, with the cipher to seal with.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Cipher,
    hash: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// The master key from the cipher name and the key bytes. The cipher is checked
    /// first, so a bad cipher is reported even when the key is missing too, as the Go
    /// server does.
    pub fn new(cipher_name: &str, key: &[u8]) -> Result<MasterKey, CryptoError> {
        let cipher = Cipher::from_name(cipher_name)?;
        if key.is_empty() {
            return Err(CryptoError::KeyRequired);
        }
        Ok(MasterKey {
            cipher,
            hash: Sha256::digest(key).into(),
        })
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// SHA-256 of the key bytes.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The key of one channel's payloads. The hashed input starts with
    /// `33 + len(channel)` zero bytes: the Go server sized a buffer for the rest and
    /// then appended to it, and stores written by it only open with the same bytes.
    pub fn channel_key(&self, channel: &str) -> [u8; 32] {
        let zeros = [0u8; 64];
        let mut h = Sha256::new();
        let mut pad = self.hash.len() + 1 + channel.len();
        while pad > 0 {
            let n = pad.min(zeros.len());
            h.update(&zeros[..n]);
            pad -= n;
        }
        h.update(self.hash);
        h.update(b".");
        h.update(channel.as_bytes());
        h.finalize().into()
    }

    /// The cipher of one channel whose last stored sequence is `last_seq`, its nonce
    /// starting from `random` (see [`PayloadCipher::new`]).
    pub fn channel_cipher(&self, channel: &str, random: [u8; 4], last_seq: u64) -> PayloadCipher {
        PayloadCipher::new(self.cipher, &self.channel_key(channel), random, last_seq)
    }
}

/// Seals and opens the payloads of one channel; owns that channel's nonce.
pub struct PayloadCipher {
    cipher: Cipher,
    aes: Aes256Gcm,
    chacha: ChaCha20Poly1305,
    nonce: [u8; NONCE_LEN],
}

impl std::fmt::Debug for PayloadCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadCipher")
            .field("cipher", &self.cipher)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl PayloadCipher {
    /// A cipher over `key` sealing with `cipher`. Its first nonce is `random`
    /// followed by `last_seq + 1` in big endian: with the same key after a restart,
    /// the counter part starts past every value sealed before (at most one per
    /// sequence), and the random part separates a channel deleted and created again.
    pub fn new(cipher: Cipher, key: &[u8; 32], random: [u8; 4], last_seq: u64) -> PayloadCipher {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&random);
        nonce[4..].copy_from_slice(&last_seq.wrapping_add(1).to_be_bytes());
        PayloadCipher {
            cipher,
            aes: Aes256Gcm::new(key.into()),
            chacha: ChaCha20Poly1305::new(key.into()),
            nonce,
        }
    }

    /// The nonce the next sealed value will carry.
    pub fn next_nonce(&self) -> [u8; NONCE_LEN] {
        self.nonce
    }

    /// Replaces `out` with the sealed `plaintext` and moves to the next nonce.
    pub fn encrypt_into(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(OVERHEAD + plaintext.len());
        out.push(self.cipher.code());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(plaintext);
        let nonce = Nonce::from_slice(&self.nonce);
        let body = &mut out[1 + NONCE_LEN..];
        // Both ciphers refuse only plaintexts of tens of gigabytes, far beyond any
        // message the server accepts.
        let tag = match self.cipher {
            Cipher::Aes => self.aes.encrypt_in_place_detached(nonce, b"", body),
            Cipher::ChaCha => self.chacha.encrypt_in_place_detached(nonce, b"", body),
        }
        .expect("payload within the AEAD size limit");
        out.extend_from_slice(&tag);
        increment(&mut self.nonce);
    }

    /// The sealed `plaintext`; see [`PayloadCipher::encrypt_into`].
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encrypt_into(plaintext, &mut out);
        out
    }

    /// The plaintext of a stored value. A value whose first byte is no cipher code
    /// was stored before encryption was turned on and comes back unchanged.
    pub fn decrypt<'a>(&self, value: &'a [u8]) -> Result<Cow<'a, [u8]>, CryptoError> {
        let cipher = match value.first() {
            Some(&Cipher::AES_CODE) => Cipher::Aes,
            Some(&Cipher::CHACHA_CODE) => Cipher::ChaCha,
            Some(_) => return Ok(Cow::Borrowed(value)),
            None => return Err(CryptoError::NotEncrypted(0)),
        };
        if value.len() <= 1 + NONCE_LEN {
            return Err(CryptoError::NotEncrypted(value.len()));
        }
        let refused = match cipher {
            Cipher::Aes => CryptoError::AesAuthentication,
            Cipher::ChaCha => CryptoError::ChaChaAuthentication,
        };
        let (nonce, sealed) = value[1..].split_at(NONCE_LEN);
        let Some(split) = sealed.len().checked_sub(TAG_LEN) else {
            return Err(refused);
        };
        let (ciphertext, tag) = sealed.split_at(split);
        let mut plain = ciphertext.to_vec();
        let nonce = Nonce::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        match cipher {
            Cipher::Aes => self
                .aes
                .decrypt_in_place_detached(nonce, b"", &mut plain, tag),
            Cipher::ChaCha => self
                .chacha
                .decrypt_in_place_detached(nonce, b"", &mut plain, tag),
        }
        .map_err(|_| refused)?;
        Ok(Cow::Owned(plain))
    }
}

/// Adds one to the nonce read as a 96-bit big-endian number, wrapping at the top.
fn increment(nonce: &mut [u8; NONCE_LEN]) {
    for b in nonce.iter_mut().rev() {
        *b = b.wrapping_add(1);
        if *b != 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// STORES §4.5.
    #[test]
    fn go_test_vector() {
        let mk = MasterKey::new("AES", b"mykey").unwrap();
        assert_eq!(
            hex(mk.hash()),
            "5e50f405ace6cbdf17379f4b9f2b0c9f4144c5e380ea0b9298cb02ebd8ffe511"
        );
        // The hash input of the spec, built independently of `channel_key`.
        let mut input = vec![0u8; 36];
        input.extend_from_slice(mk.hash());
        input.extend_from_slice(b".foo");
        assert_eq!(input.len(), 72);
        let k_foo = mk.channel_key("foo");
        assert_eq!(k_foo, <[u8; 32]>::from(Sha256::digest(&input)));
        assert_eq!(
            hex(&k_foo),
            "5e9e7bb8c8fd4571cef7ea6683b1b6fdf883488b242ab5f28433711b775cd6e3"
        );
        let mut c = mk.channel_cipher("foo", [0, 1, 2, 3], 0);
        assert_eq!(hex(&c.next_nonce()), "000102030000000000000001");
        let sealed = c.encrypt(b"hello");
        assert_eq!(
            sealed,
            unhex("01 000102030000000000000001 cdc81ce5d3 79ff25d65041df6552871cd881b51a0a")
        );
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(hex(&c.next_nonce()), "000102030000000000000002");
        assert_eq!(c.decrypt(&sealed).unwrap().as_ref(), b"hello");
    }

    #[test]
    fn long_channel_names_hash_the_whole_zero_prefix() {
        let mk = MasterKey::new("AES", b"k").unwrap();
        let name = "a".repeat(200);
        let mut input = vec![0u8; 33 + 200];
        input.extend_from_slice(mk.hash());
        input.push(b'.');
        input.extend_from_slice(name.as_bytes());
        assert_eq!(
            mk.channel_key(&name),
            <[u8; 32]>::from(Sha256::digest(&input))
        );
        assert_ne!(mk.channel_key("foo"), mk.channel_key("bar"));
    }

    #[test]
    fn chacha_round_trip_and_either_cipher_opens() {
        let key = MasterKey::new("chacha", b"secret").unwrap();
        assert_eq!(key.cipher(), Cipher::ChaCha);
        let mut chacha = key.channel_cipher("foo", [9, 9, 9, 9], 41);
        let sealed = chacha.encrypt(b"some payload");
        assert_eq!(sealed[0], 2);
        assert_eq!(&sealed[1..13], &[9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 42]);
        assert_eq!(sealed.len(), 12 + OVERHEAD);
        assert!(!sealed.windows(7).any(|w| w == b"payload"));
        assert_eq!(chacha.decrypt(&sealed).unwrap().as_ref(), b"some payload");
        // A store configured for AES still reads what ChaCha sealed, and back.
        let aes_key = MasterKey::new("aes", b"secret").unwrap();
        let mut aes = aes_key.channel_cipher("foo", [1, 1, 1, 1], 0);
        assert_eq!(aes.decrypt(&sealed).unwrap().as_ref(), b"some payload");
        let by_aes = aes.encrypt(b"x");
        assert_eq!(by_aes[0], 1);
        assert_eq!(chacha.decrypt(&by_aes).unwrap().as_ref(), b"x");
    }

    #[test]
    fn nonce_increments_with_carry() {
        let key = [7u8; 32];
        let mut c = PayloadCipher::new(Cipher::Aes, &key, [0, 0, 0, 0xfe], 0xfe);
        assert_eq!(c.next_nonce(), [0, 0, 0, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        c.encrypt(b"a");
        assert_eq!(c.next_nonce(), [0, 0, 0, 0xfe, 0, 0, 0, 0, 0, 0, 1, 0]);
        // The counter part overflows into the random part.
        let mut c = PayloadCipher::new(Cipher::Aes, &key, [0, 0, 0, 0xfe], u64::MAX - 1);
        assert_eq!(c.next_nonce()[4..], [0xff; 8]);
        c.encrypt(b"a");
        assert_eq!(c.next_nonce(), [0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        // `last_seq + 1` wraps, and so does the whole nonce.
        let c = PayloadCipher::new(Cipher::ChaCha, &key, [0xff; 4], u64::MAX);
        assert_eq!(
            c.next_nonce(),
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut c = PayloadCipher::new(Cipher::Aes, &key, [0xff; 4], u64::MAX - 1);
        c.encrypt(b"a");
        assert_eq!(c.next_nonce(), [0; 12]);
    }

    #[test]
    fn each_value_gets_its_own_nonce() {
        let mut c = PayloadCipher::new(Cipher::Aes, &[3; 32], [5, 6, 7, 8], 10);
        let a = c.encrypt(b"same");
        let b = c.encrypt(b"same");
        assert_ne!(a, b);
        assert_eq!(&a[5..13], &11u64.to_be_bytes());
        assert_eq!(&b[5..13], &12u64.to_be_bytes());
    }

    #[test]
    fn values_without_a_cipher_code_are_returned_as_they_are() {
        let c = PayloadCipher::new(Cipher::Aes, &[3; 32], [0; 4], 0);
        for legacy in [&b"hello"[..], &[0], &[3, 1, 2], &[0xff; 40]] {
            let out = c.decrypt(legacy).unwrap();
            assert!(matches!(out, Cow::Borrowed(_)));
            assert_eq!(out.as_ref(), legacy);
        }
    }

    #[test]
    fn short_values_are_refused() {
        let c = PayloadCipher::new(Cipher::Aes, &[3; 32], [0; 4], 0);
        for len in [1, 2, 13] {
            let mut value = vec![0u8; len];
            value[0] = 1;
            assert_eq!(
                c.decrypt(&value).unwrap_err().to_string(),
                format!("trying to decrypt data that is not (len={len})")
            );
            value[0] = 2;
            assert_eq!(c.decrypt(&value), Err(CryptoError::NotEncrypted(len)));
        }
        assert_eq!(
            c.decrypt(&[]).unwrap_err().to_string(),
            "trying to decrypt data that is not (len=0)"
        );
        // Long enough for a nonce but not for a tag: the cipher refuses it.
        let mut value = vec![1u8; 14 + 15];
        assert_eq!(
            c.decrypt(&value).unwrap_err().to_string(),
            "cipher: message authentication failed"
        );
        value[0] = 2;
        assert_eq!(
            c.decrypt(&value).unwrap_err().to_string(),
            "chacha20poly1305: message authentication failed"
        );
    }

    #[test]
    fn another_key_or_altered_bytes_fail_authentication() {
        let mk = MasterKey::new("", b"right").unwrap();
        let mut c = mk.channel_cipher("foo", [1, 2, 3, 4], 0);
        let sealed = c.encrypt(b"hello");
        let wrong = MasterKey::new("", b"wrong")
            .unwrap()
            .channel_cipher("foo", [1, 2, 3, 4], 0);
        let expected = match Cipher::platform_default() {
            Cipher::Aes => CryptoError::AesAuthentication,
            Cipher::ChaCha => CryptoError::ChaChaAuthentication,
        };
        assert_eq!(wrong.decrypt(&sealed), Err(expected.clone()));
        // Another channel of the same key is another key.
        let other = mk.channel_cipher("bar", [1, 2, 3, 4], 0);
        assert_eq!(other.decrypt(&sealed), Err(expected.clone()));
        for i in 1..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x40;
            assert_eq!(c.decrypt(&altered), Err(expected.clone()), "byte {i}");
        }
    }

    #[test]
    fn settings_are_checked_cipher_first() {
        assert_eq!(Cipher::from_name("aes"), Ok(Cipher::Aes));
        assert_eq!(Cipher::from_name("ChaCha"), Ok(Cipher::ChaCha));
        assert_eq!(Cipher::from_name(""), Ok(Cipher::platform_default()));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Cipher::platform_default(), Cipher::Aes);
        for bad in ["AES256", "chacha20", " aes", "des"] {
            assert_eq!(Cipher::from_name(bad), Err(CryptoError::CipherNotSupported));
        }
        assert_eq!(
            MasterKey::new("AES", b"").unwrap_err().to_string(),
            "encryption key required"
        );
        assert_eq!(
            MasterKey::new("rot13", b"").unwrap_err().to_string(),
            "encryption cipher not supported"
        );
        assert_eq!(
            MasterKey::new("rot13", b"key").unwrap_err(),
            CryptoError::CipherNotSupported
        );
        // The key never shows in debug output.
        let mk = MasterKey::new("AES", b"mykey").unwrap();
        assert_eq!(format!("{mk:?}"), "MasterKey { cipher: Aes, .. }");
    }
}
