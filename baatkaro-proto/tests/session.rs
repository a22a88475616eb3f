//! The session machine's own rules, driven by hand: handshake, pipelined replies in
//! request order, and the in-flight budget. (tests/simulation.rs drives whole
//! scenarios with several sessions and a group.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baatkaro_proto::session::{RequestId, Session, SessionConfig, SessionEvent, SessionState};
use baatkaro_proto::{
    DoneVerb, ErrorCode, Features, Limits, OkReply, ServerFrame, ServerFrameDecoder, Software,
};

fn config(inflight: u64) -> SessionConfig {
    SessionConfig {
        software: Software::new("test/1").unwrap(),
        features: Features::default(),
        limits: Limits { inflight, ..Limits::default() },
    }
}

/// Drains the session: the frames it wrote (decoded) and its events.
fn drain(s: &mut Session) -> (Vec<ServerFrame>, Vec<SessionEvent>) {
    let mut d = ServerFrameDecoder::new(1 << 20);
    while let Some(bytes) = s.poll_transmit() {
        d.push(&bytes);
    }
    let frames = d.map(|f| f.unwrap()).collect();
    let events = std::iter::from_fn(|| s.poll_event()).collect();
    (frames, events)
}

/// The ids of requests the session handed on (and nothing else).
fn request_ids(events: &[SessionEvent]) -> Vec<RequestId> {
    events
        .iter()
        .map(|e| match e {
            SessionEvent::Request { id, .. } => *id,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn tags(frames: &[ServerFrame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f {
            ServerFrame::Ok { tag, .. }
            | ServerFrame::Err { tag, .. }
            | ServerFrame::Item { tag, .. } => tag.to_string(),
            ServerFrame::Event(_) => "*".into(),
        })
        .collect()
}

#[test]
fn login_then_pipelined_requests_answered_out_of_order_reply_in_order() {
    let mut s = Session::new(config(16), 0);
    s.handle_input(b"a GROUPS\r\nb HELLO 1\r\nc LOGIN ann {2}\r\npw\r\n", 1);
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["a", "b"]);
    assert!(
        matches!(&frames[0], ServerFrame::Err { failure, .. } if failure.code == ErrorCode::HelloRequired)
    );
    let [SessionEvent::Request { id: login, .. }] = events[..] else { panic!("{events:?}") };
    s.reply(login, Ok(OkReply::Login { user: "ann".parse().unwrap() }));
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["c"]);
    assert_eq!(events, [SessionEvent::LoggedIn { user: "ann".parse().unwrap() }]);
    assert_eq!(s.state(), SessionState::LoggedIn("ann".parse().unwrap()));

    s.handle_input(b"d GROUPS\r\ne PING\r\nf CREATE g\r\n", 2);
    let (frames, events) = drain(&mut s);
    assert!(frames.is_empty(), "PING waits behind d: {frames:?}");
    let ids = request_ids(&events);
    s.reply(ids[1], Ok(OkReply::Done { verb: DoneVerb::Create }));
    assert!(drain(&mut s).0.is_empty(), "f waits behind d");
    s.reply(ids[0], Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }));
    assert_eq!(tags(&drain(&mut s).0), ["d", "e", "f"]);
}

#[test]
fn inflight_budget_holds_requests_back_until_answered() {
    let mut s = Session::new(config(2), 0);
    s.handle_input(b"h HELLO 1\r\nl LOGIN ann {2}\r\npw\r\n", 0);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    s.reply(id, Ok(OkReply::Login { user: "ann".parse().unwrap() }));
    drain(&mut s);
    s.handle_input(b"1 GROUPS\r\n2 GROUPS\r\n3 GROUPS\r\n4 GROUPS\r\n", 1);
    let (_, events) = drain(&mut s);
    assert_eq!(events.len(), 2);
    assert!(!s.wants_input());
    let SessionEvent::Request { id, .. } = events[0] else { panic!() };
    s.reply(id, Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }));
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["1"]);
    assert_eq!(events.len(), 1, "one more request released: {events:?}");
}

#[test]
fn chunks_in_flight_past_queue_bytes_hold_reading_back_until_answered() {
    // HELLO fixes the payload limit; queue 64 KiB of chunk payload in flight.
    let mut cfg = config(1024);
    cfg.limits.queue = 65_536;
    let mut s = Session::new(cfg, 0);
    s.handle_input(b"h HELLO 1\r\nl LOGIN ann {2}\r\npw\r\n", 0);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    s.reply(id, Ok(OkReply::Login { user: "ann".parse().unwrap() }));
    drain(&mut s);
    // Three 30,000-byte chunks and a PING: the third crosses 64 KiB, so the PING waits.
    let mut input = Vec::new();
    for k in 0..3 {
        input.extend_from_slice(
            format!("c{k} FILE-CHUNK f {} {{30000}}\r\n", k * 30_000).as_bytes(),
        );
        input.extend(std::iter::repeat_n(b'x', 30_000));
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"p PING\r\n");
    s.handle_input(&input, 1);
    let (frames, events) = drain(&mut s);
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(events.len(), 3);
    assert!(!s.wants_input(), "90,000 chunk bytes in flight");
    let ids = request_ids(&events);
    // Answering the last one frees its bytes at once, though its reply waits its turn.
    s.reply(ids[2], Ok(OkReply::FileChunk { file: "f".parse().unwrap(), received: 30_000 }));
    assert!(s.wants_input(), "60,000 bytes in flight");
    let (frames, _) = drain(&mut s);
    assert!(frames.is_empty(), "c2 waits behind c0 and c1: {frames:?}");
    for id in &ids[..2] {
        s.reply(*id, Ok(OkReply::FileChunk { file: "f".parse().unwrap(), received: 90_000 }));
    }
    let (frames, _) = drain(&mut s);
    assert_eq!(tags(&frames), ["c0", "c1", "c2", "p"]);
}

#[test]
fn idle_timeout_is_a_bye_and_the_end() {
    let mut s = Session::new(config(16), 1_000);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, 1_000 + Limits::default().idle * 1000);
    s.handle_timeout(deadline - 1);
    assert!(drain(&mut s).0.is_empty());
    s.handle_timeout(deadline);
    let (frames, events) = drain(&mut s);
    assert!(
        matches!(&frames[..], [ServerFrame::Event(baatkaro_proto::Event::Bye(f))] if f.code == ErrorCode::IdleTimeout)
    );
    assert_eq!(events, [SessionEvent::Closed { reason: Some(ErrorCode::IdleTimeout) }]);
    assert_eq!(s.poll_timeout(), None);
    s.handle_input(b"x PING\r\n", deadline + 1);
    assert!(drain(&mut s).0.is_empty(), "nothing after the end");
}

#[test]
fn a_fatal_reply_is_the_last_frame() {
    let mut s = Session::new(config(16), 0);
    s.handle_input(b"a HELLO 1\r\nb LOGIN ann {2}\r\npw\r\nc PING\r\n", 1);
    let _ = s.poll_transmit();
    let Some(SessionEvent::Request { id: login, .. }) = s.poll_event() else { panic!() };
    // A LOGIN refused with a code that closes the connection ends the session.
    s.reply(login, Err(baatkaro_proto::Failure::new(ErrorCode::TooManyConnections)));
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["b"], "the PING behind it is never answered");
    assert_eq!(events, [SessionEvent::Closed { reason: Some(ErrorCode::TooManyConnections) }]);
    assert_eq!(s.state(), SessionState::Closed);
}

#[test]
fn items_held_for_the_reply_order_count_as_queued() {
    let mut s = Session::new(config(16), 0);
    s.handle_input(b"a HELLO 1\r\nb LOGIN ann {2}\r\npw\r\n", 1);
    let _ = s.poll_transmit();
    let Some(SessionEvent::Request { id: login, .. }) = s.poll_event() else { panic!() };
    s.reply(login, Ok(OkReply::Login { user: "ann".parse().unwrap() }));
    let _ = drain(&mut s);
    s.handle_input(b"c GROUPS\r\nd ONLINE\r\n", 2);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let [SessionEvent::Request { id: first, .. }, SessionEvent::Request { id: second, .. }] =
        events[..]
    else {
        panic!("{events:?}")
    };
    // The second request's items wait behind the first, and count.
    s.item(second, &baatkaro_proto::Item::Online { user: "ann".parse().unwrap() });
    assert!(s.poll_transmit().is_none());
    let held = s.queued();
    assert!(held > 0);
    s.reply(first, Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }));
    assert!(s.queued() > held, "the first reply is out, with the held item behind it");
    let bytes = s.poll_transmit().unwrap();
    assert_eq!(s.queued(), 0);
    assert!(bytes.starts_with(b"c OK GROUPS 0\r\nd ONLINE ann\r\n"), "{bytes:?}");
}

#[test]
fn only_the_oldest_unanswered_request_is_next() {
    let mut s = Session::new(config(16), 0);
    s.handle_input(b"a HELLO 1\r\nb LOGIN ann {2}\r\npw\r\n", 1);
    let _ = s.poll_transmit();
    let Some(SessionEvent::Request { id: login, .. }) = s.poll_event() else { panic!() };
    assert!(s.is_next(login));
    s.reply(login, Ok(OkReply::Login { user: "ann".parse().unwrap() }));
    let _ = drain(&mut s);
    s.handle_input(b"c GROUPS\r\nd ONLINE\r\n", 2);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let [SessionEvent::Request { id: first, .. }, SessionEvent::Request { id: second, .. }] =
        events[..]
    else {
        panic!("{events:?}")
    };
    assert!(s.is_next(first) && !s.is_next(second));
    s.reply(first, Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }));
    assert!(s.is_next(second));
}
