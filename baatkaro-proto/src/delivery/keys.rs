//! Idempotency keys (SPEC.md section 5.2): a send whose user and key match one
//! stored within the last `keys` seconds is not stored again.

use std::collections::VecDeque;

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

/// What a key is remembered by: a 64-bit digest of it (SipHash-2-4 keyed with the
/// server's [`DigestSeed`]). Two of a user's 1,024 keys collide by chance once in
/// about 10^13 users, and a collision made on purpose only ever mistakes the
/// maker's own sends. Computed once per send, for both [`SendKeys::check`] and
/// [`SendKeys::remember`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyDigest(u64);

impl KeyDigest {
    /// The digest of `key` under `seed`.
    pub fn of(key: &IdemKey, seed: &DigestSeed) -> KeyDigest {
        use std::hash::{Hash, Hasher};
        // std's SipHasher (2-4) is deprecated only in favour of DefaultHasher, whose
        // algorithm may change between releases; these digests are never stored.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(seed.0, seed.1);
        // The key's bytes and its terminating zero in one write (a `str` would be
        // two: its bytes, then a marker byte on its own).
        key.hash(&mut h);
        KeyDigest(h.finish())
    }
}

/// The secret a server keys its [`KeyDigest`]s with, drawn at random when it starts
/// (digests are never stored, so a new one each start costs nothing). Keys chosen
/// to share an index slot under a seed anyone knows would make every lookup of
/// their maker's keys walk all of them; under a secret seed they cannot be chosen.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestSeed(u64, u64);

impl DigestSeed {
    /// A seed from 16 unpredictable bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> DigestSeed {
        let both = u128::from_le_bytes(bytes);
        DigestSeed(both as u64, (both >> 64) as u64)
    }
}

impl std::fmt::Debug for DigestSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret: its value is never logged.
        f.write_str("DigestSeed(..)")
    }
}

/// The keys of one user's newest sends within the window, oldest first, at most a
/// number of them (SPEC.md 5.2: the `key-count` most recent sends).
///
/// The sends are a ring in the order they were stored, so the oldest is always
/// the one to forget; a small open-addressing index maps a digest to its place in
/// the ring. A SEND then costs one random memory access to tell a new key (the
/// index slot, which holds enough of the digest to tell most keys apart without
/// reading the ring) and one to forget the oldest; a hash map beside an order
/// queue cost about twice that, and `remember` showed in the server's profile at
/// 10 groups × 10. Memory: 32 bytes a send in the ring, 16 to 32 a key in the
/// index.
#[derive(Clone, Debug, Default)]
pub struct SendKeys {
    /// The sends, oldest first. One whose key was remembered again later stays
    /// until it leaves, but the index no longer points at it.
    ring: VecDeque<Sent>,
    /// The place, counted from the first send ever remembered, of `ring[0]`.
    first: u64,
    /// Open addressing with linear probing; empty, or a power of two long and
    /// never more than half full.
    index: Vec<Slot>,
    /// Keys in the index.
    live: usize,
}

/// What is kept of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    digest: u64,
    fingerprint: u64,
    seq: Seq,
    time: Millis,
}

/// One slot of the index: the place of a send in the ring (as the low 32 bits of
/// its count; the ring never holds 2^32 sends) and the high half of its digest,
/// with the low bit set so that an empty slot (all zero) is never a key's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    tag: u32,
    place: u32,
}

impl Slot {
    fn is_empty(self) -> bool {
        self.tag == 0
    }
}

/// The tag an index slot holds for `digest`.
fn tag(digest: u64) -> u32 {
    (digest >> 32) as u32 | 1
}

/// At most this many sends are kept whatever `max` says, so that a place fits the
/// index's 32 bits with room to tell old from new (far above what a rate limit
/// lets a user send within a window).
const RING_MAX: usize = 1 << 31;

impl SendKeys {
    /// No keys.
    pub fn new() -> Self {
        SendKeys::default()
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Looks `key` up for a send to `conv` of `text`, whose [`fingerprint`] is
    /// `fingerprint`, at `now`, forgetting first the keys older than `window`
    /// milliseconds: the same key for another conversation or text is a conflict.
    /// A key remembered with a [`fingerprint_serial`] or a [`fingerprint_fnv`]
    /// (stored by an older server) is recognised too.
    pub fn check(
        &mut self,
        key: KeyDigest,
        (conv, text): (&Conversation, &[u8]),
        fingerprint: u64,
        now: Millis,
        window: Millis,
    ) -> KeyCheck {
        self.expire(now, window);
        let Some(slot) = self.lookup(key.0) else { return KeyCheck::New };
        let s = self.ring[self.offset(self.index[slot].place)];
        // The older forms only when the current one differs: a retry stored by this
        // server, or any conflict.
        if s.fingerprint == fingerprint
            || s.fingerprint == fingerprint_serial(conv, text)
            || s.fingerprint == fingerprint_fnv(conv, text)
        {
            KeyCheck::Retry { seq: s.seq, time: s.time }
        } else {
            KeyCheck::Conflict
        }
    }

    /// Remembers a stored send, forgetting the oldest sends beyond the newest `max`
    /// (0: no bound but the window). A key remembered again is known by its newest
    /// send from then on.
    pub fn remember(&mut self, key: KeyDigest, sent: SentKey, max: u64) {
        let max = kept(max);
        while self.ring.len() >= max {
            self.forget_oldest();
        }
        let place = self.first.wrapping_add(self.ring.len() as u64) as u32;
        let d = key.0;
        // Looked up before the new send is in the ring, so that an earlier send
        // with the key is what it finds.
        let again = self.lookup(d);
        self.ring.push_back(Sent {
            digest: d,
            fingerprint: sent.fingerprint,
            seq: sent.seq,
            time: sent.time,
        });
        match again {
            Some(slot) => self.index[slot].place = place,
            None => {
                if (self.live + 1) * 2 > self.index.len() {
                    self.grow();
                }
                let mask = self.index.len() - 1;
                let mut i = home(tag(d), mask);
                while !self.index[i].is_empty() {
                    i = (i + 1) & mask;
                }
                self.index[i] = Slot { tag: tag(d), place };
                self.live += 1;
            }
        }
    }

    /// Reads, changing nothing, the index slots that checking and then remembering
    /// the new sends `keys` (in order, at most `max` kept, as [`SendKeys::remember`]
    /// takes it) will read first: each key's home slot, and that of each oldest send
    /// the ring forgets to make room.
    ///
    /// A caller with several sends of one user at hand calls it before handling
    /// them, so that the slots come into the cache together rather than one miss
    /// after another: with many users' keys the index is larger than the core's
    /// cache, and each of those slots is a miss (three quarters of `check`'s time
    /// and most of `forget_oldest`'s at 10 groups × 10, with a SEND's other work
    /// between them keeping the processor from overlapping them). The loads here
    /// depend on nothing but the keys and the ring, so they overlap.
    pub fn warm(&self, keys: &[KeyDigest], max: u64) {
        if self.index.is_empty() || keys.is_empty() {
            return;
        }
        let mask = self.index.len() - 1;
        let mut seen = 0u32;
        for key in keys {
            seen ^= self.index[home(tag(key.0), mask)].tag;
        }
        let forgotten = (self.ring.len() + keys.len()).saturating_sub(kept(max));
        for oldest in self.ring.iter().take(forgotten.min(keys.len())) {
            seen ^= self.index[home(tag(oldest.digest), mask)].tag;
        }
        // What was read is used, so that the loads are not left out.
        std::hint::black_box(seen);
    }

    /// Forgets the keys stored `window` milliseconds or more before `now`. A user
    /// whose keys have all gone keeps no memory for them.
    pub fn expire(&mut self, now: Millis, window: Millis) {
        while let Some(s) = self.ring.front() {
            if now < s.time.saturating_add(window) {
                break;
            }
            self.forget_oldest();
        }
        if self.ring.is_empty() && self.ring.capacity() > 0 {
            *self = SendKeys { first: self.first, ..SendKeys::default() };
        }
    }

    /// Where in the ring the send at `place` is.
    fn offset(&self, place: u32) -> usize {
        place.wrapping_sub(self.first as u32) as usize
    }

    /// The index slot of the key whose digest is `d`, if it is remembered.
    fn lookup(&self, d: u64) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let t = tag(d);
        let mut i = home(t, mask);
        // Bounded: the index is never more than half full, so an empty slot comes.
        loop {
            let s = self.index[i];
            if s.is_empty() {
                return None;
            }
            // The tag tells almost every other key apart without reading the ring.
            if s.tag == t && self.ring[self.offset(s.place)].digest == d {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Forgets the oldest send, and its key unless the key was remembered again.
    fn forget_oldest(&mut self) {
        let Some(oldest) = self.ring.pop_front() else { return };
        let place = self.first as u32;
        self.first = self.first.wrapping_add(1);
        if self.index.is_empty() {
            return;
        }
        let mask = self.index.len() - 1;
        let mut i = home(tag(oldest.digest), mask);
        loop {
            let s = self.index[i];
            if s.is_empty() {
                return; // remembered again since: the index points at the newer send
            }
            if s.place == place {
                break;
            }
            i = (i + 1) & mask;
        }
        // Backward-shift deletion: each slot after the hole that may move into it
        // (its home is not between the hole and itself) does, so that no probe
        // ever stops early at the hole and no tombstones accumulate.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let s = self.index[j];
            if s.is_empty() {
                break;
            }
            let h = home(s.tag, mask);
            if j.wrapping_sub(h) & mask >= j.wrapping_sub(hole) & mask {
                self.index[hole] = s;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.index[hole] = Slot::default();
        self.live -= 1;
    }

    /// Doubles the index (16 slots at first) and places every key again.
    fn grow(&mut self) {
        let len = (self.index.len() * 2).max(16);
        let old = std::mem::replace(&mut self.index, vec![Slot::default(); len]);
        let mask = len - 1;
        for s in old.into_iter().filter(|s| !s.is_empty()) {
            let mut i = home(s.tag, mask);
            while !self.index[i].is_empty() {
                i = (i + 1) & mask;
            }
            self.index[i] = s;
        }
    }
}

/// How many sends are kept for a `key-count` of `max` (0: no bound but the window).
fn kept(max: u64) -> usize {
    usize::try_from(max).map_or(RING_MAX, |m| if m == 0 { RING_MAX } else { m.min(RING_MAX) })
}

/// The slot a key's probe starts at, from its tag (so that moving slots never
/// needs the ring): the tag's bits above the one that marks a slot full.
fn home(tag: u32, mask: usize) -> usize {
    (tag >> 1) as usize & mask
}

/// A stable 64-bit fingerprint of a send's conversation and text, to tell a retry
/// from a different send under the same key without keeping the text. Stable
/// across builds and restarts, so a server can store it.
///
/// It reads the text 32 bytes at a time, in four lanes of eight bytes that do not
/// wait on each other: the fingerprint is computed for every SEND, and one chain
/// of multiplications over the text ([`fingerprint_serial`]) was half of the
/// hub's own work on a SEND in profiles. What servers stored before,
/// [`fingerprint_serial`] and [`fingerprint_fnv`], [`SendKeys::check`] still
/// recognises.
pub fn fingerprint(conv: &Conversation, text: &[u8]) -> u64 {
    let mut h = conversation_mix(conv);
    // The text's length first, so that no two splits of the same bytes between
    // name and text agree, and trailing zeros (the last step's padding) count.
    let mut lanes = [mix(h, text.len() as u64), h ^ LANE[0], h ^ LANE[1], h ^ LANE[2]];
    let mut steps = text.chunks_exact(32);
    let step = |lanes: &mut [u64; 4], bytes: &[u8]| {
        for (lane, word) in lanes.iter_mut().zip(bytes.chunks_exact(8)) {
            *lane = mix(*lane, word_le(word));
        }
    };
    for bytes in &mut steps {
        step(&mut lanes, bytes);
    }
    let rest = steps.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 32];
        last[..rest.len()].copy_from_slice(rest);
        step(&mut lanes, &last);
    }
    for lane in lanes {
        h = mix(h, lane);
    }
    finish(h)
}

/// What each lane of [`fingerprint`] after the first starts from, beside the
/// conversation's mix: so that the same words in different lanes differ.
const LANE: [u64; 3] = [0x6a09_e667_f3bc_c908, 0xbb67_ae85_84ca_a73b, 0x3c6e_f372_fe94_f82b];

/// One step of the fingerprints' mixing: a word into the state.
fn mix(h: u64, w: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    (h ^ w).wrapping_mul(K).rotate_left(31)
}

/// Eight bytes as a little-endian word (fewer: the rest zero).
fn word_le(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// The conversation's part of the fingerprints: its kind, its name's length, then
/// the name, eight bytes at a time.
fn conversation_mix(conv: &Conversation) -> u64 {
    let (mark, name) = match conv {
        Conversation::Group(g) => (b'#', g.as_bytes()),
        Conversation::Direct(u) => (b'@', u.as_bytes()),
    };
    let h = mix(0x2545_f491_4f6c_dd1d, u64::from(mark));
    name.chunks(8).fold(mix(h, name.len() as u64), |h, w| mix(h, word_le(w)))
}

/// The finish of MurmurHash3's 64-bit mix: every input bit reaches every output bit.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The fingerprint servers stored before [`fingerprint`] (the text in one chain,
/// eight bytes at a time): still compared, so that a retry of a send stored by an
/// older server is recognised.
pub fn fingerprint_serial(conv: &Conversation, text: &[u8]) -> u64 {
    let h = mix(conversation_mix(conv), text.len() as u64);
    finish(text.chunks(8).fold(h, |h, w| mix(h, word_le(w))))
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

    /// The seed of the tests' digests.
    const SEED: DigestSeed = DigestSeed(1, 2);

    fn digest(key: &str) -> KeyDigest {
        KeyDigest::of(&key.parse().unwrap(), &SEED)
    }

    #[test]
    fn retry_conflict_and_expiry() {
        let key: IdemKey = "k1".parse().unwrap();
        let mut keys = SendKeys::new();
        let send = |c: &str, text: &'static [u8]| (conv(c), text, fingerprint(&conv(c), text));
        let check = |keys: &mut SendKeys, (c, text, fp): (Conversation, &[u8], u64), now| {
            keys.check(KeyDigest::of(&key, &SEED), (&c, text), fp, now, 1000)
        };
        let hello = send("#rust", b"hello");
        assert_eq!(check(&mut keys, hello, 0), KeyCheck::New);
        keys.remember(
            KeyDigest::of(&key, &SEED),
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
            keys.remember(digest(&format!("k{seq}")), sent(seq), 100);
            assert!(keys.len() <= 100);
            assert!(keys.ring.len() <= 100);
        }
        assert_eq!(keys.len(), 100);
        let check = |keys: &mut SendKeys, seq: u64| {
            keys.check(digest(&format!("k{seq}")), (&conv("#g"), b""), seq, 1_000, 1 << 40)
        };
        assert_eq!(check(&mut keys, 999), KeyCheck::Retry { seq: 999, time: 999 });
        assert_eq!(check(&mut keys, 900), KeyCheck::Retry { seq: 900, time: 900 });
        assert_eq!(check(&mut keys, 899), KeyCheck::New, "the 101st newest is forgotten");
        // The same key again, over and over (as a start replaying keys may): it is
        // known by its newest send, and the 100 sends kept are the newest 100.
        for t in 0..1_000 {
            let again = SentKey { conv: conv("#g"), fingerprint: 1, seq: t, time: 2_000 + t };
            keys.remember(digest("same"), again, 100);
        }
        assert_eq!((keys.len(), keys.ring.len()), (1, 100));
        assert_eq!(check(&mut keys, 999), KeyCheck::New, "more than 100 later sends");
        let same = keys.check(digest("same"), (&conv("#g"), b""), 1, 3_000, 1 << 40);
        assert_eq!(same, KeyCheck::Retry { seq: 999, time: 2_999 });
        // Unbounded (0): only the window forgets.
        let mut all = SendKeys::new();
        for seq in 0..1_000 {
            all.remember(digest(&format!("k{seq}")), sent(seq), 0);
        }
        assert_eq!(all.len(), 1_000);
    }

    /// What [`SendKeys`] must answer, the simplest way: every send kept, oldest
    /// first, searched from the newest back.
    #[derive(Default)]
    struct Model {
        sends: VecDeque<(u64, Sent)>,
    }

    impl Model {
        fn expire(&mut self, now: Millis, window: Millis) {
            while self.sends.front().is_some_and(|(_, s)| now >= s.time.saturating_add(window)) {
                self.sends.pop_front();
            }
        }

        fn find(&self, d: u64) -> Option<Sent> {
            self.sends.iter().rev().find(|(k, _)| *k == d).map(|(_, s)| *s)
        }

        fn keys(&self) -> usize {
            let mut ds: Vec<u64> = self.sends.iter().map(|(d, _)| *d).collect();
            ds.sort_unstable();
            ds.dedup();
            ds.len()
        }
    }

    /// Applies the `n`th op to the table and the model alike, at `now` moved on by
    /// its step, and checks that a lookup answers as the model does.
    fn step(
        keys: &mut SendKeys,
        model: &mut Model,
        ds: &[u64],
        (n, op): (usize, Op),
        now: &mut Millis,
        (max, window): (u64, Millis),
    ) -> Result<(), TestCaseError> {
        let g = conv("#g");
        match op {
            Op::Remember(k, dt) => {
                *now += dt;
                let sent = Sent { digest: ds[k], fingerprint: k as u64, seq: n as u64, time: *now };
                let key =
                    SentKey { conv: g, fingerprint: sent.fingerprint, seq: sent.seq, time: *now };
                // Warming reads a few slots and changes nothing (the model still
                // agrees after it), whatever the ring and the index hold.
                let ahead: Vec<KeyDigest> = ds[k..].iter().take(3).map(|&d| KeyDigest(d)).collect();
                keys.warm(&ahead, max);
                keys.remember(KeyDigest(ds[k]), key, max);
                model.sends.push_back((ds[k], sent));
                while max > 0 && model.sends.len() as u64 > max {
                    model.sends.pop_front();
                }
            }
            Op::Check(k, dt) => {
                *now += dt;
                let got = keys.check(KeyDigest(ds[k]), (&g, b""), k as u64, *now, window);
                model.expire(*now, window);
                let want = match model.find(ds[k]) {
                    None => KeyCheck::New,
                    Some(s) if s.fingerprint == k as u64 => {
                        KeyCheck::Retry { seq: s.seq, time: s.time }
                    }
                    Some(_) => KeyCheck::Conflict,
                };
                prop_assert_eq!(got, want);
            }
            Op::Expire(dt) => {
                *now += dt;
                keys.expire(*now, window);
                model.expire(*now, window);
            }
        }
        Ok(())
    }

    #[derive(Clone, Debug)]
    enum Op {
        Remember(usize, u64),
        Check(usize, u64),
        Expire(u64),
    }

    /// Digests made to collide: many share a probe's start and a slot's tag, so
    /// that probing, telling keys apart by the ring, and backward-shift deletion
    /// are all exercised, besides real keys' digests.
    fn digests() -> Vec<u64> {
        let mut ds: Vec<u64> =
            (0..4u64).flat_map(|high| (0..4u64).map(move |low| (high << 33) | low)).collect();
        ds.extend((0..16).map(|k| digest(&format!("k{k}")).0));
        ds
    }

    use proptest::prelude::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn the_ring_answers_as_the_model(
            max in 0u64..8,
            window in 1u64..60,
            ops in proptest::collection::vec(
                proptest::prop_oneof![
                    (0usize..32, 0u64..5).prop_map(|(k, dt)| Op::Remember(k, dt)),
                    (0usize..32, 0u64..5).prop_map(|(k, dt)| Op::Check(k, dt)),
                    (0u64..30).prop_map(Op::Expire),
                ],
                1..300,
            ),
        ) {
            let ds = digests();
            let mut keys = SendKeys::new();
            let mut model = Model::default();
            let mut now: Millis = 0;
            for (n, op) in ops.into_iter().enumerate() {
                step(&mut keys, &mut model, &ds[..], (n, op), &mut now, (max, window))?;
                prop_assert_eq!(keys.len(), model.keys());
                prop_assert_eq!(keys.ring.len(), model.sends.len());
                prop_assert!(keys.index.is_empty() || keys.live * 2 <= keys.index.len());
            }
        }
    }

    impl SendKeys {
        /// Checks the index against the ring: every slot points at a send in the
        /// ring with its digest and is reached from its home without an empty slot
        /// between; the newest send of every key in the ring is indexed; no two
        /// slots point at the same place; never more than half full.
        fn assert_consistent(&self) {
            assert!(self.index.is_empty() || self.index.len().is_power_of_two());
            assert!(self.index.is_empty() || self.live * 2 <= self.index.len());
            let mask = self.index.len().wrapping_sub(1);
            let mut places = std::collections::HashSet::new();
            let mut full = 0;
            for (i, s) in self.index.iter().enumerate() {
                if s.is_empty() {
                    assert_eq!(*s, Slot::default());
                    continue;
                }
                full += 1;
                assert!(places.insert(s.place), "two slots at place {}", s.place);
                let at = self.offset(s.place);
                assert!(at < self.ring.len(), "slot {i} points past the ring");
                assert_eq!(tag(self.ring[at].digest), s.tag);
                let mut j = home(s.tag, mask);
                while j != i {
                    assert!(!self.index[j].is_empty(), "slot {i} cut off from its home");
                    j = (j + 1) & mask;
                }
                // The newest send with this digest.
                let newest = self.ring.iter().rposition(|r| r.digest == self.ring[at].digest);
                assert_eq!(newest, Some(at));
            }
            assert_eq!(full, self.live);
            let mut ds: Vec<u64> = self.ring.iter().map(|r| r.digest).collect();
            ds.sort_unstable();
            ds.dedup();
            assert_eq!(ds.len(), self.live);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// The same as the model with the count of sends starting just below where
        /// a place's 32 bits (or `first`'s 64) wrap, enough keys to grow the index
        /// several times, and the index checked against the ring after every step.
        #[test]
        fn the_index_stays_consistent_across_wraps_and_growth(
            first in proptest::prop_oneof![
                Just(0u64),
                (0u64..600).prop_map(|d| (1u64 << 32) - d),
                (0u64..600).prop_map(|d| u64::MAX - d),
            ],
            max in proptest::prop_oneof![Just(0u64), 1u64..80],
            window in 1u64..400,
            ops in proptest::collection::vec(
                proptest::prop_oneof![
                    6 => (0usize..96, 0u64..3).prop_map(|(k, dt)| Op::Remember(k, dt)),
                    3 => (0usize..96, 0u64..3).prop_map(|(k, dt)| Op::Check(k, dt)),
                    1 => (0u64..60).prop_map(Op::Expire),
                ],
                1..600,
            ),
        ) {
            // Many digests share a home and a tag; the rest are real keys'.
            let mut ds: Vec<u64> = (0..8u64)
                .flat_map(|high| (0..6u64).map(move |low| (high << 33) | (low << 1) | low))
                .collect();
            ds.extend((0..48).map(|k| digest(&format!("w{k}")).0));
            let mut keys = SendKeys { first, ..SendKeys::default() };
            let mut model = Model::default();
            let mut now: Millis = 0;
            for (n, op) in ops.into_iter().enumerate() {
                step(&mut keys, &mut model, &ds[..], (n, op), &mut now, (max, window))?;
                keys.assert_consistent();
                prop_assert_eq!(keys.ring.len(), model.sends.len());
            }
        }
    }

    /// A user whose keys all expired keeps no memory for them.
    #[test]
    fn expired_keys_leave_no_memory() {
        let mut keys = SendKeys::new();
        for seq in 0..500 {
            let sent = SentKey { conv: conv("#g"), fingerprint: 0, seq, time: seq };
            keys.remember(digest(&format!("k{seq}")), sent, 1024);
        }
        assert!(keys.ring.capacity() >= 500 && keys.index.len() >= 1000);
        keys.expire(10_000, 100);
        assert!(keys.is_empty());
        assert_eq!((keys.ring.capacity(), keys.index.len()), (0, 0));
        let sent = SentKey { conv: conv("#g"), fingerprint: 0, seq: 1, time: 10_000 };
        keys.remember(digest("again"), sent, 1024);
        let got = keys.check(digest("again"), (&conv("#g"), b""), 0, 10_001, 100);
        assert_eq!(got, KeyCheck::Retry { seq: 1, time: 10_000 });
    }

    #[test]
    fn fingerprints_tell_conversation_from_text() {
        for f in [fingerprint, fingerprint_serial, fingerprint_fnv] {
            // "#ab" + " " + "c" must differ from "#a" + " " + "b c".
            assert_ne!(f(&conv("#ab"), b"c"), f(&conv("#a"), b"b c"));
            assert_ne!(f(&conv("#a"), b"x"), f(&conv("@a"), b"x"));
            assert_ne!(f(&conv("#a"), b"x"), f(&conv("#a"), b"x\0"));
        }
        // Every byte of a long text counts: in every lane, in whole steps, and in
        // the last partial step and word.
        let text = [b'x'; 77];
        for f in [fingerprint, fingerprint_serial] {
            for i in 0..text.len() {
                let mut other = text;
                other[i] ^= 1;
                assert_ne!(f(&conv("#a"), &text), f(&conv("#a"), &other), "byte {i}");
            }
            // The same words in two lanes swapped.
            let mut swapped = text;
            swapped[..8].copy_from_slice(b"aaaaaaaa");
            let mut other = text;
            other[8..16].copy_from_slice(b"aaaaaaaa");
            assert_ne!(f(&conv("#a"), &swapped), f(&conv("#a"), &other));
        }
        // Known answers: a server stores these values, so they must not drift. The
        // FNV-1a one was computed independently; the others are these functions'
        // own (the serial one's from before the four lanes: it must not change).
        assert_eq!(fingerprint_fnv(&conv("#a"), b""), 0xcd37_7317_d456_d7ab);
        assert_eq!(fingerprint_serial(&conv("#a"), b"hello"), KNOWN_SERIAL);
        assert_eq!(fingerprint(&conv("#a"), b"hello"), KNOWN);
        let long = fingerprint(&conv("@someone"), &[b'y'; 100]);
        assert_eq!(long, KNOWN_LONG);
    }

    /// What [`fingerprint_serial`] of `#a` and `hello` is, for good (what
    /// [`fingerprint`] was until it took four lanes).
    const KNOWN_SERIAL: u64 = 0x0143_d9cb_9c9b_f225;

    /// What [`fingerprint`] of `#a` and `hello` is, for good.
    const KNOWN: u64 = 0x7bd6_c31f_afb1_64e3;

    /// What [`fingerprint`] of `@someone` and 100 `y`s is, for good.
    const KNOWN_LONG: u64 = 0x4ba4_2e6d_798e_dabb;

    /// A key an older server stored (with the serial or the FNV-1a fingerprint) is
    /// still a retry, and another text under it still a conflict.
    #[test]
    fn a_key_stored_with_an_old_fingerprint_is_still_recognised() {
        let key: IdemKey = "k1".parse().unwrap();
        for old in [fingerprint_serial, fingerprint_fnv] {
            let mut keys = SendKeys::new();
            let stored = old(&conv("#rust"), b"hello");
            keys.remember(
                KeyDigest::of(&key, &SEED),
                SentKey { conv: conv("#rust"), fingerprint: stored, seq: 7, time: 10 },
                0,
            );
            let now = fingerprint(&conv("#rust"), b"hello");
            assert_ne!(now, stored);
            let d = KeyDigest::of(&key, &SEED);
            assert_eq!(
                keys.check(d, (&conv("#rust"), b"hello"), now, 500, 1000),
                KeyCheck::Retry { seq: 7, time: 10 }
            );
            let other = fingerprint(&conv("#rust"), b"hellp");
            assert_eq!(
                keys.check(d, (&conv("#rust"), b"hellp"), other, 500, 1000),
                KeyCheck::Conflict
            );
        }
    }

    /// The longest distance from its home slot of any key in the index.
    fn longest_probe(keys: &SendKeys) -> usize {
        let mask = keys.index.len() - 1;
        let probes = keys.index.iter().enumerate().filter(|(_, s)| !s.is_empty());
        probes.map(|(i, s)| i.wrapping_sub(home(s.tag, mask)) & mask).max().unwrap_or(0)
    }

    /// Keys chosen to share one home slot under a seed their maker knows are spread
    /// by a seed the maker does not: the digest depends on the seed (fails if
    /// [`KeyDigest::of`] ignores it, as with fixed keys every user could compute).
    #[test]
    fn keys_made_to_collide_under_a_known_seed_spread_under_a_secret_one() {
        const KEYS: usize = 64;
        let known = DigestSeed::from_bytes(*b"known to anybody");
        let secret = DigestSeed::from_bytes(*b"the server's own");
        // 64 keys in the index of 128 slots: its home is the digest's tag's low bits.
        let mask = 127;
        let home_of = |d: KeyDigest| home(tag(d.0), mask);
        let made: Vec<IdemKey> = (0..)
            .map(|n| format!("k{n}").parse().unwrap())
            .filter(|k| home_of(KeyDigest::of(k, &known)) == 0)
            .take(KEYS)
            .collect();
        let table = |seed: &DigestSeed| {
            let mut keys = SendKeys::new();
            for (n, key) in made.iter().enumerate() {
                let n = n as u64;
                let sent = SentKey { conv: conv("#g"), fingerprint: n, seq: n, time: n };
                keys.remember(KeyDigest::of(key, seed), sent, 0);
            }
            assert_eq!(keys.index.len(), 128);
            keys
        };
        // Under the known seed they form one run of 64 slots: every new key walks it.
        assert_eq!(longest_probe(&table(&known)), KEYS - 1);
        // Under the secret one, a few slots at most (at half full, linear probing's
        // longest run among 64 random keys is rarely above a dozen).
        let spread = longest_probe(&table(&secret));
        assert!(spread < 16, "keys stay clustered under another seed: {spread} slots");
    }

    /// A seed's words appear in no way `Debug` could write them, alone or inside
    /// a value that holds the seed (fails if `Debug` is derived: the words are
    /// written in decimal then).
    #[test]
    fn a_seed_never_shows_in_debug_output() {
        let seed = DigestSeed::from_bytes(*b"0123456789abcdef");
        for shown in [format!("{seed:?}"), format!("{seed:#?}"), format!("{:?}", Some(seed))] {
            for word in [seed.0, seed.1] {
                for form in [format!("{word}"), format!("{word:x}"), format!("{word:X}")] {
                    assert!(!shown.contains(&form), "{shown} shows {form}");
                }
            }
        }
    }
}
