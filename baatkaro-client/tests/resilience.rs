//! The client against servers that misbehave or go away at awkward moments: a
//! scripted stand-in server (`fake`) decides each answer by connection and verb,
//! and the real server is restarted under a client that reconnects. Each test is
//! a case an independent review found broken.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baatkaro_client::proto::{RequestDecoder, Verb};
use baatkaro_client::{
    Client, ClientError, ClientEvent, ConnectOptions, Conversation, Event, Password, StoredEvent,
    Text,
};
use common::{TestServer, WAIT, next, password, register};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hello_ok(tag: &str, idle: u64) -> String {
    format!(
        "{tag} OK HELLO 1 fake/1 features=files,file-cancel,tokens,account line=1024 \
         payload=1048576 message=16384 reason=1024 file=4294967296 chunk=1048576 \
         quota=17179869184 uploads=4 partial=86400 groups=256 members=10000 pending=1000 \
         invites=1000 rate=1000 burst=10000 history=0 page=1000 inflight=1024 sessions=16 \
         idle={idle} expiry=604800 keys=604800 queue=8388608\r\n"
    )
}

/// What the fake server does with one request.
enum Act {
    Send(Vec<u8>),
    /// Reads on, answers nothing (a dead peer, or a server stuck on a hash).
    Silent,
    Close(Vec<u8>),
}

/// A scripted server: `script(connection number, tag, verb)` decides each answer.
async fn fake<F>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, &str, Verb) -> Act + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move {
                let mut decoder = RequestDecoder::new(1 << 24);
                let mut buf = vec![0u8; 1 << 16];
                let mut silent = false;
                loop {
                    let got = stream.read(&mut buf).await.unwrap_or(0);
                    if got == 0 {
                        return;
                    }
                    if silent {
                        continue;
                    }
                    decoder.push(&buf[..got]);
                    while let Some(Ok(req)) = decoder.next_frame() {
                        match script(n, req.tag.as_ref(), req.command.verb()) {
                            Act::Send(b) => {
                                if stream.write_all(&b).await.is_err() {
                                    return;
                                }
                            }
                            Act::Silent => silent = true,
                            Act::Close(b) => {
                                let _ = stream.write_all(&b).await;
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, conns)
}

fn reconnecting() -> ConnectOptions {
    ConnectOptions::default().reconnect(true).timeout(Duration::from_secs(1))
}

/// Waits for the first event `pick` accepts, within [`WAIT`].
async fn first<T>(
    events: &mut baatkaro_client::Events,
    mut pick: impl FnMut(ClientEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(t) = pick(events.next().await.expect("the stream goes on")) {
                return t;
            }
        }
    })
    .await
    .expect("the event came in time")
}

/// An answer past the client's bound fails that request alone: the connection
/// goes on, and nothing is sent again (it used to fail the whole session, and a
/// reconnecting client sent the same FILE-GET on every new connection, forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_fails_its_request_and_the_connection_goes_on() {
    let chunk = vec![b'a'; 1 << 20];
    let (addr, conns) = fake(move |_, tag, verb| match verb {
        Verb::Hello => Act::Send(hello_ok(tag, 300).into_bytes()),
        Verb::FileGet => {
            let mut out = Vec::new();
            for i in 0..65u64 {
                out.extend(format!("{tag} CHUNK f1 {} {{{}}}\r\n", i << 20, chunk.len()).bytes());
                out.extend(&chunk);
                out.extend(b"\r\n");
            }
            out.extend(format!("{tag} OK FILE-GET f1 0 {}\r\n", 65u64 << 20).bytes());
            Act::Send(out)
        }
        _ => Act::Send(format!("{tag} OK PING\r\n").into_bytes()),
    })
    .await;
    let c = Client::connect_with(&addr.to_string(), &reconnecting()).await.unwrap();
    let got = tokio::time::timeout(WAIT, c.file_get("f1".parse().unwrap(), 0, 0)).await.unwrap();
    assert!(matches!(got, Err(ClientError::Protocol(_))), "{:?}", got.map(|v| v.len()));
    c.ping().await.unwrap();
    assert_eq!(conns.load(Ordering::SeqCst), 1, "one connection throughout");
}

/// A HISTORY refused during the catch-up (kicked, or the group deleted, between
/// CONVERSATIONS and HISTORY) skips that conversation; the reconnect goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_refused_during_the_catch_up_is_skipped() {
    let (addr, _) = fake(|conn, tag, verb| match (conn, verb) {
        (_, Verb::Hello) => Act::Send(hello_ok(tag, 300).into_bytes()),
        (_, Verb::Login) => Act::Send(format!("{tag} OK LOGIN alice\r\n").into_bytes()),
        (0, Verb::Conversations) => {
            Act::Close(format!("{tag} CONV #rust 3\r\n{tag} OK CONVERSATIONS 1\r\n").into_bytes())
        }
        (_, Verb::Conversations) => {
            Act::Send(format!("{tag} CONV #rust 5\r\n{tag} OK CONVERSATIONS 1\r\n").into_bytes())
        }
        (_, Verb::History) => Act::Send(format!("{tag} ERR NOT_MEMBER\r\n").into_bytes()),
        _ => Act::Send(format!("{tag} OK PING\r\n").into_bytes()),
    })
    .await;
    let c = Client::connect_with(&addr.to_string(), &reconnecting()).await.unwrap();
    let mut events = c.events();
    c.login("alice".parse().unwrap(), Password::new("pw-alice").unwrap()).await.unwrap();
    let outcome = first(&mut events, |e| match e {
        ClientEvent::Reconnected { missed } => Some(Ok(missed)),
        ClientEvent::Closed { reason } => Some(Err(reason)),
        _ => None,
    })
    .await;
    assert_eq!(outcome, Ok(0));
    assert!(c.is_connected());
}

/// A server that stops answering (a half-open link: nothing answers, nothing
/// resets) is noticed by the keepalive within `idle`, and the client reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_keepalives_end_the_connection() {
    let (addr, conns) = fake(|_, tag, verb| match verb {
        Verb::Hello => Act::Send(hello_ok(tag, 1).into_bytes()),
        _ => Act::Silent,
    })
    .await;
    let c = Client::connect_with(&addr.to_string(), &reconnecting()).await.unwrap();
    let mut events = c.events();
    // idle=1: a PING every 500 ms; one unanswered for a whole second is enough.
    let reason = first(&mut events, |e| match e {
        ClientEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("did not answer a PING"), "{reason}");
    assert!(!c.is_connected());
    drop(c);
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

/// A reconnect whose login the server never answers gives up on that attempt
/// after the options' `timeout` and tries again; it never hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_stuck_in_its_login_times_out_and_tries_again() {
    let (addr, conns) = fake(|conn, tag, verb| match (conn, verb) {
        (_, Verb::Hello) => Act::Send(hello_ok(tag, 300).into_bytes()),
        (0, Verb::Login) => Act::Send(format!("{tag} OK LOGIN alice\r\n").into_bytes()),
        (0, Verb::Conversations) => {
            Act::Close(format!("{tag} OK CONVERSATIONS 0\r\n").into_bytes())
        }
        (_, Verb::Login) => Act::Silent,
        _ => Act::Send(format!("{tag} OK PING\r\n").into_bytes()),
    })
    .await;
    let c = Client::connect_with(&addr.to_string(), &reconnecting()).await.unwrap();
    let mut events = c.events();
    c.login("alice".parse().unwrap(), Password::new("pw-alice").unwrap()).await.unwrap();
    let reason = first(&mut events, |e| match e {
        ClientEvent::Disconnected { reason, .. } if reason.contains("did not answer within") => {
            Some(reason)
        }
        _ => None,
    })
    .await;
    assert!(conns.load(Ordering::SeqCst) >= 2, "{reason}");
    // A request made meanwhile fails at once if it is not safe to send late.
    let r = c.create("rust".parse().unwrap(), None).await;
    assert!(matches!(r, Err(ClientError::NotConnected(_))), "{r:?}");
}

/// A read in flight when the connection drops is sent again on the next one and
/// answered there: the caller never sees the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_when_the_link_drops_is_answered_after_the_reconnect() {
    let (addr, conns) = fake(|conn, tag, verb| match (conn, verb) {
        (_, Verb::Hello) => Act::Send(hello_ok(tag, 300).into_bytes()),
        (_, Verb::Login) => Act::Send(format!("{tag} OK LOGIN alice\r\n").into_bytes()),
        (_, Verb::Conversations) => Act::Send(format!("{tag} OK CONVERSATIONS 0\r\n").into_bytes()),
        (0, Verb::Groups) => Act::Close(Vec::new()),
        (_, Verb::Groups) => Act::Send(
            format!("{tag} GROUP rust owner open 1 0\r\n{tag} OK GROUPS 1\r\n").into_bytes(),
        ),
        _ => Act::Send(format!("{tag} OK PING\r\n").into_bytes()),
    })
    .await;
    let c = Client::connect_with(&addr.to_string(), &reconnecting()).await.unwrap();
    let mut events = c.events();
    c.login("alice".parse().unwrap(), Password::new("pw-alice").unwrap()).await.unwrap();
    let ask = tokio::spawn({
        let c = c.clone();
        async move { c.groups().await }
    });
    first(&mut events, |e| matches!(e, ClientEvent::Disconnected { .. }).then_some(())).await;
    // The backoff's first wait is a second or more: cut it short (if the wait
    // has not begun yet, the backoff's own second does).
    c.reconnect_now();
    let answered = tokio::time::timeout(WAIT, ask).await.unwrap().unwrap().unwrap();
    assert_eq!(answered.len(), 1);
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

/// After a password change, a reconnect logs in with the new password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_after_a_password_change_logs_in_with_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let alice = Client::connect_with(&addr.to_string(), &reconnecting()).await.unwrap();
    let mut events = alice.events();
    alice.register("alice".parse().unwrap(), password("alice")).await.unwrap();
    alice.change_password(password("alice"), Password::new("pw-alice-new").unwrap()).await.unwrap();
    server.stop().await;
    let server = TestServer::start(dir.path(), addr).await;
    alice.reconnect_now();
    let outcome = first(&mut events, |e| match e {
        ClientEvent::Reconnected { .. } => Some(Ok(())),
        ClientEvent::Closed { reason } => Some(Err(reason)),
        _ => None,
    })
    .await;
    assert_eq!(outcome, Ok(()), "reconnect after PASSWORD");
    server.stop().await;
}

/// A group joined while away is caught up from the user's own JOINED, as a live
/// join would show it, not with its history from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_joined_while_away_starts_at_the_join() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let bob = register(addr, "bob").await;
    let rust = "rust".parse().unwrap();
    bob.create(rust, None).await.unwrap();
    for i in 0..3 {
        bob.send(Conversation::Group(rust), Text::new(&format!("old {i}")).unwrap()).await.unwrap();
    }
    let alice = Client::connect_with(&addr.to_string(), &reconnecting()).await.unwrap();
    let mut events = alice.events();
    alice.register("alice".parse().unwrap(), password("alice")).await.unwrap();
    alice.join(rust, None).await.unwrap();
    drop(bob);
    server.stop().await;
    let server = TestServer::start(dir.path(), addr).await;
    let bob = Client::connect(&addr.to_string()).await.unwrap();
    bob.login("bob".parse().unwrap(), password("bob")).await.unwrap();
    bob.approve(rust, "alice".parse().unwrap()).await.unwrap();
    bob.send(Conversation::Group(rust), Text::new("welcome").unwrap()).await.unwrap();
    alice.reconnect_now();
    let mut texts = Vec::new();
    let mut joined = false;
    loop {
        match next(&mut events).await {
            ClientEvent::Event(Event::Stored(StoredEvent::Message { text, .. })) => {
                texts.push(text.to_string());
            }
            ClientEvent::Event(Event::Stored(StoredEvent::Joined { user, .. })) => {
                joined |= user.as_str() == "alice";
            }
            ClientEvent::Reconnected { .. } => break,
            _ => {}
        }
    }
    assert!(joined, "her JOINED is part of the catch-up");
    assert_eq!(texts, ["welcome"], "nothing from before she joined");
    server.stop().await;
}

/// A LOGOUT cut short by the link does not log back in: the client stops, and
/// its event stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_cut_short_does_not_log_back_in() {
    let logins = Arc::new(AtomicUsize::new(0));
    let seen = logins.clone();
    let (addr, _) = fake(move |_, tag, verb| match verb {
        Verb::Hello => Act::Send(hello_ok(tag, 300).into_bytes()),
        Verb::Login => {
            seen.fetch_add(1, Ordering::SeqCst);
            Act::Send(format!("{tag} OK LOGIN alice\r\n").into_bytes())
        }
        Verb::Conversations => Act::Send(format!("{tag} OK CONVERSATIONS 0\r\n").into_bytes()),
        // The server logged the session out; the link broke before the reply.
        Verb::Logout => Act::Close(Vec::new()),
        _ => Act::Send(format!("{tag} OK PING\r\n").into_bytes()),
    })
    .await;
    let c = Client::connect_with(&addr.to_string(), &reconnecting()).await.unwrap();
    let mut events = c.events();
    c.login("alice".parse().unwrap(), Password::new("pw-alice").unwrap()).await.unwrap();
    let r = c.logout(false).await;
    assert!(matches!(r, Err(ClientError::Closed(_))), "{r:?}");
    let rest = tokio::time::timeout(WAIT, async {
        let mut rest = Vec::new();
        while let Some(e) = events.next().await {
            rest.push(e);
        }
        rest
    })
    .await
    .expect("the stream ends");
    assert!(rest.iter().all(|e| !matches!(e, ClientEvent::Disconnected { .. })), "{rest:?}");
    assert_eq!(logins.load(Ordering::SeqCst), 1);
}

/// `close` ends the connection and the reconnecting: calls fail, the stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_the_client_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let alice = Client::connect_with(&server.addr.to_string(), &reconnecting()).await.unwrap();
    let mut events = alice.events();
    alice.register("alice".parse().unwrap(), password("alice")).await.unwrap();
    alice.close();
    let ended = tokio::time::timeout(WAIT, async { while events.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the stream ends");
    assert!(matches!(alice.groups().await, Err(ClientError::Closed(_))));
    assert!(!alice.is_connected());
    server.stop().await;
}
