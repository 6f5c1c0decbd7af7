//! Scalars of the configuration language: quoted, escaped and block strings, and the
//! values that start with a digit or `-`, which the Go lexer reads as integers,
//! floats, datetimes or strings depending on what follows the digits.

use super::parse::{is_newline, is_space, PResult, Parser};
use super::value::{Datetime, Value};

/// Size suffixes start with one of these letters (OPERATIONS §2.2 table).
fn is_size_letter(c: char) -> bool {
    matches!(c.to_ascii_lowercase(), 'k' | 'm' | 'g' | 't' | 'p' | 'e')
}

impl Parser<'_, '_, '_> {
    /// The escape after a `\`, appended to `out`.
    pub(super) fn escape(&mut self, out: &mut Vec<u8>) -> PResult<()> {
        let c = self.bump();
        match c {
            Some('t') => out.push(b'\t'),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('"') => out.push(b'"'),
            Some('\\') => out.push(b'\\'),
            // `\xNN` is one byte, which may not be valid UTF-8 on its own.
            Some('x') => {
                let digits = self.hex_digits(2)?;
                out.push(digits as u8);
            }
            Some(u @ ('u' | 'U')) => {
                let code = self.hex_digits(if u == 'u' { 4 } else { 8 })?;
                let c = char::from_u32(code).ok_or_else(|| {
                    self.error(format!("Invalid unicode escape: code point {code:#x} is not a character"))
                })?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            c => {
                return Err(self.error(format!(
                    "Invalid escape character '{}'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\, \\uXXXX, \\UXXXXXXXX.",
                    Self::shown(c)
                )))
            }
        }
        Ok(())
    }

    fn hex_digits(&mut self, count: usize) -> PResult<u32> {
        let mut code = 0u32;
        let mut text = String::new();
        for _ in 0..count {
            match self.peek() {
                Some(c) if is_newline(c) => {
                    return Err(self.error(format!(
                    "Expected {count} hexadecimal digits in escape sequence, but hit end of line"
                )))
                }
                Some(c) => {
                    self.bump();
                    text.push(c);
                    match c.to_digit(16) {
                        Some(d) => code = code * 16 + d,
                        None => {
                            return Err(self.error(format!(
                                "Expected {count} hexadecimal digits in escape sequence, but got '{text}'"
                            )))
                        }
                    }
                }
                None => {
                    return Err(self.error(format!(
                    "Expected {count} hexadecimal digits in escape sequence, but hit end of file"
                )))
                }
            }
        }
        Ok(code)
    }

    pub(super) fn double_quoted(&mut self) -> PResult<Value> {
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return Err(self.error("Unexpected EOF processing quoted string.")),
                Some('"') => break,
                Some('\\') => self.escape(&mut out)?,
                Some(c) => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        Ok(Value::String(String::from_utf8_lossy(&out).into_owned()))
    }

    /// `( ... )`: raw text up to a line holding only `)`; the newline before that line
    /// belongs to the text.
    pub(super) fn block(&mut self) -> PResult<Value> {
        let start = self.at;
        loop {
            let before = self.src[..self.at].ends_with('\n');
            match self.bump() {
                None => return Err(self.error("Unexpected EOF processing block.")),
                Some(')') if before && matches!(self.peek(), None | Some('\n')) => {
                    let end = self.at - 1;
                    return Ok(Value::String(self.src[start..end].to_string()));
                }
                Some(_) => {}
            }
        }
    }

    fn digits(&mut self) {
        self.skip_while(|c| c.is_ascii_digit());
    }

    /// After the integer digits of a value: whether the value ends here, as the Go
    /// lexer decides for numbers.
    fn ends_number(c: Option<char>) -> bool {
        match c {
            None => true,
            Some(c) => {
                is_newline(c)
                    || is_space(c)
                    || c.is_ascii_digit()
                    || matches!(c, '}' | ';' | ',' | ']')
            }
        }
    }

    /// A value starting with a digit: integer (maybe with a size suffix), float,
    /// datetime, dotted address (`127.0.0.1:4222`) or string (`10s`, `24h`).
    pub(super) fn number(&mut self) -> PResult<Value> {
        let start = self.at;
        self.digits();
        match self.peek() {
            Some('-') => {
                if self.at - start != 4 {
                    return Err(self.error("All ISO8601 dates must be in full Zulu form."));
                }
                self.bump();
                self.datetime(start)
            }
            Some('.') => {
                self.bump();
                self.fraction(start)
            }
            Some(c) if is_size_letter(c) => {
                self.bump();
                self.skip_while(|c| matches!(c, 'b' | 'B' | 'i' | 'I'));
                if Self::ends_number(self.peek()) {
                    self.integer(start)
                } else {
                    self.unquoted(start)
                }
            }
            c if Self::ends_number(c) => self.integer(start),
            _ => self.unquoted(start),
        }
    }

    pub(super) fn negative_number(&mut self) -> PResult<Value> {
        let start = self.at - 1;
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {}
            Some('.') => return Err(self.error("Floats must start with a digit, not '.'.")),
            c => return Err(self.error(format!("Expected a digit but got '{}'.", Self::shown(c)))),
        }
        self.digits();
        match self.peek() {
            Some('.') => {
                self.bump();
                self.fraction(start)
            }
            Some(c) if is_size_letter(c) => {
                self.bump();
                self.skip_while(|c| matches!(c, 'b' | 'B' | 'i' | 'I'));
                if Self::ends_number(self.peek()) {
                    self.integer(start)
                } else {
                    self.unquoted(start)
                }
            }
            _ => self.integer(start),
        }
    }

    /// After `<digits>.`: a float, or a dotted address when a second dot follows.
    fn fraction(&mut self, start: usize) -> PResult<Value> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {}
            c => {
                return Err(self.error(format!(
                    "Floats must have a digit after the '.', but got '{}' instead.",
                    Self::shown(c)
                )))
            }
        }
        self.digits();
        if self.peek() == Some('.') {
            self.skip_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '-'));
            return Ok(Value::String(self.src[start..self.at].to_string()));
        }
        let text = &self.src[start..self.at];
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Value::Float(x)),
            _ => Err(self.error(format!("float '{text}' is out of the range"))),
        }
    }

    /// `src[start..at]`: optional `-`, digits, optional size suffix.
    fn integer(&mut self, start: usize) -> PResult<Value> {
        let text = &self.src[start..self.at];
        let digits_end = text
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(text.len(), |(i, _)| i);
        let (digits, suffix) = text.split_at(digits_end);
        let out_of_range = || self.error(format!("integer '{text}' is out of the range"));
        let number: i64 = digits.parse().map_err(|_| out_of_range())?;
        let suffix = suffix.to_ascii_lowercase();
        let (power, base): (u32, i64) = match suffix.as_bytes() {
            [] => (0, 1),
            [unit] => (size_power(*unit), 1000),
            [unit, b'b' | b'i'] | [unit, b'i', b'b'] => (size_power(*unit), 1024),
            // `1kbb` and the like: the Go lexer takes it for a number but no size;
            // it is kept as text.
            _ => return Ok(Value::String(text.to_string())),
        };
        base.checked_pow(power)
            .and_then(|m| number.checked_mul(m))
            .map(Value::Integer)
            .ok_or_else(out_of_range)
    }

    /// After `YYYY-`: the rest of `YYYY-MM-DDTHH:MM:SSZ`.
    fn datetime(&mut self, start: usize) -> PResult<Value> {
        for expected in "00-00T00:00:00Z".chars() {
            let c = self.bump();
            let ok = match expected {
                '0' => c.is_some_and(|c| c.is_ascii_digit()),
                e => c == Some(e),
            };
            if !ok {
                let what = if expected == '0' {
                    "digit".to_string()
                } else {
                    format!("'{expected}'")
                };
                return Err(self.error(format!(
                    "Expected {what} in ISO8601 datetime, but found '{}' instead.",
                    Self::shown(c)
                )));
            }
        }
        let text = &self.src[start..self.at];
        let field = |range: std::ops::Range<usize>| text[range].parse::<u16>().unwrap_or(0);
        let d = Datetime {
            year: field(0..4),
            month: field(5..7) as u8,
            day: field(8..10) as u8,
            hour: field(11..13) as u8,
            minute: field(14..16) as u8,
            second: field(17..19) as u8,
        };
        let leap =
            d.year.is_multiple_of(4) && (!d.year.is_multiple_of(100) || d.year.is_multiple_of(400));
        let days = match d.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => 0,
        };
        if d.day == 0 || d.day > days || d.hour > 23 || d.minute > 59 || d.second > 59 {
            return Err(self.error(format!(
                "expected Zulu formatted DateTime, but got '{text}'"
            )));
        }
        Ok(Value::Datetime(d))
    }
}

fn size_power(unit: u8) -> u32 {
    match unit {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => 6,
    }
}
