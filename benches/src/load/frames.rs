//! Frames cut from a BaatKaro member's receive buffer without the general decoder,
//! and the `MSG` events a member expects matched field by field.
//!
//! At 1 × 100 the generator reads 6–7 million `MSG` events a second on one core,
//! and the general decoder's work for each — framing, then checking the
//! conversation and the sender as valid names and the text as valid text — was a
//! third of the generator's time (BENCHMARKS.md). A member knows exactly what it
//! expects: its conversation, its senders' names, the text it sent with a time
//! stamp at the start. Comparing each field with that checks more than validating
//! it (a sender must be one of the members, the text byte for byte the one sent)
//! and costs a few comparisons. Anything of another shape — a reply, an error, an
//! unusual spelling — is handed whole to the general decoder, which decides it as
//! before, so what the fast path accepts is a subset of what the decoder would.

use super::check::eight_digits;
use baatkaro_proto::{DecodeError, LINE_MAX, Peeked, ServerFrameDecoder};
use bytes::{Buf, BytesMut};

/// The frame at the front of a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front<'a> {
    /// Not all of it has arrived.
    Partial,
    /// A whole frame.
    Whole {
        /// Its bytes in all, from the line's start to the payload's CRLF.
        len: usize,
        /// Its line, CRLF excluded.
        line: &'a [u8],
        /// The payload it declares, if any.
        payload: Option<&'a [u8]>,
    },
    /// Framed in a way this reader does not follow (a bare LF, a line too long, a
    /// payload marker it cannot read, a payload not ended by CRLF): for the general
    /// decoder, given everything from here on.
    Odd,
}

/// How the frame at the front of `buf` is cut, for a reader that refuses payloads
/// over `max_payload` bytes (a frame declaring one is [`Front::Odd`], for the
/// decoder to refuse from its header, as it would alone, rather than waited for).
pub fn front(buf: &[u8], max_payload: u64) -> Front<'_> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > LINE_MAX { Front::Odd } else { Front::Partial };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Front::Odd;
    }
    let line = &buf[..lf - 1];
    let payload_len = match marker(line) {
        Marker::None => return Front::Whole { len: lf + 1, line, payload: None },
        Marker::Len(n) if u64::try_from(n).is_ok_and(|n| n <= max_payload) => n,
        Marker::Len(_) | Marker::Odd => return Front::Odd,
    };
    let start = lf + 1;
    let Some(end) = start.checked_add(payload_len) else { return Front::Odd };
    match buf.get(end..end + 2) {
        None => Front::Partial,
        Some(b"\r\n") => Front::Whole { len: end + 2, line, payload: Some(&buf[start..end]) },
        Some(_) => Front::Odd,
    }
}

/// What the end of a line says about a payload.
enum Marker {
    /// It declares none.
    None,
    /// ` {n}`: `n` bytes follow the line.
    Len(usize),
    /// It ends in `}` but not in a marker read here.
    Odd,
}

/// The payload marker ` {digits}` at the end of `line`, if it has one.
fn marker(line: &[u8]) -> Marker {
    let Some(inner) = line.strip_suffix(b"}") else { return Marker::None };
    let Some(open) = inner.iter().rposition(|&b| b == b'{') else { return Marker::Odd };
    if open == 0 || inner[open - 1] != b' ' {
        return Marker::Odd;
    }
    match number(&inner[open + 1..]).and_then(|n| usize::try_from(n).ok()) {
        Some(n) => Marker::Len(n),
        None => Marker::Odd,
    }
}

/// A decimal number written as the server writes one: 1 to 19 digits, no leading
/// zero unless it is 0.
fn number(digits: &[u8]) -> Option<u64> {
    if !number_spelling(digits) {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0')))
}

/// A stored `MSG` event as a member expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// Its sender's name as written.
    pub from: &'a [u8],
    /// Its text.
    pub text: &'a [u8],
}

/// The `MSG` event in the conversation `conv` (as the reader sees it, sigil
/// included) that `line` and `payload` make, if they are one of the server's usual
/// spelling: `* MSG <conv> <seq> <millis> <from> {<len>}`. The sender's name and
/// the text are returned as written, for the caller to compare with what it sent.
pub fn msg<'a>(line: &'a [u8], payload: Option<&'a [u8]>, conv: &[u8]) -> Option<Msg<'a>> {
    let text = payload?;
    let rest = line.strip_prefix(b"* MSG ")?.strip_prefix(conv)?.strip_prefix(b" ")?;
    let (seq, rest) = number_field(rest)?;
    // The time is checked as a number but not computed: a multiplication per digit
    // made a chain as long as the number.
    let millis = digits_at_start(rest);
    if !number_spelling(&rest[..millis]) || rest.get(millis) != Some(&b' ') {
        return None;
    }
    let rest = &rest[millis + 1..];
    // What is left is `<from> {<len>}`, the marker read already by `front`: the
    // name ends at the last space (a few bytes from the end, so scanned from there).
    let sp = rest.iter().rposition(|&b| b == b' ')?;
    let (from, marker) = (&rest[..sp], &rest[sp + 1..]);
    // A name with a space in it is no member's: the caller's comparison refuses it.
    if from.is_empty() || !marker.starts_with(b"{") {
        return None;
    }
    Some(Msg { seq, from, text })
}

/// How many of the bytes at the start of `bytes` are digits (at most 24): eight
/// at a time while they are (a time is thirteen).
fn digits_at_start(bytes: &[u8]) -> usize {
    let mut n = 0;
    while n < 16
        && let Some(word) = bytes.get(n..n + 8)
        && eight_digits(word).is_some()
    {
        n += 8;
    }
    n + bytes[n..].iter().take(8).take_while(|b| b.is_ascii_digit()).count()
}

/// Whether `digits`, known to be digits, is of the server's spelling of a number:
/// 1 to 19 of them, no leading zero unless it is 0.
fn number_spelling(digits: &[u8]) -> bool {
    !digits.is_empty() && digits.len() <= 19 && (digits[0] != b'0' || digits.len() == 1)
}

/// The number at the start of `rest`, ended by a space, and what follows the
/// space; read in one pass (fields are a few bytes: a loop costs less than a call
/// to find the space).
fn number_field(rest: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in rest.iter().enumerate().take(20) {
        if b.is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            continue;
        }
        let ok = b == b' ' && number_spelling(&rest[..i]);
        return ok.then(|| (value, &rest[i + 1..]));
    }
    None
}

/// What a [`Reader`] hands on.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "handed by value to a closure, as the decoder returns frames; a box would allocate per frame"
)]
pub enum Seen<'a> {
    /// A message the member expects, read by the fast path.
    Msg {
        /// Its sequence number in the conversation.
        seq: u64,
        /// The sender's place, as the matcher found it.
        sender: usize,
        /// Its text.
        text: &'a [u8],
    },
    /// Any other frame (or error), as the general decoder reads it.
    Frame(Result<Peeked<'a>, DecodeError>),
}

/// A member's receive side: whole frames cut from its own buffer, the expected
/// messages matched there, everything else through the general decoder.
///
/// Whatever the decoder is given it is given whole and in order; should it ever
/// keep part of a frame (it cut the stream differently, or the framing was odd),
/// every byte after goes to it too until it holds none, so the order of frames is
/// the stream's either way. The decoder is then in charge until a read ends on a
/// frame's end, and for good once it returned an error (which ends a run anyway):
/// it may then be skipping bytes it does not hold yet.
pub struct Reader {
    raw: BytesMut,
    decoder: ServerFrameDecoder,
    /// The payload limit, `decoder`'s too.
    max_payload: u64,
    /// The decoder holds part of a frame: reads go into its buffer until it is empty.
    in_decoder: bool,
    /// The decoder returned an error: it stays in charge for good. After one it may
    /// be skipping what a bad line declared, or the rest of a long line, holding no
    /// byte meanwhile; what it skips is no frame, and must not be read as one.
    erred: bool,
}

impl Reader {
    /// A reader of a connection from its start, refusing payloads over
    /// `max_payload` bytes.
    pub fn new(max_payload: u64) -> Self {
        Reader {
            raw: BytesMut::with_capacity(64 * 1024),
            decoder: ServerFrameDecoder::new(max_payload),
            max_payload,
            in_decoder: false,
            erred: false,
        }
    }

    /// The buffer the next read appends to.
    pub fn buffer(&mut self) -> &mut BytesMut {
        if self.in_decoder { self.decoder.buffer_mut() } else { &mut self.raw }
    }

    /// Hands `each` every whole frame received, in order: a `MSG` event in `conv`
    /// whose sender and text `expected` accepts (giving the sender's place) as
    /// [`Seen::Msg`], anything else as the decoder reads it. Stops at the first
    /// error `each` returns.
    pub fn drain<E>(
        &mut self,
        conv: &[u8],
        expected: impl Fn(&[u8], &[u8]) -> Option<usize>,
        mut each: impl FnMut(Seen<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            if self.in_decoder {
                while let Some(item) = self.decoder.next_peeked() {
                    self.erred |= item.is_err();
                    each(Seen::Frame(item))?;
                }
                // A decoder that failed, or erred, stays in charge.
                if self.decoder.buffered() == 0 && !self.decoder.is_failed() && !self.erred {
                    self.in_decoder = false;
                }
                // Reads went into the decoder: nothing is waiting in `raw`.
                return Ok(());
            }
            match front(&self.raw, self.max_payload) {
                Front::Partial => return Ok(()),
                Front::Whole { len, line, payload } => {
                    if let Some(m) = msg(line, payload, conv)
                        && let Some(sender) = expected(m.from, m.text)
                    {
                        each(Seen::Msg { seq: m.seq, sender, text: m.text })?;
                        self.raw.advance(len);
                        continue;
                    }
                    self.decoder.push(&self.raw[..len]);
                    self.raw.advance(len);
                    while let Some(item) = self.decoder.next_peeked() {
                        self.erred |= item.is_err();
                        each(Seen::Frame(item))?;
                    }
                    if self.decoder.buffered() > 0 || self.decoder.is_failed() || self.erred {
                        self.hand_over();
                    }
                }
                Front::Odd => self.hand_over(),
            }
        }
    }

    /// Gives the decoder every byte not yet read, and every read from now on until
    /// it holds none.
    fn hand_over(&mut self) {
        self.decoder.push(&self.raw);
        self.raw.clear();
        self.in_decoder = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baatkaro_proto::{Encode, Event, ServerFrame, StoredEvent, Text};
    use proptest::prelude::*;

    fn msg_frame(conv: &str, seq: u64, from: &str, text: &str) -> Vec<u8> {
        ServerFrame::Event(Event::Stored(StoredEvent::Message {
            conv: conv[1..].parse().map(baatkaro_proto::Conversation::Group).unwrap(),
            seq,
            time: 1_764_072_500_000,
            from: from.parse().unwrap(),
            text: Text::new(text).unwrap(),
        }))
        .to_bytes()
        .to_vec()
    }

    #[test]
    fn a_message_as_the_server_encodes_it_is_cut_and_matched() {
        let bytes = msg_frame("#room", 42, "alice", "hello there");
        let Front::Whole { len, line, payload } = front(&bytes, 1 << 16) else {
            panic!("not whole")
        };
        assert_eq!(len, bytes.len());
        let m = msg(line, payload, b"#room").expect("a message");
        assert_eq!(m, Msg { seq: 42, from: b"alice", text: b"hello there" });
        // Another conversation is not this member's.
        assert_eq!(msg(line, payload, b"#other"), None);
        assert_eq!(msg(line, payload, b"#roo"), None);
    }

    #[test]
    fn a_frame_not_all_arrived_is_partial_at_every_cut() {
        let bytes = msg_frame("#room", 7, "bob", "some text");
        for cut in 0..bytes.len() {
            assert_eq!(front(&bytes[..cut], 1 << 16), Front::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn replies_are_whole_frames_but_not_messages() {
        let reply = b"s1 OK SEND #rust 43 1764072500000\r\nnext";
        let Front::Whole { len, line, payload } = front(reply, 1 << 16) else {
            panic!("not whole")
        };
        assert_eq!(len, reply.len() - 4);
        assert_eq!(payload, None);
        assert_eq!(msg(line, payload, b"#rust"), None);
    }

    #[test]
    fn odd_framing_goes_to_the_decoder() {
        assert_eq!(front(b"* MSG #a 1 2 b {3}\nabc\r\n", 1 << 16), Front::Odd);
        assert_eq!(front(b"\n", 1 << 16), Front::Odd);
        assert_eq!(front(b"* MSG #a 1 2 b {x}\r\nabc\r\n", 1 << 16), Front::Odd);
        assert_eq!(front(b"* MSG #a 1 2 b{3}\r\nabc\r\n", 1 << 16), Front::Odd);
        assert_eq!(front(b"* MSG #a 1 2 b {3}\r\nabcXY", 1 << 16), Front::Odd);
        assert_eq!(front(&vec![b'a'; LINE_MAX + 1], 1 << 16), Front::Odd);
        assert_eq!(front(&vec![b'a'; LINE_MAX], 1 << 16), Front::Partial);
        // Over the payload limit: the decoder's, from the header on.
        assert_eq!(front(b"* MSG #a 1 2 b {3}\r\nabc\r\n", 2), Front::Odd);
        assert_eq!(front(b"* MSG #a 1 2 b {3}\r\n", 2), Front::Odd);
    }

    #[test]
    fn numbers_are_read_only_in_the_servers_spelling() {
        assert_eq!(number(b"0"), Some(0));
        assert_eq!(number(b"1234"), Some(1234));
        assert_eq!(number(b"007"), None);
        assert_eq!(number(b""), None);
        assert_eq!(number(b"12a"), None);
        assert_eq!(number(b"9999999999999999999"), Some(9_999_999_999_999_999_999));
        assert_eq!(number(b"99999999999999999999"), None);
        let line = b"* MSG #a 01 2 b {1}";
        assert_eq!(msg(line, Some(b"x"), b"#a"), None);
        let line = b"* MSG #a 1  2 b {1}";
        assert_eq!(msg(line, Some(b"x"), b"#a"), None);
        let line = b"* MSG #a 1 2 b {1}";
        assert_eq!(msg(line, Some(b"x"), b"#a"), Some(Msg { seq: 1, from: b"b", text: b"x" }));
        let line = b"* MSG #a 1 1234567890123456789 b {1}";
        assert_eq!(msg(line, Some(b"x"), b"#a"), Some(Msg { seq: 1, from: b"b", text: b"x" }));
        for time in ["12345678901234567890", "0123", "12x4", ""] {
            let line = format!("* MSG #a 1 {time} b {{1}}");
            assert_eq!(msg(line.as_bytes(), Some(b"x"), b"#a"), None, "{time}");
        }
    }

    /// A message whose payload is over the reader's limit is the decoder's to
    /// refuse, as the decoder alone would; and its declared length is not waited
    /// for.
    #[test]
    fn a_message_over_the_payload_limit_is_refused_as_the_decoder_refuses_it() {
        let data = b"* MSG #room 7 1 ann {6}\r\n00xxxx\r\n";
        let alone = by_decoder(data, &[], 4);
        assert!(
            matches!(&alone[..], [Item::Other(e)] if e.contains("PayloadTooLarge")),
            "{alone:?}"
        );
        assert_eq!(by_reader(data, &[], 4), alone);
        // A header that declares more than the limit is refused before its payload.
        let head = b"* MSG #room 7 1 ann {99999999999}\r\n";
        assert_eq!(by_reader(head, &[], 1 << 16), by_decoder(head, &[], 1 << 16));
    }

    /// After a bad line that declares a payload, the decoder skips the payload even
    /// when it arrives in a later read: a message spelled inside it is not one.
    #[test]
    fn a_payload_the_decoder_skips_is_not_read_as_frames() {
        let mut data = b"e {29}\n".to_vec();
        data.extend_from_slice(b"* MSG #room 7 1 ann {4}\r\n00xx\r\n");
        let alone = by_decoder(&data, &[7], 1 << 16);
        assert_eq!(alone.len(), 1, "{alone:?}");
        assert_eq!(by_reader(&data, &[7], 1 << 16), alone);
    }

    /// One item of a stream, however it was read.
    #[derive(Debug, PartialEq)]
    enum Item {
        Msg(String, u64, Vec<u8>, Vec<u8>),
        Other(String),
    }

    const NAMES: [&str; 3] = ["ann", "bo", "cy"];

    /// The matcher of the property test: `ann` and `bo` are members, texts of
    /// digits then `x`s are theirs.
    fn expected(from: &[u8], text: &[u8]) -> Option<usize> {
        let i = NAMES[..2].iter().position(|n| n.as_bytes() == from)?;
        (text.len() > 2
            && text[..2].iter().all(u8::is_ascii_digit)
            && text[2..].iter().all(|&b| b == b'x'))
        .then_some(i)
    }

    /// An item as a comparable value: a message whichever way the decoder
    /// returned it (borrowed, or whole for an unusual spelling).
    fn from_peeked(item: Result<Peeked<'_>, DecodeError>) -> Item {
        match item {
            Ok(Peeked::Msg(m)) => Item::Msg(
                m.conv().into(),
                m.seq(),
                m.from_bytes().to_vec(),
                m.text_bytes().to_vec(),
            ),
            Ok(Peeked::Frame(ServerFrame::Event(Event::Stored(StoredEvent::Message {
                conv,
                seq,
                from,
                text,
                ..
            })))) => {
                Item::Msg(conv.to_string(), seq, from.as_bytes().to_vec(), text.as_bytes().to_vec())
            }
            Ok(Peeked::Frame(f)) => Item::Other(format!("{f:?}")),
            Err(e) => Item::Other(format!("error {e:?}")),
        }
    }

    /// The stream's items read by the general decoder alone, in reads cut at `cuts`.
    fn by_decoder(data: &[u8], cuts: &[usize], max: u64) -> Vec<Item> {
        let mut d = ServerFrameDecoder::new(max);
        let mut seen = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([&data.len()]) {
            let cut = cut.clamp(at, data.len());
            d.push(&data[at..cut]);
            at = cut;
            while let Some(item) = d.next_peeked() {
                seen.push(from_peeked(item));
            }
        }
        seen
    }

    /// The same, read by a [`Reader`].
    fn by_reader(data: &[u8], cuts: &[usize], max: u64) -> Vec<Item> {
        let mut r = Reader::new(max);
        let mut seen = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([&data.len()]) {
            let cut = cut.clamp(at, data.len());
            r.buffer().extend_from_slice(&data[at..cut]);
            at = cut;
            let _ = r.drain(b"#room", expected, |s| {
                seen.push(match s {
                    Seen::Msg { seq, sender, text } => Item::Msg(
                        "#room".into(),
                        seq,
                        NAMES[sender].as_bytes().to_vec(),
                        text.to_vec(),
                    ),
                    Seen::Frame(item) => from_peeked(item),
                });
                Ok::<(), ()>(())
            });
        }
        seen
    }

    /// A piece of a stream: frames of every kind the reader sorts, and damage.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => (0u64..1000, 0usize..3, 1usize..6, prop::bool::ANY).prop_map(|(seq, who, n, ours)| {
                let text = if ours { format!("{seq:02}{}", "x".repeat(n)) } else { format!("hi {n}") };
                let conv = if ours { "#room" } else { "#elsewhere" };
                msg_frame(conv, seq, NAMES[who], &text)
            }),
            1 => (0u64..1000).prop_map(|seq| format!("s OK SEND #room {seq} 1764072500000\r\n").into_bytes()),
            1 => Just(b"* MSG #room 007 1 ann {4}\r\n00xx\r\n".to_vec()),
            1 => Just(b"* MSG #room 7 1 ann {4}\r\n00xxyz\r\n".to_vec()),
            1 => Just(b"* MSG #room 7 1 a!n {4}\r\n00xx\r\n".to_vec()),
            1 => Just(b"garbage\n".to_vec()),
            // A bad line that declares a payload: the decoder skips what follows.
            1 => (0usize..64).prop_map(|n| format!("e {{{n}}}\n").into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..12),
        ]
    }

    proptest! {
        /// The reader hands on what the general decoder alone would, in the same
        /// order, however the stream is cut into reads: messages it matches are
        /// the decoder's messages, and everything else is the decoder's own.
        #[test]
        fn the_reader_sees_what_the_decoder_sees(
            pieces in prop::collection::vec(piece(), 0..24),
            cuts in prop::collection::vec(0usize..2000, 0..8),
            max in prop_oneof![Just(1u64 << 16), 2u64..8],
        ) {
            let data = pieces.concat();
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(by_reader(&data, &cuts, max), by_decoder(&data, &cuts, max));
        }
    }
}
