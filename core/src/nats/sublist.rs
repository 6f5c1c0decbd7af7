//! The subscription index: which subscriptions a published subject reaches.
//!
//! A trie keyed by subject tokens, with `*` and `>` branches, and a cache of recent
//! match results (cleared whenever the index changes) so steady traffic costs one hash
//! lookup per message. Results list subscriptions in insertion order, so nothing that
//! reaches the wire depends on hash iteration order.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::subject::is_valid_subject;

/// Index of a subscription in the server's subscription table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubKey(pub u32);

/// What a subject matched: plain subscriptions, and queue subscriptions grouped by queue
/// name (one member of each group gets the message).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Matches {
    pub plain: Vec<SubKey>,
    pub groups: Vec<(Box<[u8]>, Vec<SubKey>)>,
}

impl Matches {
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }
}

#[derive(Default, Debug)]
struct Level {
    literal: FxHashMap<Box<[u8]>, Level>,
    star: Option<Box<Level>>,
    full: Option<Box<Level>>,
    plain: Vec<SubKey>,
    groups: Vec<(Box<[u8]>, Vec<SubKey>)>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.full.is_none()
            && self.plain.is_empty()
            && self.groups.is_empty()
    }

    fn collect(&self, out: &mut Matches) {
        out.plain.extend_from_slice(&self.plain);
        for (name, members) in &self.groups {
            match out.groups.iter_mut().find(|(n, _)| n == name) {
                Some((_, m)) => m.extend_from_slice(members),
                None => out.groups.push((name.clone(), members.clone())),
            }
        }
    }

    fn match_tokens(&self, tokens: &[&[u8]], out: &mut Matches) {
        let Some((first, rest)) = tokens.split_first() else {
            return;
        };
        if let Some(full) = &self.full {
            full.collect(out);
        }
        if let Some(star) = &self.star {
            if rest.is_empty() {
                star.collect(out);
            } else {
                star.match_tokens(rest, out);
            }
        }
        if let Some(next) = self.literal.get(*first) {
            if rest.is_empty() {
                next.collect(out);
            } else {
                next.match_tokens(rest, out);
            }
        }
    }

    /// Removes `key` below this level; returns whether it was found.
    fn remove(&mut self, tokens: &[&[u8]], queue: Option<&[u8]>, key: SubKey) -> bool {
        let Some((first, rest)) = tokens.split_first() else {
            return match queue {
                None => remove_key(&mut self.plain, key),
                Some(q) => {
                    let Some(i) = self.groups.iter().position(|(n, _)| &**n == q) else {
                        return false;
                    };
                    let found = remove_key(&mut self.groups[i].1, key);
                    if self.groups[i].1.is_empty() {
                        self.groups.remove(i);
                    }
                    found
                }
            };
        };
        let found = match *first {
            b"*" => prune_child(&mut self.star, rest, queue, key),
            b">" => prune_child(&mut self.full, rest, queue, key),
            t => match self.literal.get_mut(t) {
                Some(child) => {
                    let found = child.remove(rest, queue, key);
                    if child.is_empty() {
                        self.literal.remove(t);
                    }
                    found
                }
                None => false,
            },
        };
        found
    }
}

fn prune_child(
    slot: &mut Option<Box<Level>>,
    rest: &[&[u8]],
    queue: Option<&[u8]>,
    key: SubKey,
) -> bool {
    let Some(child) = slot else { return false };
    let found = child.remove(rest, queue, key);
    if child.is_empty() {
        *slot = None;
    }
    found
}

fn remove_key(v: &mut Vec<SubKey>, key: SubKey) -> bool {
    match v.iter().position(|k| *k == key) {
        Some(i) => {
            v.remove(i);
            true
        }
        None => false,
    }
}

const CACHE_MAX: usize = 4096;

/// The subscription index with its match cache.
#[derive(Default, Debug)]
pub struct Sublist {
    root: Level,
    cache: FxHashMap<Box<[u8]>, Arc<Matches>>,
    count: usize,
    stats: SublistStats,
}

/// Counters reported by `/subsz`.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SublistStats {
    pub inserts: u64,
    pub removes: u64,
    pub matches: u64,
    pub cache_hits: u64,
    /// Largest number of subscriptions one computed match reached.
    pub max_fanout: usize,
    /// Sum of the fanouts of computed matches, for the average.
    pub fanout_sum: u64,
    pub computed: u64,
}

/// The subject cannot be subscribed to (`-ERR 'Invalid Subject'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid Subject")]
pub struct InvalidSubject;

impl Sublist {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription to `subject`, optionally as a member of queue group `queue`.
    pub fn insert(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        key: SubKey,
    ) -> Result<(), InvalidSubject> {
        if !is_valid_subject(subject) {
            return Err(InvalidSubject);
        }
        let mut level = &mut self.root;
        for token in subject.split(|&b| b == b'.') {
            level = match token {
                b"*" => level.star.get_or_insert_with(Default::default),
                b">" => level.full.get_or_insert_with(Default::default),
                t => level.literal.entry(t.into()).or_default(),
            };
        }
        match queue {
            None => level.plain.push(key),
            Some(q) => match level.groups.iter_mut().find(|(n, _)| &**n == q) {
                Some((_, members)) => members.push(key),
                None => level.groups.push((q.into(), vec![key])),
            },
        }
        self.count += 1;
        self.stats.inserts += 1;
        self.cache.clear();
        Ok(())
    }

    /// Removes a subscription previously inserted with the same subject and queue.
    pub fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, key: SubKey) -> bool {
        let tokens: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
        let found = self.root.remove(&tokens, queue, key);
        if found {
            self.count -= 1;
            self.stats.removes += 1;
            self.cache.clear();
        }
        found
    }

    /// The subscriptions a message published on the literal `subject` reaches.
    pub fn matches(&mut self, subject: &[u8]) -> Arc<Matches> {
        self.stats.matches += 1;
        if let Some(hit) = self.cache.get(subject) {
            self.stats.cache_hits += 1;
            return hit.clone();
        }
        let mut out = Matches::default();
        let tokens: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
        if tokens.iter().all(|t| !t.is_empty()) {
            self.root.match_tokens(&tokens, &mut out);
        }
        let fanout = out.plain.len() + out.groups.iter().map(|g| g.1.len()).sum::<usize>();
        self.stats.max_fanout = self.stats.max_fanout.max(fanout);
        self.stats.fanout_sum += fanout as u64;
        self.stats.computed += 1;
        let out = Arc::new(out);
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(subject.into(), out.clone());
        out
    }

    /// Number of subscriptions in the index.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entries currently held in the match cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn stats(&self) -> SublistStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(m: &Matches) -> Vec<u32> {
        let mut v: Vec<u32> = m.plain.iter().map(|k| k.0).collect();
        for (_, g) in &m.groups {
            v.extend(g.iter().map(|k| k.0));
        }
        v.sort_unstable();
        v
    }

    #[test]
    fn wildcards_and_queues() {
        let mut s = Sublist::new();
        s.insert(b"foo.bar", None, SubKey(1)).unwrap();
        s.insert(b"foo.*", None, SubKey(2)).unwrap();
        s.insert(b"foo.>", None, SubKey(3)).unwrap();
        s.insert(b">", None, SubKey(4)).unwrap();
        s.insert(b"foo.bar", Some(b"q"), SubKey(5)).unwrap();
        s.insert(b"foo.*", Some(b"q"), SubKey(6)).unwrap();
        let m = s.matches(b"foo.bar");
        assert_eq!(keys(&m), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            m.groups.len(),
            1,
            "members of one queue name form one group"
        );
        assert_eq!(keys(&s.matches(b"foo.bar.baz")), vec![3, 4]);
        assert_eq!(keys(&s.matches(b"foo")), vec![4]);
        assert!(s.remove(b"foo.*", None, SubKey(2)));
        assert!(!s.remove(b"foo.*", None, SubKey(2)));
        assert_eq!(keys(&s.matches(b"foo.bar")), vec![1, 3, 4, 5, 6]);
        assert_eq!(s.len(), 5);
        assert_eq!(s.insert(b"foo..bar", None, SubKey(9)), Err(InvalidSubject));
        assert_eq!(s.insert(b"foo.>.bar", None, SubKey(9)), Err(InvalidSubject));
    }

    #[test]
    fn removal_prunes_the_trie() {
        let mut s = Sublist::new();
        s.insert(b"a.b.c", Some(b"q"), SubKey(1)).unwrap();
        s.insert(b"a.*.>", None, SubKey(2)).unwrap();
        assert!(s.remove(b"a.b.c", Some(b"q"), SubKey(1)));
        assert!(s.remove(b"a.*.>", None, SubKey(2)));
        assert!(s.root.is_empty());
        assert!(s.is_empty());
    }

    fn tok() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just("c")]
    }

    proptest! {
        /// The trie agrees with the plain definition of subject matching.
        #[test]
        fn agrees_with_pattern_matching(
            patterns in proptest::collection::vec(proptest::collection::vec(prop_oneof![tok(), Just("*"), Just(">")], 1..4), 1..12),
            subjects in proptest::collection::vec(proptest::collection::vec(tok(), 1..5), 1..12),
        ) {
            let mut s = Sublist::new();
            let mut valid = Vec::new();
            for (i, p) in patterns.iter().enumerate() {
                let p = p.join(".");
                if s.insert(p.as_bytes(), None, SubKey(i as u32)).is_ok() {
                    valid.push((i as u32, p));
                }
            }
            for subj in subjects {
                let subj = subj.join(".");
                let mut want: Vec<u32> = valid.iter().filter(|(_, p)| crate::nats::subject::matches(p.as_bytes(), subj.as_bytes())).map(|(i, _)| *i).collect();
                want.sort_unstable();
                prop_assert_eq!(keys(&s.matches(subj.as_bytes())), want);
            }
        }
    }
}
