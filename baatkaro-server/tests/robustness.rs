//! Bad input over real TCP: malformed, oversized and out-of-state frames get the
//! error SPEC.md names, and the connection survives where the spec says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_proto::{Command, ErrorCode, Event, Failure, OkReply, ServerFrame};
use common::{Client, TestServer, config, conv, text, user};

/// The next final reply or untagged ERR/BYE as (tag or "*", code or "OK").
async fn outcome(c: &mut Client) -> (String, String) {
    loop {
        match c.frame().await.expect("still connected") {
            ServerFrame::Ok { tag, .. } => return (tag.to_string(), "OK".into()),
            ServerFrame::Err { tag, failure } => {
                return (tag.to_string(), failure.code.as_str().into());
            }
            ServerFrame::Event(Event::Error(f) | Event::Bye(f)) => {
                return ("*".into(), f.code.as_str().into());
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_input_is_answered_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.payload = 4096;
    cfg.limits.chunk = 4096;
    cfg.limits.message = 1000;
    let server = TestServer::start(cfg).await;
    let mut c = Client::connect(server.addr).await;

    // Before HELLO: state errors, and PING works.
    c.send_raw(b"x1 GROUPS\r\nx2 PING\r\n").await;
    assert_eq!(outcome(&mut c).await, ("x1".into(), "HELLO_REQUIRED".into()));
    assert_eq!(outcome(&mut c).await, ("x2".into(), "OK".into()));
    c.hello().await;
    c.send_raw(b"y1 GROUPS\r\ny2 HELLO 1\r\n").await;
    assert_eq!(outcome(&mut c).await, ("y1".into(), "AUTH_REQUIRED".into()));
    assert_eq!(outcome(&mut c).await, ("y2".into(), "WRONG_STATE".into()));

    // Unknown user and wrong password look the same.
    c.send_raw(b"z1 LOGIN nobody {5}\r\nguess\r\n").await;
    assert_eq!(outcome(&mut c).await, ("z1".into(), "AUTH_FAILED".into()));
    let mut alice = Client::register(server.addr, "alice").await;
    c.send_raw(b"z2 LOGIN alice {5}\r\nguess\r\n").await;
    assert_eq!(outcome(&mut c).await, ("z2".into(), "AUTH_FAILED".into()));
    c.send_raw(b"z3 REGISTER alice {5}\r\nguess\r\n").await;
    assert_eq!(outcome(&mut c).await, ("z3".into(), "USER_EXISTS".into()));
    c.send_raw(b"z4 REGISTER Alice {5}\r\nguess\r\n").await;
    assert_eq!(outcome(&mut c).await, ("z4".into(), "BAD_NAME".into()));
    c.send_raw(b"z5 REGISTER eve {5}\r\nguess\r\n").await;
    assert_eq!(outcome(&mut c).await, ("z5".into(), "OK".into()));

    // Framing and grammar errors, one after another on the same connection.
    let cases: &[(&[u8], (&str, &str))] = &[
        (b"e1 FROB rust\r\n", ("e1", "UNKNOWN_COMMAND")),
        (b"e2 KICK rust\r\n", ("e2", "SYNTAX")),
        (b"e3 JOIN ru$t\r\n", ("e3", "BAD_NAME")),
        (b"!!! PING\r\n", ("*", "BAD_TAG")),
        (b"e4 PING\n", ("e4", "BAD_LINE_END")),
        (b"e5 SEND #rust k {3}\r\na\x01b\r\n", ("e5", "BAD_TEXT")),
        (b"e6 SEND #rust k {9999}\r\n", ("e6", "PAYLOAD_TOO_LARGE")),
        (b"e7 CREATE x}\r\n", ("e7", "SYNTAX")),
        (b"e8 SEND #nowhere k {2}\r\nhi\r\n", ("e8", "NO_SUCH_GROUP")),
        (b"e9 SEND @nobody k {2}\r\nhi\r\n", ("e9", "NO_SUCH_USER")),
        (b"e10 HISTORY #rust after 0 0\r\n", ("e10", "SYNTAX")),
        (b"e11 LOGIN alice {3}\r\nabc\r\n", ("e11", "WRONG_STATE")),
        (b"e12 FILE-STATUS f1\r\n", ("e12", "NO_SUCH_FILE")),
    ];
    for (bytes, want) in cases {
        c.send_raw(bytes).await;
        if bytes.starts_with(b"e6") {
            // The refused payload is skipped without being buffered.
            c.send_raw(&vec![b'z'; 9999]).await;
            c.send_raw(b"\r\n").await;
        }
        assert_eq!(
            outcome(&mut c).await,
            (want.0.to_string(), want.1.to_string()),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let long = format!("l1 JOIN {}\r\n", "a".repeat(2000));
    c.send_raw(long.as_bytes()).await;
    assert_eq!(outcome(&mut c).await, ("l1".into(), "LINE_TOO_LONG".into()));
    let too_long = "y".repeat(1001);
    let send =
        Command::Send { to: conv("@alice"), key: "k".parse().unwrap(), text: text(&too_long) };
    c.err(send, ErrorCode::TextTooLong).await;
    // After all that, the connection works.
    c.send_raw(b"ok1 PING\r\n").await;
    assert_eq!(outcome(&mut c).await, ("ok1".into(), "OK".into()));
    let (_, r) = c
        .ok(Command::Send { to: conv("@alice"), key: "k2".parse().unwrap(), text: text("hi") })
        .await;
    assert!(matches!(r, OkReply::Send { seq: 1, .. }));

    // A payload not followed by CRLF is fatal: BYE, then the end.
    c.send_raw(b"f1 SEND @alice k3 {2}\r\nhiXX").await;
    let frames = c.until_closed().await;
    assert!(
        matches!(
            frames.last(),
            Some(ServerFrame::Event(Event::Bye(Failure { code: ErrorCode::BadPayloadEnd, .. })))
        ),
        "{frames:?}"
    );
    // The server carries on for everyone else.
    alice.ok(Command::Groups).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_from_the_configuration_are_enforced_with_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.rate = 1;
    cfg.limits.burst = 2;
    cfg.limits.sessions = 2;
    let server = TestServer::start(cfg).await;
    let mut a = Client::register(server.addr, "alice").await;
    // Two sends in the burst, then RATE_LIMITED with a retry hint.
    a.say("@alice", "n1", "one").await;
    a.say("@alice", "n2", "two").await;
    match a
        .call(Command::Send { to: conv("@alice"), key: "n3".parse().unwrap(), text: text("three") })
        .await
        .1
    {
        Err(Failure { code: ErrorCode::RateLimited, retry_after: Some(ms), .. }) => {
            assert!(ms <= 1000)
        }
        other => panic!("{other:?}"),
    }
    // A retried key is answered even while limited: it stores nothing.
    let (_, r) = a
        .ok(Command::Send { to: conv("@alice"), key: "n1".parse().unwrap(), text: text("one") })
        .await;
    assert!(matches!(r, OkReply::Send { seq: 1, .. }));
    // The second session is allowed; a third LOGIN is refused and closed.
    let _b = Client::login(server.addr, "alice").await;
    let mut c = Client::connect(server.addr).await;
    c.hello().await;
    c.send(Command::Login { user: user("alice"), password: common::password("alice") }).await;
    let frames = c.until_closed().await;
    assert!(
        matches!(
            frames.last(),
            Some(ServerFrame::Err {
                failure: Failure { code: ErrorCode::TooManyConnections, .. },
                ..
            })
        ),
        "{frames:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_limit_are_greeted_with_bye() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_per_address = 2;
    let server = TestServer::start(cfg).await;
    let mut a = Client::connect(server.addr).await;
    a.hello().await;
    let mut b = Client::connect(server.addr).await;
    b.hello().await;
    let frames = Client::connect(server.addr).await.until_closed().await;
    assert!(
        matches!(
            &frames[..],
            [ServerFrame::Event(Event::Bye(Failure {
                code: ErrorCode::TooManyConnections,
                retry_after: Some(_),
                ..
            }))]
        ),
        "{frames:?}"
    );
    // The two that were let in are unaffected.
    a.send_raw(b"p PING\r\n").await;
    assert_eq!(outcome(&mut a).await, ("p".into(), "OK".into()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_per_minute_from_one_address_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.logins_per_minute = 3;
    let server = TestServer::start(cfg).await;
    let mut c = Client::connect(server.addr).await;
    c.hello().await;
    for i in 0..3 {
        c.send_raw(format!("g{i} LOGIN nobody {{5}}\r\nguess\r\n").as_bytes()).await;
        assert_eq!(outcome(&mut c).await.1, "AUTH_FAILED");
    }
    c.send_raw(b"g9 LOGIN nobody {5}\r\nguess\r\n").await;
    match c.frame().await {
        Some(ServerFrame::Err {
            failure: Failure { code: ErrorCode::RateLimited, retry_after: Some(ms), .. },
            ..
        }) => {
            assert!(ms > 0 && ms <= 20_000, "{ms}");
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_with_bye() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.idle = 1;
    let server = TestServer::start(cfg).await;
    let mut c = Client::connect(server.addr).await;
    c.hello().await;
    // Nothing more is sent: the server's idle timer closes the connection.
    let frames = c.until_closed().await;
    assert!(
        matches!(
            &frames[..],
            [ServerFrame::Event(Event::Bye(Failure { code: ErrorCode::IdleTimeout, .. }))]
        ),
        "{frames:?}"
    );
    server.stop().await;
}
