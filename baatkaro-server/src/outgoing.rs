//! What a connection is writing: pieces of output taken from its session, written
//! together with one vectored write.
//!
//! The session seals its output into pieces rather than grow a buffer by copying
//! (at [`baatkaro_proto::session::SEAL_AT`] bytes, or when a batch does not fit the
//! piece being filled). Several may wait when the connection's task comes to
//! write; one `writev` takes them all, where a `write` each would be a system call
//! each — and a loopback write costs the sender some microseconds of the kernel's
//! work whatever its size (BENCHMARKS.md, "Batched submission measured").

use std::collections::VecDeque;
use std::io::IoSlice;

use baatkaro_proto::session::{PIECE, Session};
use bytes::{Buf, Bytes};

/// At most this many pieces go into one write: a small array on the stack of the
/// poll that writes them.
pub(crate) const MAX_PIECES: usize = 8;

/// Pieces are taken until they hold this many bytes (a [`PIECE`]; the last piece
/// taken may pass it): about what a socket takes at once, and all that a slow
/// consumer's BYE waits behind, as before pieces were written together (the session
/// drops only the backlog it has not handed out, SPEC.md section 5.4).
const MAX_BYTES: usize = PIECE;

/// The pieces being written, oldest first; the first may be partly written.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    pieces: VecDeque<Bytes>,
}

impl Outgoing {
    /// Whether nothing is being written.
    pub(crate) fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Once everything taken was written: takes what the session has to send, up
    /// to [`MAX_PIECES`] pieces and about [`MAX_BYTES`]. While a write is
    /// unfinished nothing is taken, so that what the session adds meanwhile stays
    /// in pieces of a useful size.
    pub(crate) fn fill(&mut self, session: &mut Session) {
        if !self.pieces.is_empty() {
            return;
        }
        let mut bytes = 0;
        while self.pieces.len() < MAX_PIECES && bytes < MAX_BYTES {
            let Some(piece) = session.poll_transmit() else { break };
            bytes += piece.len();
            self.pieces.push_back(piece);
        }
    }

    /// The pieces as slices for one vectored write, in `bufs`; how many.
    pub(crate) fn slices<'a>(&'a self, bufs: &mut [IoSlice<'a>; MAX_PIECES]) -> usize {
        for (buf, piece) in bufs.iter_mut().zip(&self.pieces) {
            *buf = IoSlice::new(piece);
        }
        self.pieces.len().min(MAX_PIECES)
    }

    /// Pieces already taken, as [`Outgoing::fill`] would hold them.
    #[cfg(test)]
    pub(crate) fn of(pieces: impl IntoIterator<Item = Bytes>) -> Outgoing {
        Outgoing { pieces: pieces.into_iter().collect() }
    }

    /// The first `n` bytes were written: the pieces they finish are let go of.
    pub(crate) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(first) = self.pieces.front_mut() else { return };
            if n < first.len() {
                first.advance(n);
                return;
            }
            n -= first.len();
            self.pieces.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(pieces: &[&'static [u8]]) -> Outgoing {
        Outgoing::of(pieces.iter().map(|p| Bytes::from_static(p)))
    }

    fn rest(o: &Outgoing) -> Vec<u8> {
        o.pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }

    /// A write that ends inside a piece, on a boundary, or after everything leaves
    /// exactly the bytes not written, in order (fails if a finished piece is kept
    /// or a partly written one dropped).
    #[test]
    fn what_was_written_is_let_go_of_and_the_rest_kept_in_order() {
        let all = b"abcdefghij".to_vec();
        for n in 0..=all.len() {
            let mut o = outgoing(&[b"abc", b"defg", b"hij"]);
            o.advance(n);
            assert_eq!(rest(&o), all[n..], "after {n} bytes");
            assert_eq!(o.is_empty(), n == all.len());
        }
        let mut o = outgoing(&[b"abc", b"defg"]);
        o.advance(100);
        assert!(o.is_empty(), "more than there is lets go of everything");
    }

    /// What one write takes from a session holding many pieces stops at about a
    /// `PIECE` of bytes (fails if the byte bound is removed: then eight pieces,
    /// all of which a slow consumer's BYE would wait behind), and nothing more is
    /// taken until it is written.
    #[test]
    fn a_write_takes_about_a_piece_of_bytes() {
        use baatkaro_proto::session::{FrameBudget, SessionConfig};
        use baatkaro_proto::{Features, Limits, Software};
        let config = SessionConfig {
            software: Software::new("test/1").unwrap(),
            features: Features::default(),
            limits: Limits { queue: 1 << 24, ..Limits::default() },
            frames: FrameBudget::default(),
        };
        let mut s = Session::new(config, 0);
        let frame = format!("* MSG #g 1 1 ann {{1000}}\r\n{}\r\n", "x".repeat(1_000));
        for _ in 0..400 {
            s.send_encoded(frame.as_bytes());
        }
        let mut o = Outgoing::default();
        o.fill(&mut s);
        let taken: usize = o.pieces.iter().map(Bytes::len).sum();
        assert!(o.pieces.len() < MAX_PIECES, "{} pieces", o.pieces.len());
        assert!((MAX_BYTES..MAX_BYTES + PIECE).contains(&taken), "{taken} bytes");
        o.fill(&mut s);
        assert_eq!(o.pieces.iter().map(Bytes::len).sum::<usize>(), taken);
        o.advance(taken);
        o.fill(&mut s);
        assert!(!o.is_empty(), "the rest is taken once the first write is done");
    }

    /// Every piece held is offered to the write, in order, within the array.
    #[test]
    fn the_slices_are_the_pieces_in_order() {
        let o = outgoing(&[b"ab", b"cde", b"f"]);
        let mut bufs = [IoSlice::new(&[]); MAX_PIECES];
        let n = o.slices(&mut bufs);
        let joined: Vec<u8> = bufs[..n].iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, b"abcdef");
    }
}
