//! CRC-32 over a configurable polynomial (`--file_crc_poly`), bit-compatible with the
//! tables the Go server builds with `crc32.MakeTable`: reflected polynomial, initial
//! value and final xor of all ones (STORES §1.3). The default polynomial gives the
//! ordinary zlib/PNG CRC-32.

/// The IEEE polynomial in reflected form, the default of `--file_crc_poly`.
pub const IEEE: u32 = 0xEDB8_8320;

/// Lookup tables for one polynomial, eight of them so that the checksum consumes
/// eight bytes per step: message payloads are checksummed on every store and every
/// verified read.
#[derive(Clone)]
pub struct Crc {
    tables: Box<[[u32; 256]; 8]>,
    poly: u32,
}

impl Crc {
    pub fn new(poly: u32) -> Crc {
        let mut tables = Box::new([[0u32; 256]; 8]);
        for i in 0..256u32 {
            let mut crc = i;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ poly
                } else {
                    crc >> 1
                };
            }
            tables[0][i as usize] = crc;
        }
        for i in 0..256 {
            for k in 1..8 {
                let prev = tables[k - 1][i];
                tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            }
        }
        Crc { tables, poly }
    }

    pub fn poly(&self) -> u32 {
        self.poly
    }

    pub fn checksum(&self, data: &[u8]) -> u32 {
        !self.update(!0, data)
    }

    fn update(&self, mut crc: u32, data: &[u8]) -> u32 {
        let t = &self.tables;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][c[4] as usize]
                ^ t[2][c[5] as usize]
                ^ t[1][c[6] as usize]
                ^ t[0][c[7] as usize];
        }
        for &b in chunks.remainder() {
            crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        crc
    }
}

impl std::fmt::Debug for Crc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc({:#010x})", self.poly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference, the definition the tables must agree with.
    fn slow(poly: u32, data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ poly
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn check_values() {
        assert_eq!(Crc::new(IEEE).checksum(b"123456789"), 0xCBF4_3926);
        // Castagnoli, reflected.
        assert_eq!(Crc::new(0x82F6_3B78).checksum(b"123456789"), 0xE306_9283);
        assert_eq!(Crc::new(IEEE).checksum(b""), 0);
    }

    #[test]
    fn tables_match_the_bitwise_definition() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for poly in [IEEE, 0x82F6_3B78, 1, 0xFFFF_FFFF, 0x1234_5678] {
            let crc = Crc::new(poly);
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1000] {
                assert_eq!(
                    crc.checksum(&data[..len]),
                    slow(poly, &data[..len]),
                    "{poly:#x} {len}"
                );
            }
        }
    }
}
