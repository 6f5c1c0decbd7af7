//! The value tree a configuration file parses into.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where a key was written: the file (as named by whoever supplied its text) and the
/// 1-based line of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
}

/// A value of the configuration language.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Map(Map),
    Array(Vec<Value>),
    String(String),
    /// Size suffixes are already applied: `1KB` is 1024.
    Integer(i64),
    Float(f64),
    Bool(bool),
    Datetime(Datetime),
}

/// A Zulu datetime, `2016-05-04T18:53:41Z`, already checked to be a real date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datetime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// One `key: value` of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key as written; case is kept because per-channel entries are channel names.
    pub key: String,
    pub value: Value,
    pub pos: Pos,
    /// Some other value referred to this key as `$key`. The NATS server does not call
    /// such a key unknown, since it may exist only to be referred to.
    pub used_as_variable: bool,
}

/// The entries of a `{ }` block or of a whole file.
///
/// Keys are compared exactly when a later entry replaces an earlier one, because the
/// Go parser stores them in a map keyed by the text as written: `Foo` and `foo` are two
/// entries. Readers match names case-insensitively with [`Map::get`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    entries: Vec<Entry>,
    by_key: BTreeMap<String, usize>,
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    /// Adds `entry` last, dropping an earlier entry with the very same key: the order
    /// of entries is the order in which their values were last written.
    pub fn insert(&mut self, entry: Entry) {
        if let Some(i) = self.by_key.remove(&entry.key) {
            self.entries.remove(i);
            for at in self.by_key.values_mut() {
                if *at > i {
                    *at -= 1;
                }
            }
        }
        self.by_key.insert(entry.key.clone(), self.entries.len());
        self.entries.push(entry);
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose key is `key` in any case; the last one written when several
    /// spellings exist.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key.to_lowercase() == key.to_lowercase())
    }

    /// The entry whose key is exactly `key`.
    pub fn get_exact(&self, key: &str) -> Option<&Entry> {
        self.by_key.get(key).map(|&i| &self.entries[i])
    }

    pub(crate) fn get_exact_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.by_key.get(key).map(|&i| &mut self.entries[i])
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl Value {
    /// The Go `reflect.Kind` name of the value, as the streaming server's type errors
    /// show it.
    pub fn go_kind(&self) -> &'static str {
        match self {
            Value::Map(_) => "map",
            Value::Array(_) => "slice",
            Value::String(_) => "string",
            Value::Integer(_) => "int64",
            Value::Float(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Datetime(_) => "struct",
        }
    }

    /// The Go type name of the value (`%T`), as the NATS server's errors show it.
    pub fn go_type(&self) -> &'static str {
        match self {
            Value::Map(_) => "map[string]interface {}",
            Value::Array(_) => "[]interface {}",
            Value::String(_) => "string",
            Value::Integer(_) => "int64",
            Value::Float(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Datetime(_) => "time.Time",
        }
    }
}

/// Go's `%v` rendering, which the "got <v>" part of error messages uses: maps as
/// `map[k:v ...]` with sorted keys, arrays as `[a b]`, strings bare.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.write_str(s),
            Value::Integer(n) => write!(f, "{n}"),
            Value::Float(x) => f.write_str(&go_float(*x)),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Datetime(d) => write!(f, "{d}"),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                let mut sorted: Vec<&Entry> = map.iter().collect();
                sorted.sort_by(|a, b| a.key.cmp(&b.key));
                f.write_str("map[")?;
                for (i, e) in sorted.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{}:{}", e.key, e.value)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Datetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Go's `%v` of a float64: the shortest digits that read back exactly, in exponent
/// form (at least two exponent digits) when the exponent is below -4 or at least 6.
fn go_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{x}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_formatting() {
        for (x, want) in [
            (1.5, "1.5"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e10, "-2.5e+10"),
            (0.0, "0"),
            (1e100, "1e+100"),
        ] {
            assert_eq!(go_float(x), want, "{x}");
        }
    }
}
