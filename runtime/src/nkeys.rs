//! NKeys for the connections to an external NATS server: seeds (`SU...`) as NATS
//! writes them (base32 of a prefix, the Ed25519 seed and a CRC-16), the public key
//! the server knows the user by, and signatures of the server's nonce.

use ring::signature::{Ed25519KeyPair, KeyPair};

const PREFIX_SEED: u8 = 18 << 3;

/// What a key identifies; its public key starts with `O`, `A` or `U`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Operator,
    Account,
    User,
}

impl KeyKind {
    fn prefix(self) -> u8 {
        match self {
            KeyKind::Operator => 14 << 3,
            KeyKind::Account => 0,
            KeyKind::User => 20 << 3,
        }
    }
}
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A key pair from a seed.
pub struct NKey {
    pair: Ed25519KeyPair,
    public: String,
}

impl std::fmt::Debug for NKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NKey")
            .field("public", &self.public)
            .finish()
    }
}

impl NKey {
    /// Reads an encoded seed (`SU...`, any key type).
    pub fn from_seed(seed: &str) -> Result<NKey, String> {
        let raw = base32_decode(seed.trim()).ok_or("nkeys: invalid encoded key")?;
        if raw.len() != 36 {
            return Err("nkeys: invalid seed length".into());
        }
        let (body, crc) = raw.split_at(34);
        if crc16(body).to_le_bytes() != crc {
            return Err("nkeys: invalid checksum".into());
        }
        if body[0] & 0xf8 != PREFIX_SEED {
            return Err("nkeys: invalid seed".into());
        }
        let prefix = ((body[0] & 7) << 5) | (body[1] >> 3);
        let pair = Ed25519KeyPair::from_seed_unchecked(&body[2..34])
            .map_err(|_| "nkeys: invalid seed".to_string())?;
        let public = encode(prefix, pair.public_key().as_ref());
        Ok(NKey { pair, public })
    }

    /// The public key, `U...` for a user.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The signature of `data`, in URL-safe base64 without padding.
    pub fn sign(&self, data: &[u8]) -> String {
        base64_url(self.pair.sign(data).as_ref())
    }
}

/// The encoded user seed of a raw 32-byte Ed25519 seed (for setting up users).
pub fn encode_user_seed(raw: &[u8; 32]) -> String {
    encode_seed(KeyKind::User, raw)
}

/// The encoded seed of a raw 32-byte Ed25519 seed for a key of `kind`.
pub fn encode_seed(kind: KeyKind, raw: &[u8; 32]) -> String {
    let prefix = kind.prefix();
    let mut body = vec![PREFIX_SEED | (prefix >> 5), (prefix & 31) << 3];
    body.extend_from_slice(raw);
    let crc = crc16(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    base32_encode(&body)
}

/// The seed in an NKey seed file or a credentials file: the line inside the
/// `-----BEGIN USER NKEY SEED-----` block when there is one, else the first line
/// that looks like a seed.
pub fn seed_in(text: &str) -> Option<&str> {
    block(text, "NKEY SEED").or_else(|| text.lines().map(str::trim).find(|l| l.starts_with('S')))
}

/// The user JWT of a credentials file.
pub fn jwt_in(text: &str) -> Option<&str> {
    block(text, "USER JWT")
}

/// The first non-empty line after a `-----BEGIN ... <kind>-----` line.
fn block<'a>(text: &'a str, kind: &str) -> Option<&'a str> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|l| l.starts_with("---") && l.contains("BEGIN") && l.contains(kind))?;
    lines
        .find(|l| !l.is_empty())
        .filter(|l| !l.starts_with("---"))
}

fn encode(prefix: u8, key: &[u8]) -> String {
    let mut body = vec![prefix];
    body.extend_from_slice(key);
    let crc = crc16(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    base32_encode(&body)
}

/// CRC-16/XMODEM.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn base32_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = BASE32.iter().position(|&x| x == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// URL-safe base64 without padding, as NATS writes signatures and JWT parts.
pub fn base64_url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=n {
            out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_round_trip_and_checks() {
        let seed = encode_user_seed(&[7u8; 32]);
        assert!(seed.starts_with("SU"), "{seed}");
        let key = NKey::from_seed(&seed).unwrap();
        assert!(key.public_key().starts_with('U'));
        assert_eq!(key.public_key().len(), 56);
        // One character changed breaks the checksum.
        let mut bad = seed.clone().into_bytes();
        bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
        assert!(NKey::from_seed(std::str::from_utf8(&bad).unwrap()).is_err());
        assert!(NKey::from_seed("not a seed").is_err());
        assert!(NKey::from_seed("").is_err());
    }

    #[test]
    fn known_encodings() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(base64_url(b"\xfb\xff"), "-_8");
        assert_eq!(base64_url(b"foob"), "Zm9vYg");
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        let key = NKey::from_seed(&encode_user_seed(&[1u8; 32])).unwrap();
        let sig = key.sign(b"nonce");
        assert_eq!(sig.len(), 86);
        let raw = base32_decode(key.public_key()).unwrap();
        let public =
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &raw[1..33]);
        let sig_bytes = {
            // URL-safe base64 back to bytes.
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
            for c in sig.bytes() {
                acc = (acc << 6) | alphabet.iter().position(|&x| x == c).unwrap() as u32;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                }
            }
            out
        };
        assert!(public.verify(b"nonce", &sig_bytes).is_ok());
        assert!(public.verify(b"other", &sig_bytes).is_err());
    }

    #[test]
    fn files_are_read_decorated_or_plain() {
        let seed = encode_user_seed(&[2u8; 32]);
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGciOi.x.y\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        assert_eq!(jwt_in(&creds), Some("eyJhbGciOi.x.y"));
        assert_eq!(seed_in(&creds), Some(seed.as_str()));
        assert_eq!(seed_in(&format!("\n  {seed}\n")), Some(seed.as_str()));
        assert_eq!(jwt_in(&seed), None);
        assert_eq!(seed_in("nothing"), None);
    }
}
