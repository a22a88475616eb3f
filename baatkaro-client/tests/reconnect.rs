//! Reconnect, as an embedder meets it: the server restarts, messages sent while the
//! client was away arrive once each, in order, and a message the client sent while
//! disconnected is stored once when the connection is back; a command that is not
//! safe to repeat fails at once instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_client::{
    Client, ClientError, ClientEvent, ConnectOptions, Conversation, Event, StoredEvent, Text,
};
use common::{TestServer, WAIT, next, password, register};

fn text(s: &str) -> Text {
    Text::new(s).unwrap()
}

/// The message texts of stored events, in order.
fn texts(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StoredEvent::Message { text, .. } => Some(text.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_restart_what_was_missed_arrives_once_and_queued_sends_go_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let bob = register(addr, "bob").await;
    drop(bob);
    let options = ConnectOptions::default().reconnect(true);
    let alice = Client::connect_with(&addr.to_string(), &options).await.unwrap();
    let mut events = alice.events();
    alice.register("alice".parse().unwrap(), password("alice")).await.unwrap();
    let to_bob: Conversation = "@bob".parse().unwrap();
    alice.send(to_bob, text("before")).await.unwrap();

    server.stop().await;
    let reason = loop {
        if let ClientEvent::Disconnected { reason, .. } = next(&mut events).await {
            break reason;
        }
    };
    assert!(!alice.is_connected(), "disconnected: {reason}");
    // Not safe to send late: refused at once, not queued.
    let refused = alice.create("rust".parse().unwrap(), None).await;
    assert!(matches!(refused, Err(ClientError::NotConnected(_))), "{refused:?}");
    // Safe to send late: waits for the connection.
    let queued = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.send(to_bob, text("typed while away")).await })
    };

    let server = TestServer::start(dir.path(), addr).await;
    // Bob writes to alice while she is away.
    let bob = Client::connect(&addr.to_string()).await.unwrap();
    bob.login("bob".parse().unwrap(), password("bob")).await.unwrap();
    let to_alice: Conversation = "@alice".parse().unwrap();
    for i in 0..3 {
        bob.send(to_alice, text(&format!("missed {i}"))).await.unwrap();
    }
    alice.reconnect_now();

    // Every message bob sent arrives once, in order: by the catch-up, or live if
    // the client's own backoff reconnected before bob sent them.
    let mut got = Vec::new();
    let mut reconnected = false;
    let collect = async {
        while got.len() < 3 || !reconnected {
            match next(&mut events).await {
                // Bob's only: alice's own queued message may come first.
                ClientEvent::Event(Event::Stored(e @ StoredEvent::Message { from, .. }))
                    if from.as_str() == "bob" =>
                {
                    got.push(e);
                }
                ClientEvent::Reconnected { .. } => reconnected = true,
                _ => {}
            }
        }
    };
    tokio::time::timeout(WAIT, collect).await.expect("caught up in time");
    let sent = tokio::time::timeout(WAIT, queued).await.unwrap().unwrap().unwrap();
    assert!(alice.is_connected());
    // Alice's own queued message may come in the stream too; bob's come once each.
    let bob_name = "bob".parse().unwrap();
    let from_bob: Vec<_> = got
        .iter()
        .filter(|e| matches!(e, StoredEvent::Message { from, .. } if *from == bob_name))
        .cloned()
        .collect();
    assert_eq!(texts(&from_bob), ["missed 0", "missed 1", "missed 2"]);

    // The conversation holds each message once, in order, with the queued one last.
    let history = bob.history_after(to_alice, 0).await.unwrap();
    assert_eq!(
        texts(&history.events),
        ["before", "missed 0", "missed 1", "missed 2", "typed while away"]
    );
    assert_eq!(history.events.last().unwrap().seq(), sent.seq);
    // Nothing arrives twice: everything up to bob's next message is not his.
    bob.send(to_alice, text("sentinel")).await.unwrap();
    loop {
        if let ClientEvent::Event(Event::Stored(StoredEvent::Message { from, text, .. })) =
            next(&mut events).await
            && from == bob_name
        {
            assert_eq!(text.as_str(), "sentinel", "a message came twice");
            break;
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnect_the_stream_ends_and_calls_say_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let alice = register(server.addr, "alice").await;
    let mut events = alice.events();
    server.stop().await;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            assert!(!matches!(e, ClientEvent::Disconnected { .. }), "no reconnect asked for");
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends");
    let r = alice.groups().await;
    assert!(matches!(r, Err(ClientError::Closed(_))), "{r:?}");
    assert!(!alice.is_connected());
}
