//! The framer and the encode/decode entry points.
//!
//! A frame is one line ending in CRLF, optionally followed by a payload whose
//! length the line declares with a trailing ` {n}`:
//!
//! ```abnf
//! frame          = line [payload]
//! line           = content [payload-marker] CRLF     ; at most 1,024 bytes in all
//! payload-marker = SP "{" number "}"
//! payload        = *OCTET CRLF                       ; exactly number octets, then CRLF
//! ```
//!
//! The [`Decoder`] finds the frame boundary first, under hard limits, and only then
//! parses a complete frame. It is the only place that says "need more bytes".

use std::marker::PhantomData;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{DecodeError, ErrorCode};
use crate::limits::{LINE_MAX, Limits};
use crate::parse::{parse_number, sniff_tag};

mod peek;
pub use peek::{MsgRef, Peeked};

/// Lines up to this long are copied to the stack when their payload is split off.
const SHORT_LINE: usize = 128;

/// How many bytes the decoder keeps readable after a short line when it hands the
/// line to [`Decode::decode_padded`].
pub const LINE_PAD: usize = 64;

/// Where in memory a long payload that arrives in pieces starts: at a multiple of
/// this. A consumer can then write it to a file opened for direct I/O without
/// copying it to an aligned buffer first.
pub const PAYLOAD_ALIGN: usize = 4096;

/// Payloads at least this long are aligned to [`PAYLOAD_ALIGN`]; shorter ones are
/// not worth a buffer of their own.
const ALIGN_FROM: usize = 64 * 1024;

/// Room kept past a long pending payload for what arrives with its last bytes (the
/// start of the next frames), so that completing it does not move it: a quarter of
/// the payload, at most this. The payload keeps its whole buffer alive, so the room
/// is in proportion. A push larger than the room still works, but copies the buffer.
const PAYLOAD_SLACK: usize = 256 * 1024;

/// A frame type that can be parsed from one complete frame.
pub trait Decode: Sized {
    /// Parses one frame, given its line (without payload marker and CRLF) and its
    /// payload, if the line declared one.
    fn decode_frame(line: &[u8], payload: Option<Bytes>) -> Result<Self, DecodeError>;

    /// The same, for a line that is the first `len` bytes of `buf`, where `buf` may
    /// hold more bytes after it (the decoder leaves [`LINE_PAD`] of them): a
    /// decoder may read those to copy whole words, but the frame depends only on
    /// the line. `len` is at most `buf.len()`.
    fn decode_padded(buf: &[u8], len: usize, payload: Option<Bytes>) -> Result<Self, DecodeError> {
        Self::decode_frame(&buf[..len.min(buf.len())], payload)
    }
}

/// A frame type that can be written.
pub trait Encode {
    /// Appends the frame's bytes, CRLF and payload included, to `out`.
    fn encode(&self, out: &mut BytesMut);

    /// About how many bytes the frame encodes to, or more: what [`Encode::to_bytes`]
    /// allocates, so that it does not grow (and copy) the buffer as it writes.
    fn size_hint(&self) -> usize {
        128
    }

    /// The frame's bytes in a new buffer.
    fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.size_hint());
        self.encode(&mut out);
        out.freeze()
    }
}

/// Where the decoder is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the end of a line. `scanned` bytes are known to hold no LF.
    Line { scanned: usize },
    /// A line ending at `lf` declared a payload of `len` bytes that has not fully arrived.
    Payload { lf: usize, content: usize, len: usize },
    /// A line was too long: dropping bytes up to and including the next LF.
    DiscardLine,
    /// A payload was refused: dropping this many more of its bytes, then its CRLF.
    Skip { remaining: u64 },
    /// Expecting the CRLF that ends a skipped payload.
    SkipEnd,
    /// A fatal error happened; the stream is unusable.
    Failed,
    /// The first `len` bytes are a frame lent out by [`Decoder::next_peeked`]: dropped
    /// before anything else looks at the buffer. A state rather than a field, so that
    /// `next_frame` pays for it only in the match it makes anyway.
    Lent { len: usize },
}

/// An incremental frame decoder for one direction of a connection.
///
/// Feed it bytes in pieces of any size with [`push`](Decoder::push) (or read straight
/// into [`buffer_mut`](Decoder::buffer_mut)), then drain it as an iterator: each item
/// is a frame or a [`DecodeError`]. After a non-fatal error the decoder has already
/// resynchronised and the next item is the next frame; after a fatal one it yields
/// nothing more.
///
/// It never holds more than one line ([`LINE_MAX`]) or one line and its payload (at
/// most the payload limit) beyond what was pushed since the last drain; a payload
/// over the limit is refused from its header and skipped without being buffered.
/// Payloads are handed out as [`Bytes`] slices of the receive buffer, not copied.
#[derive(Debug)]
pub struct Decoder<F> {
    buf: BytesMut,
    state: State,
    max_payload: u64,
    frame: PhantomData<fn() -> F>,
}

/// Decodes what a client sends: [`Request`](crate::Request)s.
pub type RequestDecoder = Decoder<crate::Request>;
/// Decodes what a server sends: [`ServerFrame`](crate::ServerFrame)s.
pub type ServerFrameDecoder = Decoder<crate::ServerFrame>;

impl<F: Decode> Decoder<F> {
    /// A decoder that refuses payloads longer than `max_payload` bytes.
    ///
    /// Its buffer starts empty and grows with what is pushed or reserved in
    /// [`buffer_mut`](Decoder::buffer_mut): a server's quiet connection then holds
    /// only the room its reads reserve, not a fixed buffer on top of it.
    pub fn new(max_payload: u64) -> Self {
        Decoder {
            buf: BytesMut::new(),
            state: State::Line { scanned: 0 },
            max_payload,
            frame: PhantomData,
        }
    }

    /// A decoder for the limits a server advertises.
    pub fn with_limits(limits: &Limits) -> Self {
        Self::new(limits.payload)
    }

    /// Changes the payload limit, e.g. once the HELLO reply has told the client.
    pub fn set_max_payload(&mut self, max_payload: u64) {
        self.max_payload = max_payload;
    }

    /// Drops the bytes of the last lent frame.
    #[inline]
    fn settle(&mut self) {
        if let State::Lent { len } = self.state {
            self.buf.advance(len);
            self.state = State::Line { scanned: 0 };
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.settle();
        match self.state {
            // Bytes that are to be dropped anyway never need to be buffered.
            State::Failed => {}
            _ => self.buf.extend_from_slice(data),
        }
    }

    /// The receive buffer, for reading from a socket straight into it. Append only.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        self.settle();
        &mut self.buf
    }

    /// Lets go of a receive buffer far larger than a read now needs: when no frame
    /// is lent and no payload is arriving, and the buffer has room for at least
    /// four times `room` beyond what it holds (room it has at once, or that it
    /// would have if the bytes it holds moved to its front, which only a buffer no
    /// longer shared with frames handed out can do), what it holds moves to a new
    /// buffer just large enough. The large allocation is freed then, or when the
    /// last frame sharing it is. A connection that once read an upload's chunk or
    /// a burst otherwise keeps that allocation (up to about a chunk and a quarter)
    /// for as long as it stays open, however quiet. Returns whether it let go.
    pub fn release(&mut self, room: usize) -> bool {
        // Mid-payload the buffer was sized and aligned for it; a lent frame's bytes
        // are still at its front.
        if !matches!(
            self.state,
            State::Line { .. } | State::DiscardLine | State::Skip { .. } | State::SkipEnd
        ) {
            return false;
        }
        // True at once if the buffer has the room after what it holds; else only
        // for a buffer nothing else shares whose allocation has it (the bytes it
        // holds then move to its front, as the copy below would move them anyway).
        if !self.buf.try_reclaim(room.saturating_mul(4)) {
            return false;
        }
        // `new` rather than `with_capacity`: a buffer made with a capacity keeps it
        // as the least it grows to again.
        let mut small = BytesMut::new();
        small.extend_from_slice(&self.buf);
        self.buf = small;
        true
    }

    /// How many received bytes are buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        match self.state {
            State::Lent { len } => self.buf.len() - len,
            _ => self.buf.len(),
        }
    }

    /// Whether a fatal error has made the stream unusable.
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Decodes the next frame, if a whole one has arrived.
    pub fn next_frame(&mut self) -> Option<Result<F, DecodeError>> {
        loop {
            match self.state {
                State::Failed => return None,
                State::Lent { len } => {
                    self.buf.advance(len);
                    self.state = State::Line { scanned: 0 };
                }
                State::DiscardLine => match memchr::memchr(b'\n', &self.buf) {
                    Some(lf) => {
                        self.buf.advance(lf + 1);
                        self.state = State::Line { scanned: 0 };
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                },
                State::Skip { remaining } => {
                    let n = remaining.min(self.buf.len() as u64);
                    // n <= buf.len(), so it fits in usize.
                    self.buf.advance(n as usize);
                    if n < remaining {
                        self.state = State::Skip { remaining: remaining - n };
                        return None;
                    }
                    self.state = State::SkipEnd;
                }
                State::SkipEnd => {
                    let end = self.buf.get(..2)?;
                    if end != b"\r\n" {
                        return Some(Err(self.fail()));
                    }
                    self.buf.advance(2);
                    self.state = State::Line { scanned: 0 };
                }
                State::Payload { lf, content, len } => return self.payload_frame(lf, content, len),
                State::Line { scanned } => {
                    let (lf, stray_cr) = match line_end(&self.buf, scanned) {
                        LineEnd::More(scanned) => {
                            self.state = State::Line { scanned };
                            return None;
                        }
                        LineEnd::TooLong => {
                            let tag = sniff_tag(&self.buf[..LINE_MAX]);
                            self.buf.advance(LINE_MAX);
                            self.state = State::DiscardLine;
                            return Some(Err(DecodeError::new(
                                tag,
                                ErrorCode::LineTooLong,
                                format!("line longer than {LINE_MAX} bytes"),
                            )));
                        }
                        LineEnd::BareLf(lf) => {
                            self.state = State::Line { scanned: 0 };
                            let tag = sniff_tag(&self.buf[..lf]);
                            // As for any bad line: a payload it declares is skipped too.
                            if let Ok((_, Some(len))) = split_marker(&self.buf[..lf]) {
                                self.state = State::Skip { remaining: len };
                            }
                            self.buf.advance(lf + 1);
                            return Some(Err(DecodeError::new(
                                tag,
                                ErrorCode::BadLineEnd,
                                "line ended in a bare LF",
                            )));
                        }
                        LineEnd::Crlf { lf, stray_cr } => (lf, stray_cr),
                    };
                    self.state = State::Line { scanned: 0 };
                    let line_len = lf - 1;
                    if line_len == 0 {
                        // Empty lines are ignored, so a person typing into nc can press Enter.
                        self.buf.advance(2);
                        continue;
                    }
                    match split_marker(&self.buf[..line_len]) {
                        Err(()) => {
                            let tag = sniff_tag(&self.buf[..line_len]);
                            self.buf.advance(lf + 1);
                            return Some(Err(DecodeError::new(
                                tag,
                                ErrorCode::Syntax,
                                "malformed payload marker",
                            )));
                        }
                        Ok((content, Some(len))) if len > self.max_payload => {
                            let tag = sniff_tag(&self.buf[..content]);
                            self.buf.advance(lf + 1);
                            self.state = State::Skip { remaining: len };
                            return Some(Err(DecodeError::new(
                                tag,
                                ErrorCode::PayloadTooLarge,
                                format!(
                                    "payload of {len} bytes over the limit of {}",
                                    self.max_payload
                                ),
                            )));
                        }
                        // Checked after the payload limit, so that an oversized payload is
                        // reported as such, and before parsing.
                        Ok((_, declared)) if stray_cr => {
                            let tag = sniff_tag(&self.buf[..line_len]);
                            self.buf.advance(lf + 1);
                            // The payload the line declares is still skipped, so that the
                            // stream stays in step.
                            if let Some(len) = declared {
                                self.state = State::Skip { remaining: len };
                            }
                            return Some(Err(DecodeError::new(
                                tag,
                                ErrorCode::BadLineEnd,
                                "CR inside a line",
                            )));
                        }
                        Ok((content, None)) => {
                            let frame = F::decode_frame(&self.buf[..content], None);
                            self.buf.advance(lf + 1);
                            return Some(frame);
                        }
                        Ok((content, Some(len))) => {
                            // len <= max_payload, which the caller chose to be addressable.
                            let len = usize::try_from(len).unwrap_or(usize::MAX);
                            return self.payload_frame(lf, content, len);
                        }
                    }
                }
            }
        }
    }

    /// Completes a frame whose line ends at `lf` and declares `len` payload bytes.
    fn payload_frame(
        &mut self,
        lf: usize,
        content: usize,
        len: usize,
    ) -> Option<Result<F, DecodeError>> {
        let start = lf + 1;
        let total = start.saturating_add(len).saturating_add(2);
        if self.buf.len() < total {
            self.make_room(start, total);
            self.state = State::Payload { lf, content, len };
            return None;
        }
        self.state = State::Line { scanned: 0 };
        if &self.buf[total - 2..total] != b"\r\n" {
            return Some(Err(self.fail()));
        }
        if content <= SHORT_LINE {
            // Copy a short line out so that only the payload is split off the buffer:
            // one reference-count update per frame instead of three.
            let mut line = [0u8; SHORT_LINE + LINE_PAD];
            match self.buf.get(..SHORT_LINE) {
                // A fixed-size copy is a few vector moves; a copy of `content` bytes
                // is a call to memcpy. The payload that follows usually makes up the
                // difference.
                Some(head) => line[..SHORT_LINE].copy_from_slice(head),
                None => line[..content].copy_from_slice(&self.buf[..content]),
            }
            self.buf.advance(start);
            let payload = self.buf.split_to(len).freeze();
            self.buf.advance(2);
            return Some(F::decode_padded(&line, content, Some(payload)));
        }
        let frame = self.buf.split_to(total).freeze();
        let payload = frame.slice(start..start + len);
        Some(F::decode_frame(&frame[..content], Some(payload)))
    }

    /// Makes room for a frame of `total` bytes whose payload starts at `start`. A
    /// long payload gets a buffer where it starts aligned, with room for what follows
    /// it; the bytes buffered so far (one line and the first piece of the payload)
    /// move once, as they would have when the buffer grew.
    fn make_room(&mut self, start: usize, total: usize) {
        let len = total - start - 2;
        if len < ALIGN_FROM {
            self.buf.reserve(total - self.buf.len());
            return;
        }
        let want = total.saturating_add((len / 4).min(PAYLOAD_SLACK));
        let aligned = self.buf.as_ptr().wrapping_add(start).align_offset(PAYLOAD_ALIGN) == 0;
        if aligned && self.buf.capacity() >= want {
            return;
        }
        let mut fresh = BytesMut::with_capacity(want.saturating_add(PAYLOAD_ALIGN));
        let pad = fresh.as_ptr().wrapping_add(start).align_offset(PAYLOAD_ALIGN);
        if pad >= PAYLOAD_ALIGN {
            // `align_offset` may decline in principle: unaligned is only slower.
            self.buf.reserve(want - self.buf.len());
            return;
        }
        fresh.resize(pad, 0);
        fresh.advance(pad);
        fresh.extend_from_slice(&self.buf);
        self.buf = fresh;
    }

    fn fail(&mut self) -> DecodeError {
        self.state = State::Failed;
        self.buf = BytesMut::new();
        DecodeError::new(None, ErrorCode::BadPayloadEnd, "payload not followed by CRLF")
    }
}

impl<F: Decode> Iterator for Decoder<F> {
    type Item = Result<F, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame()
    }
}

/// Where the line at the start of a buffer ends.
enum LineEnd {
    /// No end yet; the bytes before this offset hold no CR or LF.
    More(usize),
    /// No end within [`LINE_MAX`] bytes.
    TooLong,
    /// The line ends in an LF without a CR before it, at this offset.
    BareLf(usize),
    /// The line ends in CRLF, the LF at `lf`; `stray_cr` if it holds another CR.
    Crlf { lf: usize, stray_cr: bool },
}

/// Finds the end of the line at the start of `buf`, scanning once for CR or LF from
/// `scanned` (the common CRLF case never looks at a byte twice).
fn line_end(buf: &[u8], scanned: usize) -> LineEnd {
    let limit = buf.len().min(LINE_MAX);
    let window = buf.get(scanned..limit).unwrap_or(&[]);
    let more_or_too_long = |at: usize| {
        if buf.len() >= LINE_MAX { LineEnd::TooLong } else { LineEnd::More(at) }
    };
    let Some(at) = find_cr_or_lf(window) else {
        return more_or_too_long(buf.len());
    };
    let pos = scanned + at;
    if buf[pos] == b'\n' {
        return LineEnd::BareLf(pos);
    }
    if buf.get(pos + 1) == Some(&b'\n') && pos + 1 < limit {
        return LineEnd::Crlf { lf: pos + 1, stray_cr: false };
    }
    // A CR not followed by LF (or not yet): the line ends at the next LF, if any.
    match memchr::memchr(b'\n', buf.get(pos + 1..limit).unwrap_or(&[])) {
        None => more_or_too_long(pos),
        Some(i) => {
            let lf = pos + 1 + i;
            // The byte after the first CR is not LF, so a CR before this LF is
            // another one: the first CR is stray either way.
            if buf[lf - 1] == b'\r' {
                LineEnd::Crlf { lf, stray_cr: true }
            } else {
                LineEnd::BareLf(lf)
            }
        }
    }
}

/// The first CR or LF in `bytes`.
fn find_cr_or_lf(bytes: &[u8]) -> Option<usize> {
    // Most lines are a few dozen bytes, where `memchr2`'s set-up costs more than the
    // search: their start is scanned eight bytes at a time in a register instead,
    // and only a longer line is left to `memchr2`.
    const SHORT: usize = 64;
    if bytes.len() > SHORT {
        return find_cr_or_lf(&bytes[..SHORT])
            .or_else(|| memchr::memchr2(b'\r', b'\n', &bytes[SHORT..]).map(|i| SHORT + i));
    }
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte of `x` that is zero (exact for the lowest such byte,
    // which is the one that is used).
    let zeros = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let hits = zeros(x ^ (ONES * u64::from(b'\r'))) | zeros(x ^ (ONES * u64::from(b'\n')));
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| b == b'\r' || b == b'\n').map(|i| at + i)
}

/// Splits a trailing ` {n}` off a line: returns the content length and the declared
/// payload length. A line that ends in `}` but has no valid marker is an error.
fn split_marker(line: &[u8]) -> Result<(usize, Option<u64>), ()> {
    let Some((b'}', inner)) = line.split_last() else {
        return Ok((line.len(), None));
    };
    // Only digits may stand between the braces, so the `{` is found by stepping back
    // over digits rather than by searching the whole line.
    let digits = inner.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let open = inner.len() - digits;
    if open < 2 || inner[open - 1] != b'{' || inner[open - 2] != b' ' {
        return Err(());
    }
    let len = parse_number(&inner[open..]).ok_or(())?;
    Ok((open - 2, Some(len)))
}

/// Decodes exactly one complete frame from `bytes` (a convenience for tests and tools).
///
/// Fails with `SYNTAX` if `bytes` holds less or more than one frame.
pub fn decode_one<F: Decode>(bytes: &[u8], max_payload: u64) -> Result<F, DecodeError> {
    let mut d = Decoder::<F>::new(max_payload);
    d.push(bytes);
    let frame = d
        .next_frame()
        .unwrap_or_else(|| Err(DecodeError::new(None, ErrorCode::Syntax, "incomplete frame")))?;
    if d.buffered() != 0 {
        return Err(DecodeError::new(None, ErrorCode::Syntax, "bytes after the frame"));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Request};
    use proptest::prelude::*;

    /// The payload of a decoded FILE-CHUNK.
    fn chunk_of(frame: Result<Request, DecodeError>) -> Bytes {
        match frame {
            Ok(Request { command: Command::FileChunk { data, .. }, .. }) => data,
            other => panic!("{other:?}"),
        }
    }

    /// The payload of the FILE-CHUNK a decoder yields next.
    fn chunk_payload(d: &mut RequestDecoder) -> Bytes {
        chunk_of(d.next_frame().expect("a whole frame"))
    }

    proptest! {
        /// A long payload that arrives in pieces (its line before its end) starts
        /// aligned in memory; any payload is the one sent, whatever the pieces and
        /// whatever follows it in the last one.
        #[test]
        fn a_long_payload_arriving_in_pieces_starts_aligned(
            len in ALIGN_FROM..ALIGN_FROM * 3,
            first in 1usize..5_000,
            piece in 1_000usize..ALIGN_FROM * 2,
            tag in "[a-z]{1,8}",
        ) {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut stream = format!("{tag} FILE-CHUNK f 0 {{{len}}}\r\n").into_bytes();
            stream.extend_from_slice(&payload);
            stream.extend_from_slice(b"\r\nu PING\r\n");
            let mut d = RequestDecoder::new(1 << 20);
            let line_end = stream.iter().position(|&b| b == b'\n').expect("a line") + 1;
            let total = line_end + len + 2;
            let (mut data, mut at, mut size, mut in_pieces) = (None, 0, first, false);
            // Each pass pushes at least one byte: at most stream.len() passes.
            while at < stream.len() {
                let end = (at + size).min(stream.len());
                d.push(&stream[at..end]);
                (at, size) = (end, piece);
                // The line is in and the payload is not: it will be aligned.
                in_pieces |= (line_end..total).contains(&end);
                if data.is_none() {
                    data = d.next_frame().map(chunk_of);
                }
            }
            let data = match data {
                Some(data) => data,
                None => chunk_payload(&mut d),
            };
            prop_assert_eq!(&data[..], &payload[..]);
            if in_pieces {
                prop_assert_eq!(data.as_ptr().align_offset(PAYLOAD_ALIGN), 0);
            }
            let ping = d.next_frame();
            prop_assert!(matches!(ping, Some(Ok(Request { command: Command::Ping, .. }))), "{:?}", ping);
        }
    }

    /// The allocation a decoder's buffer holds: what it could hold again without
    /// allocating, from an empty start (`try_reclaim` says whether it could).
    fn held(d: &mut RequestDecoder) -> usize {
        let buf = d.buffer_mut();
        let (mut low, mut high) = (0usize, 1 << 24);
        // Bounded: 24 halvings.
        while low < high {
            let mid = (low + high).div_ceil(2);
            if buf.try_reclaim(mid) { low = mid } else { high = mid - 1 }
        }
        low + buf.len()
    }

    #[test]
    fn a_buffer_large_from_an_upload_is_let_go_between_frames() {
        let mut frame = b"t FILE-CHUNK f 0 {200000}\r\n".to_vec();
        frame.extend(std::iter::repeat_n(b'q', 200_000));
        frame.extend_from_slice(b"\r\n");
        let mut d = RequestDecoder::new(1 << 20);
        // In pieces, as from a socket: the payload gets a buffer of its own.
        d.push(&frame[..5_000]);
        assert!(d.next_frame().is_none());
        // Mid-payload the buffer stays, whatever it holds.
        assert!(!d.release(4096));
        d.push(&frame[5_000..]);
        d.push(b"u PI");
        let data = chunk_payload(&mut d);
        assert!(d.next_frame().is_none(), "half a line: scanned, waiting");
        assert_eq!(data.len(), 200_000);
        // The payload's slack after it is more than four reads' room: let go (the
        // payload itself keeps its bytes until it is dropped, then they are freed).
        assert!(d.release(4096));
        drop(data);
        assert!(held(&mut d) < 4 * 4096, "let go: {}", held(&mut d));
        // What it held (half a line, already scanned) is kept, and decodes once the
        // rest comes.
        d.push(b"NG\r\n");
        assert!(matches!(d.next_frame(), Some(Ok(Request { command: Command::Ping, .. }))));
        // A buffer that is not large is left alone.
        assert!(!d.release(4096));
        // Pushed whole, a large frame grows the buffer it was pushed into; once its
        // payload is dropped, that allocation is the decoder's alone: let go.
        let mut d = RequestDecoder::new(1 << 20);
        d.push(&frame);
        drop(chunk_payload(&mut d));
        assert!(held(&mut d) >= 200_000, "the buffer the frame grew: {}", held(&mut d));
        assert!(d.release(4096));
        assert!(held(&mut d) < 4 * 4096, "let go: {}", held(&mut d));
        // While a refused payload is skipped, the buffer may go too: the skip
        // counts bytes, not places in it.
        let mut d = RequestDecoder::new(1000);
        d.push(&frame[..100_000]);
        assert!(matches!(d.next_frame(), Some(Err(_))), "refused: over the limit");
        assert!(d.next_frame().is_none());
        d.release(4096);
        d.push(&frame[100_000..]);
        d.push(b"u PING\r\n");
        assert!(matches!(d.next_frame(), Some(Ok(Request { command: Command::Ping, .. }))));
    }

    #[test]
    fn a_short_or_whole_payload_is_left_where_it_is() {
        // Whole in one push: split off the receive buffer as before, aligned or not.
        let mut frame = b"t FILE-CHUNK f 0 {70000}\r\n".to_vec();
        frame.extend(std::iter::repeat_n(b'q', 70_000));
        frame.extend_from_slice(b"\r\n");
        let mut d = RequestDecoder::new(1 << 20);
        d.push(&frame);
        assert_eq!(chunk_payload(&mut d).len(), 70_000);
        // Short, in pieces: still correct (and in the shared buffer).
        let mut d = RequestDecoder::new(1 << 20);
        d.push(b"t FILE-CHUNK f 0 {10}\r\nab");
        assert!(d.next_frame().is_none());
        d.push(b"cdefghij\r\n");
        assert_eq!(&chunk_payload(&mut d)[..], b"abcdefghij");
    }

    proptest! {
        /// The word-at-a-time scan finds what `memchr2` finds, wherever the CR or
        /// LF sits and whatever surrounds it (bytes with the high bit set included).
        #[test]
        fn find_cr_or_lf_agrees_with_memchr2(
            bytes in proptest::collection::vec(
                prop_oneof![8 => any::<u8>(), 1 => Just(b'\r'), 1 => Just(b'\n'),
                            1 => Just(0x8d), 1 => Just(0x0c)],
                0..160,
            )
        ) {
            prop_assert_eq!(find_cr_or_lf(&bytes), memchr::memchr2(b'\r', b'\n', &bytes));
        }

        /// The backwards marker scan agrees with a plain reading of the rule.
        #[test]
        fn split_marker_agrees_with_the_rule(
            line in prop_oneof!["[a-z {}0-9]{0,12}", "[a-z]{1,4} \\{[0-9]{0,21}\\}"]
        ) {
            let b = line.as_bytes();
            let expected = match line.strip_suffix('}') {
                None => Ok((b.len(), None)),
                Some(inner) => match inner.rfind('{') {
                    Some(open) if open > 0 && &inner[open - 1..open] == " " => {
                        parse_number(&b[open + 1..inner.len()])
                            .map(|n| (open - 1, Some(n)))
                            .ok_or(())
                    }
                    _ => Err(()),
                },
            };
            prop_assert_eq!(split_marker(b), expected);
        }
    }
}
