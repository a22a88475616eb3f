//! Group state machine costs: a million mixed operations over 1,000 groups, resolving
//! an event's recipients in a 1,000-member group, and a permission check there.
//!
//! `cargo bench -p baatkaro-benches --bench group`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use baatkaro_proto::group::{Ctx, Group, GroupEvent, GroupId, GroupRules, Op};
use baatkaro_proto::{GroupName, JoinRule, UserName};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const RULES: GroupRules = GroupRules {
    members: 100_000,
    pending: 100_000,
    invites: 100_000,
    groups: u64::MAX,
    expiry: u64::MAX / 2,
};

fn user(i: usize) -> UserName {
    UserName::new(&format!("u{i}")).unwrap()
}

fn ctx(now: u64) -> Ctx<'static> {
    Ctx { now, rules: &RULES, groups_of: &|_| 0 }
}

/// A group owned by `u0` with `n` members in all (u1 an admin) and the given rule.
fn group_with(id: u64, n: usize, rule: JoinRule) -> Group {
    let name = GroupName::new(&format!("g{id}")).unwrap();
    let (mut g, _) = Group::create(GroupId(id), name, user(0), JoinRule::Open, &ctx(0)).unwrap();
    for i in 1..n {
        g.apply(user(i), Op::Join { reason: None }, &ctx(0)).unwrap();
    }
    if n > 1 {
        g.apply(user(0), Op::Promote { user: user(1) }, &ctx(0)).unwrap();
    }
    if rule != JoinRule::Open {
        g.apply(user(0), Op::SetRule { rule }, &ctx(0)).unwrap();
    }
    g
}

/// A deterministic mix of operations: joins and requests, approvals, leaves, kicks,
/// promotions, rule changes; many of them are denied, as in real traffic.
fn mixed_ops(count: usize, groups: usize, users: usize) -> Vec<(usize, UserName, Op)> {
    let names: Vec<UserName> = (0..users).map(user).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64: a fixed, dependency-free sequence.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|_| {
            let g = (next() % groups as u64) as usize;
            let actor = names[(next() % users as u64) as usize];
            let target = names[(next() % users as u64) as usize];
            let op = match next() % 10 {
                0..=3 => Op::Join { reason: None },
                4 => Op::Approve { user: target },
                5 => Op::Leave,
                6 => Op::Kick { user: target, ban: false },
                7 => Op::Promote { user: target },
                8 => Op::Invite { user: target },
                _ => Op::SetRule {
                    rule: if next() % 2 == 0 { JoinRule::Open } else { JoinRule::Approval },
                },
            };
            (g, actor, op)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("group");

    let groups: Vec<Group> = (0..1000).map(|i| group_with(i, 20, JoinRule::Approval)).collect();
    let ops = mixed_ops(1_000_000, groups.len(), 5_000);
    g.throughput(Throughput::Elements(ops.len() as u64));
    g.sample_size(10);
    g.bench_function("mixed_ops/1M_over_1000_groups", |b| {
        b.iter_batched(
            || groups.clone(),
            |mut groups| {
                let mut applied = 0usize;
                for (i, (gi, actor, op)) in ops.iter().enumerate() {
                    if let Ok(events) = groups[*gi].apply(*actor, op.clone(), &ctx(i as u64)) {
                        applied += events.len();
                    }
                }
                black_box(applied)
            },
            BatchSize::LargeInput,
        )
    });

    let big = group_with(5000, 1000, JoinRule::Approval);
    let joined = GroupEvent::Joined { user: user(999), by: user(0) };
    g.sample_size(50);
    g.throughput(Throughput::Elements(1));
    g.bench_function("recipients/resolve/1000_members", |b| {
        b.iter(|| {
            let to = black_box(&joined).recipients();
            black_box(big.recipients(to).next())
        })
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("recipients/walk/1000_members", |b| {
        b.iter(|| big.recipients(black_box(&joined).recipients()).count())
    });
    g.throughput(Throughput::Elements(1));
    let mut denied = big.clone();
    g.bench_function("permission_check/1000_members", |b| {
        // A member trying to kick an admin: the full check, denied, nothing changes.
        b.iter(|| {
            let r =
                denied.apply(user(500), Op::Kick { user: black_box(user(1)), ban: false }, &ctx(1));
            black_box(r.is_err())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
