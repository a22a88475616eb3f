//! Read buffers that are used again once the [`Bytes`] made of them are dropped.
//!
//! A fresh buffer for every chunk read costs zeroing it and, when the allocator
//! hands out memory the process has not touched yet, a page fault per 4 KiB; on a
//! virtual machine whose host backs memory lazily that costs more than the read.
//! A transfer keeps a few chunks in flight, so a few buffers go round instead.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

/// Bytes of free buffers the process keeps for reuse, in all.
const KEEP_BYTES: usize = 64 << 20;

/// Free buffers kept at most, whatever their size: a `take` looks through them.
const KEEP_COUNT: usize = 64;

/// Free buffers, up to a total capacity.
pub(crate) struct Pool {
    /// The buffers and their total length.
    free: Mutex<(Vec<Vec<u8>>, usize)>,
    keep: usize,
}

/// The process's pool.
pub(crate) static POOL: Pool = Pool::new(KEEP_BYTES);

impl Pool {
    /// A pool that keeps up to `keep` bytes of free buffers.
    const fn new(keep: usize) -> Pool {
        Pool { free: Mutex::new((Vec::new(), 0)), keep }
    }

    fn free(&self) -> MutexGuard<'_, (Vec<Vec<u8>>, usize)> {
        // The list holds only whole buffers: one left by a panic is as good as any.
        self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A buffer of at least `len` bytes (its content is whatever it last held).
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        {
            let mut free = self.free();
            if let Some(k) = free.0.iter().position(|b| b.len() >= len) {
                let buf = free.0.swap_remove(k);
                free.1 -= buf.len();
                return buf;
            }
        }
        vec![0u8; len]
    }

    /// Gives a buffer back for reuse, if the pool has room; else drops it.
    pub(crate) fn give(&self, buf: Vec<u8>) {
        let mut free = self.free();
        if free.0.len() < KEEP_COUNT && free.1 + buf.len() <= self.keep {
            free.1 += buf.len();
            free.0.push(buf);
        }
    }

    /// `range` of a buffer from [`Pool::take`], as `Bytes` that give the buffer back
    /// when the last of them is dropped.
    pub(crate) fn lend(&'static self, buf: Vec<u8>, range: Range<usize>) -> Bytes {
        Bytes::from_owner(Lent { buf, range, pool: self })
    }
}

/// A pooled buffer seen as `range` of it; back to its pool when dropped.
struct Lent {
    buf: Vec<u8>,
    range: Range<usize>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_used_again() {
        static MINE: Pool = Pool::new(1 << 20);
        let mut buf = MINE.take(10_000);
        buf[..5].copy_from_slice(b"hello");
        let addr = buf.as_ptr() as usize;
        let bytes = MINE.lend(buf, 1..5);
        assert_eq!(&bytes[..], b"ello");
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(&clone[..], b"ello", "still lent while a clone lives");
        assert!(MINE.free().0.is_empty());
        drop(clone);
        let again = MINE.take(9_000);
        assert_eq!(again.as_ptr() as usize, addr);
        assert!(again.len() >= 10_000);
    }

    #[test]
    fn the_pool_keeps_a_bounded_amount() {
        static MINE: Pool = Pool::new(1 << 20);
        for _ in 0..4 {
            drop(MINE.lend(vec![0u8; 400_000], 0..1));
        }
        let free = MINE.free();
        assert_eq!((free.0.len(), free.1), (2, 800_000));
    }
}
