//! Idempotency keys (SPEC.md section 5.2): a send whose user and key match one
//! stored within the last `keys` seconds is not stored again.

use std::collections::{HashMap, VecDeque};

use crate::types::{Conversation, IdemKey, Millis, Seq};

/// What a user's earlier send with a key was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentKey {
    /// The conversation, as the sender named it.
    pub conv: Conversation,
    /// The [`fingerprint`] of the conversation and text.
    pub fingerprint: u64,
    /// The sequence number it was stored with.
    pub seq: Seq,
    /// When it was stored.
    pub time: Millis,
}

/// The outcome of looking a key up before a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// Not seen within the window: store the send, then [`SendKeys::remember`] it.
    New,
    /// The same send again: reply with the original sequence number and time,
    /// store and deliver nothing.
    Retry {
        /// The original sequence number.
        seq: Seq,
        /// The original time.
        time: Millis,
    },
    /// The key was used for a different conversation or text: `KEY_CONFLICT`.
    Conflict,
}

/// The keys one user sent within the window, oldest first, at most a number of them
/// (SPEC.md 5.2: the `key-count` most recent).
///
/// What is kept of a key is small: a 64-bit digest of it (SipHash-2-4 with fixed keys:
/// two of a user's 1,024 keys collide by chance once in about 10^13 users, and a
/// collision made on purpose only ever mistakes the maker's own sends), the send's
/// fingerprint, sequence number and time — about 100 bytes a key with the table's
/// and the order's room, measured as the server's memory.
#[derive(Clone, Debug, Default)]
pub struct SendKeys {
    sent: HashMap<u64, Sent>,
    order: VecDeque<(Millis, u64)>,
}

/// What is kept of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    fingerprint: u64,
    seq: Seq,
    time: Millis,
}

/// The digest a key is remembered by.
fn digest(key: &IdemKey) -> u64 {
    use std::hash::{Hash, Hasher};
    // std's SipHasher (2-4) is deprecated only in favour of DefaultHasher, whose
    // algorithm may change between releases; these digests are never stored.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x0123_4567_89ab_cdef, 0x9e37_79b9_7f4a_7c15);
    key.as_str().hash(&mut h);
    h.finish()
}

impl SendKeys {
    /// No keys.
    pub fn new() -> Self {
        SendKeys::default()
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Looks `key` up for a send with this [`fingerprint`] (of its conversation and
    /// text) at `now`, forgetting first the keys older than `window` milliseconds: the
    /// same key for another conversation or text is a conflict.
    pub fn check(
        &mut self,
        key: &IdemKey,
        fingerprint: u64,
        now: Millis,
        window: Millis,
    ) -> KeyCheck {
        self.expire(now, window);
        match self.sent.get(&digest(key)) {
            None => KeyCheck::New,
            Some(s) if s.fingerprint == fingerprint => KeyCheck::Retry { seq: s.seq, time: s.time },
            Some(_) => KeyCheck::Conflict,
        }
    }

    /// Remembers a stored send, forgetting the oldest keys beyond `max` (0: no
    /// bound but the window). A key remembered again replaces the old entry.
    pub fn remember(&mut self, key: IdemKey, sent: SentKey, max: u64) {
        let d = digest(&key);
        self.order.push_back((sent.time, d));
        let kept = Sent { fingerprint: sent.fingerprint, seq: sent.seq, time: sent.time };
        self.sent.insert(d, kept);
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        while max > 0 && self.sent.len() > max {
            let Some((time, d)) = self.order.pop_front() else { break };
            self.forget(time, d);
        }
        // Entries replaced by a later one leave their place in `order` behind: keep
        // it from growing past one and a half times the keys it orders.
        if self.order.len() > self.sent.len() + self.sent.len() / 2 + 16 {
            let sent = &self.sent;
            self.order.retain(|(time, d)| sent.get(d).is_some_and(|s| s.time == *time));
        }
    }

    /// Forgets the keys stored `window` milliseconds or more before `now`.
    pub fn expire(&mut self, now: Millis, window: Millis) {
        while let Some(&(time, d)) = self.order.front() {
            if now < time.saturating_add(window) {
                break;
            }
            self.order.pop_front();
            self.forget(time, d);
        }
    }

    /// Forgets a key's entry if it is still the one stored at `time`: a key
    /// remembered again later stays.
    fn forget(&mut self, time: Millis, d: u64) {
        if self.sent.get(&d).is_some_and(|s| s.time == time) {
            self.sent.remove(&d);
        }
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of a send's conversation and text, to tell
/// a retry from a different send under the same key without keeping the text.
/// Stable across builds and restarts, so a server can store it.
pub fn fingerprint(conv: &Conversation, text: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let (mark, name) = match conv {
        Conversation::Group(g) => (b'#', g.as_bytes()),
        Conversation::Direct(u) => (b'@', u.as_bytes()),
    };
    let mut h = OFFSET;
    for &b in std::iter::once(&mark).chain(name).chain(b" ").chain(text) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(s: &str) -> Conversation {
        s.parse().unwrap()
    }

    #[test]
    fn retry_conflict_and_expiry() {
        let key: IdemKey = "k1".parse().unwrap();
        let mut keys = SendKeys::new();
        let fp = fingerprint(&conv("#rust"), b"hello");
        assert_eq!(keys.check(&key, fp, 0, 1000), KeyCheck::New);
        keys.remember(key, SentKey { conv: conv("#rust"), fingerprint: fp, seq: 7, time: 10 }, 0);
        assert_eq!(keys.check(&key, fp, 500, 1000), KeyCheck::Retry { seq: 7, time: 10 });
        let other = fingerprint(&conv("#rust"), b"hellp");
        assert_eq!(keys.check(&key, other, 500, 1000), KeyCheck::Conflict);
        let moved = fingerprint(&conv("@bob"), b"hello");
        assert_eq!(keys.check(&key, moved, 500, 1000), KeyCheck::Conflict);
        assert_eq!(keys.check(&key, fp, 1010, 1000), KeyCheck::New);
        assert!(keys.is_empty());
    }

    /// SPEC.md 5.2: at most `key-count` keys per user are remembered, the newest; a
    /// retry of an older one is a new send.
    #[test]
    fn at_most_the_newest_keys_are_remembered() {
        let mut keys = SendKeys::new();
        let sent = |seq| SentKey { conv: conv("#g"), fingerprint: seq, seq, time: seq };
        for seq in 0..1_000 {
            keys.remember(format!("k{seq}").parse().unwrap(), sent(seq), 100);
            assert!(keys.len() <= 100);
            assert!(keys.order.len() <= 150 + 16);
        }
        assert_eq!(keys.len(), 100);
        let check = |keys: &mut SendKeys, seq: u64| {
            keys.check(&format!("k{seq}").parse().unwrap(), seq, 1_000, 1 << 40)
        };
        assert_eq!(check(&mut keys, 999), KeyCheck::Retry { seq: 999, time: 999 });
        assert_eq!(check(&mut keys, 900), KeyCheck::Retry { seq: 900, time: 900 });
        assert_eq!(check(&mut keys, 899), KeyCheck::New, "the 101st newest is forgotten");
        // The same key again, over and over: its old places are cleaned up.
        for t in 0..1_000 {
            let again = SentKey { conv: conv("#g"), fingerprint: 1, seq: 1, time: 2_000 + t };
            keys.remember("same".parse().unwrap(), again, 100);
        }
        assert!(keys.order.len() <= keys.len() * 3 / 2 + 16, "{}", keys.order.len());
        // Unbounded (0): only the window forgets.
        let mut all = SendKeys::new();
        for seq in 0..1_000 {
            all.remember(format!("k{seq}").parse().unwrap(), sent(seq), 0);
        }
        assert_eq!(all.len(), 1_000);
    }

    #[test]
    fn fingerprints_tell_conversation_from_text() {
        // "#ab" + " " + "c" must differ from "#a" + " " + "b c".
        assert_ne!(fingerprint(&conv("#ab"), b"c"), fingerprint(&conv("#a"), b"b c"));
        assert_ne!(fingerprint(&conv("#a"), b"x"), fingerprint(&conv("@a"), b"x"));
        // Known answer (FNV-1a of "#a ", computed independently): a server stores
        // these values, so they must not drift.
        assert_eq!(fingerprint(&conv("#a"), b""), 0xcd37_7317_d456_d7ab);
    }
}
