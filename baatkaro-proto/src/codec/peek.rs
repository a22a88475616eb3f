//! Borrowed `MSG` events: what a client that reads many messages (a bot, a bridge,
//! the load generator) decodes without building a frame for each.
//!
//! [`ServerFrameDecoder::next_peeked`] returns a stored `MSG` event of the common
//! shape as a [`MsgRef`] into the decoder's buffer, every field checked by the same
//! rules as [`ServerFrameDecoder::next_frame`] checks it, and nothing copied or
//! reference-counted. Anything else — another frame, an unusual spelling, an error,
//! a frame not yet complete — goes through `next_frame` unchanged, so a stream
//! decodes to the same values and errors whichever of the two a caller uses (a
//! property test and the server-frame fuzz target check both agree).

use std::ops::Range;

use super::{Decoder, LineEnd, State, line_end, split_marker};
use crate::error::DecodeError;
use crate::hot;
use crate::reply::ServerFrame;
use crate::types::{Text, UserName};

/// A stored `MSG` event, borrowed from the decoder's buffer until the next call.
///
/// Every field has been checked as the owned frame's would be: the conversation
/// and the sender are valid names, the text is valid text.
/// The accessors that return `&str` convert on each call (a UTF-8 check that
/// cannot fail, the bytes having been checked); the `_bytes` ones are free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgRef<'a> {
    conv: &'a [u8],
    seq: u64,
    time: u64,
    from: &'a [u8],
    text: &'a [u8],
}

/// A checked field as a string (never the empty fallback: see [`MsgRef`]).
fn as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

impl<'a> MsgRef<'a> {
    /// The conversation as the reader names it, sigil included: `#group` or `@user`.
    pub fn conv(&self) -> &'a str {
        as_str(self.conv)
    }

    /// [`MsgRef::conv`] as bytes.
    pub fn conv_bytes(&self) -> &'a [u8] {
        self.conv
    }

    /// Its sequence number in the conversation.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When it was stored, in milliseconds since the Unix epoch.
    pub fn time(&self) -> u64 {
        self.time
    }

    /// Who sent it.
    pub fn from(&self) -> &'a str {
        as_str(self.from)
    }

    /// [`MsgRef::from`] as bytes.
    pub fn from_bytes(&self) -> &'a [u8] {
        self.from
    }

    /// The message text.
    pub fn text(&self) -> &'a str {
        as_str(self.text)
    }

    /// [`MsgRef::text`] as bytes: valid UTF-8.
    pub fn text_bytes(&self) -> &'a [u8] {
        self.text
    }
}

/// What [`ServerFrameDecoder::next_peeked`] yields.
///
/// [`ServerFrameDecoder::next_peeked`]: crate::ServerFrameDecoder
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned by value as `next_frame` returns a frame; a box would allocate per frame"
)]
pub enum Peeked<'a> {
    /// A stored `MSG` event, borrowed.
    Msg(MsgRef<'a>),
    /// Any other frame, decoded as by `next_frame`.
    Frame(ServerFrame),
}

impl Decoder<ServerFrame> {
    /// Decodes the next frame like [`Decoder::next_frame`], except that a stored
    /// `MSG` event is returned borrowed from the receive buffer (see [`MsgRef`]).
    pub fn next_peeked(&mut self) -> Option<Result<Peeked<'_>, DecodeError>> {
        self.settle();
        // A frame whose payload was still missing last time is still whole at the
        // front of the buffer (the decoder waits for it there).
        let found = match self.state {
            State::Line { .. } | State::Payload { .. } => msg_at_front(&self.buf, self.max_payload),
            _ => None,
        };
        let Some(at) = found else { return self.next_frame().map(|r| r.map(Peeked::Frame)) };
        self.state = State::Lent { len: at.total };
        let buf = &self.buf[..at.total];
        Some(Ok(Peeked::Msg(MsgRef {
            conv: &buf[at.conv],
            seq: at.seq,
            time: at.time,
            from: &buf[at.from],
            text: &buf[at.text],
        })))
    }
}

/// Where a `MSG` event's fields are in the buffer.
struct MsgAt {
    conv: Range<usize>,
    seq: u64,
    time: u64,
    from: Range<usize>,
    text: Range<usize>,
    /// The bytes of the whole frame, its payload's CRLF included.
    total: usize,
}

/// A complete, valid `MSG` event of the common shape at the start of `buf`; `None`
/// for anything else, which the general decoder then decides.
fn msg_at_front(buf: &[u8], max_payload: u64) -> Option<MsgAt> {
    let LineEnd::Crlf { lf, stray_cr: false } = line_end(buf, 0) else { return None };
    let (content, Some(len)) = split_marker(&buf[..lf - 1]).ok()? else { return None };
    if len > max_payload {
        return None;
    }
    let start = lf + 1;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if buf.get(end..end.checked_add(2)?)? != b"\r\n" {
        return None;
    }
    let hot::MsgParts { to, seq, time, from } = hot::msg_parts(buf, content)?;
    if !hot::is_conv(buf, &to)
        || !UserName::is_valid_prefix(&buf[from.start..], from.len())
        || !Text::is_valid(&buf[start..end])
    {
        return None;
    }
    Some(MsgAt { conv: to, seq, time, from, text: start..end, total: end + 2 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encode;
    use crate::event::{Event, StoredEvent};
    use proptest::prelude::*;

    /// What a caller sees of one item, whichever way it was decoded.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Msg(String, u64, u64, String, String),
        Other(String),
        Error(String),
    }

    fn frame(f: ServerFrame) -> Seen {
        match f {
            ServerFrame::Event(Event::Stored(StoredEvent::Message {
                conv,
                seq,
                time,
                from,
                text,
            })) => Seen::Msg(conv.to_string(), seq, time, from.to_string(), text.as_str().into()),
            other => Seen::Other(format!("{other:?}")),
        }
    }

    fn by_frames(data: &[u8], split: usize) -> Vec<Seen> {
        let mut d = Decoder::<ServerFrame>::new(1024);
        let mut seen = Vec::new();
        for piece in [&data[..split], &data[split..]] {
            d.push(piece);
            for _ in 0..=data.len() {
                match d.next_frame() {
                    None => break,
                    Some(Ok(f)) => seen.push(frame(f)),
                    Some(Err(e)) => seen.push(Seen::Error(format!("{e:?}"))),
                }
            }
        }
        seen
    }

    fn by_peeking(data: &[u8], split: usize) -> Vec<Seen> {
        let mut d = Decoder::<ServerFrame>::new(1024);
        let mut seen = Vec::new();
        for piece in [&data[..split], &data[split..]] {
            d.push(piece);
            for _ in 0..=data.len() {
                match d.next_peeked() {
                    None => break,
                    Some(Ok(Peeked::Msg(m))) => seen.push(Seen::Msg(
                        m.conv().to_string(),
                        m.seq(),
                        m.time(),
                        m.from().to_string(),
                        m.text().to_string(),
                    )),
                    Some(Ok(Peeked::Frame(f))) => seen.push(frame(f)),
                    Some(Err(e)) => seen.push(Seen::Error(format!("{e:?}"))),
                }
            }
        }
        seen
    }

    /// A line near the `MSG` shape: every field drawn from valid and invalid values.
    fn near_msg() -> impl Strategy<Value = Vec<u8>> {
        let conv =
            prop::sample::select(vec!["#rust", "@bob", "#a-1.b_c", "#Rust", "#", "rust", "@"]);
        let num = prop::sample::select(vec!["1", "41", "1764072100000", "0", "01", "", "x"]);
        let from = prop::sample::select(vec!["bob", "alice-17", "Bob", "9x", ""]);
        let text = prop::sample::select(vec!["hi", "héllo", "tab\there", "", "a\u{7}b", "x"]);
        let marker = prop::sample::select(vec!["ok", "long", "short", "none", "lf"]);
        (conv, num.clone(), num, from, text, marker).prop_map(|(c, s, t, f, x, m)| {
            let len = match m {
                "long" => x.len() + 1,
                "short" => x.len().saturating_sub(1),
                _ => x.len(),
            };
            let line = format!("* MSG {c} {s} {t} {f}");
            match m {
                "none" => format!("{line}\r\n").into_bytes(),
                "lf" => format!("{line} {{{len}}}\n{x}\r\n").into_bytes(),
                _ => format!("{line} {{{len}}}\r\n{x}\r\n").into_bytes(),
            }
        })
    }

    fn stream() -> impl Strategy<Value = (Vec<u8>, usize)> {
        let item = prop_oneof![
            4 => near_msg(),
            1 => Just(b"a1 OK SEND #rust 41\r\n".to_vec()),
            1 => Just(b"* PING\r\n".to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ];
        prop::collection::vec(item, 0..12).prop_flat_map(|items| {
            let data = items.concat();
            let len = data.len();
            (Just(data), 0..=len)
        })
    }

    proptest! {
        #[test]
        fn peeking_and_decoding_see_the_same_stream((data, split) in stream()) {
            prop_assert_eq!(by_peeking(&data, split), by_frames(&data, split));
        }
    }

    #[test]
    fn a_message_is_borrowed_and_the_rest_decoded() {
        let event = ServerFrame::Event(Event::Stored(StoredEvent::Message {
            conv: "#rust".parse().unwrap(),
            seq: 41,
            time: 1_764_072_100_000,
            from: "bob".parse().unwrap(),
            text: Text::new("hello there").unwrap(),
        }));
        let mut d = Decoder::<ServerFrame>::new(1024);
        d.push(&event.to_bytes());
        d.push(b"a1 OK PING\r\n");
        match d.next_peeked() {
            Some(Ok(Peeked::Msg(m))) => {
                assert_eq!(
                    (m.conv(), m.seq(), m.time(), m.from(), m.text()),
                    ("#rust", 41, 1_764_072_100_000, "bob", "hello there")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.buffered(), b"a1 OK PING\r\n".len());
        assert!(matches!(d.next_peeked(), Some(Ok(Peeked::Frame(ServerFrame::Ok { .. })))));
        assert!(d.next_peeked().is_none());
        assert_eq!(d.buffered(), 0);
    }
}
