//! Read buffers that are used again once the [`Bytes`] made of them are dropped.
//!
//! A fresh buffer for every chunk read costs zeroing it and, when the allocator
//! hands out memory the process has not touched yet, a page fault per 4 KiB; on a
//! virtual machine whose host backs memory lazily that costs more than the read.
//! A transfer keeps a few chunks in flight, so a few buffers go round instead.

use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;

/// Bytes of free buffers kept for reuse, in all; a buffer freed past it is dropped.
const KEEP_BYTES: usize = 64 << 20;

/// The free buffers and their total capacity.
static FREE: Mutex<(Vec<Vec<u8>>, usize)> = Mutex::new((Vec::new(), 0));

fn free() -> std::sync::MutexGuard<'static, (Vec<Vec<u8>>, usize)> {
    // The list holds only whole buffers: one left by a panic is as good as any.
    FREE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A buffer of at least `len` bytes (its content is whatever it last held).
pub(crate) fn take(len: usize) -> Vec<u8> {
    {
        let mut free = free();
        if let Some(k) = free.0.iter().position(|b| b.len() >= len) {
            let buf = free.0.swap_remove(k);
            free.1 -= buf.len();
            return buf;
        }
    }
    vec![0u8; len]
}

/// Gives a buffer back for reuse, if the pool has room.
fn give(buf: Vec<u8>) {
    let mut free = free();
    if free.1 + buf.len() <= KEEP_BYTES {
        free.1 += buf.len();
        free.0.push(buf);
    }
}

/// A pooled buffer seen as `range` of it; back to the pool when dropped.
struct Lent {
    buf: Vec<u8>,
    range: Range<usize>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.buf));
    }
}

/// `range` of a buffer from [`take`], as `Bytes` that give the buffer back when the
/// last of them is dropped.
pub(crate) fn lend(buf: Vec<u8>, range: Range<usize>) -> Bytes {
    Bytes::from_owner(Lent { buf, range })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_used_again() {
        let mut buf = take(10_000);
        buf[..5].copy_from_slice(b"hello");
        let addr = buf.as_ptr() as usize;
        let bytes = lend(buf, 1..5);
        assert_eq!(&bytes[..], b"ello");
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(&clone[..], b"ello", "still lent while a clone lives");
        drop(clone);
        // Tests run side by side, so another may take it first: look among a few.
        let again: Vec<Vec<u8>> = (0..8).map(|_| take(10_000)).collect();
        assert!(again.iter().any(|b| b.as_ptr() as usize == addr && b.len() >= 10_000));
    }

    #[test]
    fn the_pool_keeps_a_bounded_amount() {
        for _ in 0..4 {
            drop(lend(vec![0u8; KEEP_BYTES / 2], 0..1));
        }
        assert!(free().1 <= KEEP_BYTES);
    }
}
