//! Store limits: which channel names are valid, how per-channel entries inherit from the
//! global limits and from each other (BEHAVIOUR §4), and the limits table logged at
//! startup (OPERATIONS §6.3).
//!
//! Per-channel entries are arranged in a subject tree. The order in which that tree lists
//! the entries matching a name is what decides inheritance, so it follows BEHAVIOUR §4.3
//! to the letter, including its less obvious corners (`foo.>` lists `foo.*` after itself).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::timefmt::go_duration;

/// `max_channels` when nothing is configured.
pub const DEFAULT_MAX_CHANNELS: i64 = 100;

/// The per-channel limits applied when nothing is configured.
pub const DEFAULT_CHANNEL_LIMITS: ChannelLimits = ChannelLimits {
    max_msgs: 1_000_000,
    max_bytes: 1_000_000 * 1024,
    max_age: 0,
    max_subscriptions: 1000,
    max_inactivity: 0,
};

/// A channel name as used by publish and subscribe requests (BEHAVIOUR §2.1).
pub fn is_valid_channel(name: &str) -> bool {
    is_valid_name(name, false)
}

/// A per-channel configuration key: a channel name in which `*` and `>` may stand as
/// whole tokens, `>` only as the last one (BEHAVIOUR §2.1).
pub fn is_valid_channel_pattern(name: &str) -> bool {
    is_valid_name(name, true)
}

// Byte-wise on purpose: the rules only concern ASCII separators and wildcards; any other
// byte, whitespace and non-ASCII included, is accepted (BEHAVIOUR §2.1: nothing else is
// checked).
fn is_valid_name(name: &str, wildcards: bool) -> bool {
    let b = name.as_bytes();
    if matches!(b.first(), None | Some(b'.')) {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        let last = i + 1 == b.len();
        match c {
            b'/' => return false,
            b'.' if last || b[i + 1] == b'.' => return false,
            b'*' | b'>' => {
                if !wildcards {
                    return false;
                }
                let whole_token = (i == 0 || b[i - 1] == b'.') && (last || b[i + 1] == b'.');
                if !whole_token || (c == b'>' && !last) {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

fn is_literal(name: &str) -> bool {
    !name.bytes().any(|c| c == b'*' || c == b'>')
}

/// Per-channel limits. Durations in nanoseconds. 0 = unlimited.
///
/// `Default` is all zeros, which for a per-channel entry means "inherit everything"; the
/// built-in global defaults are [`DEFAULT_CHANNEL_LIMITS`]. Field order is the order of
/// the `/streaming/storez` JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChannelLimits {
    pub max_msgs: i64,
    pub max_bytes: i64,
    pub max_age: i64,
    pub max_subscriptions: i64,
    pub max_inactivity: i64,
}

impl ChannelLimits {
    /// BEHAVIOUR §4.3 step 3, field by field: negative is a final "unlimited", zero takes
    /// the parent's already resolved value, positive stays.
    fn inherit_from(&self, parent: &ChannelLimits) -> ChannelLimits {
        let pick = |own: i64, parent: i64| match own {
            v if v < 0 => 0,
            0 => parent,
            v => v,
        };
        ChannelLimits {
            max_msgs: pick(self.max_msgs, parent.max_msgs),
            max_bytes: pick(self.max_bytes, parent.max_bytes),
            max_age: pick(self.max_age, parent.max_age),
            max_subscriptions: pick(self.max_subscriptions, parent.max_subscriptions),
            max_inactivity: pick(self.max_inactivity, parent.max_inactivity),
        }
    }
}

/// Server-wide limits plus the per-channel entries as configured, before resolution.
///
/// In `per_channel`, 0 means "inherit" (the key was absent); the configuration parser
/// has already turned an explicit 0 into -1, and any negative value means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreLimits {
    pub max_channels: i64,
    /// The global per-channel limits, which every entry ultimately inherits from.
    #[serde(flatten)]
    pub channel: ChannelLimits,
    #[serde(rename = "channels", skip_serializing_if = "BTreeMap::is_empty")]
    pub per_channel: BTreeMap<String, ChannelLimits>,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_channels: DEFAULT_MAX_CHANNELS,
            channel: DEFAULT_CHANNEL_LIMITS,
            per_channel: BTreeMap::new(),
        }
    }
}

/// Why a set of limits is refused at startup; `Display` is the exact text of
/// BEHAVIOUR §4.1–4.2, which operators see after `Failed to start: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    #[error("max channels limit cannot be negative ({0})")]
    NegativeMaxChannels(i64),
    #[error("max subscriptions limit cannot be negative ({0})")]
    NegativeMaxSubscriptions(i64),
    #[error("max messages limit cannot be negative ({0})")]
    NegativeMaxMsgs(i64),
    #[error("max bytes limit cannot be negative ({0})")]
    NegativeMaxBytes(i64),
    // Durations read as Go `time.Duration` strings (`-1s`), like every duration in logs.
    #[error("max age limit cannot be negative ({})", go_duration(*.0))]
    NegativeMaxAge(i64),
    #[error("max inactivity limit cannot be negative ({})", go_duration(*.0))]
    NegativeMaxInactivity(i64),
    #[error("invalid channel name {}", crate::gofmt::go_quote(.0))]
    InvalidChannelName(String),
    #[error("too many channels defined ({defined}). The max channels limit is set to {max}")]
    TooManyChannels { defined: i64, max: i64 },
}

impl StoreLimits {
    /// The startup checks of BEHAVIOUR §4.1–4.2, first failure wins.
    ///
    /// Entries are checked in name order, and the literal count is reported at the entry
    /// that first exceeds `max_channels` (so it is always `max + 1`).
    pub fn validate(&self) -> Result<(), LimitsError> {
        let c = &self.channel;
        let negative = [
            (
                self.max_channels,
                LimitsError::NegativeMaxChannels as fn(i64) -> _,
            ),
            (c.max_subscriptions, LimitsError::NegativeMaxSubscriptions),
            (c.max_msgs, LimitsError::NegativeMaxMsgs),
            (c.max_bytes, LimitsError::NegativeMaxBytes),
            (c.max_age, LimitsError::NegativeMaxAge),
            (c.max_inactivity, LimitsError::NegativeMaxInactivity),
        ];
        if let Some((v, err)) = negative.into_iter().find(|(v, _)| *v < 0) {
            return Err(err(v));
        }
        let mut literals = 0i64;
        for name in self.per_channel.keys() {
            if !is_valid_channel_pattern(name) {
                return Err(LimitsError::InvalidChannelName(name.clone()));
            }
            if is_literal(name) {
                literals += 1;
                if self.max_channels > 0 && literals > self.max_channels {
                    return Err(LimitsError::TooManyChannels {
                        defined: literals,
                        max: self.max_channels,
                    });
                }
            }
        }
        Ok(())
    }

    /// Validates, then resolves every entry by the inheritance algorithm of
    /// BEHAVIOUR §4.3.
    pub fn resolve(&self) -> Result<ResolvedLimits, LimitsError> {
        self.validate()?;
        let tree = Tree::new(self.per_channel.keys().cloned().collect());
        let configured: Vec<ChannelLimits> = self.per_channel.values().copied().collect();
        let mut resolved: Vec<Option<ChannelLimits>> = vec![None; configured.len()];
        for entry in tree.walk() {
            let mut parent = self.channel;
            for m in tree.matches(&tree.names[entry]) {
                // An entry met earlier in a wider entry's list keeps what it got there.
                parent = *resolved[m].get_or_insert_with(|| configured[m].inherit_from(&parent));
            }
        }
        let entries = tree
            .names
            .iter()
            .zip(configured.iter().zip(resolved))
            // Every entry is in its own match list, so the fallback is never taken; it
            // only keeps a broken invariant from turning into a panic.
            .map(|(name, (own, r))| {
                (
                    name.clone(),
                    r.unwrap_or_else(|| own.inherit_from(&self.channel)),
                )
            })
            .collect();
        Ok(ResolvedLimits {
            max_channels: self.max_channels,
            channel: self.channel,
            entries,
            tree,
        })
    }
}

/// Limits after inheritance: what channels get, what `/streaming/storez` shows (its
/// `limits` object is this value serialized) and what the startup table prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedLimits {
    max_channels: i64,
    #[serde(flatten)]
    channel: ChannelLimits,
    #[serde(rename = "channels", skip_serializing_if = "BTreeMap::is_empty")]
    entries: BTreeMap<String, ChannelLimits>,
    #[serde(skip)]
    tree: Tree,
}

impl Default for ResolvedLimits {
    fn default() -> Self {
        ResolvedLimits {
            max_channels: DEFAULT_MAX_CHANNELS,
            channel: DEFAULT_CHANNEL_LIMITS,
            entries: BTreeMap::new(),
            tree: Tree::new(Vec::new()),
        }
    }
}

impl ResolvedLimits {
    pub fn max_channels(&self) -> i64 {
        self.max_channels
    }

    /// The global per-channel limits.
    pub fn globals(&self) -> &ChannelLimits {
        &self.channel
    }

    /// Every per-channel entry with its resolved limits, by name.
    pub fn entries(&self) -> &BTreeMap<String, ChannelLimits> {
        &self.entries
    }

    /// The limits a channel of this (literal) name gets when it is created: those of the
    /// narrowest matching entry, else the globals.
    pub fn for_channel(&self, channel: &str) -> ChannelLimits {
        self.tree
            .matches(channel)
            .last()
            .and_then(|&m| self.entries.get(&self.tree.names[m]))
            .copied()
            .unwrap_or(self.channel)
    }

    /// The store-limits table of OPERATIONS §6.3, one string per log line, without any
    /// log prefix.
    pub fn table(&self) -> Vec<String> {
        const TOP: &str = "---------- Store Limits ----------";
        const TITLE: &str = " List of Channels ";
        let g = &self.channel;
        let d = &DEFAULT_CHANNEL_LIMITS;
        let mut lines = vec![
            TOP.to_string(),
            format!(
                "Channels:        {}",
                global_value(self.max_channels, DEFAULT_MAX_CHANNELS, Unit::Count)
            ),
            "--------- Channels Limits --------".to_string(),
        ];
        for (label, value, default, unit) in [
            (
                "Subscriptions",
                g.max_subscriptions,
                d.max_subscriptions,
                Unit::Count,
            ),
            ("Messages     ", g.max_msgs, d.max_msgs, Unit::Count),
            ("Bytes        ", g.max_bytes, d.max_bytes, Unit::Bytes),
            ("Age          ", g.max_age, d.max_age, Unit::Duration),
            (
                "Inactivity   ",
                g.max_inactivity,
                d.max_inactivity,
                Unit::Duration,
            ),
        ] {
            lines.push(format!("  {label}: {}", global_value(value, default, unit)));
        }
        // Only the per-channel lines widen the table (OPERATIONS §6.3); a long global value
        // overflows it instead.
        let mut width = TOP.len();
        if !self.entries.is_empty() {
            let levels = self
                .tree
                .names
                .iter()
                .map(|n| n.split('.').count())
                .max()
                .unwrap_or(0);
            let mut channel_lines = Vec::new();
            for entry in self.tree.walk() {
                let name = &self.tree.names[entry];
                let list = self.tree.matches(name);
                let Some(depth) = list.iter().position(|&m| m == entry) else {
                    continue;
                };
                let limits = self.resolved(entry);
                let parent = match depth {
                    0 => self.channel,
                    _ => self.resolved(list[depth - 1]),
                };
                let left = " ".repeat(depth);
                let right = " ".repeat(levels.saturating_sub(depth));
                let start = channel_lines.len();
                channel_lines.push(format!("{left}{name}"));
                for (label, value, parent, unit) in [
                    (
                        "Subscriptions ",
                        limits.max_subscriptions,
                        parent.max_subscriptions,
                        Unit::Count,
                    ),
                    (
                        "Messages      ",
                        limits.max_msgs,
                        parent.max_msgs,
                        Unit::Count,
                    ),
                    (
                        "Bytes         ",
                        limits.max_bytes,
                        parent.max_bytes,
                        Unit::Bytes,
                    ),
                    (
                        "Age           ",
                        limits.max_age,
                        parent.max_age,
                        Unit::Duration,
                    ),
                    (
                        "Inactivity    ",
                        limits.max_inactivity,
                        parent.max_inactivity,
                        Unit::Duration,
                    ),
                ] {
                    if value != parent {
                        channel_lines.push(format!(
                            "{left} |-> {label}{right}{:>13}",
                            shown(value, unit)
                        ));
                    }
                }
                width = channel_lines[start..]
                    .iter()
                    .map(String::len)
                    .fold(width, usize::max);
            }
            let dashes = width.saturating_sub(TITLE.len());
            lines.push(format!(
                "{}{TITLE}{}",
                "-".repeat(dashes / 2),
                "-".repeat(dashes - dashes / 2)
            ));
            lines.extend(channel_lines);
        }
        lines.push("-".repeat(width));
        lines
    }

    fn resolved(&self, entry: usize) -> ChannelLimits {
        self.entries
            .get(&self.tree.names[entry])
            .copied()
            .unwrap_or(self.channel)
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Count,
    Bytes,
    Duration,
}

fn shown(value: i64, unit: Unit) -> String {
    match (value, unit) {
        (0, _) => "unlimited".to_string(),
        (v, Unit::Count) => v.to_string(),
        (v, Unit::Bytes) => friendly_bytes(v),
        (v, Unit::Duration) => go_duration(v),
    }
}

/// A global line's value: the star marks a limit left at its built-in default.
fn global_value(value: i64, default: i64, unit: Unit) -> String {
    let star = if value == default { " *" } else { "" };
    format!("{:>13}{star}", shown(value, unit))
}

/// A byte count as sizes read in logs (OPERATIONS §6.3): `<n> B` below 1024, else two
/// decimals of the largest power of 1024 (`976.56 MB`, `1.00 MB`).
///
/// Computed in floating point, as the reference output is, so values just below a power
/// of 1024 that round up to it as a float (such as 2^60 - 1) read `1.00 EB`.
pub fn friendly_bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    let bytes = n as f64;
    if bytes < 1024.0 {
        // Rust's shortest float form equals Go's `%v` for every i64 (no exponent below 1e21).
        return format!("{bytes} B");
    }
    let exp = ((bytes.ln() / 1024f64.ln()) as usize).clamp(1, UNITS.len());
    format!(
        "{:.2} {}B",
        bytes / 1024f64.powi(exp as i32),
        UNITS[exp - 1]
    )
}

/// The per-channel entries as a subject tree, giving for any name the list of matching
/// entries from widest to narrowest, in the order BEHAVIOUR §4.3 defines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tree {
    /// Entry names; nodes refer to entries by index into this list.
    names: Vec<String>,
    root: Level,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Level {
    literals: BTreeMap<String, Node>,
    /// The `*` branch.
    any: Option<Box<Node>>,
    /// The `>` branch; nothing lives below it.
    rest: Option<Box<Node>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    entry: Option<usize>,
    next: Level,
}

impl Tree {
    /// `names` must be valid patterns, hence unique and without empty tokens.
    fn new(names: Vec<String>) -> Tree {
        let mut root = Level::default();
        for (index, name) in names.iter().enumerate() {
            let mut level = &mut root;
            let mut node = None;
            for token in name.split('.') {
                let n: &mut Node = match token {
                    "*" => level.any.get_or_insert_with(Box::default),
                    ">" => level.rest.get_or_insert_with(Box::default),
                    t => level.literals.entry(t.to_string()).or_default(),
                };
                level = &mut n.next;
                node = Some(&mut n.entry);
            }
            if let Some(slot) = node {
                *slot = Some(index);
            }
        }
        Tree { names, root }
    }

    fn matches(&self, name: &str) -> Vec<usize> {
        let tokens: Vec<&str> = name.split('.').collect();
        let mut out = Vec::new();
        self.root.collect(&tokens, &mut out);
        out
    }

    /// Every entry, widest first: at each level `>`, then `*` and what lies below it,
    /// then the literal tokens.
    fn walk(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.names.len());
        self.root.walk(&mut out);
        out
    }
}

impl Level {
    fn collect(&self, tokens: &[&str], out: &mut Vec<usize>) {
        let mut level = Some(self);
        let mut any = None;
        let mut exact = None;
        for (i, token) in tokens.iter().enumerate() {
            let Some(l) = level else {
                return;
            };
            out.extend(l.rest.as_ref().and_then(|n| n.entry));
            any = l.any.as_deref();
            if let Some(n) = any {
                n.next.collect(&tokens[i + 1..], out);
            }
            exact = l.literals.get(*token);
            level = exact.map(|n| &n.next);
        }
        // The `*` of the last level visited comes before the exact entry, even when the
        // last token is itself a wildcard: this is why `foo.>` lists `foo.*` after itself.
        out.extend(any.and_then(|n| n.entry));
        out.extend(exact.and_then(|n| n.entry));
    }

    fn walk(&self, out: &mut Vec<usize>) {
        out.extend(self.rest.as_ref().and_then(|n| n.entry));
        if let Some(n) = &self.any {
            out.extend(n.entry);
            n.next.walk(out);
        }
        // OPERATIONS §6.3 leaves sibling literal order unspecified; descending name order
        // is deterministic and is the order of its reference output (`foo` before `baz`).
        // Resolution does not depend on it: entries under different literals never share
        // a match list.
        for n in self.literals.values().rev() {
            out.extend(n.entry);
            n.next.walk(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: i64 = 1_000_000_000;
    const HOUR: i64 = 3600 * SEC;

    fn entry(f: impl FnOnce(&mut ChannelLimits)) -> ChannelLimits {
        let mut c = ChannelLimits::default();
        f(&mut c);
        c
    }

    fn with_entries(entries: &[(&str, ChannelLimits)]) -> StoreLimits {
        let mut sl = StoreLimits::default();
        sl.channel.max_age = 24 * HOUR;
        for (name, limits) in entries {
            sl.per_channel.insert(name.to_string(), *limits);
        }
        sl
    }

    /// BEHAVIOUR §4.3's worked example (an explicit 0 already turned into -1).
    fn behaviour_example() -> StoreLimits {
        with_entries(&[
            ("foo.>", entry(|c| c.max_msgs = 500)),
            ("foo.*", entry(|c| c.max_age = HOUR)),
            (
                "foo.bar",
                entry(|c| {
                    c.max_bytes = 1024 * 1024;
                    c.max_inactivity = -1;
                }),
            ),
            (
                "baz",
                entry(|c| {
                    c.max_subscriptions = -1;
                    c.max_inactivity = 10 * 60 * SEC;
                }),
            ),
        ])
    }

    fn limits(msgs: i64, bytes: i64, age: i64, subs: i64, inactivity: i64) -> ChannelLimits {
        ChannelLimits {
            max_msgs: msgs,
            max_bytes: bytes,
            max_age: age,
            max_subscriptions: subs,
            max_inactivity: inactivity,
        }
    }

    #[test]
    fn behaviour_worked_example_resolves_exactly() {
        let r = behaviour_example().resolve().unwrap();
        let want: BTreeMap<String, ChannelLimits> = [
            ("foo.>", limits(500, 1_024_000_000, 24 * HOUR, 1000, 0)),
            ("foo.*", limits(500, 1_024_000_000, HOUR, 1000, 0)),
            ("foo.bar", limits(500, 1_048_576, HOUR, 1000, 0)),
            (
                "baz",
                limits(1_000_000, 1_024_000_000, 24 * HOUR, 0, 600 * SEC),
            ),
        ]
        .into_iter()
        .map(|(n, l)| (n.to_string(), l))
        .collect();
        assert_eq!(r.entries(), &want);
        assert_eq!(r.for_channel("foo.bar"), want["foo.bar"]);
        assert_eq!(r.for_channel("baz"), want["baz"]);
        assert_eq!(r.for_channel("foo.x.y"), want["foo.>"]);
        assert_eq!(r.for_channel("foo.x"), want["foo.*"]);
        assert_eq!(r.for_channel("foo"), *r.globals());
        assert_eq!(r.for_channel("other"), *r.globals());
        assert_eq!(r.globals().max_age, 24 * HOUR);
    }

    #[test]
    fn match_lists_follow_the_documented_order() {
        let sl = with_entries(&[
            ("foo.>", ChannelLimits::default()),
            ("foo.*", ChannelLimits::default()),
            ("foo.bar", ChannelLimits::default()),
        ]);
        let tree = Tree::new(sl.per_channel.keys().cloned().collect());
        let names = |name: &str| -> Vec<&str> {
            tree.matches(name)
                .iter()
                .map(|&i| tree.names[i].as_str())
                .collect()
        };
        assert_eq!(names("foo.bar"), ["foo.>", "foo.*", "foo.bar"]);
        assert_eq!(names("foo.baz"), ["foo.>", "foo.*"]);
        assert_eq!(names("foo.*"), ["foo.>", "foo.*"]);
        assert_eq!(names("foo.>"), ["foo.>", "foo.*"]);
        assert_eq!(names("foo.a.b"), ["foo.>"]);
        assert!(names("foo").is_empty());
        assert!(names("bar.baz").is_empty());
    }

    #[test]
    fn wider_wildcards_come_first() {
        let sl = with_entries(&[
            (">", entry(|c| c.max_msgs = 10)),
            ("*.b", entry(|c| c.max_bytes = 20)),
            ("a.>", entry(|c| c.max_subscriptions = 30)),
            ("a.b", entry(|c| c.max_age = -1)),
        ]);
        let r = sl.resolve().unwrap();
        let tree = &r.tree;
        let names: Vec<&str> = tree
            .matches("a.b")
            .iter()
            .map(|&i| tree.names[i].as_str())
            .collect();
        assert_eq!(names, [">", "*.b", "a.>", "a.b"]);
        let walk: Vec<&str> = tree
            .walk()
            .iter()
            .map(|&i| tree.names[i].as_str())
            .collect();
        assert_eq!(walk, [">", "*.b", "a.>", "a.b"]);
        // `a.b` inherits along its own list: from `a.>`, which comes last before it,
        // not from `*.b`, whose bytes limit therefore does not reach it.
        assert_eq!(r.entries()["a.b"], limits(10, 1_024_000_000, 0, 30, 0));
        assert_eq!(
            r.entries()["a.>"],
            limits(10, 1_024_000_000, 24 * HOUR, 30, 0)
        );
        assert_eq!(r.entries()["*.b"], limits(10, 20, 24 * HOUR, 1000, 0));
        assert_eq!(r.for_channel("x.b"), limits(10, 20, 24 * HOUR, 1000, 0));
        assert_eq!(r.for_channel("x"), r.entries()[">"]);
    }

    #[test]
    fn operations_worked_example_table() {
        let sl = with_entries(&[
            ("foo.>", entry(|c| c.max_msgs = 500)),
            ("foo.*", entry(|c| c.max_age = HOUR)),
            ("foo.bar", entry(|c| c.max_bytes = 1024 * 1024)),
            (
                "baz",
                entry(|c| {
                    c.max_subscriptions = -1;
                    c.max_inactivity = 10 * 60 * SEC;
                }),
            ),
        ]);
        let want = "\
---------- Store Limits ----------
Channels:                  100 *
--------- Channels Limits --------
  Subscriptions:          1000 *
  Messages     :       1000000 *
  Bytes        :     976.56 MB *
  Age          :       24h0m0s
  Inactivity   :     unlimited *
-------- List of Channels --------
foo.>
 |-> Messages                  500
 foo.*
  |-> Age                   1h0m0s
  foo.bar
   |-> Bytes               1.00 MB
baz
 |-> Subscriptions       unlimited
 |-> Inactivity              10m0s
----------------------------------";
        assert_eq!(sl.resolve().unwrap().table().join("\n"), want);
        // The example of BEHAVIOUR §4.3 differs only by an explicit unlimited inactivity
        // that matches its parent's, hence prints the same.
        assert_eq!(
            behaviour_example().resolve().unwrap().table().join("\n"),
            want
        );
    }

    #[test]
    fn default_table() {
        let want = [
            "---------- Store Limits ----------",
            "Channels:                  100 *",
            "--------- Channels Limits --------",
            "  Subscriptions:          1000 *",
            "  Messages     :       1000000 *",
            "  Bytes        :     976.56 MB *",
            "  Age          :     unlimited *",
            "  Inactivity   :     unlimited *",
            "----------------------------------",
        ];
        assert_eq!(StoreLimits::default().resolve().unwrap().table(), want);
        assert_eq!(
            ResolvedLimits::default(),
            StoreLimits::default().resolve().unwrap()
        );
    }

    #[test]
    fn table_widens_to_the_longest_channel_line() {
        let mut sl = StoreLimits {
            max_channels: 0,
            ..StoreLimits::default()
        };
        sl.channel.max_msgs = 7;
        let long = "a.very.long.channel.name.that.overflows";
        sl.per_channel
            .insert(long.into(), entry(|c| c.max_age = 90 * SEC));
        let table = sl.resolve().unwrap().table();
        let width = table.last().unwrap().len();
        // Depth 0, 7 levels: 5 + 14 + 7 + 13 = 39, the name is 39 as well.
        assert_eq!(width, 39);
        assert_eq!(
            table,
            [
                "---------- Store Limits ----------",
                "Channels:            unlimited",
                "--------- Channels Limits --------",
                "  Subscriptions:          1000 *",
                "  Messages     :             7",
                "  Bytes        :     976.56 MB *",
                "  Age          :     unlimited *",
                "  Inactivity   :     unlimited *",
                "---------- List of Channels -----------",
                long,
                " |-> Age                          1m30s",
                "---------------------------------------",
            ]
        );
        assert_eq!(table[8].len(), 39);
    }

    #[test]
    fn friendly_sizes() {
        assert_eq!(friendly_bytes(0), "0 B");
        assert_eq!(friendly_bytes(500), "500 B");
        assert_eq!(friendly_bytes(1023), "1023 B");
        assert_eq!(friendly_bytes(1024), "1.00 KB");
        assert_eq!(friendly_bytes(1152), "1.12 KB");
        assert_eq!(friendly_bytes(1_048_576), "1.00 MB");
        assert_eq!(friendly_bytes(1_024_000_000), "976.56 MB");
        assert_eq!(friendly_bytes(10 * (1 << 30)), "10.00 GB");
        assert_eq!(friendly_bytes(1 << 40), "1.00 TB");
        assert_eq!(friendly_bytes(1 << 50), "1.00 PB");
        assert_eq!(friendly_bytes((1 << 60) - 1), "1.00 EB");
        assert_eq!(friendly_bytes(i64::MAX), "8.00 EB");
        assert_eq!(friendly_bytes(-5), "-5 B");
    }

    #[test]
    fn duration_and_count_cells() {
        assert_eq!(shown(0, Unit::Duration), "unlimited");
        assert_eq!(shown(1_500_000_000, Unit::Duration), "1.5s");
        assert_eq!(shown(500_000_000, Unit::Duration), "500ms");
        assert_eq!(shown(14 * SEC, Unit::Duration), "14s");
        assert_eq!(global_value(100, 100, Unit::Count), "          100 *");
        assert_eq!(global_value(5, 100, Unit::Count), "            5");
    }

    #[test]
    fn negative_globals_are_refused_with_go_text() {
        type Case = (fn(&mut StoreLimits), &'static str);
        let cases: [Case; 6] = [
            (
                |s| s.max_channels = -1,
                "max channels limit cannot be negative (-1)",
            ),
            (
                |s| s.channel.max_subscriptions = -2,
                "max subscriptions limit cannot be negative (-2)",
            ),
            (
                |s| s.channel.max_msgs = -3,
                "max messages limit cannot be negative (-3)",
            ),
            (
                |s| s.channel.max_bytes = -4,
                "max bytes limit cannot be negative (-4)",
            ),
            (
                |s| s.channel.max_age = -SEC,
                "max age limit cannot be negative (-1s)",
            ),
            (
                |s| s.channel.max_inactivity = -90 * SEC,
                "max inactivity limit cannot be negative (-1m30s)",
            ),
        ];
        for (set, text) in cases {
            let mut sl = StoreLimits::default();
            set(&mut sl);
            assert_eq!(sl.validate().unwrap_err().to_string(), text);
            assert_eq!(sl.resolve().unwrap_err().to_string(), text);
        }
        // The first negative global in the order of BEHAVIOUR §4.1 wins.
        let mut sl = StoreLimits::default();
        sl.channel.max_age = -1;
        sl.channel.max_msgs = -1;
        assert_eq!(sl.validate(), Err(LimitsError::NegativeMaxMsgs(-1)));
    }

    #[test]
    fn bad_entry_names_are_refused() {
        for name in [
            "",
            ".foo",
            "foo.",
            "foo..bar",
            "foo/bar",
            "foo*",
            "fo>o",
            "foo.>.bar",
            "*a",
        ] {
            let mut sl = StoreLimits::default();
            sl.per_channel.insert(name.into(), ChannelLimits::default());
            let err = sl.validate().unwrap_err();
            assert_eq!(err, LimitsError::InvalidChannelName(name.into()));
            assert_eq!(err.to_string(), format!("invalid channel name \"{name}\""));
        }
        let err = LimitsError::InvalidChannelName("a/\"b\"\t\u{200b}é".into());
        assert_eq!(
            err.to_string(),
            r#"invalid channel name "a/\"b\"\t\u200bé""#
        );
    }

    #[test]
    fn too_many_literal_entries() {
        let mut sl = StoreLimits {
            max_channels: 2,
            ..StoreLimits::default()
        };
        for name in ["a", "b", "*", "c.>", "d.*"] {
            sl.per_channel.insert(name.into(), ChannelLimits::default());
        }
        // Patterns do not count.
        assert_eq!(sl.validate(), Ok(()));
        sl.per_channel.insert("c".into(), ChannelLimits::default());
        sl.per_channel.insert("e".into(), ChannelLimits::default());
        let err = sl.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "too many channels defined (3). The max channels limit is set to 2"
        );
        sl.max_channels = 0;
        assert_eq!(sl.validate(), Ok(()));
    }

    #[test]
    fn literal_names() {
        for ok in ["foo", "foo.bar", "a b", "FOO.Bar-1_x", "é.ü", "foo.bar.baz"] {
            assert!(is_valid_channel(ok), "{ok}");
            assert!(is_valid_channel_pattern(ok), "{ok}");
        }
        for bad in [
            "", ".", ".foo", "foo.", "foo..bar", "foo/bar", "/", "*", ">", "foo.*", "a*b",
        ] {
            assert!(!is_valid_channel(bad), "{bad}");
        }
    }

    #[test]
    fn pattern_names() {
        for ok in [
            "*",
            ">",
            "foo.*",
            "foo.>",
            "*.bar",
            "*.*.>",
            "foo.*.bar",
            "a.*.>",
        ] {
            assert!(is_valid_channel_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            ".*",
            "*.",
            "foo.>.bar",
            ">.foo",
            "foo*",
            "*foo",
            "fo*o",
            "foo.>>",
            "foo.**",
            "foo/*",
            "foo..*",
        ] {
            assert!(!is_valid_channel_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn storez_json_shape() {
        let sl = with_entries(&[("foo.>", entry(|c| c.max_msgs = 500))]);
        let json = serde_json::to_value(sl.resolve().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "max_channels": 100,
                "max_msgs": 1000000,
                "max_bytes": 1024000000,
                "max_age": 86400000000000i64,
                "max_subscriptions": 1000,
                "max_inactivity": 0,
                "channels": {
                    "foo.>": {
                        "max_msgs": 500,
                        "max_bytes": 1024000000,
                        "max_age": 86400000000000i64,
                        "max_subscriptions": 1000,
                        "max_inactivity": 0
                    }
                }
            })
        );
        let text = serde_json::to_string(&StoreLimits::default().resolve().unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"max_channels":100,"max_msgs":1000000,"max_bytes":1024000000,"max_age":0,"max_subscriptions":1000,"max_inactivity":0}"#
        );
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*", ">"]), 1..4)
            .prop_map(|tokens| tokens.join("."))
    }

    fn limit_strategy() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(0i64),
            Just(-1i64),
            1i64..1000,
            Just(i64::MIN),
            Just(i64::MAX)
        ]
    }

    fn channel_limits_strategy() -> impl Strategy<Value = ChannelLimits> {
        (
            limit_strategy(),
            limit_strategy(),
            limit_strategy(),
            limit_strategy(),
            limit_strategy(),
        )
            .prop_map(|(m, b, a, s, i)| limits(m, b, a, s, i))
    }

    proptest! {
        #[test]
        fn resolution_never_panics_and_is_never_negative(
            entries in prop::collection::btree_map(name_strategy(), channel_limits_strategy(), 0..12),
            globals in channel_limits_strategy(),
            max_channels in 0i64..4,
            channels in prop::collection::vec(
                prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 1..5)
                    .prop_map(|t| t.join(".")),
                1..8,
            ),
        ) {
            let sl = StoreLimits { max_channels, channel: globals, per_channel: entries };
            let Ok(r) = sl.resolve() else {
                // Refusals are fine; only the valid configurations must resolve.
                prop_assert!(sl.validate().is_err());
                return Ok(());
            };
            let non_negative = |c: &ChannelLimits| {
                c.max_msgs >= 0 && c.max_bytes >= 0 && c.max_age >= 0
                    && c.max_subscriptions >= 0 && c.max_inactivity >= 0
            };
            prop_assert_eq!(r.entries().len(), sl.per_channel.len());
            for limits in r.entries().values() {
                prop_assert!(non_negative(limits));
            }
            for channel in &channels {
                let got = r.for_channel(channel);
                prop_assert!(non_negative(&got));
                if let Some(own) = r.entries().get(channel) {
                    prop_assert_eq!(&got, own);
                }
            }
            let table = r.table();
            let width = table.last().map(String::len).unwrap_or(0);
            prop_assert!(width >= 34);
            // Global lines may outgrow the table (a 19-digit count does): only the
            // per-channel lines set its width.
            for line in table.iter().skip(8) {
                prop_assert!(line.len() <= width, "{} > {}", line, width);
            }
        }

        #[test]
        fn literal_validity_agrees_with_its_definition(name in "[a-c./*> ]{0,8}") {
            let b = name.as_bytes();
            let expected = !b.is_empty()
                && b[0] != b'.'
                && !name.contains('/')
                && !name.ends_with('.')
                && !name.contains("..")
                && !name.contains('*')
                && !name.contains('>');
            prop_assert_eq!(is_valid_channel(&name), expected);
            if expected {
                prop_assert!(is_valid_channel_pattern(&name));
            }
            if is_valid_channel_pattern(&name) {
                for token in name.split('.') {
                    let wild = token.contains('*') || token.contains('>');
                    prop_assert!(!wild || token == "*" || token == ">");
                }
                prop_assert!(!name.contains('>') || name.ends_with('>'));
            }
        }
    }
}
