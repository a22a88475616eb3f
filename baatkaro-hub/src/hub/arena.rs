//! Where the hub encodes the frames it stores and fans out.
//!
//! Every message a hub stores is encoded once into a frame that the store, the
//! sender's reply order and every recipient's connection share. Encoded each into a
//! buffer of its own, a frame cost two allocations (its bytes, then the shared
//! handle `Bytes` makes for a buffer whose length is not its capacity) and two
//! frees, on the hub's path of every SEND. Here frames are cut from a chunk of a
//! few hundred of them: one allocation and one shared handle a chunk, and a
//! reference count a frame. A chunk is freed when the last frame cut from it is
//! dropped, which is when the batches they belong to are stored and handed to
//! their connections: chunks live as long as batches, not as long as history.

use baatkaro_proto::Encode;
use bytes::{Bytes, BytesMut};

/// The size of a chunk.
const CHUNK: usize = 64 * 1024;

/// A frame whose size hint is above this gets a buffer of its own: a chunk is for
/// many frames, and a large one would leave most of a chunk unused or pin it.
const SHARED_MAX: usize = CHUNK / 16;

/// The chunk frames are being cut from.
#[derive(Debug, Default)]
pub(super) struct FrameArena {
    /// What is left of the current chunk: empty, with the chunk's spare capacity.
    rest: BytesMut,
}

impl FrameArena {
    /// `frame`'s bytes.
    pub(super) fn encode(&mut self, frame: &impl Encode) -> Bytes {
        let hint = frame.size_hint();
        if hint > SHARED_MAX {
            return frame.to_bytes();
        }
        if self.rest.capacity() < hint {
            // What is left of the old chunk (less than one frame) goes with it.
            self.rest = BytesMut::with_capacity(CHUNK);
        }
        // A frame longer than its hint makes the chunk grow, as a buffer of its own
        // would; the frames cut before it keep their bytes.
        frame.encode(&mut self.rest);
        self.rest.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baatkaro_proto::{Event, EventFrame, ServerFrame, StoredEvent, Text};

    fn message(seq: u64, text: &str) -> StoredEvent {
        StoredEvent::Message {
            conv: "#g".parse().unwrap(),
            seq,
            time: seq,
            from: "ann".parse().unwrap(),
            text: Text::from_bytes(Bytes::copy_from_slice(text.as_bytes())).unwrap(),
        }
    }

    /// Frames cut from chunks are each the frame's own bytes, whatever their sizes
    /// and across chunk boundaries, and keep them while later frames are cut.
    #[test]
    fn each_frame_keeps_its_own_bytes() {
        let mut arena = FrameArena::default();
        let mut kept = Vec::new();
        for seq in 0..2_000u64 {
            let text = "x".repeat(1 + (seq as usize * 37) % 3_000);
            let e = message(seq, &text);
            let frame = arena.encode(&EventFrame(&e));
            kept.push((frame, ServerFrame::Event(Event::Stored(e)).to_bytes()));
        }
        for (got, want) in &kept {
            assert_eq!(got, want);
        }
    }

    /// Small frames share chunks: cutting a frame allocates only when the chunk is
    /// used up (fails if every frame gets a buffer of its own).
    #[test]
    fn small_frames_share_a_chunk() {
        let mut arena = FrameArena::default();
        let frames: Vec<Bytes> =
            (0..100).map(|seq| arena.encode(&EventFrame(&message(seq, "hello")))).collect();
        // Consecutive frames lie one after the other in one chunk.
        for pair in frames.windows(2) {
            let end = pair[0].as_ptr() as usize + pair[0].len();
            assert_eq!(end, pair[1].as_ptr() as usize);
        }
    }

    /// A frame above the shared size is a buffer of its own, and the chunk goes on
    /// where it was.
    #[test]
    fn a_large_frame_does_not_take_a_chunk() {
        let mut arena = FrameArena::default();
        let before = arena.encode(&EventFrame(&message(1, "a")));
        let large = arena.encode(&EventFrame(&message(2, &"y".repeat(SHARED_MAX))));
        let after = arena.encode(&EventFrame(&message(3, "b")));
        assert_eq!(before.as_ptr() as usize + before.len(), after.as_ptr() as usize);
        let want = ServerFrame::Event(Event::Stored(message(2, &"y".repeat(SHARED_MAX))));
        assert_eq!(large, want.to_bytes());
    }
}
