//! Fast paths for the two frames that make up nearly all traffic: the `SEND`
//! request (what a server decodes) and the `MSG` event (what a client decodes).
//!
//! The general parsers build a frame rule by rule through nom, which moves every
//! partial result (a few hundred bytes of names and keys) through each step. These
//! paths cut the line into its fields first, validate each field with the same
//! constructor the general rule uses, and build the frame once.
//!
//! They only ever accept: each returns `None` unless the frame is valid and has
//! exactly its common shape, and the caller then runs the general parser, which
//! decides and words any error. So the grammar and the errors stay those of the
//! rule functions, and a test checks that both paths agree on every input.

use std::ops::Range;

use bytes::Bytes;

use crate::command::{Command, Request};
use crate::event::{Event, StoredEvent};
use crate::parse::parse_number;
use crate::reply::ServerFrame;
use crate::types::{Conversation, GroupName, IdemKey, Tag, Text, UserName};

/// The fields of a `SEND` request, as the fast path reads them.
pub(crate) type SendFields = (Tag, Conversation, IdemKey, Text);

/// The fields of a `MSG` event: conversation, seq, time, sender, text.
pub(crate) type MsgFields = (Conversation, u64, u64, UserName, Text);

/// `request = tag SP "SEND" SP conv SP idem-key payload-marker`: the line is the
/// first `len` bytes of `buf` (without its marker). Takes the payload only when it
/// returns the fields.
///
/// Returns fields rather than a [`Request`] so that the caller builds the frame
/// straight into its own return value: a frame is a few hundred bytes, and moving
/// a finished one from here to there is a call to memcpy. Values are built from
/// `buf` past the line's end as well (see [`Decode::decode_padded`]).
///
/// [`Decode::decode_padded`]: crate::codec::Decode::decode_padded
#[inline(always)]
pub(crate) fn send(buf: &[u8], len: usize, payload: &mut Option<Bytes>) -> Option<SendFields> {
    // A line without a payload is never a SEND: no scan for it.
    payload.as_ref()?;
    let [tag, verb, to, key] = fields(buf, len)?;
    if &buf[verb.clone()] != b"SEND" {
        return None;
    }
    let tag = Tag::from_prefix(&buf[tag.start..], tag.len()).ok()?;
    let to = conv(buf, to)?;
    let key = IdemKey::from_prefix(&buf[key.start..], key.len()).ok()?;
    Some((tag, to, key, Text::take_valid(payload)?))
}

/// `"*" SP "MSG" SP conv SP seq SP millis SP user-name payload-marker`, the line
/// being the first `len` bytes of `buf`. Takes the payload only when it returns
/// the fields.
#[inline(always)]
pub(crate) fn msg_event(buf: &[u8], len: usize, payload: &mut Option<Bytes>) -> Option<MsgFields> {
    payload.as_ref()?;
    let MsgParts { to, seq, time, from } = msg_parts(buf, len)?;
    let to = conv(buf, to)?;
    let from = UserName::from_prefix(&buf[from.start..], from.len()).ok()?;
    Some((to, seq, time, from, Text::take_valid(payload)?))
}

/// Where the fields of a `MSG` event line are, its numbers parsed; the names are
/// not checked yet.
pub(crate) struct MsgParts {
    /// The conversation, sigil included.
    pub(crate) to: Range<usize>,
    pub(crate) seq: u64,
    pub(crate) time: u64,
    /// The sender's name.
    pub(crate) from: Range<usize>,
}

/// The parts of `"*" SP "MSG" SP conv SP seq SP millis SP user-name`, the line
/// being the first `len` bytes of `buf` (without its payload marker).
#[inline(always)]
pub(crate) fn msg_parts(buf: &[u8], len: usize) -> Option<MsgParts> {
    const PREFIX: &[u8] = b"* MSG ";
    if !buf.get(..len)?.starts_with(PREFIX) {
        return None;
    }
    let [to, seq, time, from] = fields(&buf[PREFIX.len()..], len - PREFIX.len())?
        .map(|r| PREFIX.len() + r.start..PREFIX.len() + r.end);
    let (seq, time) = (parse_number(&buf[seq])?, parse_number(&buf[time])?);
    Some(MsgParts { to, seq, time, from })
}

/// Whether the field at `at` in `buf` is a valid `conv`, checked as [`conv`]
/// checks it, without building it.
#[inline(always)]
pub(crate) fn is_conv(buf: &[u8], at: &Range<usize>) -> bool {
    let (name, Some(len)) = (&buf[at.start + 1..], at.len().checked_sub(1)) else {
        return false;
    };
    match buf[at.start] {
        b'#' => GroupName::is_valid_prefix(name, len),
        b'@' => UserName::is_valid_prefix(name, len),
        _ => false,
    }
}

/// A `SEND` request from its fields.
#[inline(always)]
pub(crate) fn send_request((tag, to, key, text): SendFields) -> Request {
    Request { tag, command: Command::Send { to, key, text } }
}

/// A `MSG` event frame from its fields.
#[inline(always)]
pub(crate) fn msg_frame((conv, seq, time, from, text): MsgFields) -> ServerFrame {
    ServerFrame::Event(Event::Stored(StoredEvent::Message { conv, seq, time, from, text }))
}

/// `conv = "#" group-name / "@" user-name`, the field at `at` in `buf`.
#[inline(always)]
fn conv(buf: &[u8], at: Range<usize>) -> Option<Conversation> {
    let name = &buf[at.start + 1..];
    let len = at.len().checked_sub(1)?;
    match buf[at.start] {
        b'#' => GroupName::from_prefix(name, len).ok().map(Conversation::Group),
        b'@' => UserName::from_prefix(name, len).ok().map(Conversation::Direct),
        _ => None,
    }
}

/// Where the `K` fields of the line in the first `len` bytes of `buf` are, if it is
/// exactly `K` non-empty fields separated by single spaces.
#[inline(always)]
fn fields<const K: usize>(buf: &[u8], len: usize) -> Option<[Range<usize>; K]> {
    match buf.get(..WINDOW) {
        Some(window) if len <= WINDOW => {
            let window: &[u8; WINDOW] = window.try_into().ok()?;
            fields_in_mask(space_mask(window), len)
        }
        _ => fields_by_scan(buf.get(..len)?),
    }
}

/// How many bytes of a line [`space_mask`] looks at once: most lines of the two
/// common frames are shorter, and the decoder leaves room past the line for it.
const WINDOW: usize = 64;

/// Bit `i` set where `window[i]` is a space, found eight bytes at a time in a
/// register (the compiler turns a plain loop over the bytes into slow vector
/// shuffles).
#[inline(always)]
fn space_mask(window: &[u8; WINDOW]) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    // Moves bit 8j (for each j < 8) to bit 56 + j; no two products meet, so
    // nothing carries into the top byte.
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut mask = 0u64;
    for (k, word) in window.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ SPACES;
        // The high bit of each byte of `x` that is zero, exactly (no borrow from
        // one byte into the next).
        let zeros = !(((x & LOW7) + LOW7) | x | LOW7);
        mask |= ((zeros >> 7).wrapping_mul(GATHER) >> 56) << (8 * k);
    }
    mask
}

/// The fields of a line of `len` (at most [`WINDOW`]) bytes whose spaces, and
/// perhaps spaces past its end, are the bits of `spaces`.
#[inline(always)]
fn fields_in_mask<const K: usize>(spaces: u64, len: usize) -> Option<[Range<usize>; K]> {
    let last = len.checked_sub(1)?;
    // Bits up to and including the last byte of the line.
    let spaces = spaces & (u64::MAX >> (63 - last));
    // Exactly K - 1 separators, none first or last, no two side by side: then every
    // field is non-empty.
    if spaces.count_ones() as usize != K - 1
        || spaces & 1 != 0
        || spaces >> last != 0
        || spaces & (spaces >> 1) != 0
    {
        return None;
    }
    let mut out = [const { 0..0 }; K];
    let (mut rest, mut start) = (spaces, 0);
    for slot in &mut out {
        let end = if rest == 0 { len } else { rest.trailing_zeros() as usize };
        *slot = start..end;
        start = end + 1;
        rest &= rest.wrapping_sub(1);
    }
    Some(out)
}

/// The same as [`fields`] for a line with no window past it: one byte at a time.
fn fields_by_scan<const K: usize>(line: &[u8]) -> Option<[Range<usize>; K]> {
    let mut out = [const { 0..0 }; K];
    let mut start = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        let end = match line[start..].iter().position(|&b| b == b' ') {
            Some(end) if i + 1 < K => start + end,
            // The last field runs to the end of the line and holds no space.
            None if i + 1 == K => line.len(),
            _ => return None,
        };
        if end == start {
            return None;
        }
        *slot = start..end;
        start = end + 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decode;
    use proptest::prelude::*;

    /// One field: mostly one of `valid`, sometimes a near miss or random bytes.
    fn field(valid: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
        const NEAR: &[&str] = &[
            "",
            "#",
            "@",
            "#Bad",
            "send",
            "MSG",
            "017",
            "18446744073709551616",
            "a b",
            "*",
            "k\u{7f}",
            "#general",
        ];
        prop_oneof![
            20 => proptest::sample::select(valid).prop_map(|s| s.as_bytes().to_vec()),
            1 => proptest::sample::select(NEAR).prop_map(|s| s.as_bytes().to_vec()),
            1 => Just(vec![b'a'; 33]),
            1 => Just(vec![b'k'; 65]),
            1 => proptest::collection::vec(any::<u8>(), 0..6),
        ]
    }

    /// Lines near a shape: its fields, sometimes one more or one fewer, joined
    /// mostly by single spaces.
    fn near(shape: Vec<BoxedStrategy<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
        let sep =
            prop_oneof![30 => Just(b" ".to_vec()), 1 => Just(b"  ".to_vec()), 1 => Just(vec![])];
        let extra = prop_oneof![4 => Just(None), 1 => Just(Some(b"x".to_vec()))];
        let drop_last = prop_oneof![6 => Just(false), 1 => Just(true)];
        (shape, proptest::collection::vec(sep, 8), extra, drop_last).prop_map(
            |(mut fields, seps, extra, drop_last)| {
                if drop_last {
                    fields.pop();
                }
                fields.extend(extra);
                let mut line = Vec::new();
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        line.extend_from_slice(&seps[i % seps.len()]);
                    }
                    line.extend_from_slice(f);
                }
                line
            },
        )
    }

    fn near_send() -> impl Strategy<Value = Vec<u8>> {
        near(vec![
            field(&["t1", "A.b-c_9", "x"]).boxed(),
            field(&["SEND"]).boxed(),
            field(&["#general", "@bob", "#a.b-c_1"]).boxed(),
            field(&["k-1", "a:b.c_d-9", "K"]).boxed(),
        ])
    }

    fn near_msg() -> impl Strategy<Value = Vec<u8>> {
        near(vec![
            field(&["*"]).boxed(),
            field(&["MSG"]).boxed(),
            field(&["#general", "@bob"]).boxed(),
            field(&["1", "0", "18446744073709551615"]).boxed(),
            field(&["1700000000000", "0"]).boxed(),
            field(&["alice", "z.9"]).boxed(),
        ])
    }

    fn payload() -> impl Strategy<Value = Option<Bytes>> {
        prop_oneof![
            Just(None),
            Just(Some(Bytes::from_static(b"hello there"))),
            Just(Some(Bytes::from_static("नमस्ते".as_bytes()))),
            Just(Some(Bytes::from_static(b"bad\x07bell"))),
            Just(Some(Bytes::from_static(b"\xff\xfe"))),
            Just(Some(Bytes::new())),
        ]
    }

    proptest! {
        /// Splitting by a mask of spaces finds the same fields as scanning, at
        /// every line length, whatever follows the line.
        #[test]
        fn the_mask_and_the_scan_find_the_same_fields(
            line in proptest::collection::vec(prop_oneof![4 => Just(b' '), 1 => Just(b'a'), 1 => any::<u8>()], 0..80),
            pad in proptest::collection::vec(prop_oneof![Just(b' '), any::<u8>()], 64),
        ) {
            let buf = [&line[..], &pad].concat();
            prop_assert_eq!(fields::<4>(&buf, line.len()), fields_by_scan::<4>(&line));
            prop_assert_eq!(fields::<6>(&buf, line.len()), fields_by_scan::<6>(&line));
            prop_assert_eq!(fields::<1>(&buf, line.len()), fields_by_scan::<1>(&line));
        }
    }

    proptest! {
        /// Whenever the fast path accepts, the general parser accepts too and
        /// builds the same request; when it declines, the payload is untouched.
        #[test]
        fn send_agrees_with_the_general_parser(
            line in near_send(),
            p in payload(),
            pad in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            // Whatever follows the line in the buffer changes nothing.
            let buf = [&line[..], &pad].concat();
            let mut fast_p = p.clone();
            match send(&buf, line.len(), &mut fast_p).map(send_request) {
                Some(fast) => {
                    let general = Request::decode_general(&line, p);
                    prop_assert_eq!(Ok(fast), general);
                }
                None => prop_assert_eq!(fast_p, p),
            }
        }

        /// The same for `MSG` events.
        #[test]
        fn msg_event_agrees_with_the_general_parser(
            line in near_msg(),
            p in payload(),
            pad in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let buf = [&line[..], &pad].concat();
            let mut fast_p = p.clone();
            match msg_event(&buf, line.len(), &mut fast_p).map(msg_frame) {
                Some(fast) => {
                    let general = ServerFrame::decode_general(&line, p);
                    prop_assert_eq!(Ok(fast), general);
                }
                None => prop_assert_eq!(fast_p, p),
            }
        }
    }

    /// The generated lines exercise both outcomes often, so the agreement tests
    /// above compare real acceptances and real refusals.
    #[test]
    fn the_generated_lines_are_both_taken_and_declined() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut sends, mut msgs) = (0, 0);
        for _ in 0..2000 {
            let line = near_send().new_tree(&mut runner).unwrap().current();
            sends += usize::from(
                send(&line, line.len(), &mut Some(Bytes::from_static(b"hi"))).is_some(),
            );
            let line = near_msg().new_tree(&mut runner).unwrap().current();
            msgs += usize::from(
                msg_event(&line, line.len(), &mut Some(Bytes::from_static(b"hi"))).is_some(),
            );
        }
        assert!((200..1800).contains(&sends), "{sends} of 2000 SEND lines taken");
        assert!((200..1800).contains(&msgs), "{msgs} of 2000 MSG lines taken");
    }

    /// The fast paths do take the common frames (otherwise the tests above would
    /// pass by never accepting).
    #[test]
    fn the_common_frames_take_the_fast_path() {
        let mut p = Some(Bytes::from_static(b"hi"));
        let (tag, ..) = send(b"t1 SEND #general k-1", 20, &mut p).expect("a plain SEND is taken");
        assert_eq!(tag.as_str(), "t1");
        assert!(p.is_none());
        let mut p = Some(Bytes::from_static(b"hi"));
        assert!(msg_event(b"* MSG @alice 3 1700000000000 bob", 32, &mut p).is_some());
        assert!(send(b"t1 SEND #general k-1 extra", 26, &mut Some(Bytes::new())).is_none());
        // Both ways of splitting, the line padded with spaces past its end.
        fn split<const K: usize>(line: &[u8]) -> Option<[Range<usize>; K]> {
            let padded = [line, &[b' '; WINDOW]].concat();
            let by_mask = fields::<K>(&padded, line.len());
            assert_eq!(by_mask, fields_by_scan::<K>(line), "{line:?}");
            by_mask
        }
        assert!(split::<2>(b"a  b").is_none());
        assert!(split::<2>(b"a b ").is_none());
        assert!(split::<2>(b" a b").is_none());
        assert_eq!(split::<2>(b"a bc"), Some([0..1, 2..4]));
        assert!(split::<2>(b"a").is_none());
        assert!(split::<2>(b"a b c").is_none());
        assert!(split::<1>(b"").is_none());
        assert_eq!(split::<3>(b"abcdefgh ij!\"#$%&' k"), Some([0..8, 9..18, 19..20]));
        let long = [&[b'x'; 62][..], b" y"].concat();
        assert_eq!(split::<2>(&long), Some([0..62, 63..64]));
    }

    /// `decode_frame` and the general parser see the same results, fast path or not.
    #[test]
    fn decode_frame_uses_the_fast_path_transparently() {
        let p = Some(Bytes::from_static(b"hi"));
        assert_eq!(
            Request::decode_frame(b"t1 SEND #general k-1", p.clone()),
            Request::decode_general(b"t1 SEND #general k-1", p)
        );
    }
}
