//! The session machine's own rules, driven by hand: handshake, pipelined replies in
//! request order, and the in-flight budget. (tests/simulation.rs drives whole
//! scenarios with several sessions and a group.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baatkaro_proto::session::{
    FrameBudget, PIECE, RequestId, SEAL_AT, Session, SessionConfig, SessionEvent, SessionState,
};
use baatkaro_proto::{
    DoneVerb, ErrorCode, Failure, Features, Limits, OkReply, ServerFrame, ServerFrameDecoder,
    Software,
};

fn config(inflight: u64) -> SessionConfig {
    SessionConfig {
        software: Software::new("test/1").unwrap(),
        features: Features::default(),
        limits: Limits { inflight, ..Limits::default() },
        frames: FrameBudget::default(),
    }
}

/// Drains the session: the frames it wrote (decoded) and its events.
fn drain(s: &mut Session) -> (Vec<ServerFrame>, Vec<SessionEvent>) {
    let mut d = ServerFrameDecoder::new(1 << 20);
    while let Some(bytes) = s.poll_transmit() {
        s.handle_written(bytes.len());
        d.push(&bytes);
    }
    let frames = d.map(|f| f.unwrap()).collect();
    let events = std::iter::from_fn(|| s.poll_event()).collect();
    (frames, events)
}

/// Writes out everything the session has to send, as a socket that takes it all.
fn write_out(s: &mut Session) {
    while let Some(bytes) = s.poll_transmit() {
        s.handle_written(bytes.len());
    }
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
    s.reply(login, Ok(OkReply::Login { user: "ann".parse().unwrap() }), 2);
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["c"]);
    assert_eq!(events, [SessionEvent::LoggedIn { user: "ann".parse().unwrap() }]);
    assert_eq!(s.state(), SessionState::LoggedIn("ann".parse().unwrap()));

    s.handle_input(b"d GROUPS\r\ne PING\r\nf CREATE g\r\n", 2);
    let (frames, events) = drain(&mut s);
    assert!(frames.is_empty(), "PING waits behind d: {frames:?}");
    let ids = request_ids(&events);
    s.reply(ids[1], Ok(OkReply::Done { verb: DoneVerb::Create }), 2);
    assert!(drain(&mut s).0.is_empty(), "f waits behind d");
    s.reply(ids[0], Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }), 2);
    assert_eq!(tags(&drain(&mut s).0), ["d", "e", "f"]);
}

#[test]
fn inflight_budget_holds_requests_back_until_answered() {
    let mut s = Session::new(config(2), 0);
    s.handle_input(b"h HELLO 1\r\nl LOGIN ann {2}\r\npw\r\n", 0);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    s.reply(id, Ok(OkReply::Login { user: "ann".parse().unwrap() }), 2);
    drain(&mut s);
    s.handle_input(b"1 GROUPS\r\n2 GROUPS\r\n3 GROUPS\r\n4 GROUPS\r\n", 1);
    let (_, events) = drain(&mut s);
    assert_eq!(events.len(), 2);
    assert!(!s.wants_input());
    let SessionEvent::Request { id, .. } = events[0] else { panic!() };
    s.reply(id, Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }), 2);
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
    s.reply(id, Ok(OkReply::Login { user: "ann".parse().unwrap() }), 2);
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
    s.reply(ids[2], Ok(OkReply::FileChunk { file: "f".parse().unwrap(), received: 30_000 }), 2);
    assert!(s.wants_input(), "60,000 bytes in flight");
    let (frames, _) = drain(&mut s);
    assert!(frames.is_empty(), "c2 waits behind c0 and c1: {frames:?}");
    for id in &ids[..2] {
        s.reply(*id, Ok(OkReply::FileChunk { file: "f".parse().unwrap(), received: 90_000 }), 2);
    }
    let (frames, _) = drain(&mut s);
    assert_eq!(tags(&frames), ["c0", "c1", "c2", "p"]);
}

#[test]
fn idle_timeout_is_a_bye_and_the_end() {
    let mut cfg = config(16);
    cfg.limits.login = 0;
    let mut s = Session::new(cfg, 1_000);
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
    write_out(&mut s);
    let Some(SessionEvent::Request { id: login, .. }) = s.poll_event() else { panic!() };
    // A LOGIN refused with a code that closes the connection ends the session.
    s.reply(login, Err(baatkaro_proto::Failure::new(ErrorCode::TooManyConnections)), 2);
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["b"], "the PING behind it is never answered");
    assert_eq!(events, [SessionEvent::Closed { reason: Some(ErrorCode::TooManyConnections) }]);
    assert_eq!(s.state(), SessionState::Closed);
}

#[test]
fn items_held_for_the_reply_order_count_as_queued() {
    let mut s = Session::new(config(16), 0);
    s.handle_input(b"a HELLO 1\r\nb LOGIN ann {2}\r\npw\r\n", 1);
    write_out(&mut s);
    let Some(SessionEvent::Request { id: login, .. }) = s.poll_event() else { panic!() };
    s.reply(login, Ok(OkReply::Login { user: "ann".parse().unwrap() }), 2);
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
    s.reply(first, Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }), 2);
    assert!(s.queued() > held, "the first reply is out, with the held item behind it");
    let bytes = s.poll_transmit().unwrap();
    assert_eq!(s.queued(), bytes.len(), "handed out, not yet written");
    s.handle_written(bytes.len());
    assert_eq!(s.queued(), 0);
    assert!(bytes.starts_with(b"c OK GROUPS 0\r\nd ONLINE ann\r\n"), "{bytes:?}");
}

#[test]
fn only_the_oldest_unanswered_request_is_next() {
    let mut s = Session::new(config(16), 0);
    s.handle_input(b"a HELLO 1\r\nb LOGIN ann {2}\r\npw\r\n", 1);
    write_out(&mut s);
    let Some(SessionEvent::Request { id: login, .. }) = s.poll_event() else { panic!() };
    assert!(s.is_next(login));
    s.reply(login, Ok(OkReply::Login { user: "ann".parse().unwrap() }), 2);
    let _ = drain(&mut s);
    s.handle_input(b"c GROUPS\r\nd ONLINE\r\n", 2);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let [SessionEvent::Request { id: first, .. }, SessionEvent::Request { id: second, .. }] =
        events[..]
    else {
        panic!("{events:?}")
    };
    assert!(s.is_next(first) && !s.is_next(second));
    s.reply(first, Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }), 2);
    assert!(s.is_next(second));
}

/// A shell takes a read's requests as one vector, at most `max` at a time, and in
/// the order the session made them with its other events: requests made before a
/// close come out before it, whichever way they are taken.
#[test]
fn requests_are_taken_together_in_order_with_the_other_events() {
    let mut s = logged_in(config(16));
    s.handle_input(b"a GROUPS\r\nb ONLINE\r\nc GROUPS\r\n", 1);
    let ids = |r: Vec<(RequestId, baatkaro_proto::Command)>| {
        r.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    let first = ids(s.take_requests(2));
    let second = ids(s.take_requests(2));
    assert_eq!((first.len(), second.len()), (2, 1));
    assert!(first[0] < first[1] && first[1] < second[0], "{first:?} {second:?}");
    assert!(s.take_requests(2).is_empty() && s.poll_event().is_none());

    // Two requests, then a payload not ended by CRLF: fatal, the session closes.
    s.handle_input(b"d GROUPS\r\ne ONLINE\r\nf SEND #g k {2}\r\nabXY", 2);
    assert!(s.take_requests(256).is_empty(), "the close was made after them: they come first");
    let (_, events) = drain(&mut s);
    let [
        SessionEvent::Request { id: d, .. },
        SessionEvent::Request { id: e, .. },
        SessionEvent::Closed { reason: Some(ErrorCode::BadPayloadEnd) },
    ] = events[..]
    else {
        panic!("{events:?}")
    };
    assert!(second[0] < d && d < e);
}

/// The room `take_requests` leaves for the next read's requests survives the
/// shell's next call, which finds the queue empty (the server's `pass_requests`
/// takes until nothing comes): that call gives nothing away, and the next read's
/// requests go into the room made for them, without the queue growing by copying
/// (4, 8, 16: it would end with room for 16).
#[test]
fn the_room_left_for_the_next_reads_requests_outlives_an_empty_take() {
    let mut s = logged_in(config(64));
    let read = |n: usize, tag: &str| {
        (0..n).map(|i| format!("{tag}{i} GROUPS\r\n")).collect::<String>().into_bytes()
    };
    s.handle_input(&read(10, "a"), 1);
    assert_eq!(s.take_requests(256).len(), 10);
    let empty = s.take_requests(256);
    assert!(empty.is_empty());
    assert_eq!(empty.capacity(), 0, "an empty take handed the queue's room away");
    s.handle_input(&read(10, "b"), 2);
    let second = s.take_requests(256);
    assert_eq!(second.len(), 10);
    assert_eq!(second.capacity(), 10, "the queue grew by copying instead of using its room");
}

/// An answer lets the frames that waited in the decoder through at once, before
/// any of its bytes are written (a client that does not read still has its
/// pipelined requests served): those held by the in-flight budget, and those after
/// a LOGIN, which come after the login.
#[test]
fn an_answer_releases_the_frames_waiting_behind_it_before_anything_is_written() {
    let groups = || Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 });
    let mut s = logged_in(config(1));
    s.handle_input(b"1 GROUPS\r\n2 GROUPS\r\n", 1);
    let first = s.take_requests(8);
    assert_eq!(first.len(), 1, "the in-flight budget holds the second back");
    assert!(!s.has_events());
    s.reply(first[0].0, groups(), 2);
    let second = s.take_requests(8);
    assert_eq!(second.len(), 1, "released by the answer, nothing written yet");
    assert!(first[0].0 < second[0].0);

    let mut s = Session::new(config(16), 0);
    s.handle_input(b"h HELLO 1\r\nl LOGIN ann {2}\r\npw\r\n1 GROUPS\r\n", 0);
    let login = s.take_requests(8);
    assert_eq!(login.len(), 1, "nothing after the LOGIN is read before its answer");
    s.reply(login[0].0, Ok(OkReply::Login { user: "ann".parse().unwrap() }), 1);
    assert!(s.take_requests(8).is_empty(), "the login comes first");
    assert_eq!(s.poll_event(), Some(SessionEvent::LoggedIn { user: "ann".parse().unwrap() }));
    assert_eq!(s.take_requests(8).len(), 1, "the request after the LOGIN, after the login");
    assert!(s.poll_event().is_none());
}

fn bye_code(frames: &[ServerFrame]) -> Option<ErrorCode> {
    match frames.last() {
        Some(ServerFrame::Event(baatkaro_proto::Event::Bye(f))) => Some(f.code),
        _ => None,
    }
}

fn logged_in(cfg: SessionConfig) -> Session {
    let mut s = Session::new(cfg, 0);
    s.handle_input(b"h HELLO 1\r\nl LOGIN ann {2}\r\npw\r\n", 0);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    s.reply(id, Ok(OkReply::Login { user: "ann".parse().unwrap() }), 0);
    drain(&mut s);
    s
}

/// SPEC.md 3, 5.4 and 11.2: replies the session makes itself (PING, refusals,
/// framing errors) count against `queue` like events do. A client that pipelines
/// PINGs and never reads is read no more once half of `queue` waits for it, before
/// and after login: what it sends then waits in its socket, not in the server, and it
/// is closed when it has been idle long enough (or, before login, at its deadline).
#[test]
fn pipelined_pings_never_read_stop_being_read_at_half_the_queue() {
    for login in [false, true] {
        let mut cfg = config(1_024);
        cfg.limits.queue = 65_536;
        let mut s = if login { logged_in(cfg) } else { Session::new(cfg, 0) };
        // The socket takes one piece and then nothing more.
        let mut piece = None;
        let mut rounds = 0;
        while s.wants_input() && rounds < 10_000 {
            s.handle_input(&b"p PING\r\n".repeat(100), 1);
            if piece.is_none() {
                piece = s.poll_transmit();
            }
            rounds += 1;
        }
        assert!(!s.wants_input() && !s.is_closed(), "paused, not closed (login: {login})");
        assert!(rounds * 100 * 13 < 3 * 65_536, "paused soon: {rounds} rounds");
        assert!(s.queued() <= 65_536 / 2 + 2_000, "bounded: {}", s.queued());
        // Nothing more is decoded however much is pushed, and no frame arrived: the
        // connection is idle.
        let before = s.queued();
        s.handle_input(&b"p PING\r\n".repeat(1_000), 2);
        assert_eq!(s.queued(), before);
        let deadline = s.poll_timeout().unwrap();
        s.handle_timeout(deadline);
        let rest: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
        let mut d = ServerFrameDecoder::new(1 << 20);
        for b in piece.iter().chain(&rest) {
            d.push(b);
        }
        let frames: Vec<_> = d.map(|f| f.unwrap()).collect();
        let why = if login { ErrorCode::IdleTimeout } else { ErrorCode::LoginTimeout };
        assert_eq!(bye_code(&frames), Some(why), "login: {login}");
    }
}

/// SPEC.md 5.4: events the client does not read are what makes a slow consumer: past
/// `queue` the session closes, drops the backlog it had not handed out, and its BYE
/// follows the piece being written.
#[test]
fn events_past_the_queue_close_as_a_slow_consumer_and_drop_the_backlog() {
    let mut cfg = config(1_024);
    cfg.limits.queue = 65_536;
    let mut s = logged_in(cfg);
    let event = format!("* MSG #g 1 1 ann {{1000}}\r\n{}\r\n", "x".repeat(1000)).into_bytes();
    let mut piece = None;
    for _ in 0..1_000 {
        s.send_encoded(&event);
        if piece.is_none() {
            piece = s.poll_transmit();
        }
        if s.is_closed() {
            break;
        }
    }
    assert!(s.is_closed());
    let rest: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    let rest_len: usize = rest.iter().map(|b| b.len()).sum();
    assert!(rest_len < 100, "the backlog was dropped: {rest_len} bytes left");
    let mut d = ServerFrameDecoder::new(1 << 20);
    for b in piece.iter().chain(&rest) {
        d.push(b);
    }
    let frames: Vec<_> = d.map(|f| f.unwrap()).collect();
    assert_eq!(bye_code(&frames), Some(ErrorCode::SlowConsumer));
}

/// Events a request caused count the same: past `queue` the session closes as a
/// slow consumer whether they go out at once (their request answered) or wait
/// behind its reply (fails if sending one after its request skips the output's
/// checks).
#[test]
fn events_after_a_request_past_the_queue_close_as_a_slow_consumer() {
    for waiting in [false, true] {
        let mut cfg = config(1_024);
        cfg.limits.queue = 65_536;
        let mut s = logged_in(cfg);
        s.handle_input(b"c GROUPS\r\n", 1);
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
        if !waiting {
            s.reply(id, Ok(OkReply::Done { verb: DoneVerb::Ping }), 1);
        }
        let event = format!("* MSG #g 1 1 ann {{1000}}\r\n{}\r\n", "x".repeat(1000));
        let mut sent = 0;
        while !s.is_closed() && sent < 1_000 {
            s.send_encoded_after(id, event.as_bytes());
            sent += 1;
        }
        assert!(s.is_closed(), "waiting: {waiting}");
        assert!(sent * event.len() <= 65_536 + event.len(), "closed late: {sent} events");
        let (frames, _) = drain(&mut s);
        assert_eq!(bye_code(&frames), Some(ErrorCode::SlowConsumer), "waiting: {waiting}");
    }
}

/// Output the socket does not take yet is not grown by copying once a piece holds
/// `SEAL_AT` bytes: the piece is sealed and the next begins, with room for as much
/// again. The pieces are every frame once, whole and in order, none over twice
/// `SEAL_AT` (fails if a full piece is grown up to `PIECE`); pieces sealed because a
/// batch did not fit (the test below) may be smaller.
#[test]
fn a_full_piece_is_sealed_not_grown() {
    let mut cfg = config(1_024);
    cfg.limits.queue = 1 << 24;
    let mut s = logged_in(cfg);
    let frame = |n: usize| {
        let text = "x".repeat(200 + n % 1_500);
        format!("* MSG #g {n} 1 ann {{{}}}\r\n{text}\r\n", text.len()).into_bytes()
    };
    let mut sent = Vec::new();
    for n in 0..400 {
        // Now and then a batch says how much it brings, as the server's shell does.
        if n % 50 == 0 {
            s.reserve_output(20 * 1_000);
        }
        s.send_encoded(&frame(n));
        sent.extend(frame(n));
    }
    let pieces: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert_eq!(pieces.concat(), sent);
    let (last, full) = pieces.split_last().unwrap();
    let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
    assert!(full.len() >= 4, "{lens:?}");
    for p in full {
        assert!(p.len() <= 2 * SEAL_AT + 2_000, "{lens:?}");
    }
    assert!(last.len() <= PIECE);
    let mut d = ServerFrameDecoder::new(1 << 20);
    d.push(&pieces.concat());
    let frames: Vec<_> = d.map(|f| f.unwrap()).collect();
    assert_eq!(frames.len(), 400);
}

/// A batch that does not fit the piece being filled starts a piece of its own:
/// what the piece holds is sealed as it is rather than copied into a larger buffer
/// (fails if the piece is grown instead: one piece would then hold both), and the
/// new piece has room for the whole batch (fails if it is grown frame by frame).
#[test]
fn a_batch_that_does_not_fit_starts_a_piece_of_its_own() {
    let mut cfg = config(1_024);
    cfg.limits.queue = 1 << 24;
    let mut s = logged_in(cfg);
    let frame = format!("* MSG #g 1 1 ann {{400}}\r\n{}\r\n", "x".repeat(400)).into_bytes();
    s.send_encoded(&frame);
    s.send_encoded(&frame);
    s.reserve_output(PIECE);
    let before = s.output_memory();
    for _ in 0..100 {
        s.send_encoded(&frame);
    }
    assert_eq!(s.output_memory(), before, "the batch's frames grew the buffer");
    let pieces: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
    assert_eq!(lens, [2 * frame.len(), 100 * frame.len()]);
    assert_eq!(pieces.concat(), frame.repeat(102));
}

/// A reservation is what a batch may bring, not what it brings: the server reserves
/// a line (128 bytes) for each reply it delivers, and a reply such as `7 OK CREATE`
/// is a tenth of that. A client that sends one request at a time and never reads
/// gets its replies one delivery each; were the piece being filled sealed at every
/// reservation it lacks room for, each reply would be a piece of its own, a dozen
/// bytes counted against the queue while it keeps alive a buffer of the reservation's
/// size, and a slice of a write. The pieces stay few (fails with 2,000 pieces of 13
/// bytes if each is sealed; with 450 of 70 if the next buffer has room only for the
/// larger of the batch and twice the piece), each holds at least half the room it
/// was given, here a line (fails if a few bytes in a large room are sealed rather
/// than moved: the first piece is one reply), and they are whole and in order.
#[test]
fn replies_each_reserved_a_line_do_not_each_make_a_piece() {
    let mut cfg = config(1_024);
    cfg.limits.queue = 1 << 24;
    let mut s = logged_in(cfg);
    // One request, and its reply delivered as the server's conn.rs does: with a
    // line reserved for it.
    let deliver = |s: &mut Session, tag: &str| {
        s.handle_input(format!("{tag} CREATE g\r\n").as_bytes(), 1);
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
        s.reserve_output(128);
        s.reply(id, Ok(OkReply::Done { verb: DoneVerb::Create }), 1);
    };
    // A burst, written out (the session lets go of its buffer), then replies
    // written as they come, as at light load; then the socket takes one more, and
    // the client reads no more: that piece stays out.
    let frame = format!("* MSG #g 1 1 ann {{1000}}\r\n{}\r\n", "x".repeat(1_000)).into_bytes();
    s.reserve_output(20 * frame.len());
    for _ in 0..20 {
        s.send_encoded(&frame);
    }
    write_out(&mut s);
    for tag in ["a", "b", "c"] {
        deliver(&mut s, tag);
        write_out(&mut s);
    }
    deliver(&mut s, "d");
    let _out = s.poll_transmit().unwrap();
    let want: Vec<String> = (0..2_000).map(|n| n.to_string()).collect();
    for tag in &want {
        deliver(&mut s, tag);
    }
    let pieces: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
    let bytes: usize = lens.iter().sum();
    assert!(pieces.len() <= 2 * bytes / SEAL_AT + 16, "{} pieces: {lens:?}", pieces.len());
    let (_, sealed) = lens.split_last().unwrap();
    assert!(sealed.iter().all(|&n| n >= 128 / 2), "{lens:?}");
    let mut d = ServerFrameDecoder::new(1 << 20);
    d.push(&pieces.concat());
    let frames: Vec<_> = d.map(|f| f.unwrap()).collect();
    assert_eq!(tags(&frames), want);
}

/// SPEC.md section 5.4: a connection the server closes as a slow consumer for a
/// backlog the session does not see (what waits to be applied to it, as the hub
/// finds) gets its BYE right after what was handed out to be written: the backlog
/// not handed out is dropped (fails if the BYE waits behind it). A close for
/// another reason keeps everything queued before its BYE.
#[test]
fn a_slow_consumer_closed_by_the_server_drops_the_backlog_not_handed_out() {
    let frame = format!("* MSG #g 1 1 ann {{1000}}\r\n{}\r\n", "x".repeat(1_000)).into_bytes();
    for code in [ErrorCode::SlowConsumer, ErrorCode::ShuttingDown] {
        let mut cfg = config(1_024);
        cfg.limits.queue = 1 << 24;
        let mut s = logged_in(cfg);
        for _ in 0..150 {
            s.send_encoded(&frame);
        }
        // The first piece is being written: it is finished either way.
        let handed = s.poll_transmit().unwrap();
        assert_eq!(handed.len() % frame.len(), 0, "a piece is whole frames");
        let left = 150 - handed.len() / frame.len();
        assert!(left > 50, "{left} frames not handed out");
        let kept = if code == ErrorCode::SlowConsumer { 0 } else { left };
        s.close(Failure::new(code));
        let rest: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
        let mut d = ServerFrameDecoder::new(1 << 20);
        d.push(&rest.concat());
        let frames: Vec<_> = d.map(|f| f.unwrap()).collect();
        assert_eq!(frames.len(), kept + 1, "{code:?}");
        assert_eq!(bye_code(&frames), Some(code));
    }
}

/// A session whose output is all written keeps no burst-sized buffer: a quiet
/// connection holds little (BENCHMARKS.md, idle connections), whatever it once
/// queued (fails if the written-out session keeps its last piece's spare room).
#[test]
fn a_session_written_out_keeps_no_burst_sized_buffer() {
    let mut cfg = config(1_024);
    cfg.limits.queue = 1 << 24;
    let mut s = logged_in(cfg);
    let frame = format!("* MSG #g 1 1 ann {{1000}}\r\n{}\r\n", "x".repeat(1_000)).into_bytes();
    s.reserve_output(60_000);
    for _ in 0..100 {
        s.send_encoded(&frame);
    }
    assert!(s.output_memory() > 2 * SEAL_AT, "{}", s.output_memory());
    write_out(&mut s);
    assert!(s.output_memory() <= SEAL_AT, "{} bytes kept", s.output_memory());
    // And the next output is whole.
    s.send_encoded(&frame);
    assert_eq!(s.poll_transmit().unwrap().as_ref(), &frame[..]);
}

/// SPEC.md section 3: nothing is read while a LOGIN awaits its answer, however much
/// the client sends.
#[test]
fn nothing_is_read_while_a_login_awaits_its_answer() {
    let mut s = Session::new(config(16), 0);
    s.handle_input(b"h HELLO 1\r\nl LOGIN ann {2}\r\npw\r\n", 0);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    assert!(!s.wants_input(), "the hash is under way");
    s.reply(id, Ok(OkReply::Login { user: "ann".parse().unwrap() }), 1);
    assert!(s.wants_input());
}

/// A backlog that the client reads never closes the session, however many PINGs.
#[test]
fn pipelined_pings_that_are_read_go_on() {
    let mut cfg = config(1_024);
    cfg.limits.queue = 65_536;
    let mut s = Session::new(cfg, 0);
    for round in 0..200 {
        s.handle_input(&b"p PING\r\n".repeat(1_000), round);
        write_out(&mut s);
        assert!(!s.is_closed());
    }
}

/// SPEC.md section 3: the frame budget is taken per frame. With 10 a second and a
/// burst of 5, 100 pipelined PINGs get 5 answers at once, then one per 100 ms; the
/// session asks not to be read meanwhile and names the moment to go on.
#[test]
fn the_frame_budget_answers_the_burst_then_the_rate() {
    let mut cfg = config(1_024);
    cfg.frames = FrameBudget { rate: 10, burst: 5 };
    let mut s = Session::new(cfg, 0);
    s.handle_input(&b"p PING\r\n".repeat(100), 0);
    assert_eq!(drain(&mut s).0.len(), 5);
    assert!(!s.wants_input(), "throttled");
    assert_eq!(s.poll_timeout(), Some(100));
    s.handle_timeout(99);
    assert!(drain(&mut s).0.is_empty());
    s.handle_timeout(100);
    assert_eq!(drain(&mut s).0.len(), 1);
    assert_eq!(s.poll_timeout(), Some(200));
    // A second later: ten more (the burst is capped at five, so at most five at once).
    s.handle_timeout(1_200);
    assert_eq!(drain(&mut s).0.len(), 5);
    let mut answered = 11;
    for t in 0..1_000 {
        let Some(at) = s.poll_timeout() else { break };
        if answered == 100 {
            break;
        }
        s.handle_timeout(at.max(1_200 + t));
        answered += drain(&mut s).0.len();
    }
    assert_eq!(answered, 100, "nothing is lost, only slowed");
    assert!(s.wants_input(), "every frame answered: reading again");
}

/// SPEC.md 11.5: a connection not logged in within `login` seconds is closed with
/// `BYE LOGIN_TIMEOUT`, whether it is silent, trickles a frame a byte at a time, or
/// sends PINGs (which keep only a logged-in connection from being idle).
#[test]
fn the_login_deadline_closes_silent_trickling_and_pinging_connections() {
    let login = Limits::default().login * 1000;
    for kind in ["silent", "trickling", "pinging", "hello then pinging"] {
        let mut s = Session::new(config(16), 1_000);
        let mut t = 1_000;
        let trickle = b"x LOGIN ann {2}\r\npw\r\n";
        let mut i = 0;
        while t < 1_000 + login {
            match kind {
                "trickling" => {
                    s.handle_input(&trickle[i % 6..i % 6 + 1], t);
                    i += 1;
                }
                "pinging" => s.handle_input(b"p PING\r\n", t),
                "hello then pinging" if t == 1_000 => s.handle_input(b"h HELLO 1\r\n", t),
                "hello then pinging" => s.handle_input(b"p PING\r\n", t),
                _ => {}
            }
            assert!(!s.is_closed(), "{kind}: open before the deadline (t = {t})");
            assert!(s.poll_timeout().unwrap() <= 1_000 + login, "{kind}");
            t += 3_000;
        }
        s.handle_timeout(1_000 + login);
        let (frames, events) = drain(&mut s);
        assert_eq!(bye_code(&frames), Some(ErrorCode::LoginTimeout), "{kind}");
        assert!(events.contains(&SessionEvent::Closed { reason: Some(ErrorCode::LoginTimeout) }));
    }
}

/// The time the server spends on the connection's own password does not count
/// against its login deadline; a failed LOGIN leaves it the time it had left.
#[test]
fn the_login_deadline_stops_while_its_password_is_hashed() {
    let mut s = Session::new(config(16), 0);
    s.handle_input(b"h HELLO 1\r\nl LOGIN ann {2}\r\npw\r\n", 10_000);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    // Its hash waits 90 s behind other logins: past the 60 s deadline.
    s.handle_timeout(90_000);
    assert!(!s.is_closed(), "the deadline does not run during the hash");
    s.reply(id, Err(baatkaro_proto::Failure::new(ErrorCode::AuthFailed)), 100_000);
    drain(&mut s);
    // 10 s were used before the LOGIN: 50 s remain after its answer.
    assert_eq!(s.poll_timeout(), Some(150_000));
    s.handle_timeout(149_999);
    assert!(!s.is_closed());
    s.handle_timeout(150_000);
    assert_eq!(bye_code(&drain(&mut s).0), Some(ErrorCode::LoginTimeout));
}

/// Logged in, the login deadline is gone: only `idle` applies.
#[test]
fn a_logged_in_session_has_no_login_deadline() {
    let mut s = logged_in(config(16));
    assert_eq!(s.poll_timeout(), Some(Limits::default().idle * 1000));
    s.handle_timeout(Limits::default().login * 1000);
    assert!(!s.is_closed());
}

/// A streamed reply adds its next piece only when it is the next to be answered and
/// less than half of `queue` is on its way to the client.
#[test]
fn a_stream_waits_for_its_turn_and_for_room() {
    let mut cfg = config(16);
    cfg.limits.queue = 65_536;
    let mut s = logged_in(cfg);
    s.handle_input(b"a GROUPS\r\nb FILE-GET f 0 100000\r\n", 1);
    let ids = request_ids(&std::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>());
    assert!(!s.may_stream(ids[1]), "behind a");
    s.reply(ids[0], Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }), 2);
    assert!(s.may_stream(ids[1]));
    s.send_encoded(&vec![b'x'; 40_000]);
    assert!(!s.may_stream(ids[1]), "40,000 bytes on their way: more than half the queue");
    write_out(&mut s);
    assert!(s.may_stream(ids[1]));
}

/// SPEC.md 4.7: AUTH logs in like LOGIN — nothing is read while it awaits its
/// answer, the login deadline stops meanwhile and, after a refusal, runs on from
/// where it was — and its OK logs the session in.
#[test]
fn a_token_login_meets_the_login_deadline_like_a_password() {
    let secret = "ab".repeat(32);
    let auth = format!("a AUTH ann 7 {secret}\r\n");
    let mut s = Session::new(config(16), 0);
    s.handle_input(format!("h HELLO 1\r\n{auth}").as_bytes(), 10_000);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    assert!(!s.wants_input(), "nothing is read while the token is checked");
    s.handle_timeout(90_000);
    assert!(!s.is_closed(), "the deadline does not run while the token is checked");
    s.reply(id, Err(baatkaro_proto::Failure::new(ErrorCode::AuthFailed)), 100_000);
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(150_000), "10 s were used before the AUTH");
    s.handle_input(auth.as_bytes(), 120_000);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    s.reply(id, Ok(OkReply::Auth { user: "ann".parse().unwrap() }), 121_000);
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["a"]);
    assert_eq!(events, [SessionEvent::LoggedIn { user: "ann".parse().unwrap() }]);
    s.handle_timeout(160_000);
    assert!(!s.is_closed(), "logged in: no login deadline");
    // Logged in, AUTH is refused by the session itself.
    s.handle_input(auth.as_bytes(), 161_000);
    let (frames, events) = drain(&mut s);
    assert!(events.is_empty());
    assert!(
        matches!(&frames[..], [ServerFrame::Err { failure, .. }] if failure.code == ErrorCode::WrongState)
    );
}

/// LOGOUT revoke of a logged-in session goes to the application (which revokes its
/// token) and ends the session with the answer; before logging in there is no token,
/// and the session answers it itself.
#[test]
fn logout_revoke_is_the_applications_when_logged_in() {
    let mut s = logged_in(config(16));
    s.handle_input(b"o LOGOUT revoke\r\np PING\r\n", 5);
    let (frames, events) = drain(&mut s);
    assert!(frames.is_empty(), "{frames:?}");
    let [SessionEvent::Request { id, ref command }] = events[..] else { panic!("{events:?}") };
    assert_eq!(*command, baatkaro_proto::Command::Logout { revoke: true });
    assert!(!s.wants_input(), "nothing after a LOGOUT is read");
    s.reply(id, Ok(OkReply::Done { verb: DoneVerb::Logout }), 6);
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["o"]);
    assert_eq!(events, [SessionEvent::Closed { reason: None }]);
    assert!(s.is_closed());

    let mut s = Session::new(config(16), 0);
    s.handle_input(b"h HELLO 1\r\no LOGOUT revoke\r\n", 1);
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["h", "o"]);
    assert_eq!(events, [SessionEvent::Closed { reason: None }]);
}

/// A DELETE-ACCOUNT is handed to the application; nothing after it is read while it
/// awaits its answer. Refused (a wrong password), the session goes on; done, it ends
/// with its reply.
#[test]
fn delete_account_ends_the_session_only_when_it_succeeds() {
    let mut s = logged_in(config(16));
    s.handle_input(b"d DELETE-ACCOUNT {5}\r\nwrong\r\ng GROUPS\r\n", 5);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    assert!(!s.wants_input());
    s.reply(id, Err(baatkaro_proto::Failure::new(ErrorCode::AuthFailed)), 6);
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["d"]);
    let [SessionEvent::Request { id, command: baatkaro_proto::Command::Groups }] = events[..]
    else {
        panic!("GROUPS is read once the DELETE-ACCOUNT failed: {events:?}")
    };
    s.reply(id, Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }), 6);
    assert_eq!(tags(&drain(&mut s).0), ["g"]);
    assert!(!s.is_closed());
    s.handle_input(b"e DELETE-ACCOUNT {2}\r\npw\r\nh GROUPS\r\n", 7);
    let (_, events) = drain(&mut s);
    let [SessionEvent::Request { id, .. }] = events[..] else { panic!("{events:?}") };
    s.reply(id, Ok(OkReply::Done { verb: DoneVerb::DeleteAccount }), 8);
    let (frames, events) = drain(&mut s);
    assert_eq!(tags(&frames), ["e"], "nothing after it was read");
    assert!(events.contains(&SessionEvent::Closed { reason: None }), "{events:?}");
    assert!(s.is_closed());
}

/// SPEC.md 5.1: a request's final reply, then what it caused, then the next
/// request's; the frames held for that order count as queued (5.4) until they go,
/// whether the reply is written at once (the head of the order) or held. A batch's
/// reservation of room sends nothing and counts nothing, however large.
#[test]
fn trailers_follow_their_replies_in_order_and_held_bytes_are_counted_once() {
    let mut s = logged_in(config(16));
    s.handle_input(b"c GROUPS\r\nd ONLINE\r\n", 1);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let [SessionEvent::Request { id: c, .. }, SessionEvent::Request { id: d, .. }] = events[..]
    else {
        panic!("{events:?}")
    };
    let of_c = b"* MSG #g 1 1 ann {1}\r\nc\r\n";
    let of_d = b"* MSG #g 2 1 ann {1}\r\nd\r\n";
    s.reserve_output(usize::MAX);
    assert_eq!(s.queued(), 0);
    // The second request's trailer and reply wait behind the first.
    s.send_encoded_after(d, of_d);
    s.reply(d, Ok(OkReply::Done { verb: DoneVerb::Ping }), 2);
    s.send_encoded_after(c, of_c);
    assert!(s.poll_transmit().is_none());
    let held = s.queued();
    assert!(held > of_c.len() + of_d.len());
    // The head's reply goes straight out, and everything held behind it follows.
    s.reply(c, Ok(OkReply::Done { verb: DoneVerb::Ping }), 2);
    let bytes = s.poll_transmit().unwrap();
    assert!(s.poll_transmit().is_none());
    let mut want = b"c OK PING\r\n".to_vec();
    want.extend_from_slice(of_c);
    want.extend_from_slice(b"d OK PING\r\n");
    want.extend_from_slice(of_d);
    assert_eq!(&bytes[..], &want[..]);
    assert_eq!(s.queued(), bytes.len(), "each byte counted once, as handed out");
    s.handle_written(bytes.len());
    assert_eq!(s.queued(), 0);
    // Once a reply is out, what its request causes follows at once.
    s.send_encoded_after(c, of_c);
    assert_eq!(&s.poll_transmit().unwrap()[..], &of_c[..]);
}

/// Each item goes out once, in order, whether it was held behind an earlier reply,
/// added while its request was at the head, or flushed with the final reply.
#[test]
fn list_items_go_out_once_whichever_way_they_reach_the_output() {
    let mut s = logged_in(config(16));
    s.handle_input(b"c GROUPS\r\nd ONLINE\r\ne ONLINE\r\n", 2);
    let ids = request_ids(&std::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>());
    let [first, second, third] = ids[..] else { panic!("{ids:?}") };
    let online = |name: &str| baatkaro_proto::Item::Online { user: name.parse().unwrap() };
    // Held behind the first reply.
    s.item(second, &online("ann"));
    s.item(third, &online("cat"));
    s.reply(first, Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Groups, count: 0 }), 3);
    // At the head now: written as they come.
    s.item(second, &online("bob"));
    let listed = |count| Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Online, count });
    // Answered at the head: its reply straight into the output.
    s.reply(second, listed(2), 3);
    // The third's held item, then one more, then its reply.
    s.item(third, &online("dan"));
    s.reply(third, listed(2), 3);
    let mut out = Vec::new();
    while let Some(bytes) = s.poll_transmit() {
        s.handle_written(bytes.len());
        out.extend_from_slice(&bytes);
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "c OK GROUPS 0\r\nd ONLINE ann\r\nd ONLINE bob\r\nd OK ONLINE 2\r\n\
         e ONLINE cat\r\ne ONLINE dan\r\ne OK ONLINE 2\r\n"
    );
    assert_eq!(s.queued(), 0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Items, trailers and replies of pipelined requests, in any interleaving, and
    /// with the output written out at any point: every item, reply and trailer goes
    /// out exactly once, each request's in its order and requests in theirs, and
    /// nothing stays counted as queued.
    #[test]
    fn items_replies_and_trailers_go_out_once_in_order_in_any_interleaving(
        steps in proptest::collection::vec((0usize..4, 0u8..8), 1..80),
    ) {
        let mut s = logged_in(config(16));
        s.handle_input(b"r0 ONLINE\r\nr1 ONLINE\r\nr2 ONLINE\r\nr3 ONLINE\r\n", 2);
        let ids = request_ids(&std::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>());
        proptest::prop_assert_eq!(ids.len(), 4);
        let online = |name: &str| baatkaro_proto::Item::Online { user: name.parse().unwrap() };
        let listed = |count| Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Online, count });
        let mut items = [0u64; 4];
        let mut done = [false; 4];
        let mut trailers: [Vec<String>; 4] = Default::default();
        let mut out = Vec::new();
        let take = |s: &mut Session, out: &mut Vec<u8>| {
            while let Some(bytes) = s.poll_transmit() {
                s.handle_written(bytes.len());
                out.extend_from_slice(&bytes);
            }
        };
        for (r, what) in steps {
            match what {
                _ if done[r] => take(&mut s, &mut out),
                0..=3 => {
                    s.item(ids[r], &online(&format!("u{r}x{}", items[r])));
                    items[r] += 1;
                }
                4 => {
                    let t = format!("* PONG t{r}x{}\r\n", trailers[r].len());
                    s.send_encoded_after(ids[r], t.as_bytes());
                    trailers[r].push(t);
                }
                5 => {
                    s.reply(ids[r], listed(items[r]), 3);
                    done[r] = true;
                }
                _ => take(&mut s, &mut out),
            }
        }
        for r in 0..4 {
            if !done[r] {
                s.reply(ids[r], listed(items[r]), 3);
            }
        }
        take(&mut s, &mut out);
        let mut want = String::new();
        for r in 0..4 {
            for i in 0..items[r] {
                want += &format!("r{r} ONLINE u{r}x{i}\r\n");
            }
            want += &format!("r{r} OK ONLINE {}\r\n", items[r]);
            for t in &trailers[r] {
                want += t;
            }
        }
        proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        proptest::prop_assert_eq!(s.queued(), 0);
    }
}

/// A connection that was sent a burst as the server delivers one (a reservation for
/// the batch, then its frames), wrote it out, and then gets a small frame now and
/// then, each written at once, holds no burst-sized buffer for its output: a piece
/// handed out is dropped before it is reported written (as conn.rs does), and after
/// that the session must not keep the rest of the buffer the piece was cut from.
/// That rest reports a small capacity however large the buffer behind it, and the
/// buffer comes back whole the next time the session runs out of room; the
/// output memory is looked at after each small frame (fails if the session keeps
/// such a rest: after a burst of 20 frames, the next frame sits in a 20 KB buffer).
#[test]
fn a_burst_written_out_leaves_no_burst_sized_buffer_behind() {
    let frame = format!("* MSG #g 1 1 ann {{1000}}\r\n{}\r\n", "x".repeat(1_000)).into_bytes();
    let small = b"* MSG #g 2 1 ann {1}\r\ny\r\n";
    let write_out = |s: &mut Session| {
        while let Some(piece) = s.poll_transmit() {
            let n = piece.len();
            drop(piece);
            s.handle_written(n);
        }
    };
    for frames in [17, 20, 30, 50, 60, 62, 100] {
        let mut cfg = config(1_024);
        cfg.limits.queue = 1 << 24;
        let mut s = logged_in(cfg);
        s.reserve_output(frames * frame.len());
        for _ in 0..frames {
            s.send_encoded(&frame);
        }
        write_out(&mut s);
        // Enough small frames to use up any rest of a buffer of up to `PIECE`.
        for n in 0..PIECE / small.len() + 1 {
            s.send_encoded(small);
            let held = s.output_memory();
            assert!(held <= SEAL_AT, "{frames} frames, then {n} small ones: {held} bytes held");
            write_out(&mut s);
        }
        assert_eq!(s.queued(), 0);
    }
}

/// What the output must be, kept alongside a session: the bytes in the order they
/// must reach the client, and the bytes still held back for the reply order.
struct Model {
    /// Everything that must go out, in order (what is held back is not in it yet).
    stream: Vec<u8>,
    /// Per request: held items, whether answered, and held trailers.
    held: [(Vec<u8>, bool, Vec<u8>); 4],
    /// Items added so far, per request (its reply counts them).
    items: [u64; 4],
    /// The first request whose reply has not gone out (4: all went out).
    head: usize,
}

impl Model {
    fn reply_line(&self, r: usize) -> Vec<u8> {
        format!("r{r} OK ONLINE {}\r\n", self.items[r]).into_bytes()
    }

    /// Moves what the head of the reply order may send now to the stream.
    fn flush(&mut self) {
        while self.head < 4 {
            let r = self.head;
            self.stream.append(&mut self.held[r].0);
            if !self.held[r].1 {
                break;
            }
            let reply = self.reply_line(r);
            self.stream.extend(reply);
            self.stream.append(&mut self.held[r].2);
            self.head += 1;
        }
    }

    fn held_bytes(&self) -> usize {
        (self.head..4)
            .map(|r| {
                let (items, done, trailers) = &self.held[r];
                items.len() + trailers.len() + if *done { self.reply_line(r).len() } else { 0 }
            })
            .sum()
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Events of every size (small, around `SEAL_AT`, around `PIECE`, larger),
    /// reservations, items, trailers and replies of pipelined requests, in any
    /// interleaving, with pieces taken and written a part at a time: the client gets
    /// exactly the bytes given, in order (events where they were sent, replies in
    /// request order, each trailer after its reply); at every step `unsent()` is
    /// what was given and not yet written and `queued()` adds what is held back;
    /// no piece is larger than `PIECE` and what one step let out; and once all is
    /// written nothing is queued and no buffer over `SEAL_AT` is kept.
    #[test]
    fn output_is_the_bytes_given_in_order_and_counted_exactly(
        steps in proptest::collection::vec((0u8..10, 0usize..4, 0usize..8, 0u32..1_000_000), 1..120),
    ) {
        let mut cfg = config(16);
        cfg.limits.queue = 1 << 30;
        let mut s = logged_in(cfg);
        s.handle_input(b"r0 ONLINE\r\nr1 ONLINE\r\nr2 ONLINE\r\nr3 ONLINE\r\n", 2);
        let ids = request_ids(&std::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>());
        proptest::prop_assert_eq!(ids.len(), 4);
        let online = |name: &str| baatkaro_proto::Item::Online { user: name.parse().unwrap() };
        let listed = |count| Ok(OkReply::Listed { verb: baatkaro_proto::ListVerb::Online, count });
        // A size of each class from a random number.
        let size = |class: usize, x: u32| -> usize {
            let x = x as usize;
            match class {
                0..=2 => 8 + x % 200,
                3 => 1_000 + x % 4_000,
                4 => SEAL_AT - 2_000 + x % 4_000,
                5 => PIECE - 4_000 + x % 8_000,
                6 => 2 * PIECE + x % PIECE,
                _ => x % 40_000,
            }
        };
        let blob = |tag: &str, n: usize| {
            let mut b = format!("<{tag}:").into_bytes();
            b.resize(n.max(b.len() + 2), b'.');
            let len = b.len();
            b[len - 1] = b'>';
            b
        };
        let mut m = Model {
            stream: Vec::new(),
            held: Default::default(),
            items: [0; 4],
            head: 0,
        };
        let mut written: Vec<u8> = Vec::new();
        let mut piece: Option<bytes::Bytes> = None;
        let mut max_step = 0usize;
        // Takes a piece if none is held, then writes `k` bytes of it (partly, as a
        // socket may), letting go of it before reporting it written.
        let write = |s: &mut Session, piece: &mut Option<bytes::Bytes>,
                     written: &mut Vec<u8>, k: usize, max_step: usize|
         -> Result<(), proptest::test_runner::TestCaseError> {
            if piece.is_none() {
                *piece = s.poll_transmit();
                if let Some(p) = piece {
                    proptest::prop_assert!(!p.is_empty());
                    proptest::prop_assert!(
                        p.len() < PIECE + max_step,
                        "a piece of {} bytes (a step let out {max_step} at most)", p.len()
                    );
                }
            }
            let Some(p) = piece else { return Ok(()) };
            let k = k.clamp(1, p.len());
            written.extend_from_slice(&p[..k]);
            bytes::Buf::advance(p, k);
            if p.is_empty() {
                *piece = None;
            }
            s.handle_written(k);
            Ok(())
        };
        let mut n = 0;
        for (op, r, class, x) in steps {
            n += 1;
            let before = m.stream.len();
            match op {
                0 | 1 => {
                    let e = blob(&format!("e{n}"), size(class, x));
                    s.send_encoded(&e);
                    m.stream.extend(e);
                }
                2 => s.reserve_output(match class { 0 => usize::MAX, c => size(c, x) }),
                3 if m.head <= r && !m.held[r].1 => {
                    for _ in 0..=class {
                        let name = format!("u{r}x{}", m.items[r]);
                        s.item(ids[r], &online(&name));
                        m.items[r] += 1;
                        m.held[r].0.extend(format!("r{r} ONLINE {name}\r\n").into_bytes());
                    }
                    m.flush();
                }
                4 => {
                    let t = blob(&format!("t{n}"), size(class, x));
                    s.send_encoded_after(ids[r], &t);
                    if m.head > r {
                        m.stream.extend(t);
                    } else {
                        m.held[r].2.extend(t);
                    }
                }
                5 if m.head <= r && !m.held[r].1 => {
                    s.reply(ids[r], listed(m.items[r]), 3);
                    m.held[r].1 = true;
                    m.flush();
                }
                _ => {
                    let k = size(class, x);
                    write(&mut s, &mut piece, &mut written, k, max_step)?;
                }
            }
            max_step = max_step.max(m.stream.len() - before);
            proptest::prop_assert!(!s.is_closed());
            proptest::prop_assert_eq!(s.unsent(), m.stream.len() - written.len(), "step {}", n);
            proptest::prop_assert_eq!(
                s.queued(), m.stream.len() - written.len() + m.held_bytes(), "step {}", n
            );
        }
        for (r, &id) in ids.iter().enumerate() {
            if m.head <= r && !m.held[r].1 {
                let before = m.stream.len();
                s.reply(id, listed(m.items[r]), 3);
                m.held[r].1 = true;
                m.flush();
                max_step = max_step.max(m.stream.len() - before);
            }
        }
        // A last event: a reservation with nothing written after it is let go of
        // only when some output is written out.
        s.send_encoded(b"<end>");
        m.stream.extend_from_slice(b"<end>");
        let mut rounds = 0;
        while written.len() < m.stream.len() && rounds < 1_000_000 {
            write(&mut s, &mut piece, &mut written, 7_919, max_step)?;
            rounds += 1;
        }
        proptest::prop_assert!(s.poll_transmit().is_none());
        proptest::prop_assert!(written == m.stream, "the bytes written are not the bytes given");
        proptest::prop_assert_eq!(s.queued(), 0);
        proptest::prop_assert!(s.output_memory() <= SEAL_AT, "{} bytes kept", s.output_memory());
    }
}
