//! Idempotency keys (SPEC.md section 5.2): a send whose user and key match one
//! stored within the last `keys` seconds is not stored again.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

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
    sent: HashMap<u64, Sent, BuildHasherDefault<DigestHasher>>,
    order: VecDeque<(Millis, u64)>,
}

/// What is kept of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    fingerprint: u64,
    seq: Seq,
    time: Millis,
}

/// The table's hasher: a key's digest is already a keyed hash, so it is used as
/// it is instead of being hashed again (profiles had the table's SipHash in every
/// SEND). A user who makes their own digests collide slows only their own table.
#[derive(Clone, Copy, Debug, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed here; any other input still spreads.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
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

    /// Looks `key` up for a send to `conv` of `text`, whose [`fingerprint`] is
    /// `fingerprint`, at `now`, forgetting first the keys older than `window`
    /// milliseconds: the same key for another conversation or text is a conflict.
    /// A key remembered with a [`fingerprint_fnv`] (stored by an older server) is
    /// recognised too.
    pub fn check(
        &mut self,
        key: &IdemKey,
        (conv, text): (&Conversation, &[u8]),
        fingerprint: u64,
        now: Millis,
        window: Millis,
    ) -> KeyCheck {
        self.expire(now, window);
        match self.sent.get(&digest(key)) {
            None => KeyCheck::New,
            Some(s)
                if s.fingerprint == fingerprint || s.fingerprint == fingerprint_fnv(conv, text) =>
            {
                KeyCheck::Retry { seq: s.seq, time: s.time }
            }
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

/// A stable 64-bit fingerprint of a send's conversation and text, to tell a retry
/// from a different send under the same key without keeping the text. Stable
/// across builds and restarts, so a server can store it.
///
/// It reads the text eight bytes at a time: the fingerprint of every SEND showed
/// in profiles when it went a byte at a time ([`fingerprint_fnv`], what servers
/// stored before, and what [`SendKeys::check`] still recognises).
pub fn fingerprint(conv: &Conversation, text: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(31);
    let words = |mut h: u64, bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = mix(h, u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            h = mix(h, u64::from_le_bytes(w));
        }
        h
    };
    let (mark, name) = match conv {
        Conversation::Group(g) => (b'#', g.as_bytes()),
        Conversation::Direct(u) => (b'@', u.as_bytes()),
    };
    // Each part's length goes in before it, so no two splits of the same bytes
    // between name and text agree.
    let mut h = mix(0x2545_f491_4f6c_dd1d, u64::from(mark));
    h = words(mix(h, name.len() as u64), name);
    h = words(mix(h, text.len() as u64), text);
    // The finish of MurmurHash3's 64-bit mix: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The fingerprint servers stored before [`fingerprint`] (FNV-1a, a byte at a
/// time): still compared, so that a retry of a send stored by an older server is
/// recognised.
pub fn fingerprint_fnv(conv: &Conversation, text: &[u8]) -> u64 {
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
        let send = |c: &str, text: &'static [u8]| (conv(c), text, fingerprint(&conv(c), text));
        let check = |keys: &mut SendKeys, (c, text, fp): (Conversation, &[u8], u64), now| {
            keys.check(&key, (&c, text), fp, now, 1000)
        };
        let hello = send("#rust", b"hello");
        assert_eq!(check(&mut keys, hello, 0), KeyCheck::New);
        keys.remember(
            key,
            SentKey { conv: conv("#rust"), fingerprint: hello.2, seq: 7, time: 10 },
            0,
        );
        assert_eq!(check(&mut keys, hello, 500), KeyCheck::Retry { seq: 7, time: 10 });
        assert_eq!(check(&mut keys, send("#rust", b"hellp"), 500), KeyCheck::Conflict);
        assert_eq!(check(&mut keys, send("@bob", b"hello"), 500), KeyCheck::Conflict);
        assert_eq!(check(&mut keys, hello, 1010), KeyCheck::New);
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
            keys.check(&format!("k{seq}").parse().unwrap(), (&conv("#g"), b""), seq, 1_000, 1 << 40)
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
        for f in [fingerprint, fingerprint_fnv] {
            // "#ab" + " " + "c" must differ from "#a" + " " + "b c".
            assert_ne!(f(&conv("#ab"), b"c"), f(&conv("#a"), b"b c"));
            assert_ne!(f(&conv("#a"), b"x"), f(&conv("@a"), b"x"));
            assert_ne!(f(&conv("#a"), b"x"), f(&conv("#a"), b"x\0"));
        }
        // Every byte of a long text counts, in the last partial word too.
        let text = [b'x'; 29];
        for i in 0..text.len() {
            let mut other = text;
            other[i] ^= 1;
            assert_ne!(
                fingerprint(&conv("#a"), &text),
                fingerprint(&conv("#a"), &other),
                "byte {i}"
            );
        }
        // Known answers: a server stores these values, so they must not drift. The
        // FNV-1a one was computed independently; the other is this function's own.
        assert_eq!(fingerprint_fnv(&conv("#a"), b""), 0xcd37_7317_d456_d7ab);
        assert_eq!(fingerprint(&conv("#a"), b"hello"), KNOWN);
    }

    /// What [`fingerprint`] of `#a` and `hello` is, for good.
    const KNOWN: u64 = 0x0143_d9cb_9c9b_f225;

    /// A key an older server stored (with the FNV-1a fingerprint) is still a retry.
    #[test]
    fn a_key_stored_with_the_old_fingerprint_is_still_recognised() {
        let key: IdemKey = "k1".parse().unwrap();
        let mut keys = SendKeys::new();
        let old = fingerprint_fnv(&conv("#rust"), b"hello");
        keys.remember(key, SentKey { conv: conv("#rust"), fingerprint: old, seq: 7, time: 10 }, 0);
        let now = fingerprint(&conv("#rust"), b"hello");
        assert_ne!(now, old);
        assert_eq!(
            keys.check(&key, (&conv("#rust"), b"hello"), now, 500, 1000),
            KeyCheck::Retry { seq: 7, time: 10 }
        );
        let other = fingerprint(&conv("#rust"), b"hellp");
        assert_eq!(
            keys.check(&key, (&conv("#rust"), b"hellp"), other, 500, 1000),
            KeyCheck::Conflict
        );
    }
}
