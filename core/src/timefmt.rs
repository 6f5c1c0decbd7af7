//! Time formatting shared by monitoring and logs, computed without reading any clock.

/// Go's `time.Time` JSON form: RFC 3339 with nanoseconds, trailing zeros trimmed, and the
/// given UTC offset (`Z` when zero).
pub fn rfc3339_nanos(unix_ns: i64, offset_secs: i32) -> String {
    let local = unix_ns + i64::from(offset_secs) * 1_000_000_000;
    let secs = local.div_euclid(1_000_000_000);
    let nanos = local.rem_euclid(1_000_000_000);
    let (y, mo, d, h, mi, s) = civil(secs);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    if offset_secs == 0 {
        out.push('Z');
    } else {
        let sign = if offset_secs < 0 { '-' } else { '+' };
        let o = offset_secs.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", o / 3600, (o % 3600) / 60));
    }
    out
}

/// Calendar fields of a Unix time in seconds (proleptic Gregorian).
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// The uptime form of the NATS and streaming monitoring pages: the largest non-zero
/// unit first, then every smaller unit (`1y2d3h4m5s`, `4m5s`, `5s`).
pub fn uptime(secs: u64) -> String {
    let units = [(365 * 86_400, 'y'), (86_400, 'd'), (3600, 'h'), (60, 'm')];
    let mut out = String::new();
    let mut rest = secs;
    for (size, tag) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || !out.is_empty() {
            out.push_str(&format!("{n}{tag}"));
        }
    }
    out.push_str(&format!("{rest}s"));
    out
}

/// Go's `time.Duration` string (`1h0m0s`, `1m30s`, `1.5s`, `500ms`, `0s`).
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let body = if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        format!("{}{unit}", frac(u, div))
    } else {
        let h = u / 3_600_000_000_000;
        let m = (u / 60_000_000_000) % 60;
        let s = frac(u % 60_000_000_000, 1_000_000_000);
        if h > 0 {
            format!("{h}h{m}m{s}s")
        } else if m > 0 {
            format!("{m}m{s}s")
        } else {
            format!("{s}s")
        }
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_nanos(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_711_990_805_123_456_789, -7 * 3600),
            "2024-04-01T10:00:05.123456789-07:00"
        );
        assert_eq!(
            rfc3339_nanos(1_711_990_800_001_000_000, -7 * 3600),
            "2024-04-01T10:00:00.001-07:00"
        );
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(245), "4m5s");
        assert_eq!(uptime(3 * 3600 + 5), "3h0m5s");
        assert_eq!(
            uptime(365 * 86_400 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5),
            "1y2d3h4m5s"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration(86_400_000_000_000), "24h0m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(600_000_000_000), "10m0s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(14_000_000_000), "14s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(0), "0s");
    }
}
