//! Who must receive what: acknowledged message numbers per channel, what each
//! subscription received, and the loss and duplicate counts they imply.

/// A growable set of small numbers.
#[derive(Debug, Default, Clone)]
pub struct Bits(Vec<u64>);

impl Bits {
    /// Adds `i`; true if it was there already.
    pub fn insert(&mut self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let had = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        had
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn union_with(&mut self, other: &Bits) {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    /// How many of `self` are missing from `other`.
    pub fn missing_from(&self, other: &Bits) -> u64 {
        self.0
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.0.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

/// How a subscription shares its channel's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Durable,
    /// Member of a queue group; the group as a whole is entitled to each message. `key`
    /// tells groups apart (a durable group differs from a plain one of the same name).
    Queue {
        key: String,
        group: String,
    },
}

/// What one subscription received.
#[derive(Debug, Clone)]
pub struct SubRecord {
    pub channel: usize,
    pub kind: Kind,
    pub received: Bits,
    pub deliveries: u64,
    pub duplicates: u64,
    pub redelivered: u64,
    /// Why the subscription's stream ended before the run did, if it did.
    pub ended: Option<String>,
}

/// Loss and duplicates over all subscriptions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// (subscription or group, acknowledged message) pairs never delivered.
    pub lost: u64,
    /// Deliveries of a message a subscription (or its queue group) already had.
    pub duplicates: u64,
    /// Deliveries the server flagged as redelivered.
    pub redelivered: u64,
    /// Deliveries entitled and made, counted once.
    pub delivered: u64,
}

/// Judges `subs` against `acked[channel]`.
pub fn verdict(acked: &[Bits], subs: &[SubRecord]) -> Verdict {
    let mut v = Verdict::default();
    let mut groups: std::collections::BTreeMap<(usize, &str), (Bits, u64)> = Default::default();
    for s in subs {
        v.redelivered += s.redelivered;
        match &s.kind {
            Kind::Queue { key: g, .. } => {
                let e = groups.entry((s.channel, g)).or_default();
                e.0.union_with(&s.received);
                e.1 += s.deliveries;
            }
            _ => {
                v.lost += acked[s.channel].missing_from(&s.received);
                v.duplicates += s.duplicates;
                v.delivered += s.received.len();
            }
        }
    }
    for ((channel, _), (union, deliveries)) in groups {
        v.lost += acked[channel].missing_from(&union);
        v.duplicates += deliveries - union.len();
        v.delivered += union.len();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[u64]) -> Bits {
        let mut b = Bits::default();
        for &i in v {
            b.insert(i);
        }
        b
    }

    fn rec(kind: Kind, got: &[u64]) -> SubRecord {
        let mut received = Bits::default();
        let mut duplicates = 0;
        for &i in got {
            duplicates += u64::from(received.insert(i));
        }
        SubRecord {
            channel: 0,
            kind,
            received,
            deliveries: got.len() as u64,
            duplicates,
            redelivered: 0,
            ended: None,
        }
    }

    fn q(key: &str) -> Kind {
        Kind::Queue {
            key: key.into(),
            group: key.into(),
        }
    }

    #[test]
    fn loss_and_duplicates() {
        let acked = [bits(&[0, 1, 2, 3, 100])];
        let subs = [
            rec(Kind::Plain, &[0, 1, 2, 3, 100, 100]),
            rec(Kind::Durable, &[0, 2, 3]),
            rec(q("g"), &[0, 1, 100]),
            rec(q("g"), &[2, 100]),
            rec(q("h"), &[5]),
        ];
        let v = verdict(&acked, &subs);
        // Durable lost 1 and 100; group g lost 3; group h lost all five.
        assert_eq!(v.lost, 2 + 1 + 5);
        assert_eq!(v.duplicates, 1 + 1);
    }
}
