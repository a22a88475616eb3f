//! Read markers (SPEC.md 6.8), BANS and GROUPS offers (6.9) against the real server:
//! markers move forward only and are clamped, reach the user's other sessions and
//! not the sender's, answer CONVERSATIONS read with exact and capped unread counts
//! that survive a restart, go with a membership, a group and an account; BANS and
//! offers show to whom they should; the lists without the opt-in are byte for byte
//! what they were; and a damaged store refuses READ.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_proto::rules::UNREAD_WINDOW;
use baatkaro_proto::{
    Command, Encode, ErrorCode, Event, Item, JoinRule, ListVerb, OkReply, Request, ServerFrame, Tag,
};
use common::{Client, TestServer, config, conv, user};

fn g(s: &str) -> baatkaro_proto::GroupName {
    s.parse().unwrap()
}

fn read(c: &str, seq: u64) -> Command {
    Command::Read { conv: conv(c), seq }
}

/// READ that must succeed: where the marker is now.
async fn marker_after(c: &mut Client, to: &str, seq: u64) -> u64 {
    match c.ok(read(to, seq)).await.1 {
        OkReply::Read { conv: got, seq } => {
            assert_eq!(got, conv(to));
            seq
        }
        other => panic!("{other:?}"),
    }
}

/// `CONVERSATIONS read` as (conv, latest, read, unread), in the server's order.
async fn marked(c: &mut Client) -> Vec<(String, u64, u64, u64)> {
    let (items, reply) = c.ok(Command::ConversationsWithMarkers).await;
    assert_eq!(reply, OkReply::Listed { verb: ListVerb::Conversations, count: items.len() as u64 });
    items
        .into_iter()
        .map(|i| match i {
            Item::ConversationMarked { conv, latest, read, unread } => {
                (conv.to_string(), latest, read, unread)
            }
            other => panic!("not a marked conversation: {other:?}"),
        })
        .collect()
}

/// Sends `n` messages from `c` to `to`, with keys unique to `prefix`.
async fn say_n(c: &mut Client, to: &str, prefix: &str, n: usize) {
    for i in 0..n {
        c.say(to, &format!("{prefix}-{i}"), "text").await;
    }
}

/// The raw frames of a request's answer, re-encoded (the encoding is canonical:
/// SPEC.md 2.1), up to and including its final reply.
async fn raw_answer(c: &mut Client, tag: &str, command: Command) -> Vec<String> {
    let tag = Tag::new(tag).unwrap();
    c.send_raw(&Request { tag, command }.to_bytes()).await;
    let mut out = Vec::new();
    loop {
        let f = c.frame().await.expect("the answer comes");
        let done = matches!(&f, ServerFrame::Ok { tag: t, .. } | ServerFrame::Err { tag: t, .. } if *t == tag);
        if !matches!(f, ServerFrame::Event(_)) {
            out.push(String::from_utf8(f.to_bytes().to_vec()).unwrap());
        }
        if done {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_move_forward_only_are_clamped_and_reach_only_the_other_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut phone = Client::login(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    bob.ok(Command::Join { group: g("rust"), reason: None }).await;
    say_n(&mut bob, "#rust", "b", 5).await; // 2..=6

    assert_eq!(marker_after(&mut alice, "#rust", 4).await, 4);
    assert_eq!(marker_after(&mut alice, "#rust", 2).await, 4, "never back");
    assert_eq!(marker_after(&mut alice, "#rust", 4).await, 4);
    assert_eq!(marker_after(&mut alice, "#rust", u64::MAX).await, 6, "clamped to the newest");
    // Nothing to read yet in a private conversation without events: it stays at 0.
    assert_eq!(marker_after(&mut alice, "@bob", 3).await, 0);

    // The sender's session heard nothing: anything for it would have come before
    // the reply to a PING sent after.
    alice.ok(Command::Ping).await;
    assert!(
        !alice.events.iter().any(|e| matches!(e, Event::ReadMarker { .. })),
        "the sending session got its own marker: {:?}",
        alice.events
    );
    // The other session heard each move once, in order, and none of the READs that
    // left the marker where it was.
    phone.ok(Command::Ping).await;
    let moves: Vec<_> = phone
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ReadMarker { conv, seq } => Some((conv.to_string(), *seq)),
            _ => None,
        })
        .collect();
    assert_eq!(moves, [("#rust".to_string(), 4), ("#rust".to_string(), 6)]);
    // bob, who shares the group, hears nothing of alice's markers.
    bob.ok(Command::Ping).await;
    assert!(!bob.events.iter().any(|e| matches!(e, Event::ReadMarker { .. })));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_readers_may_read_with_the_errors_of_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut eve = Client::register(server.addr, "eve").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Approval) }).await;
    alice.say("#rust", "k1", "members only").await;
    eve.err(read("#rust", 1), ErrorCode::NotMember).await;
    eve.err(read("#nope", 1), ErrorCode::NoSuchGroup).await;
    eve.err(read("@nobody", 1), ErrorCode::NoSuchUser).await;
    // The refused READ stored nothing: eve reads only what she can.
    assert!(marked(&mut eve).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_other_users_messages_after_the_marker_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    let mut carol = Client::register(server.addr, "carol").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    bob.ok(Command::Join { group: g("rust"), reason: None }).await; // 1
    say_n(&mut bob, "#rust", "b", 3).await; // 2..=4
    say_n(&mut alice, "#rust", "a", 2).await; // 5, 6: her own
    carol.ok(Command::Join { group: g("rust"), reason: None }).await; // 7: membership
    say_n(&mut carol, "#rust", "c", 1).await; // 8
    say_n(&mut bob, "@alice", "p", 2).await; // @bob 1, 2
    alice.say("@bob", "a-p", "hi bob").await; // @bob 3: her own

    assert_eq!(
        marked(&mut alice).await,
        [("#rust".into(), 8, 0, 4), ("@bob".into(), 3, 0, 2)],
        "bob's three and carol's one; bob's two private ones"
    );
    assert_eq!(marker_after(&mut alice, "#rust", 3).await, 3);
    assert_eq!(marker_after(&mut alice, "@bob", 1).await, 1);
    assert_eq!(marked(&mut alice).await, [("#rust".into(), 8, 3, 2), ("@bob".into(), 3, 1, 1)]);
    // bob's view of the same private conversation: his own messages are not unread.
    assert_eq!(marked(&mut bob).await[1], ("@alice".into(), 3, 0, 1));

    drop((alice, bob, carol));
    server.stop().await;
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::login(server.addr, "alice").await;
    assert_eq!(marked(&mut alice).await, [("#rust".into(), 8, 3, 2), ("@bob".into(), 3, 1, 1)]);
    assert_eq!(marker_after(&mut alice, "#rust", 1).await, 3, "still forward only");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_looks_no_further_than_its_window_after_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    bob.ok(Command::Join { group: g("rust"), reason: None }).await; // 1
    let many = UNREAD_WINDOW as usize + 20;
    say_n(&mut bob, "#rust", "b", many).await; // 2..=121
    let latest = 1 + many as u64;
    assert_eq!(marked(&mut alice).await, [("#rust".into(), latest, 0, UNREAD_WINDOW - 1)]);
    assert_eq!(marker_after(&mut alice, "#rust", 1).await, 1);
    assert_eq!(
        marked(&mut alice).await,
        [("#rust".into(), latest, 1, UNREAD_WINDOW)],
        "more than the window follows: the count is the window's, 'this many or more'"
    );
    assert_eq!(marker_after(&mut alice, "#rust", latest - 5).await, latest - 5);
    assert_eq!(marked(&mut alice).await, [("#rust".into(), latest, latest - 5, 5)], "exact");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_go_with_the_membership_the_group_and_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    alice.ok(Command::Create { group: g("go"), rule: Some(JoinRule::Open) }).await;
    bob.ok(Command::Join { group: g("rust"), reason: None }).await;
    bob.ok(Command::Join { group: g("go"), reason: None }).await;
    say_n(&mut alice, "#rust", "r", 3).await;
    say_n(&mut alice, "#go", "g", 3).await;
    say_n(&mut alice, "@bob", "p", 2).await;
    for (c, seq) in [("#rust", 4), ("#go", 4), ("@alice", 2)] {
        assert_eq!(marker_after(&mut bob, c, seq).await, seq);
    }
    // Leaving drops the marker: back in, bob starts from 0.
    bob.ok(Command::Leave { group: g("rust") }).await;
    bob.ok(Command::Join { group: g("rust"), reason: None }).await;
    let rust = marked(&mut bob).await.into_iter().find(|c| c.0 == "#rust").unwrap();
    assert_eq!(rust.2, 0, "a former member's marker went with the membership");
    // A deleted group's markers go with it.
    alice.ok(Command::Delete { group: g("go") }).await;
    let db = rusqlite::Connection::open(dir.path().join("baatkaro.db")).unwrap();
    let rows = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(rows("SELECT COUNT(*) FROM read_markers WHERE conv = 'g:2'"), 0);
    assert_eq!(rows("SELECT COUNT(*) FROM read_markers WHERE user = 'bob'"), 1, "@alice's");
    // A deleted account's markers go with it.
    let answer = bob.call(Command::DeleteAccount { password: common::password("bob") }).await;
    assert_eq!(answer.1, Ok(OkReply::Done { verb: baatkaro_proto::DoneVerb::DeleteAccount }));
    assert_eq!(rows("SELECT COUNT(*) FROM read_markers WHERE user = 'bob'"), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_listed_to_owners_and_admins_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    let mut carol = Client::register(server.addr, "carol").await;
    let mut outsider = Client::register(server.addr, "outsider").await;
    let mut zed = Client::register(server.addr, "zed").await;
    let mut mallory = Client::register(server.addr, "mallory").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    for c in [&mut bob, &mut carol, &mut zed, &mut mallory] {
        c.ok(Command::Join { group: g("rust"), reason: None }).await;
    }
    alice.ok(Command::Promote { group: g("rust"), user: user("bob") }).await;
    alice.ok(Command::Kick { group: g("rust"), user: user("zed"), ban: true }).await;
    bob.ok(Command::Kick { group: g("rust"), user: user("mallory"), ban: true }).await;
    let want = vec![
        Item::Ban { group: g("rust"), user: user("mallory"), by: user("bob") },
        Item::Ban { group: g("rust"), user: user("zed"), by: user("alice") },
    ];
    for c in [&mut alice, &mut bob] {
        let (items, reply) = c.ok(Command::Bans { group: g("rust") }).await;
        assert_eq!(items, want, "by name, with who banned");
        assert_eq!(reply, OkReply::Listed { verb: ListVerb::Bans, count: 2 });
    }
    carol.err(Command::Bans { group: g("rust") }, ErrorCode::NotPermitted).await;
    outsider.err(Command::Bans { group: g("rust") }, ErrorCode::NotMember).await;
    outsider.err(Command::Bans { group: g("nope") }, ErrorCode::NoSuchGroup).await;
    alice.ok(Command::Unban { group: g("rust"), user: user("zed") }).await;
    let (items, _) = alice.ok(Command::Bans { group: g("rust") }).await;
    assert_eq!(items, want[..1]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_show_in_groups_offers_and_old_lists_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    bob.ok(Command::Join { group: g("rust"), reason: None }).await; // 1
    bob.say("#rust", "k1", "hi").await; // 2
    alice.ok(Command::Transfer { group: g("rust"), user: user("bob") }).await; // 3
    assert_eq!(marker_after(&mut alice, "#rust", 1).await, 1);

    let offered = |m: &str| format!("GROUP rust {m} open 2 3 offer bob\r\n");
    assert_eq!(
        raw_answer(&mut alice, "o1", Command::GroupsWithOffers).await,
        [format!("o1 {}", offered("owner")), "o1 OK GROUPS 1\r\n".into()]
    );
    assert_eq!(
        raw_answer(&mut bob, "o2", Command::GroupsWithOffers).await,
        [format!("o2 {}", offered("member")), "o2 OK GROUPS 1\r\n".into()]
    );
    // Without the opt-ins, exactly the frames of a server without the features.
    assert_eq!(
        raw_answer(&mut alice, "p1", Command::Groups).await,
        ["p1 GROUP rust owner open 2 3\r\n", "p1 OK GROUPS 1\r\n"]
    );
    assert_eq!(
        raw_answer(&mut alice, "p2", Command::Conversations).await,
        ["p2 CONV #rust 3\r\n", "p2 OK CONVERSATIONS 1\r\n"]
    );
    assert_eq!(
        raw_answer(&mut alice, "p3", Command::ConversationsWithMarkers).await,
        ["p3 CONV #rust 3 1 1\r\n", "p3 OK CONVERSATIONS 1\r\n"]
    );
    // Once cancelled, the offer is gone from the list.
    alice.ok(Command::TransferCancel { group: g("rust") }).await;
    assert_eq!(
        raw_answer(&mut bob, "o3", Command::GroupsWithOffers).await,
        ["o3 GROUP rust member open 2 3\r\n", "o3 OK GROUPS 1\r\n"]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_refuses_read_and_the_count_checks_what_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.event_segment_bytes = baatkaro_server::store::MIN_SEGMENT_BYTES;
    let server = TestServer::start(cfg).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    bob.ok(Command::Join { group: g("rust"), reason: None }).await;
    say_n(&mut bob, "#rust", "b", 3).await; // 2..=4
    // More than a segment after them, so that they are in a closed segment, which
    // a start does not read back.
    let long = "n".repeat(15_000);
    for i in 0..80 {
        alice.say("@alice", &format!("f{i}"), &long).await;
    }
    drop((alice, bob));
    server.stop().await;
    // One stored message altered behind the store's back: its checksum no longer
    // matches, which only a read of it can find with the checks off.
    // The event log's record of event 3 of group 1: its kind, the conversation
    // key `g:1` and the sequence number, then the time and the frame.
    let mut head = vec![1u8, 3];
    head.extend_from_slice(b"g:1");
    head.extend_from_slice(&3u64.to_le_bytes());
    let mut changed = 0;
    for entry in std::fs::read_dir(dir.path().join("events")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let found: Vec<usize> = bytes
            .windows(head.len())
            .enumerate()
            .filter(|(_, w)| *w == head)
            .map(|(i, _)| i)
            .collect();
        for at in found {
            bytes[at + head.len() + 12] ^= 0x20; // a letter of the frame
            changed += 1;
        }
        std::fs::write(&path, &bytes).unwrap();
    }
    assert_eq!(changed, 1);
    let mut cfg = config(dir.path());
    cfg.event_segment_bytes = baatkaro_server::store::MIN_SEGMENT_BYTES;
    cfg.verify_at_start = 0;
    cfg.verify_rate = 0;
    let server = TestServer::start(cfg).await;
    let mut alice = Client::login(server.addr, "alice").await;
    let (_, r) = alice.call(Command::ConversationsWithMarkers).await;
    assert_eq!(r.unwrap_err().code, ErrorCode::StoreDamaged, "the count read the damage");
    let (_, r) = alice.call(read("#rust", 4)).await;
    let f = r.unwrap_err();
    assert_eq!((f.code, f.retry_after), (ErrorCode::StoreDamaged, Some(60_000)));
    // What only reads is still served.
    alice.ok(Command::Bans { group: g("rust") }).await;
    alice.ok(Command::Conversations).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_marker_is_found_by_the_check_and_by_the_load() {
    use baatkaro_server::store::Store;
    use baatkaro_server::store::sqlite::{DB_FILE, Sqlite};
    use baatkaro_server::store::verify::Checker;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    say_n(&mut alice, "#rust", "a", 3).await;
    assert_eq!(marker_after(&mut alice, "#rust", 2).await, 2);
    drop(alice);
    server.stop().await;
    let path = dir.path().join(DB_FILE);
    // Whole, the marker passes both.
    Checker::open(&path).unwrap().check(u64::MAX).unwrap();
    let snap = Sqlite::open(dir.path()).unwrap().load(0, 0).unwrap();
    assert_eq!(snap.read_markers.len(), 1);
    // Moved behind the store's back, it fails its checksum.
    let db = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(db.execute("UPDATE read_markers SET seq = 3", []).unwrap(), 1);
    drop(db);
    let found = Checker::open(&path).unwrap().check(u64::MAX).unwrap_err().to_string();
    assert!(found.contains("table read_markers") && found.contains("user=alice"), "{found}");
    let loaded = Sqlite::open(dir.path()).unwrap().load(0, 0);
    assert!(
        matches!(&loaded, Err(baatkaro_server::store::StoreError::Corrupt(_))),
        "{:?}",
        loaded.map(|s| s.read_markers)
    );
}
