//! The `--file_*` options (OPERATIONS §1.2) with the Go server's defaults and its
//! validation messages.

use std::time::Duration;

use super::crc::IEEE;
use stan_core::store::StoreError;

/// Every FILE store option. Sizes and counts are signed so that a negative value from
/// the command line or a configuration file reaches [`FileStoreOptions::validate`] and
/// is refused with the Go server's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStoreOptions {
    /// `--file_compact_enabled`: compaction of `clients.dat` and `subs.dat`.
    pub compact_enabled: bool,
    /// `--file_compact_frag`: fragmentation percentage that allows a compaction.
    pub compact_frag: i64,
    /// `--file_compact_interval`: minimum seconds between two compactions of a file.
    pub compact_interval: i64,
    /// `--file_compact_min_size`: minimum file size for a compaction (0 = any).
    pub compact_min_size: i64,
    /// `--file_buffer_size`: largest write buffer of a message or subscription file
    /// (0 = every record is written directly).
    pub buffer_size: i64,
    /// `--file_crc`: verify checksums on read.
    pub crc: bool,
    /// `--file_crc_poly`: the CRC-32 polynomial, reflected form.
    pub crc_poly: i64,
    /// `--file_sync`: fsync at every flush.
    pub sync: bool,
    /// `--file_slice_max_msgs` (0 = not checked).
    pub slice_max_msgs: i64,
    /// `--file_slice_max_bytes`, message records plus index records (0 = not checked).
    pub slice_max_bytes: i64,
    /// `--file_slice_max_age`: time span of a slice (zero = not checked).
    pub slice_max_age: Duration,
    /// `--file_slice_archive_script`: run on removed slices instead of deleting them.
    pub slice_archive_script: String,
    /// `--file_fds_limit`: soft limit of open message files (0 = none).
    pub fds_limit: i64,
    /// `--file_parallel_recovery`: channels recovered at the same time.
    pub parallel_recovery: i64,
    /// `--file_truncate_bad_eof`: truncate a file at a partial last record.
    pub truncate_bad_eof: bool,
    /// `--file_read_buffer_size`: read-ahead of lookups (0 = off).
    pub read_buffer_size: i64,
    /// `--file_auto_sync`: periodic flush and fsync; zero disables it (the command
    /// line maps any value ≤ 0 to zero).
    pub auto_sync: Duration,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            compact_enabled: true,
            compact_frag: 50,
            compact_interval: 300,
            compact_min_size: 1024 * 1024,
            buffer_size: 2 * 1024 * 1024,
            crc: true,
            crc_poly: i64::from(IEEE),
            sync: true,
            slice_max_msgs: 0,
            slice_max_bytes: 64 * 1024 * 1024,
            slice_max_age: Duration::ZERO,
            slice_archive_script: String::new(),
            fds_limit: 0,
            parallel_recovery: 1,
            truncate_bad_eof: false,
            read_buffer_size: 2 * 1024 * 1024,
            auto_sync: Duration::from_secs(60),
        }
    }
}

impl FileStoreOptions {
    /// Checks the values in the Go server's order, with its messages.
    pub fn validate(&self) -> Result<(), StoreError> {
        let err = |s: &str| Err(StoreError(s.to_owned()));
        if self.buffer_size < 0 {
            return err("buffer size value must be a positive number");
        }
        if self.compact_interval <= 0 {
            return err("compact interval value must at least be 1 seconds");
        }
        if self.compact_frag <= 0 {
            return err("compact fragmentation value must at least be 1");
        }
        if self.compact_min_size < 0 {
            return err("compact minimum file size value must be a positive number");
        }
        if self.crc_poly <= 0 || self.crc_poly > 0xFFFF_FFFF {
            return Err(StoreError(format!(
                "crc polynomial should be between 1 and {}",
                0xFFFF_FFFFu32
            )));
        }
        if self.slice_max_msgs < 0 || self.slice_max_bytes < 0 {
            return err("slice max values must be positive numbers");
        }
        if self.fds_limit < 0 {
            return err("file descriptor limit must be a positive number");
        }
        if self.parallel_recovery <= 0 {
            return err("parallel recovery value must be at least 1");
        }
        if self.read_buffer_size < 0 {
            return err("read buffer size value must be a positive number");
        }
        Ok(())
    }

    pub(crate) fn buffer_max(&self) -> usize {
        self.buffer_size.max(0) as usize
    }

    pub(crate) fn read_buffer(&self) -> usize {
        self.read_buffer_size.max(0) as usize
    }
}

/// A channel's message limits, from which slice limits are derived when no
/// `--file_slice_*` limit is set (STORES §1.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelLimits {
    pub max_msgs: i64,
    pub max_bytes: i64,
    pub max_age: Duration,
}

/// When the write slice is full and a new one starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SliceLimits {
    pub msgs: u64,
    pub bytes: u64,
    /// Nanoseconds.
    pub age: i64,
}

impl SliceLimits {
    pub fn new(opts: &FileStoreOptions, channel: ChannelLimits) -> SliceLimits {
        let configured = SliceLimits {
            msgs: opts.slice_max_msgs.max(0) as u64,
            bytes: opts.slice_max_bytes.max(0) as u64,
            age: opts.slice_max_age.as_nanos().min(i64::MAX as u128) as i64,
        };
        if configured.any() {
            return configured;
        }
        let mut derived = SliceLimits::default();
        if channel.max_msgs > 0 {
            derived.msgs = (channel.max_msgs as u64 / 4).max(1);
        }
        if channel.max_bytes > 0 {
            derived.bytes = (channel.max_bytes as u64 / 4).max(1);
        }
        if !channel.max_age.is_zero() {
            let age = channel.max_age.as_nanos().min(i64::MAX as u128) as i64 / 4;
            derived.age = age.max(1_000_000_000);
        }
        derived
    }

    pub fn any(&self) -> bool {
        self.msgs > 0 || self.bytes > 0 || self.age > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_go_servers() {
        let o = FileStoreOptions::default();
        assert_eq!(o.crc_poly, 3_988_292_384);
        assert_eq!(o.slice_max_bytes, 67_108_864);
        assert_eq!(o.buffer_size, 2_097_152);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn validation_messages() {
        let bad = |f: fn(&mut FileStoreOptions)| {
            let mut o = FileStoreOptions::default();
            f(&mut o);
            o.validate().unwrap_err().0
        };
        assert_eq!(
            bad(|o| o.buffer_size = -1),
            "buffer size value must be a positive number"
        );
        assert_eq!(
            bad(|o| o.compact_interval = 0),
            "compact interval value must at least be 1 seconds"
        );
        assert_eq!(
            bad(|o| o.compact_frag = 0),
            "compact fragmentation value must at least be 1"
        );
        assert_eq!(
            bad(|o| o.compact_min_size = -1),
            "compact minimum file size value must be a positive number"
        );
        assert_eq!(
            bad(|o| o.crc_poly = 0),
            "crc polynomial should be between 1 and 4294967295"
        );
        assert_eq!(
            bad(|o| o.crc_poly = 0x1_0000_0000),
            "crc polynomial should be between 1 and 4294967295"
        );
        assert_eq!(
            bad(|o| o.slice_max_msgs = -1),
            "slice max values must be positive numbers"
        );
        assert_eq!(
            bad(|o| o.fds_limit = -1),
            "file descriptor limit must be a positive number"
        );
        assert_eq!(
            bad(|o| o.parallel_recovery = 0),
            "parallel recovery value must be at least 1"
        );
        assert_eq!(
            bad(|o| o.read_buffer_size = -1),
            "read buffer size value must be a positive number"
        );
    }

    #[test]
    fn slice_limits_derive_from_channel_limits_only_when_none_configured() {
        let mut o = FileStoreOptions::default();
        let ch = ChannelLimits {
            max_msgs: 10,
            max_bytes: 3,
            max_age: Duration::from_secs(2),
        };
        assert_eq!(
            SliceLimits::new(&o, ch),
            SliceLimits {
                msgs: 0,
                bytes: 64 << 20,
                age: 0
            }
        );
        o.slice_max_bytes = 0;
        assert_eq!(
            SliceLimits::new(&o, ch),
            SliceLimits {
                msgs: 2,
                bytes: 1,
                age: 1_000_000_000
            }
        );
        assert!(!SliceLimits::new(&o, ChannelLimits::default()).any());
    }
}
