//! Bodies of the fuzz targets in `fuzz/`, kept here so that plain `cargo test`
//! replays the committed corpus through exactly the same code.
//!
//! Each body panics when it finds a violation; it returns normally for any input
//! that the library handles correctly, however malformed.

use std::fmt::Debug;
use std::ops::Range;

use crate::codec::{Decode, Decoder, Encode};
use crate::{OkReply, Request, ServerFrame};

/// The payload limit the stream bodies decode with.
const MAX_PAYLOAD: u64 = 64 * 1024;

/// A frame type the bodies know how to check.
trait Frame: Decode + Encode + PartialEq + Debug {
    /// Whether the grammar has exactly one spelling of this frame, so that the bytes
    /// it was decoded from must be exactly what the encoder writes for it.
    fn has_one_spelling(&self) -> bool;
}

impl Frame for Request {
    fn has_one_spelling(&self) -> bool {
        true
    }
}

impl Frame for ServerFrame {
    fn has_one_spelling(&self) -> bool {
        // A HELLO reply may list its limits and features in any order and may carry
        // keys this version does not know.
        !matches!(self, ServerFrame::Ok { reply: OkReply::Hello { .. }, .. })
    }
}

/// Decodes arbitrary bytes as a stream of `F` frames. Checks that
///
/// - the decoder never livelocks, and stops for good exactly after a fatal error;
/// - every frame that decodes re-encodes to bytes that decode to the same frame;
/// - where the grammar allows one spelling only, those bytes are the very bytes the
///   frame was decoded from.
///
/// Panics on a violation.
fn stream<F: Frame>(data: &[u8]) {
    // Split the input at a point the input chooses, to exercise incremental decoding.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut decoder = Decoder::<F>::new(MAX_PAYLOAD);
    // Each frame with the range of `data` the decoder consumed to produce it: the
    // frame's own bytes, after any empty lines or junk skipped before it.
    let mut frames: Vec<(F, Range<usize>)> = Vec::new();
    let mut fed = 0;
    for piece in [&data[..split], &data[split..]] {
        decoder.push(piece);
        fed += piece.len();
        // Every input byte yields at most one item, so this bound is never reached
        // by a correct decoder; it turns a livelock into a failure.
        let mut drained = false;
        for _ in 0..=data.len() + 1 {
            let start = fed - decoder.buffered();
            match decoder.next_frame() {
                Some(Ok(frame)) => frames.push((frame, start..fed - decoder.buffered())),
                Some(Err(e)) => {
                    assert_eq!(
                        e.is_fatal(),
                        decoder.is_failed(),
                        "error {e} and the decoder's state disagree on whether it is fatal"
                    );
                    // The detail goes back to the peer as the error's note.
                    assert!(
                        crate::Note::new(&e.detail).is_ok(),
                        "error detail {:?} cannot travel as a note",
                        e.detail
                    );
                }
                None => {
                    drained = true;
                    break;
                }
            }
        }
        assert!(drained, "the decoder kept yielding items: livelock");
    }
    if decoder.is_failed() {
        decoder.push(b"a1 PING\r\n");
        assert!(decoder.next_frame().is_none(), "a failed decoder decoded more");
        assert_eq!(decoder.buffered(), 0, "a failed decoder kept bytes");
    }
    for (frame, consumed) in frames {
        let out = frame.to_bytes();
        let again = crate::decode_one::<F>(&out, MAX_PAYLOAD)
            .unwrap_or_else(|e| panic!("re-encoded {frame:?} as {out:?}, which fails: {e}"));
        assert_eq!(again, frame, "re-encoding changed the frame");
        if frame.has_one_spelling() {
            let read = &data[consumed];
            assert!(
                read.ends_with(&out),
                "{frame:?} was decoded from {read:?} but encodes as {out:?}"
            );
        }
    }
}

/// Fuzz body: bytes → request frames → encode → decode again.
pub fn decode_requests(data: &[u8]) {
    stream::<Request>(data);
}

/// Fuzz body: bytes → server frames → encode → decode again; and the same bytes
/// read through [`Decoder::next_peeked`] give the same frames and errors.
pub fn decode_server_frames(data: &[u8]) {
    stream::<ServerFrame>(data);
    peeking_agrees(data);
}

/// Decodes `data` (split as [`stream`] splits it) with `next_frame` and with
/// `next_peeked`, and panics unless both yield the same items: every borrowed
/// `MSG` event must be a valid one, equal to the frame `next_frame` builds.
fn peeking_agrees(data: &[u8]) {
    use crate::{Event, Peeked, StoredEvent, Text};

    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut frames = Decoder::<ServerFrame>::new(MAX_PAYLOAD);
    let mut peeks = Decoder::<ServerFrame>::new(MAX_PAYLOAD);
    let (mut by_frames, mut by_peeks) = (Vec::new(), Vec::new());
    for piece in [&data[..split], &data[split..]] {
        frames.push(piece);
        peeks.push(piece);
        // Bounded as in `stream`: at most one item per input byte.
        for _ in 0..=data.len() + 1 {
            let Some(item) = frames.next_frame() else { break };
            by_frames.push(item.map_err(|e| e.to_string()));
        }
        for _ in 0..=data.len() + 1 {
            let item = match peeks.next_peeked() {
                None => break,
                Some(Ok(Peeked::Msg(m))) => {
                    let owned = (m.conv().parse(), m.from().parse(), Text::new(m.text()));
                    let (Ok(conv), Ok(from), Ok(text)) = owned else {
                        panic!("a borrowed MSG that is not valid: {m:?}");
                    };
                    let (seq, time) = (m.seq(), m.time());
                    let msg = StoredEvent::Message { conv, seq, time, from, text };
                    Ok(ServerFrame::Event(Event::Stored(msg)))
                }
                Some(Ok(Peeked::Frame(f))) => Ok(f),
                Some(Err(e)) => Err(e.to_string()),
            };
            by_peeks.push(item);
        }
        assert_eq!(peeks.buffered(), frames.buffered(), "the two decoders hold different bytes");
    }
    assert_eq!(by_peeks, by_frames, "peeking and decoding disagree");
}

/// Fuzz body: bytes → arbitrary valid [`Request`]s and [`ServerFrame`]s → encode →
/// decode. Each value must encode to one frame whose line, CRLF included, fits in
/// [`LINE_MAX`](crate::LINE_MAX) and which decodes to the same value; all of them
/// encoded back to back and fed to a [`Decoder`] in two pieces must decode to the
/// same values in order.
#[cfg(feature = "arbitrary")]
pub fn roundtrip_values(data: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};

    let mut u = Unstructured::new(data);
    // Where to split each stream, taken first so it does not depend on what follows.
    let split_requests = usize::from(u16::arbitrary(&mut u).unwrap_or(0));
    let split_frames = usize::from(u16::arbitrary(&mut u).unwrap_or(0));
    let mut requests = Vec::new();
    let mut frames = Vec::new();
    while !u.is_empty() && requests.len() + frames.len() < 64 {
        let built = if bool::arbitrary(&mut u).unwrap_or(false) {
            Request::arbitrary(&mut u).map(|r| requests.push(r))
        } else {
            ServerFrame::arbitrary(&mut u).map(|f| frames.push(f))
        };
        if built.is_err() {
            break;
        }
    }
    roundtrip(&requests, split_requests);
    roundtrip(&frames, split_frames);
}

/// The checks of [`roundtrip_values`] for one frame type.
#[cfg(feature = "arbitrary")]
fn roundtrip<F: Frame>(values: &[F], split: usize) {
    use crate::{LINE_MAX, PAYLOAD_CEILING};

    let mut stream = bytes::BytesMut::new();
    for value in values {
        let out = value.to_bytes();
        let line = out
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("{value:?} encodes as {out:?}, which has no CRLF"));
        assert!(
            line + 2 <= LINE_MAX,
            "{value:?} encodes to a line of {} bytes with its CRLF: {out:?}",
            line + 2
        );
        let again = crate::decode_one::<F>(&out, PAYLOAD_CEILING)
            .unwrap_or_else(|e| panic!("{value:?} encodes as {out:?}, which fails: {e}"));
        assert_eq!(&again, value, "{value:?} encodes as {out:?}");
        stream.extend_from_slice(&out);
    }
    let split = split % (stream.len() + 1);
    let mut decoder = Decoder::<F>::new(PAYLOAD_CEILING);
    let mut decoded = Vec::with_capacity(values.len());
    for piece in [&stream[..split], &stream[split..]] {
        decoder.push(piece);
        // One item per frame at most, plus the final `None`.
        for _ in 0..=values.len() {
            match decoder.next_frame() {
                Some(Ok(frame)) => decoded.push(frame),
                Some(Err(e)) => panic!("the stream of {values:?} fails: {e}"),
                None => break,
            }
        }
    }
    assert_eq!(decoder.buffered(), 0, "bytes left over");
    assert_eq!(decoded, values, "the stream decodes to other frames");
}

/// Fuzz body: an arbitrary sequence of group operations by arbitrary actors, with
/// time moving forward; after every step the group's invariants hold, a denied
/// operation changed nothing, and replaying the events rebuilds the same group.
#[cfg(feature = "arbitrary")]
pub fn group_ops(data: &[u8]) {
    use crate::group::{Ctx, Group, GroupId, GroupRules, Op};
    use crate::types::{JoinRule, UserName};

    let mut u = arbitrary::Unstructured::new(data);
    // A handful of users, so that operations meet each other.
    let users: Vec<UserName> =
        ["ann", "bob", "cy", "dee", "eve"].iter().filter_map(|n| UserName::new(n).ok()).collect();
    let pick = |u: &mut arbitrary::Unstructured<'_>| -> Option<UserName> {
        let i = u.choose_index(users.len()).ok()?;
        users.get(i).copied()
    };
    let rules = GroupRules { members: 4, pending: 2, invites: 2, groups: 3, expiry: 1_000 };
    let groups_of = |_: &UserName| 0;
    let mut now = 0u64;
    let Ok(rule) = u.arbitrary::<JoinRule>() else { return };
    let Some(owner) = pick(&mut u) else { return };
    let ctx = Ctx { now, rules: &rules, groups_of: &groups_of };
    let name = crate::GroupName::new("g").unwrap_or_else(|e| panic!("{e}"));
    let Ok((mut group, created)) = Group::create(GroupId(1), name, owner, rule, &ctx) else {
        return;
    };
    let mut history = vec![created];
    // Bounded by the input: every step consumes at least one byte.
    while !u.is_empty() && !group.is_deleted() {
        now += u64::from(u.arbitrary::<u8>().unwrap_or(0)) * 16;
        let (Some(actor), Ok(op)) = (pick(&mut u), u.arbitrary::<Op>()) else { break };
        let ctx = Ctx { now, rules: &rules, groups_of: &groups_of };
        let before = group.clone();
        match group.apply(actor, op.clone(), &ctx) {
            Ok(events) => history.extend(events),
            Err(denial) => {
                assert_eq!(
                    group, before,
                    "{op:?} by {actor} was denied ({denial:?}) but changed the group"
                );
                assert!(op.possible_denials().contains(&denial), "{op:?} got unlisted {denial:?}");
            }
        }
        if let Some(expired) = group.expire(now) {
            history.push(expired);
        }
        if let Err(broken) = group.check_invariants() {
            panic!("after {op:?} by {actor}: {broken}");
        }
        let replayed = Group::replay(GroupId(1), name, rules.expiry, &history);
        assert_eq!(replayed.as_ref(), Some(&group), "replaying the events gives another group");
    }
}
