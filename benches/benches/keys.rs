//! The idempotency keys' cost per SEND (SPEC.md 5.2): warming, checking and
//! remembering a send's key with many users' keys in memory, each at its
//! `key-count` of 1,024, as the hub does for the SENDs of one connection's read.
//! With 100 users or more the keys are larger than a core's cache, so what is
//! measured is mostly how many cache misses a SEND costs.
//!
//! `cargo bench -p baatkaro-benches --bench keys`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use baatkaro_proto::Conversation;
use baatkaro_proto::delivery::{DigestSeed, KeyDigest, SendKeys, SentKey, fingerprint};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// `key-count`'s default.
const KEEP: u64 = 1024;
/// SENDs of one user handled together (a read's worth at 10 groups × 10).
const RUN: usize = 9;

struct Users {
    keys: Vec<SendKeys>,
    /// The next send's number.
    next: u64,
    /// Digests of distinct keys, used in turn (made beforehand: hashing a key is
    /// not what is measured).
    pool: Vec<KeyDigest>,
    conv: Conversation,
}

impl Users {
    fn new(users: usize) -> Users {
        let seed = DigestSeed::from_bytes(*b"benchmark's seed");
        // Four times the keys held, so that a key comes back only long forgotten.
        let pool = (0..users * KEEP as usize * 4)
            .map(|n| KeyDigest::of(&format!("k{n}").parse().unwrap(), &seed))
            .collect();
        let mut u = Users {
            keys: vec![SendKeys::new(); users],
            next: 0,
            pool,
            conv: "#g".parse().unwrap(),
        };
        // Every user at its count, so that each new key forgets the oldest.
        for _ in 0..KEEP as usize / RUN + 1 {
            u.round();
        }
        u
    }

    /// One run of fresh keys for each user in turn, as the hub takes them.
    fn round(&mut self) {
        let fp = fingerprint(&self.conv, b"text");
        for user in 0..self.keys.len() {
            let at = (self.next as usize * RUN) % (self.pool.len() - RUN);
            let digests = &self.pool[at..at + RUN];
            self.next += 1;
            let keys = &mut self.keys[user];
            keys.warm(digests, KEEP);
            for (n, d) in digests.iter().enumerate() {
                let now = self.next * RUN as u64 + n as u64;
                let check = keys.check(*d, (&self.conv, b"text"), fp, now, u64::MAX / 2);
                std::hint::black_box(check);
                let sent = SentKey { conv: self.conv, fingerprint: fp, seq: now, time: now };
                keys.remember(*d, sent, KEEP);
            }
        }
    }
}

fn keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("keys");
    for users in [10, 100, 1000] {
        let mut u = Users::new(users);
        g.throughput(Throughput::Elements((users * RUN) as u64));
        g.bench_function(format!("{users} users at 1024 keys: {RUN} SENDs each"), |b| {
            b.iter(|| u.round())
        });
    }
    g.finish();
}

criterion_group!(benches, keys);
criterion_main!(benches);
