//! The whole story of a group, over real TCP, then a restart with all of it intact.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_proto::{
    Command, Conversation, ErrorCode, Event, Item, JoinOutcome, JoinRule, Membership, OkReply,
    Presence, Role, StoredEvent,
};
use common::{Client, TestServer, body, config, conv, text, user};

fn g(s: &str) -> baatkaro_proto::GroupName {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_scenario_then_a_restart_with_all_of_it_intact() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let addr = server.addr;

    // alice registers and creates a group.
    let mut alice = Client::register(addr, "alice").await;
    alice.ok(Command::Create { group: g("rust"), rule: None }).await;
    alice
        .err(
            Command::Create { group: g("rust"), rule: Some(JoinRule::Open) },
            ErrorCode::GroupExists,
        )
        .await;

    // bob asks to join; alice, online, sees the request, and lists it.
    let mut bob = Client::register(addr, "bob").await;
    let (_, r) =
        bob.ok(Command::Join { group: g("rust"), reason: Some(text("I write Rust")) }).await;
    assert_eq!(r, OkReply::Join { group: g("rust"), outcome: JoinOutcome::Pending });
    match alice.event().await {
        Event::JoinRequested { group, user: u, reason, .. } => {
            assert_eq!((group, u), (g("rust"), user("bob")));
            assert_eq!(reason.unwrap().as_str(), "I write Rust");
        }
        other => panic!("alice expected REQUESTED, got {other:?}"),
    }
    let (items, _) = alice.ok(Command::Requests { group: g("rust") }).await;
    assert!(
        matches!(&items[..], [Item::Request { user: u, .. }] if *u == user("bob")),
        "{items:?}"
    );
    bob.err(Command::Requests { group: g("rust") }, ErrorCode::NotMember).await;

    // alice approves: bob hears APPROVED, then both see JOINED #rust 1.
    alice.ok(Command::Approve { group: g("rust"), user: user("bob") }).await;
    let joined = alice.stored().await;
    assert_eq!(
        joined,
        StoredEvent::Joined {
            group: g("rust"),
            seq: 1,
            time: joined.time(),
            user: user("bob"),
            by: user("alice")
        }
    );
    assert!(matches!(bob.event().await, Event::RequestApproved { by, .. } if by == user("alice")));
    assert_eq!(bob.stored().await, joined);
    alice
        .err(Command::Approve { group: g("rust"), user: user("bob") }, ErrorCode::NoSuchRequest)
        .await;

    // Group and private messages, with sequence numbers both sides agree on.
    let seq = alice.say("#rust", "a-1", "hello, world!").await;
    assert_eq!(seq, 2);
    for c in [&mut alice, &mut bob] {
        let e = c.stored().await;
        assert_eq!((e.seq(), body(&e)), (2, Some("hello, world!")));
    }
    let dm = bob.say("@alice", "b-1", "psst").await;
    assert_eq!(dm, 1);
    match alice.stored().await {
        StoredEvent::Message { conv: c, seq: 1, from, .. } => {
            assert_eq!((c, from), (conv("@bob"), user("bob")), "alice reads it in @bob");
        }
        other => panic!("{other:?}"),
    }
    match bob.stored().await {
        StoredEvent::Message { conv: c, seq: 1, .. } => assert_eq!(c, conv("@alice")),
        other => panic!("{other:?}"),
    }
    assert_eq!(alice.say("@bob", "a-2", "what?").await, 2);
    assert_eq!(bob.stored().await.seq(), 2);
    assert_eq!(alice.stored().await.seq(), 2);

    // carol is invited and accepts.
    let mut carol = Client::register(addr, "carol").await;
    let (_, r) = alice.ok(Command::Invite { group: g("rust"), user: user("carol") }).await;
    assert!(matches!(r, OkReply::Invite { .. }), "{r:?}");
    assert!(matches!(carol.event().await, Event::Invited { by, .. } if by == user("alice")));
    let (items, _) = carol.ok(Command::Groups).await;
    assert!(
        matches!(&items[..], [Item::Group { membership: Membership::Invited, latest: 0, .. }]),
        "{items:?}"
    );
    carol.ok(Command::Accept { group: g("rust") }).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        assert!(
            matches!(c.stored().await, StoredEvent::Joined { seq: 3, user: u, .. } if u == user("carol"))
        );
    }

    // alice promotes bob.
    alice.ok(Command::Promote { group: g("rust"), user: user("bob") }).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        assert!(matches!(
            c.stored().await,
            StoredEvent::RoleChanged { seq: 4, role: Role::Admin, .. }
        ));
    }
    let (items, _) = carol.ok(Command::Members { group: g("rust") }).await;
    let roles: Vec<_> = items
        .iter()
        .map(|i| match i {
            Item::Member { user, role, presence, .. } => (user.to_string(), *role, *presence),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("alice".into(), Role::Owner, Presence::Online),
            ("bob".into(), Role::Admin, Presence::Online),
            ("carol".into(), Role::Member, Presence::Online)
        ]
    );

    // alice kicks carol with a ban; carol's new request is refused.
    alice.ok(Command::Kick { group: g("rust"), user: user("carol"), ban: true }).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        assert!(
            matches!(c.stored().await, StoredEvent::Banned { seq: 5, user: u, .. } if u == user("carol"))
        );
    }
    carol.err(Command::Join { group: g("rust"), reason: None }, ErrorCode::Banned).await;
    carol
        .err(
            Command::Send { to: conv("#rust"), key: "c-1".parse().unwrap(), text: text("hi") },
            ErrorCode::NotMember,
        )
        .await;

    // Ownership passes to bob when he accepts; then alice may leave.
    alice.err(Command::Leave { group: g("rust") }, ErrorCode::OwnerMustTransfer).await;
    alice.ok(Command::Transfer { group: g("rust"), user: user("bob") }).await;
    for c in [&mut alice, &mut bob] {
        assert!(matches!(c.stored().await, StoredEvent::OwnershipOffered { seq: 6, .. }));
    }
    bob.ok(Command::TransferAccept { group: g("rust") }).await;
    for c in [&mut alice, &mut bob] {
        assert!(
            matches!(c.stored().await, StoredEvent::OwnershipTransferred { seq: 7, user: u, .. } if u == user("bob"))
        );
    }
    alice.ok(Command::Leave { group: g("rust") }).await;
    for c in [&mut alice, &mut bob] {
        assert!(
            matches!(c.stored().await, StoredEvent::Left { seq: 8, user: u, .. } if u == user("alice"))
        );
    }
    drop((alice, bob, carol));
    server.stop().await;

    // A restart, with all of it intact.
    let server = TestServer::start(config(dir.path())).await;
    let mut bob = Client::login(server.addr, "bob").await;
    let (items, _) = bob.ok(Command::Members { group: g("rust") }).await;
    assert!(
        matches!(&items[..], [Item::Member { role: Role::Owner, .. }]),
        "only bob is left: {items:?}"
    );
    let (events, latest, oldest) = bob.history("#rust", 0, 100).await;
    assert_eq!((latest, oldest), (8, 1));
    assert_eq!(
        events.iter().map(StoredEvent::seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert_eq!(body(&events[1]), Some("hello, world!"));
    let (events, latest, _) = bob.history("@alice", 0, 100).await;
    assert_eq!(latest, 2);
    assert!(events.iter().all(|e| e.conv() == Conversation::Direct(user("alice"))), "{events:?}");
    let (items, _) = bob.ok(Command::Conversations).await;
    assert_eq!(
        items,
        [
            Item::Conversation { conv: conv("#rust"), latest: 8 },
            Item::Conversation { conv: conv("@alice"), latest: 2 }
        ]
    );
    // The ban survived; the sequence goes on; a key from before is still remembered.
    let mut carol = Client::login(server.addr, "carol").await;
    carol.err(Command::Join { group: g("rust"), reason: None }, ErrorCode::Banned).await;
    assert_eq!(bob.say("#rust", "b-9", "still here").await, 9);
    let mut alice = Client::login(server.addr, "alice").await;
    let (_, r) = alice
        .ok(Command::Send { to: conv("@bob"), key: "a-2".parse().unwrap(), text: text("what?") })
        .await;
    assert!(
        matches!(r, OkReply::Send { seq: 2, .. }),
        "the retried key gives its original seq: {r:?}"
    );
    let (events, latest, _) = alice.history("@bob", 0, 100).await;
    assert_eq!((events.len(), latest), (2, 2), "and nothing was stored twice");
    // A wrong password after the restart still fails.
    let mut mallory = Client::connect(server.addr).await;
    mallory.hello().await;
    mallory
        .err(
            Command::Login {
                user: user("alice"),
                password: baatkaro_proto::Password::new("nope").unwrap(),
            },
            ErrorCode::AuthFailed,
        )
        .await;
    server.stop().await;
}
