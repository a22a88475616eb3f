//! Known-answer vectors: exact bytes and exact results, at the edges of the grammar
//! and the limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baatkaro_proto::{
    Command, Conversation, DecodeError, Encode, ErrorCode, Event, LINE_MAX, Request,
    RequestDecoder, ServerFrame, ServerFrameDecoder, StoredEvent, Tag, Text,
};
use bytes::Bytes;

const LIMIT: u64 = 4096;

fn decode_all(bytes: &[u8]) -> Vec<Result<Request, DecodeError>> {
    let mut d = RequestDecoder::new(LIMIT);
    d.push(bytes);
    let out: Vec<_> = d.by_ref().collect();
    assert_eq!(d.buffered(), 0, "bytes left in the decoder");
    out
}

fn code_of(r: &Result<Request, DecodeError>) -> (Option<String>, ErrorCode) {
    match r {
        Ok(req) => panic!("expected an error, got {req:?}"),
        Err(e) => (e.tag.map(|t| t.to_string()), e.code),
    }
}

fn ping(tag: &str) -> Request {
    Request { tag: Tag::new(tag).unwrap(), command: Command::Ping }
}

/// (bytes, expected request): decoding gives the value and encoding gives the bytes.
#[test]
fn table_of_valid_frames_decodes_and_encodes_both_ways() {
    let g = || "rust".parse().unwrap();
    let table: Vec<(&[u8], Command)> = vec![
        (b"t PING\r\n", Command::Ping),
        (b"t GROUPS\r\n", Command::Groups),
        (b"t GROUPS offers\r\n", Command::GroupsWithOffers),
        (b"t CONVERSATIONS\r\n", Command::Conversations),
        (b"t CONVERSATIONS read\r\n", Command::ConversationsWithMarkers),
        (
            b"t READ @bob 18446744073709551615\r\n",
            Command::Read { conv: Conversation::Direct("bob".parse().unwrap()), seq: u64::MAX },
        ),
        (b"t READ #rust 0\r\n", Command::Read { conv: Conversation::Group(g()), seq: 0 }),
        (b"t BANS rust\r\n", Command::Bans { group: g() }),
        (b"t CREATE rust\r\n", Command::Create { group: g(), rule: None }),
        (
            b"t CREATE rust invite\r\n",
            Command::Create { group: g(), rule: Some(baatkaro_proto::JoinRule::Invite) },
        ),
        (b"t JOIN rust\r\n", Command::Join { group: g(), reason: None }),
        (
            b"t JOIN rust {3}\r\nhi!\r\n",
            Command::Join { group: g(), reason: Some(Text::new("hi!").unwrap()) },
        ),
        (
            b"t KICK rust bob ban\r\n",
            Command::Kick { group: g(), user: "bob".parse().unwrap(), ban: true },
        ),
        (
            b"t SEND @bob k:1 {6}\r\nna\xc3\xafve\r\n",
            Command::Send {
                to: Conversation::Direct("bob".parse().unwrap()),
                key: "k:1".parse().unwrap(),
                text: Text::new("naïve").unwrap(),
            },
        ),
        (
            b"t HISTORY #rust after 18446744073709551615 1\r\n",
            Command::History {
                conv: Conversation::Group(g()),
                range: baatkaro_proto::HistoryRange::After(u64::MAX),
                limit: 1,
            },
        ),
        (
            b"t FILE-CHUNK f1 0 {0}\r\n\r\n",
            Command::FileChunk { file: "f1".parse().unwrap(), offset: 0, data: Bytes::new() },
        ),
        (
            b"t FILE-CHUNK f1 7 {4}\r\n\r\n\x00\xff\r\n",
            Command::FileChunk {
                file: "f1".parse().unwrap(),
                offset: 7,
                data: Bytes::from_static(b"\r\n\x00\xff"),
            },
        ),
    ];
    for (bytes, command) in table {
        let expected = Request { tag: Tag::new("t").unwrap(), command };
        let got = decode_all(bytes);
        assert_eq!(
            got,
            vec![Ok(expected.clone())],
            "decoding {:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(&expected.to_bytes()[..], bytes, "encoding {expected:?}");
        // Every strict prefix is "need more bytes", never an error or a frame.
        for cut in 0..bytes.len() {
            let mut d = RequestDecoder::new(LIMIT);
            d.push(&bytes[..cut]);
            assert!(d.next_frame().is_none(), "prefix of {cut} bytes of {bytes:?} yielded an item");
        }
    }
}

#[test]
fn line_exactly_at_the_limit_is_parsed_and_one_over_is_too_long() {
    // LINE_MAX bytes in all, CRLF included: framed, then refused by the parser.
    let mut at_limit = b"t1 ".to_vec();
    at_limit.resize(LINE_MAX - 2, b'X');
    at_limit.extend_from_slice(b"\r\n");
    assert_eq!(at_limit.len(), LINE_MAX);
    let mut stream = at_limit.clone();
    stream.extend_from_slice(b"t2 PING\r\n");
    let got = decode_all(&stream);
    assert_eq!(code_of(&got[0]), (Some("t1".into()), ErrorCode::UnknownCommand));
    assert_eq!(got[1], Ok(ping("t2")));

    // One byte over: LINE_TOO_LONG, reported with the tag, then back in step.
    let mut over = b"t3 ".to_vec();
    over.resize(LINE_MAX - 1, b'X');
    over.extend_from_slice(b"\r\n");
    over.extend_from_slice(b"t4 PING\r\n");
    let got = decode_all(&over);
    assert_eq!(got.len(), 2);
    assert_eq!(code_of(&got[0]), (Some("t3".into()), ErrorCode::LineTooLong));
    assert_eq!(got[1], Ok(ping("t4")));
}

#[test]
fn overlong_line_is_refused_as_soon_as_the_limit_is_reached() {
    let mut d = RequestDecoder::new(LIMIT);
    d.push(&vec![b'a'; LINE_MAX]);
    let err = d.next_frame().unwrap().unwrap_err();
    assert_eq!((err.tag.map(|t| t.to_string()), err.code), (None, ErrorCode::LineTooLong));
    // The rest of the line is dropped as it comes, never buffered.
    for _ in 0..100 {
        d.push(&[b'a'; 1000]);
        assert!(d.next_frame().is_none());
        assert_eq!(d.buffered(), 0);
    }
    d.push(b"a\r\nt PING\r\n");
    assert_eq!(d.next_frame(), Some(Ok(ping("t"))));
}

#[test]
fn oversized_payload_is_refused_from_its_header_and_skipped() {
    let mut d = RequestDecoder::new(LIMIT);
    d.push(b"big SEND #rust k {18446744073709551615}\r\n");
    let err = d.next_frame().unwrap().unwrap_err();
    assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    assert_eq!(err.tag, Some(Tag::new("big").unwrap()));
    assert_eq!(d.buffered(), 0, "nothing of the refused frame is kept");

    let mut d = RequestDecoder::new(LIMIT);
    d.push(b"big SEND #rust k {10000}\r\n");
    assert_eq!(d.next_frame().unwrap().unwrap_err().code, ErrorCode::PayloadTooLarge);
    for _ in 0..10 {
        d.push(&[b'z'; 1000]);
        assert!(d.next_frame().is_none());
        assert_eq!(d.buffered(), 0, "skipped payload bytes are dropped, not buffered");
    }
    d.push(b"\r\nt PING\r\n");
    assert_eq!(d.next_frame(), Some(Ok(ping("t"))));
}

#[test]
fn payload_at_the_limit_is_accepted() {
    let mut frame = format!("t FILE-CHUNK f 0 {{{LIMIT}}}\r\n").into_bytes();
    frame.extend(std::iter::repeat_n(b'q', LIMIT as usize));
    frame.extend_from_slice(b"\r\n");
    let got = decode_all(&frame);
    match &got[..] {
        [Ok(Request { command: Command::FileChunk { data, .. }, .. })] => {
            assert_eq!(data.len(), LIMIT as usize)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_payload_is_a_valid_chunk_but_not_a_valid_text() {
    let got = decode_all(b"t SEND #rust k {0}\r\n\r\nu PING\r\n");
    assert_eq!(code_of(&got[0]), (Some("t".into()), ErrorCode::BadText));
    assert_eq!(got[1], Ok(ping("u")));
}

#[test]
fn non_utf8_and_control_characters_in_text_are_bad_text() {
    for payload in [&b"\xff\xfe"[..], b"a\x1b[31mred", b"nul\x00", b"\xc2\x9b", b"cr\r"] {
        let mut frame = format!("t SEND #rust k {{{}}}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\nu PING\r\n");
        let got = decode_all(&frame);
        assert_eq!(code_of(&got[0]), (Some("t".into()), ErrorCode::BadText), "{payload:?}");
        assert_eq!(got[1], Ok(ping("u")));
    }
}

#[test]
fn bare_lf_is_an_error_and_the_stream_stays_in_step() {
    let got = decode_all(b"t PING\nu PING\r\n\nv PING\r\n");
    assert_eq!(code_of(&got[0]), (Some("t".into()), ErrorCode::BadLineEnd));
    assert_eq!(got[1], Ok(ping("u")));
    assert_eq!(code_of(&got[2]), (None, ErrorCode::BadLineEnd));
    assert_eq!(got[3], Ok(ping("v")));
}

#[test]
fn empty_lines_are_ignored() {
    assert_eq!(decode_all(b"\r\n\r\nt PING\r\n"), vec![Ok(ping("t"))]);
}

#[test]
fn malformed_requests_get_the_right_code_and_tag() {
    let cases: &[(&[u8], Option<&str>, ErrorCode)] = &[
        (b"t FROB\r\n", Some("t"), ErrorCode::UnknownCommand),
        (b"t ping\r\n", Some("t"), ErrorCode::UnknownCommand),
        (b"t\r\n", Some("t"), ErrorCode::UnknownCommand),
        (b" PING\r\n", None, ErrorCode::BadTag),
        (b"t*x PING\r\n", None, ErrorCode::BadTag),
        (b"t JOIN Rust\r\n", Some("t"), ErrorCode::BadName),
        (b"t JOIN 9lives\r\n", Some("t"), ErrorCode::BadName),
        (b"t JOIN  rust\r\n", Some("t"), ErrorCode::Syntax),
        (b"t JOIN rust \r\n", Some("t"), ErrorCode::Syntax),
        (b"t PING extra\r\n", Some("t"), ErrorCode::Syntax),
        (b"t KICK rust\r\n", Some("t"), ErrorCode::Syntax),
        (b"t HISTORY #rust after 007 5\r\n", Some("t"), ErrorCode::Syntax),
        (b"t HISTORY #rust after 18446744073709551616 5\r\n", Some("t"), ErrorCode::Syntax),
        (b"t HISTORY #rust last 0\r\n", Some("t"), ErrorCode::Syntax),
        (b"t SEND rust k {2}\r\nhi\r\n", Some("t"), ErrorCode::Syntax),
        (b"t SEND #rust k\r\n", Some("t"), ErrorCode::Syntax),
        (b"t PING {2}\r\nhi\r\n", Some("t"), ErrorCode::Syntax),
        (b"t PING {02}\r\n", Some("t"), ErrorCode::Syntax),
        (b"t PING}\r\n", Some("t"), ErrorCode::Syntax),
        (b"t PI\rNG\r\n", Some("t"), ErrorCode::BadLineEnd),
        (b"t JOIN g\r {3}\r\nabc\r\n", Some("t"), ErrorCode::BadLineEnd),
        (b"t FILE-OFFER #rust 1 00 {4}\r\nx.md\r\n", Some("t"), ErrorCode::Syntax),
        (b"t GROUPS read\r\n", Some("t"), ErrorCode::Syntax),
        (b"t CONVERSATIONS offers\r\n", Some("t"), ErrorCode::Syntax),
        (b"t CONVERSATIONS read read\r\n", Some("t"), ErrorCode::Syntax),
        (b"t READ #rust\r\n", Some("t"), ErrorCode::Syntax),
        (b"t READ rust 4\r\n", Some("t"), ErrorCode::Syntax),
        (b"t READ #rust 4 {2}\r\nhi\r\n", Some("t"), ErrorCode::Syntax),
        (b"t BANS\r\n", Some("t"), ErrorCode::Syntax),
        (b"t BANS Rust\r\n", Some("t"), ErrorCode::BadName),
    ];
    for (bytes, tag, code) in cases {
        let mut stream = bytes.to_vec();
        stream.extend_from_slice(b"ok PING\r\n");
        let got = decode_all(&stream);
        assert_eq!(got.len(), 2, "{:?}", String::from_utf8_lossy(bytes));
        assert_eq!(
            code_of(&got[0]),
            (tag.map(str::to_owned), *code),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(got[1], Ok(ping("ok")), "resync after {:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn file_names_that_could_be_paths_are_refused() {
    for name in [&b".."[..], b".", b"a/b", b"..\\x", b"/etc/passwd"] {
        let sha = "0".repeat(64);
        let mut frame = format!("t FILE-OFFER #rust 1 {sha} {{{}}}\r\n", name.len()).into_bytes();
        frame.extend_from_slice(name);
        frame.extend_from_slice(b"\r\n");
        let got = decode_all(&frame);
        assert_eq!(code_of(&got[0]).1, ErrorCode::BadFileName, "{name:?}");
    }
}

/// An offered name may not begin with a dot (SPEC.md 6.7), but a FILE event from a
/// server that stored such a name before the rule still decodes.
#[test]
fn offered_names_with_a_leading_dot_are_refused_but_shared_ones_still_read() {
    let sha = "0".repeat(64);
    let offer = |name: &str| {
        let frame = format!("t FILE-OFFER #rust 1 {sha} {{{}}}\r\n{name}\r\n", name.len());
        decode_all(frame.as_bytes()).remove(0)
    };
    for name in [".bashrc", ".", "...", ". x", ".\u{e9}t\u{e9}"] {
        assert_eq!(code_of(&offer(name)), (Some("t".into()), ErrorCode::BadFileName), "{name:?}");
    }
    // A dot anywhere else, or after another first character, is fine.
    for name in ["notes.txt", "_bashrc", " .x", "a..", "x."] {
        match offer(name) {
            Ok(Request { command: Command::FileOffer { name: got, .. }, .. }) => {
                assert_eq!(got.as_str(), name);
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    let event = format!("* FILE #rust 4 1764072800000 bob f1 10 {sha} {{7}}\r\n.bashrc\r\n");
    let mut d = ServerFrameDecoder::new(LIMIT);
    d.push(event.as_bytes());
    match d.next_frame() {
        Some(Ok(ServerFrame::Event(Event::Stored(StoredEvent::File { name, .. })))) => {
            assert_eq!(name.as_str(), ".bashrc");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_payload_end_is_fatal_and_ends_the_stream() {
    let mut d = RequestDecoder::new(LIMIT);
    d.push(b"t SEND #rust k {2}\r\nhiXXu PING\r\n");
    let err = d.next_frame().unwrap().unwrap_err();
    assert_eq!(err.code, ErrorCode::BadPayloadEnd);
    assert!(err.is_fatal());
    assert!(d.is_failed());
    d.push(b"v PING\r\n");
    assert!(d.next_frame().is_none());
}

#[test]
fn server_frames_reject_what_clients_must_not_trust() {
    let cases: &[&[u8]] = &[
        b"* MSG #rust 1 2 bob\r\n",               // missing payload
        b"* JOINED @bob 1 2 bob bob\r\n",         // group event in a private conversation
        b"* ERR NO_SUCH_CODE\r\n",                // unknown code
        b"t OK HELLO 1 s line=1024\r\n",          // limits missing
        b"* BYE SHUTTING_DOWN retry=1 :a{b\r\n",  // brace in a note: framing error
        b"t CONV #rust 9 3\r\n",                  // a marker without its unread count
        b"t GROUP rust owner open 3 9 bob\r\n",   // an offer without its keyword
        b"t GROUP rust owner open 3 9 offer\r\n", // an offer to nobody
        b"* READ #rust\r\n",                      // a marker without its number
    ];
    for bytes in cases {
        let mut d = ServerFrameDecoder::new(LIMIT);
        d.push(bytes);
        d.push(b"* PRESENCE bob online\r\n");
        let first = d.next_frame().unwrap();
        assert!(first.is_err(), "{:?} decoded as {first:?}", String::from_utf8_lossy(bytes));
        assert!(matches!(d.next_frame(), Some(Ok(ServerFrame::Event(_)))));
    }
}

/// The longest HELLO reply the grammar allows: a 32-octet tag, version 65535, a
/// 64-octet software token, eight 24-octet features and every limit at 14 digits.
fn longest_hello() -> ServerFrame {
    use baatkaro_proto::{Feature, Features, LIMIT_VALUE_MAX, Limits, OkReply, Software};
    let mut limits = Limits::default();
    for key in Limits::KEYS {
        limits.set(key.as_bytes(), LIMIT_VALUE_MAX);
    }
    let features = (0..Features::MAX)
        .map(|i| Feature::new(&format!("{i}{}", "f".repeat(23))).unwrap())
        .collect();
    ServerFrame::Ok {
        tag: Tag::new(&"t".repeat(32)).unwrap(),
        reply: OkReply::Hello {
            version: u16::MAX,
            server: Software::new(&"s".repeat(64)).unwrap(),
            features: Features::new(features).unwrap(),
            limits: Box::new(limits),
        },
    }
}

/// SPEC.md sections 2.1 and 10: the longest HELLO reply fits the 1,024-octet line with
/// room for one more key of at most 12 octets at 14 digits, the last room HELLO has for
/// the keys later editions of version 1 add. It decodes to itself.
#[test]
fn the_longest_hello_reply_fits_the_line_with_room_for_one_more_key() {
    let frame = longest_hello();
    let bytes = frame.to_bytes();
    let room_for_one = " ".len() + 12 + "=".len() + 14;
    assert!(
        bytes.len() + room_for_one <= LINE_MAX,
        "{} octets leave {} of 1024 for later keys",
        bytes.len(),
        LINE_MAX - bytes.len()
    );
    assert_eq!(bytes.len(), 988, "the worst case moved: update SPEC.md sections 2.1 and 10");
    assert_eq!(baatkaro_proto::decode_one::<ServerFrame>(&bytes, 65_536), Ok(frame));
}

/// SPEC.md section 10: a key added to version 1 after its first edition may be left
/// out by an older server, and then takes its stated value; a key of the first
/// edition may not; no value has more than 14 digits.
#[test]
fn hello_keys_of_later_editions_may_be_missing_and_values_are_bounded() {
    use baatkaro_proto::{Limits, OkReply};
    let full = String::from_utf8(longest_hello().to_bytes().to_vec()).unwrap();
    let decode = |line: &str| baatkaro_proto::decode_one::<ServerFrame>(line.as_bytes(), 65_536);
    // An older server does not list `login`: it has no login deadline of its own.
    let older = full.replace(" login=99999999999999", "");
    assert_ne!(older, full);
    match decode(&older) {
        Ok(ServerFrame::Ok { reply: OkReply::Hello { limits, .. }, .. }) => {
            assert_eq!(limits.login, 0);
            assert_eq!(Limits::absent("login"), Some(0));
        }
        other => panic!("{other:?}"),
    }
    // Every key of the first edition must be there.
    for key in ["line", "payload", "queue", "keys"] {
        assert_eq!(Limits::absent(key), None);
        let missing = full.replace(&format!(" {key}=99999999999999"), "");
        assert_eq!(decode(&missing).map_err(|e| e.code), Err(ErrorCode::Syntax), "{key}");
    }
    // Fifteen digits are one too many for a key of a later edition; a key of the
    // first edition takes any number, as older servers may send one.
    let long = full.replace("login=99999999999999", "login=100000000000000");
    assert_eq!(decode(&long).map_err(|e| e.code), Err(ErrorCode::Syntax));
    let old = full.replace("queue=99999999999999", "queue=18446744073709551615");
    assert!(decode(&old).is_ok());
}
