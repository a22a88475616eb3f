//! One handle, shared: a task that sends and a task that receives on clones of
//! the same client, at the same time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_client::{ClientEvent, Conversation, Event, StoredEvent, Text};
use common::{TestServer, WAIT, next, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_sends_while_another_receives_on_the_same_handle() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let alice = register(server.addr, "alice").await;
    let bob = register(server.addr, "bob").await;
    let rust = "rust".parse().unwrap();
    alice.create(rust, Some(baatkaro_client::JoinRule::Open)).await.unwrap();
    bob.join(rust, None).await.unwrap();
    let group = Conversation::Group(rust);
    const N: usize = 50;

    let mut events = alice.events();
    let receiver = tokio::spawn(async move {
        let mut from_bob = Vec::new();
        while from_bob.len() < N {
            if let ClientEvent::Event(Event::Stored(StoredEvent::Message { from, text, .. })) =
                next(&mut events).await
                && from.as_str() == "bob"
            {
                from_bob.push(text.to_string());
            }
        }
        from_bob
    });
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..N {
                seqs.push(
                    alice.send(group, Text::new(&format!("a{i}")).unwrap()).await.unwrap().seq,
                );
            }
            seqs
        })
    };
    for i in 0..N {
        bob.send(group, Text::new(&format!("b{i}")).unwrap()).await.unwrap();
    }
    let heard = tokio::time::timeout(WAIT, receiver).await.unwrap().unwrap();
    let seqs = tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    assert_eq!(heard, (0..N).map(|i| format!("b{i}")).collect::<Vec<_>>());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "alice's sends are stored in order");
    let history = alice.history_after(group, 0).await.unwrap();
    assert_eq!(history.latest as usize, 2 * N + 1, "the join and every message, once each");
    server.stop().await;
}
