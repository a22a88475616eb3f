//! Bodies of the fuzz targets in `fuzz/`, kept here so that plain `cargo test`
//! replays the committed corpus through exactly the same code.

use bytes::BytesMut;

use crate::codec::{Decode, Decoder, Encode};
use crate::{Request, ServerFrame};

/// Decodes arbitrary bytes as a stream of `F` frames; every frame that decodes must
/// re-encode to bytes that decode to the same frame. Panics on a violation.
fn stream<F: Decode + Encode + PartialEq + std::fmt::Debug>(data: &[u8]) {
    // Split the input at a point the input chooses, to exercise incremental decoding.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut decoder = Decoder::<F>::new(64 * 1024);
    let mut frames = Vec::new();
    for piece in [&data[..split], &data[split..]] {
        decoder.push(piece);
        // Every input byte yields at most one item, so this bound is never reached
        // by a correct decoder; it turns a livelock into a failure.
        for _ in 0..=data.len() + 1 {
            match decoder.next_frame() {
                Some(Ok(frame)) => frames.push(frame),
                Some(Err(_)) => {}
                None => break,
            }
        }
    }
    for frame in frames {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        let again = crate::decode_one::<F>(&out, 64 * 1024)
            .unwrap_or_else(|e| panic!("re-encoded {frame:?} as {out:?}, which fails: {e}"));
        assert_eq!(again, frame, "re-encoding changed the frame");
    }
}

/// Fuzz body: bytes → request frames → encode → decode again.
pub fn decode_requests(data: &[u8]) {
    stream::<Request>(data);
}

/// Fuzz body: bytes → server frames → encode → decode again.
pub fn decode_server_frames(data: &[u8]) {
    stream::<ServerFrame>(data);
}
