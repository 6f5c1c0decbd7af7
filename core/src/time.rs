//! The two clocks that travel into the core with every call.
//!
//! Timers run on a monotonic [`Instant`] that the driver defines (nanoseconds since an
//! origin of its choosing), so simulated and real time look the same to the core.
//! Message timestamps and `max_age` use wall-clock Unix nanoseconds.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the driver's monotonic clock.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The instant `nanos` nanoseconds after the driver's origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the driver's origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

/// Both clocks, read once by the driver for each call into the core.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time for timers.
    pub mono: Instant,
    /// Wall-clock time in Unix nanoseconds, for timestamps visible to users.
    pub wall_ns: i64,
}

impl Now {
    /// Both clocks advanced by `d`; used by simulated drivers and tests.
    pub fn advanced(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall_ns: self
                .wall_ns
                .saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}
