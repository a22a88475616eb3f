//! The event log and its index read back what table `events` (schema 9) did: the
//! same writes into both, then the same history pages and unread counts, across
//! flushes, restarts, retention and segment rolls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use baatkaro_proto::group::GroupId;
use baatkaro_proto::{Encode, Event, ServerFrame, StoredEvent, Text};
use baatkaro_server::store::sqlite::Sqlite;
use baatkaro_server::store::{
    ConvKey, EventRecord, HistoryPage, HistoryQuery, Store, UnreadQuery, UnreadRange, Write,
};
use common::{conv, user};
use proptest::prelude::*;

/// What happens between two comparisons.
#[derive(Clone, Debug)]
enum Op {
    /// A group commit of sends: (group 1 or 2, from alice, text length) each; with
    /// a write for the database too (which makes the index flush) when `meta`.
    Sends { sends: Vec<(u8, bool, usize)>, meta: bool },
    /// Both stores closed and opened again.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((1u8..=2, any::<bool>(), 0usize..400), 1..60), any::<bool>())
            .prop_map(|(sends, meta)| Op::Sends { sends, meta }),
        // Larger than half a segment: written in parts, and the segments roll.
        1 => (prop::collection::vec((1u8..=2, any::<bool>(), 3000usize..4000), 150..250), any::<bool>())
            .prop_map(|(sends, meta)| Op::Sends { sends, meta }),
        1 => Just(Op::Restart),
    ]
}

/// A history or unread question about group 1 or 2, its numbers scaled to the
/// group's newest event when asked.
#[derive(Clone, Debug)]
struct Ask {
    group: u8,
    after: Option<u16>,
    upto: u16,
    limit: u32,
    max_bytes: u64,
    reader_alice: bool,
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        1u8..=2,
        prop::option::of(0u16..=1000),
        0u16..=1000,
        1u32..40,
        prop_oneof![Just(u64::MAX), 100u64..3000],
        any::<bool>(),
    )
        .prop_map(|(group, after, upto, limit, max_bytes, reader_alice)| Ask {
            group,
            after,
            upto,
            limit,
            max_bytes,
            reader_alice,
        })
}

fn open_old(dir: &Path) -> Sqlite {
    let mut s = Sqlite::open_at(dir, 9).unwrap();
    s.load(0, 0).unwrap();
    s
}

fn open_new(dir: &Path) -> Sqlite {
    let mut s = Sqlite::open_sized(dir, false, baatkaro_server::store::MIN_SEGMENT_BYTES).unwrap();
    s.load(0, 0).unwrap();
    s
}

fn message(group: u8, seq: u64, alice: bool, len: usize) -> Write {
    let event = StoredEvent::Message {
        conv: conv(if group == 1 { "#one" } else { "#two" }),
        seq,
        time: 1_764_072_600_000 + seq,
        from: user(if alice { "alice" } else { "bob" }),
        text: Text::new(&format!("{group}/{seq} {}", "z".repeat(len))).unwrap(),
    };
    let frame = ServerFrame::Event(Event::Stored(event.clone())).to_bytes();
    Write::Event(EventRecord::new(ConvKey::Group(GroupId(u64::from(group))), &event, frame))
}

fn history(s: &mut Sqlite, q: &HistoryQuery) -> HistoryPage {
    s.history(q).unwrap()
}

/// Runs `ops` with retention `keep` into both stores, comparing `asks` after each.
fn differential(ops: &[Op], asks: &[Ask], keep: u64) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut old, mut new) = (open_old(a.path()), open_new(b.path()));
    for s in [&mut old, &mut new] {
        let groups = [
            Write::GroupCreated { id: GroupId(1), name: "one".parse().unwrap() },
            Write::GroupCreated { id: GroupId(2), name: "two".parse().unwrap() },
        ];
        s.commit(&groups, 3, keep).unwrap();
    }
    let mut latest = [0u64; 3];
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Sends { sends, meta } => {
                let mut writes: Vec<Write> = sends
                    .iter()
                    .map(|&(g, alice, len)| {
                        latest[g as usize] += 1;
                        message(g, latest[g as usize], alice, len)
                    })
                    .collect();
                if *meta {
                    writes.push(Write::KeysExpired { before: 0 });
                }
                old.commit(&writes, 3, keep).unwrap();
                new.commit(&writes, 3, keep).unwrap();
            }
            Op::Restart => {
                drop((old, new));
                (old, new) = (open_old(a.path()), open_new(b.path()));
            }
        }
        for q in asks {
            let top = latest[q.group as usize];
            let scale = |n: u16| u64::from(n) * (top + 2) / 1000;
            let conv = ConvKey::Group(GroupId(u64::from(q.group)));
            let h = HistoryQuery {
                conv,
                after: q.after.map(scale),
                limit: q.limit,
                upto: scale(q.upto),
                max_bytes: q.max_bytes,
            };
            let (x, y) = (history(&mut old, &h), history(&mut new, &h));
            assert_eq!(x, y, "step {step}: history {h:?}");
            let reader = user(if q.reader_alice { "alice" } else { "bob" });
            let after = q.after.map_or(0, scale);
            let u = UnreadQuery {
                reader,
                convs: vec![UnreadRange { conv, after, upto: scale(q.upto).max(after) }],
            };
            assert_eq!(old.unread(&u).unwrap(), new.unread(&u).unwrap(), "step {step}: {u:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_log_reads_back_what_the_table_did(
        ops in prop::collection::vec(op(), 1..12),
        asks in prop::collection::vec(ask(), 1..6),
        keep in prop_oneof![Just(0u64), 3u64..60],
    ) {
        differential(&ops, &asks, keep);
    }
}

#[test]
fn retention_holds_for_sends_read_back_from_the_log_at_a_restart() {
    // Eight sends kept to three, never flushed to the index, then a restart: the
    // oldest five stay gone, as they did in the table.
    let ops = [Op::Sends { sends: vec![(2, false, 0); 8], meta: false }, Op::Restart];
    let ask = Ask {
        group: 2,
        after: None,
        upto: 1000,
        limit: 10,
        max_bytes: u64::MAX,
        reader_alice: true,
    };
    differential(&ops, &[ask], 3);
}

/// The event log's segment files, oldest first.
fn event_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// A segment only goes once no stored event points into it: one found missing
/// while the database still points into it is damage, and the store refuses to
/// start rather than answer HISTORY with holes (fails without the check at load:
/// the store opens, and the loss shows only when that history is read).
#[test]
fn an_event_log_missing_its_oldest_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_new(dir.path());
    let group = [Write::GroupCreated { id: GroupId(1), name: "one".parse().unwrap() }];
    store.commit(&group, 3, 0).unwrap();
    // Enough to roll the smallest segments (1 MiB) twice, each commit flushed to the index.
    for round in 0..12u64 {
        let mut writes: Vec<Write> =
            (1..=100).map(|i| message(1, round * 100 + i, true, 2000)).collect();
        writes.push(Write::KeysExpired { before: 0 });
        store.commit(&writes, 3, 0).unwrap();
    }
    drop(store);
    let segments = event_segments(dir.path());
    assert!(segments.len() >= 3, "{segments:?}");
    // Closed and opened again whole: no false alarm.
    drop(open_new(dir.path()));
    std::fs::remove_file(&segments[0]).unwrap();
    let opened = Sqlite::open_sized(dir.path(), false, baatkaro_server::store::MIN_SEGMENT_BYTES)
        .and_then(|mut s| s.load(0, 0).map(|_| ()));
    match opened {
        Err(baatkaro_server::store::StoreError::Corrupt(why)) => {
            assert!(why.contains("segment of the log is missing"), "{why}")
        }
        Ok(()) => panic!("a store whose event log lost its oldest segment started"),
        Err(e) => panic!("{e}"),
    }
}
