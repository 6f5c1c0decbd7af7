//! Go duration strings (`1h30m`, `1.5s`, `-500ms`), with the errors Go's
//! `time.ParseDuration` reports, since operators see them verbatim
//! (OPERATIONS §2.2: durations are strings in configuration files).

/// Nanoseconds of a Go duration string, or Go's error text for it.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_time_quote(text));
    const LIMIT: u64 = 1 << 63;
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut whole: u64 = 0;
        for &c in &b[..int_len] {
            // Go refuses the whole duration once the integer part passes 2^63.
            whole = whole
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .filter(|&v| v <= LIMIT)
                .ok_or_else(invalid)?;
        }
        rest = &rest[int_len..];
        // Fraction digits that no longer fit are dropped rather than refused.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut frac_len = 0;
        if rest.starts_with('.') {
            rest = &rest[1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit);
            let mut overflowed = false;
            for c in digits {
                frac_len += 1;
                if overflowed {
                    continue;
                }
                match fraction
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(c - b'0')))
                    .filter(|&v| v <= LIMIT)
                {
                    Some(v) => {
                        fraction = v;
                        scale *= 10.0;
                    }
                    None => overflowed = true,
                }
            }
            rest = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = rest
            .bytes()
            .take_while(|&c| c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!(
                "time: missing unit in duration {}",
                go_time_quote(text)
            ));
        }
        let unit_text = &rest[..unit_len];
        let unit: u64 = match unit_text {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_time_quote(unit_text),
                    go_time_quote(text)
                ))
            }
        };
        rest = &rest[unit_len..];
        if whole > LIMIT / unit {
            return Err(invalid());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(value)
            .filter(|&t| t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if negative {
        Ok((total as i64).wrapping_neg())
    } else if total >= LIMIT {
        Err(invalid())
    } else {
        Ok(total as i64)
    }
}

/// How Go's time package quotes input in its errors: ASCII printable characters as
/// they are (with `"` and `\` escaped), every byte of anything else as `\xNN`.
fn go_time_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if (c as u32) < 0x20 || (c as u32) >= 0x80 {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_durations() {
        let s = 1_000_000_000i64;
        for (text, want) in [
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("90s", 90 * s),
            ("1h30m", 5400 * s),
            ("1.5s", 1_500_000_000),
            ("500ms", 500_000_000),
            ("1us", 1_000),
            ("1µs", 1_000),
            ("7ns", 7),
            ("-1m", -60 * s),
            (".5s", 500_000_000),
            ("1.s", s),
            ("72h", 72 * 3600 * s),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
        ] {
            assert_eq!(parse_go_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn go_error_texts() {
        for (text, want) in [
            ("", r#"time: invalid duration """#),
            ("abc", r#"time: invalid duration "abc""#),
            ("-", r#"time: invalid duration "-""#),
            (".s", r#"time: invalid duration ".s""#),
            ("1", r#"time: missing unit in duration "1""#),
            ("1.5", r#"time: missing unit in duration "1.5""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            ("1h2x", r#"time: unknown unit "x" in duration "1h2x""#),
            ("1 s", r#"time: unknown unit " s" in duration "1 s""#),
            (
                "2562047h47m16.854775808s",
                r#"time: invalid duration "2562047h47m16.854775808s""#,
            ),
            (
                "9999999999999999999h",
                r#"time: invalid duration "9999999999999999999h""#,
            ),
            (
                "1é",
                r#"time: unknown unit "\xc3\xa9" in duration "1\xc3\xa9""#,
            ),
            ("1\"", r#"time: unknown unit "\"" in duration "1\"""#),
        ] {
            assert_eq!(parse_go_duration(text), Err(want.to_string()), "{text:?}");
        }
    }
}
