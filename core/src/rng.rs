//! The core's only source of randomness: a small seeded generator.
//!
//! Server IDs, inboxes, NUIDs and queue-member choice all come from here, so one seed
//! fixes every value that can reach the wire (xoshiro256** seeded through splitmix64).

/// Seeded pseudo-random generator owned by a state machine.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of a NATS NUID, as used for server IDs and inbox tokens.
pub const NUID_LEN: usize = 22;

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A value in `0..n` (`n` > 0), with negligible bias for the small `n` used here.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A 22-character base-62 identifier in the shape of a NATS NUID.
    pub fn nuid(&mut self) -> String {
        let mut out = String::with_capacity(NUID_LEN);
        self.push_nuid(&mut out);
        out
    }

    /// Appends a NUID to `out` without allocating a new string.
    pub fn push_nuid(&mut self, out: &mut String) {
        let mut bits = 0u64;
        for i in 0..NUID_LEN {
            if i % 10 == 0 {
                bits = self.next_u64();
            }
            out.push(BASE62[(bits % 62) as usize] as char);
            bits /= 62;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn nuid_shape() {
        let mut r = Rng::new(42);
        let a = r.nuid();
        let b = r.nuid();
        assert_eq!(a.len(), NUID_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(3);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            seen[r.below(5)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
