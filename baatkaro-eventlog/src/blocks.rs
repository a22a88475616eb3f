//! A batch's whole blocks written past the page cache (`O_DIRECT`).
//!
//! Through the page cache, every byte the log appends is copied into a page the
//! kernel allocates for it, its blocks reserved one page at a time (ext4's delayed
//! allocation), written back by the sync, and dropped again by the log
//! ([`crate::CACHED_TAIL`]). At 10 groups × 10 that was a tenth of the server's core
//! (BENCHMARKS.md, "The logs by direct I/O"). Written directly, the blocks go from
//! the log's buffer to the device.
//!
//! Direct I/O moves whole blocks only, so a commit writes:
//! - the blocks from the one holding its start to the last one it fills, directly:
//!   the first of them begins with bytes already in the log (the end of the
//!   previous batch), which are kept here ([`Blocks::tail`]) and written again as
//!   they were;
//! - the rest, less than a block, through the page cache, as before.
//!
//! So a segment's file is exactly as long as what it holds, as it always was: its
//! format, a torn write's look and recovery are what they were. A write that is
//! torn leaves blocks old or new, as writeback does; the bytes written again are
//! the same bytes. The sync after both parts (`fdatasync` of the file) writes back
//! the cached rest and flushes the device's cache, which holds the direct blocks
//! until then.
//!
//! The two paths stay coherent: before a direct write the kernel writes back any
//! cached page of its range (the previous commit's rest, synced already) and drops
//! it after. A file system that refuses direct I/O (a tmpfs before Linux 6.6, some
//! network file systems), at the open or at the first write, is written through
//! the page cache from then on.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The block size direct writes are aligned to, in the file and in memory: right
/// for devices with 512-byte sectors and for those with 4 KiB ones.
pub(crate) const BLOCK: u64 = 4096;

/// The most one direct write moves (whole blocks): a larger batch goes in pieces
/// of this size, so that the staging memory stays this small whatever the batch.
const PIECE: usize = 1 << 20;

/// The active segment opened for direct writes, and what they need.
#[derive(Debug)]
pub(crate) struct Blocks {
    /// The segment, opened write-only with `O_DIRECT`.
    file: File,
    /// The bytes of the segment's last block that it holds so far (less than a
    /// block), if known: read from the file when they are first needed, then kept
    /// as the batches are written.
    tail: Option<Vec<u8>>,
    /// Memory for the direct part of a write, aligned within: the tail, then the
    /// batch's bytes up to its last whole block, up to [`PIECE`] of them at a time.
    /// Kept to reuse.
    stage: Vec<u8>,
}

/// What [`Blocks::write`] did.
pub(crate) enum Wrote {
    /// The batch is written (not yet synced).
    All,
    /// The file system refused the direct write: nothing was written, and the
    /// caller writes the batch through the page cache, as it does from now on.
    Refused,
}

impl Blocks {
    /// The segment at `path` opened for direct writes; `None` where the platform
    /// or the file system has no direct I/O.
    pub(crate) fn open(path: &Path) -> Option<Blocks> {
        let file = open_direct(path)?;
        Some(Blocks { file, tail: None, stage: Vec::new() })
    }

    /// The segment was cut back or rewritten other than by [`Blocks::write`]: its
    /// last block is read again when next needed.
    pub(crate) fn forget_tail(&mut self) {
        self.tail = None;
    }

    /// Writes `batch` at `at`, the end of the segment (`plain` being the segment
    /// opened as usual): its whole blocks directly, the rest through `plain`.
    pub(crate) fn write(&mut self, plain: &File, at: u64, batch: &[u8]) -> io::Result<Wrote> {
        let start = at - at % BLOCK;
        let end = at + batch.len() as u64;
        let whole_end = end - end % BLOCK;
        if whole_end <= start {
            // No block filled: all of it through the page cache, as before.
            plain.write_all_at(batch, at)?;
            if let Some(tail) = &mut self.tail {
                tail.extend_from_slice(batch);
            }
            return Ok(Wrote::All);
        }
        let mut tail = match self.tail.take() {
            Some(tail) => tail,
            None => {
                let mut tail = vec![0u8; (at - start) as usize];
                plain.read_exact_at(&mut tail, start)?;
                tail
            }
        };
        // Less than the batch: fits in usize.
        let direct_len = (whole_end - start) as usize;
        let (held, rest) = batch.split_at(direct_len - tail.len());
        let Some(stage) = aligned(&mut self.stage, direct_len.min(PIECE)) else {
            return Ok(Wrote::Refused);
        };
        // The tail then `held`, a piece at a time.
        let mut done = 0;
        while done < direct_len {
            let piece = &mut self.stage[stage.start..stage.start + (direct_len - done).min(PIECE)];
            copy_joined(piece, &tail, held, done);
            match self.file.write_all_at(piece, start + done as u64) {
                Ok(()) => done += piece.len(),
                // The caller writes it all through the cache: what was written
                // directly before is written again, the same.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Ok(Wrote::Refused),
                Err(e) => return Err(e),
            }
        }
        if !rest.is_empty() {
            plain.write_all_at(rest, whole_end)?;
        }
        tail.clear();
        tail.extend_from_slice(rest);
        self.tail = Some(tail);
        Ok(Wrote::All)
    }
}

/// Fills `out` with the bytes of `first` then `second`, joined, from `from` on.
fn copy_joined(out: &mut [u8], first: &[u8], second: &[u8], from: usize) {
    let head = first.get(from..).unwrap_or_default();
    let head = &head[..head.len().min(out.len())];
    out[..head.len()].copy_from_slice(head);
    let from = (from + head.len()).saturating_sub(first.len());
    let n = out.len() - head.len();
    out[head.len()..].copy_from_slice(&second[from..from + n]);
}

/// Where in `buf` `len` bytes start at a [`BLOCK`]-aligned address, `buf` grown to
/// hold them; `None` if the allocator's address cannot be aligned.
fn aligned(buf: &mut Vec<u8>, len: usize) -> Option<std::ops::Range<usize>> {
    let need = len.checked_add(BLOCK as usize)?;
    if buf.len() < need {
        buf.resize(need, 0);
    }
    let start = buf.as_ptr().align_offset(BLOCK as usize);
    (start < BLOCK as usize).then_some(start..start + len)
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC;
    // A file system without direct I/O refuses the open.
    rustix::fs::open(path, flags, Mode::empty()).ok().map(File::from)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches larger than a piece, at every kind of start in a block, land in the
    /// file as written, after what it held (fails if a piece after the first is
    /// filled from the wrong place, or the tail is not written again first).
    #[test]
    fn batches_of_several_pieces_are_written_whole_after_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let plain = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let Some(mut blocks) = Blocks::open(&path) else {
            eprintln!("no direct I/O here: not checked");
            return;
        };
        let mut want: Vec<u8> = b"segment header".to_vec();
        plain.write_all_at(&want, 0).unwrap();
        let sizes = [10, PIECE - 100, 5000, PIECE + 5000, 1, 2 * PIECE + 4097, 3];
        for (n, size) in sizes.into_iter().enumerate() {
            let batch: Vec<u8> = (0..size).map(|i| (i * 7 + n * 31) as u8).collect();
            match blocks.write(&plain, want.len() as u64, &batch).unwrap() {
                Wrote::All => {}
                Wrote::Refused => panic!("refused after the open took O_DIRECT"),
            }
            want.extend_from_slice(&batch);
            let mut got = vec![0u8; want.len()];
            plain.read_exact_at(&mut got, 0).unwrap();
            assert!(got == want, "after batch {n} of {size} B the file differs");
            assert_eq!(plain.metadata().unwrap().len(), want.len() as u64, "batch {n}");
        }
    }

    #[test]
    fn joined_bytes_are_copied_from_either_part() {
        let (first, second) = (b"abc".as_slice(), b"defgh".as_slice());
        for from in 0..8 {
            for len in 0..=8 - from {
                let mut out = vec![0u8; len];
                copy_joined(&mut out, first, second, from);
                assert_eq!(out, b"abcdefgh"[from..from + len], "from {from}, {len} B");
            }
        }
    }
}
