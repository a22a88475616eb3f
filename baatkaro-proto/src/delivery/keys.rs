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

/// The keys one user sent within the window, oldest first for expiry.
#[derive(Clone, Debug, Default)]
pub struct SendKeys {
    sent: HashMap<IdemKey, SentKey>,
    order: VecDeque<(Millis, IdemKey)>,
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

    /// Looks `key` up for a send to `conv` with this fingerprint at `now`, forgetting
    /// first the keys older than `window` milliseconds.
    pub fn check(
        &mut self,
        key: &IdemKey,
        conv: Conversation,
        fingerprint: u64,
        now: Millis,
        window: Millis,
    ) -> KeyCheck {
        self.expire(now, window);
        match self.sent.get(key) {
            None => KeyCheck::New,
            Some(s) if s.conv == conv && s.fingerprint == fingerprint => {
                KeyCheck::Retry { seq: s.seq, time: s.time }
            }
            Some(_) => KeyCheck::Conflict,
        }
    }

    /// Remembers a stored send. A key remembered again replaces the old entry.
    pub fn remember(&mut self, key: IdemKey, sent: SentKey) {
        self.order.push_back((sent.time, key));
        self.sent.insert(key, sent);
    }

    /// Forgets the keys stored `window` milliseconds or more before `now`.
    pub fn expire(&mut self, now: Millis, window: Millis) {
        while let Some(&(time, key)) = self.order.front() {
            if now < time.saturating_add(window) {
                break;
            }
            self.order.pop_front();
            // Only if the entry is this one: a key remembered again later stays.
            if self.sent.get(&key).is_some_and(|s| s.time == time) {
                self.sent.remove(&key);
            }
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
        assert_eq!(keys.check(&key, conv("#rust"), fp, 0, 1000), KeyCheck::New);
        keys.remember(key, SentKey { conv: conv("#rust"), fingerprint: fp, seq: 7, time: 10 });
        assert_eq!(
            keys.check(&key, conv("#rust"), fp, 500, 1000),
            KeyCheck::Retry { seq: 7, time: 10 }
        );
        let other = fingerprint(&conv("#rust"), b"hellp");
        assert_eq!(keys.check(&key, conv("#rust"), other, 500, 1000), KeyCheck::Conflict);
        let moved = fingerprint(&conv("@bob"), b"hello");
        assert_eq!(keys.check(&key, conv("@bob"), moved, 500, 1000), KeyCheck::Conflict);
        assert_eq!(keys.check(&key, conv("#rust"), fp, 1010, 1000), KeyCheck::New);
        assert!(keys.is_empty());
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
