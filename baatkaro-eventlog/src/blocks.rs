//! A batch's whole blocks written past the page cache (`O_DIRECT`).
//!
//! Through the page cache, every byte the log appends is copied into a page the
//! kernel allocates for it, its blocks reserved one page at a time (ext4's delayed
//! allocation), written back by the sync, and dropped again by the log
//! ([`crate::CACHED_TAIL`]). At 10 groups × 10 that was a tenth of the server's core
//! (BENCHMARKS.md, "The logs by direct I/O"). Written directly, the blocks go from
//! the log's buffer to the device.
//!
//! Direct I/O moves whole blocks only, from memory aligned to a block, so a commit
//! writes the blocks from the one holding its start to the one holding its end:
//! - the first of them begins with bytes already in the log (the end of the
//!   previous batch), which are kept here ([`Blocks::tail`]) and written again as
//!   they were. The log builds each batch right after a copy of them, at an
//!   aligned address of its buffer ([`Region`]), so that nothing is copied again
//!   to be written;
//! - the last is filled with zeros past the batch's end. The next commit writes
//!   that block again, with its batch where the zeros were.
//!
//! So the active segment's file may run past the log's end, by zeros, less than
//! a block of them, to the end of a block. The log's end is where its last batch
//! ends, as before; an open takes those zeros for what they are (no torn write:
//! nothing is cut or reported) and trims them, and a segment is trimmed to its end
//! when the log moves on to the next, so a sealed segment is exactly as long as
//! what it holds. A write that is torn leaves blocks old or new, as writeback
//! does; the bytes written again are the same bytes. The sync after the write
//! (`fdatasync` of the file) flushes the device's cache, which holds the blocks
//! until then.
//!
//! A file system that refuses direct I/O (a tmpfs before Linux 6.6, some network
//! file systems), at the open or at the first write, is written through the page
//! cache from then on. What a catch-up reads goes through the page cache; a
//! direct write drops the cached pages of its range after it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The block size direct writes are aligned to, in the file and in memory: right
/// for devices with 512-byte sectors and for those with 4 KiB ones.
pub(crate) const BLOCK: u64 = 4096;

/// The active segment opened for direct writes, and the bytes of its last block.
#[derive(Debug)]
pub(crate) struct Blocks {
    /// The segment, opened write-only with `O_DIRECT`.
    file: File,
    /// The bytes of the segment's last block that it holds so far (less than a
    /// block), with the segment's end they are for, if known: read from the file
    /// when they are first needed, then kept as the batches are written.
    tail: Option<(u64, Vec<u8>)>,
}

/// What [`Blocks::write`] did.
pub(crate) enum Wrote {
    /// The batch is written (not yet synced).
    All,
    /// The file system refused the direct write, and the caller writes the batch
    /// through the page cache, as it does from now on (what was written directly
    /// is written again, the same).
    Refused,
}

/// Where a batch is in the log's buffer when it is written directly: from `pad`,
/// an address aligned to a block, the segment's bytes from the start of its last
/// block to its end (the [`Blocks::tail`]), then from `lead` the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) pad: usize,
    pub(crate) lead: usize,
}

impl Region {
    /// Lays out `buf` (emptied) to begin a batch after `tail`, at an aligned
    /// address; `None` (and `buf` empty) if the allocator's address cannot be
    /// aligned.
    pub(crate) fn begin(buf: &mut Vec<u8>, tail: &[u8]) -> Option<Region> {
        buf.clear();
        // Room for the padding and the tail without moving the buffer, which
        // would change the alignment.
        buf.reserve(BLOCK as usize + tail.len());
        let pad = aligned_pad(buf)?;
        buf.resize(pad, 0);
        buf.extend_from_slice(tail);
        Some(Region { pad, lead: buf.len() })
    }

    /// Makes `buf` hold `tail` then the batch (what is in it from `self.lead`) at
    /// an aligned address again, if it does not: after the buffer grew (and moved)
    /// while the batch was built, or a roll to a new segment changed the tail.
    /// Moves the batch, so it is for those rare cases. `None` if the allocator's
    /// address cannot be aligned, the batch then moved to the start of `buf`,
    /// where a batch built without a region is (and from where the log writes it
    /// through the page cache).
    pub(crate) fn settle(self, buf: &mut Vec<u8>, tail: &[u8]) -> Option<Region> {
        let aligned = buf[self.pad..].as_ptr().align_offset(BLOCK as usize) == 0;
        let room = buf.capacity() - buf.len() >= BLOCK as usize;
        if aligned && room && buf[self.pad..self.lead] == *tail {
            return Some(self);
        }
        let batch = buf.len() - self.lead;
        // Room for a new padding and tail, and then for the zeros that fill the
        // last block ([`Blocks::write`]), all without moving the buffer again.
        buf.reserve(2 * BLOCK as usize + tail.len());
        let Some(pad) = aligned_pad(buf) else {
            buf.drain(..self.lead);
            return None;
        };
        let lead = pad + tail.len();
        // Within the capacity just reserved: the buffer does not move again.
        if lead > self.lead {
            buf.resize(lead + batch, 0);
        }
        buf.copy_within(self.lead..self.lead + batch, lead);
        buf.truncate(lead + batch);
        buf[pad..lead].copy_from_slice(tail);
        Some(Region { pad, lead })
    }
}

/// How far into `buf`'s memory an address aligned to a block is; `None` if the
/// allocator's address cannot be aligned (which `align_offset` allows).
fn aligned_pad(buf: &[u8]) -> Option<usize> {
    #[cfg(test)]
    if NO_ALIGNMENT.with(std::cell::Cell::get) {
        return None;
    }
    let pad = buf.as_ptr().align_offset(BLOCK as usize);
    (pad < BLOCK as usize).then_some(pad)
}

#[cfg(test)]
thread_local! {
    /// Makes [`aligned_pad`] find no aligned address, on this thread: for tests.
    static NO_ALIGNMENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Blocks {
    /// The segment at `path` opened for direct writes; `None` where the platform
    /// or the file system has no direct I/O.
    pub(crate) fn open(path: &Path) -> Option<Blocks> {
        let file = open_direct(path)?;
        Some(Blocks { file, tail: None })
    }

    /// The segment was cut back or rewritten other than by [`Blocks::write`]: its
    /// last block is read again when next needed.
    pub(crate) fn forget_tail(&mut self) {
        self.tail = None;
    }

    /// The segment's bytes from the start of its last block to `end`, its end
    /// (`plain` being the segment opened as usual).
    pub(crate) fn tail(&mut self, plain: &File, end: u64) -> io::Result<&[u8]> {
        match &mut self.tail {
            Some((kept, _)) if *kept == end => {}
            slot => {
                let mut tail = vec![0u8; (end % BLOCK) as usize];
                plain.read_exact_at(&mut tail, end - end % BLOCK)?;
                *slot = Some((end, tail));
            }
        }
        Ok(self.tail.as_ref().map_or(&[], |(_, tail)| tail.as_slice()))
    }

    /// Writes the batch at `at`, the end of the segment, directly: `buf` holds,
    /// from `region.pad` (an aligned address), the segment's bytes from the start
    /// of the block holding `at` (its [`Blocks::tail`]), then from `region.lead`
    /// the batch, with room for a block more ([`Region::settle`]). The last block
    /// is filled with zeros for the write, and `buf` left as it was.
    pub(crate) fn write(
        &mut self,
        at: u64,
        buf: &mut Vec<u8>,
        region: Region,
    ) -> io::Result<Wrote> {
        let start = at - at % BLOCK;
        debug_assert_eq!(start + (region.lead - region.pad) as u64, at, "where the block begins");
        let len = buf.len() - region.pad;
        let end = start + len as u64;
        let blocks = len.next_multiple_of(BLOCK as usize);
        if buf.capacity() - region.pad < blocks
            || buf[region.pad..].as_ptr().align_offset(BLOCK as usize) != 0
        {
            // Filling the last block would move the buffer: not settled as it must be.
            return Ok(Wrote::Refused);
        }
        buf.resize(region.pad + blocks, 0);
        let written = self.file.write_all_at(&buf[region.pad..], start);
        buf.truncate(region.pad + len);
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Ok(Wrote::Refused),
            Err(e) => return Err(e),
        }
        // The bytes of the block the batch ends in, for the next commit.
        let last = region.pad + (end - end % BLOCK - start) as usize;
        let (kept, tail) = self.tail.get_or_insert_with(|| (end, Vec::new()));
        *kept = end;
        tail.clear();
        tail.extend_from_slice(&buf[last..]);
        Ok(Wrote::All)
    }
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

    /// The tail is the file's bytes from the start of the block holding the end
    /// asked for, read again when the end is not where the kept tail ends (fails if
    /// a kept tail is handed out for another end).
    #[test]
    fn the_tail_is_read_again_for_another_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let plain = File::open(&path).unwrap();
        let Some(mut blocks) = Blocks::open(&path) else {
            eprintln!("no direct I/O here: not checked");
            return;
        };
        assert_eq!(blocks.tail(&plain, 5000).unwrap(), &bytes[4096..5000]);
        // As long as the kept one, in another block.
        assert_eq!(blocks.tail(&plain, 9096).unwrap(), &bytes[8192..9096]);
        assert_eq!(blocks.tail(&plain, 9000).unwrap(), &bytes[8192..9000]);
        assert_eq!(blocks.tail(&plain, 8192).unwrap(), &bytes[8192..8192]);
    }

    /// A batch begun in a region, which at its write finds no aligned address
    /// to settle at (after a roll changed the tail), is written through the page
    /// cache as it was built, and the next batch directly again (fails if the
    /// region's padding and old tail are written in front of the batch).
    #[test]
    fn a_batch_that_cannot_settle_is_written_whole_through_the_cache() {
        use crate::{Log, Options};
        let dir = tempfile::tempdir().unwrap();
        let options = Options { segment_bytes: 8192, direct: true };
        let (mut log, _) = Log::open(dir.path(), options).unwrap();
        if !log.writes_direct() {
            eprintln!("no direct I/O here: not checked");
            return;
        }
        let records: Vec<Vec<u8>> = (0..3u8).map(|n| vec![n + 1; 5000]).collect();
        let first = log.commit(1, 0, [records[0].as_slice()]).unwrap();
        // Laid out after the first segment's tail; this one rolls to a new
        // segment, whose tail differs, and then finds no aligned address.
        let mut batch = log.begin().unwrap();
        batch.record(|out| out.extend_from_slice(&records[1])).unwrap();
        NO_ALIGNMENT.with(|no| no.set(true));
        let second = batch.commit(2, 0);
        NO_ALIGNMENT.with(|no| no.set(false));
        let second = second.unwrap();
        assert!(log.writes_direct(), "not refused: only this batch went through the cache");
        let third = log.commit(3, 0, [records[2].as_slice()]).unwrap();
        let end = log.end();
        let check = |log: &mut Log, reopened: bool| {
            for (n, at) in [first, second, third].into_iter().enumerate() {
                let read = log.read_batch(at).unwrap();
                let got: Vec<&[u8]> = read.records().map(|(_, data)| data).collect();
                assert_eq!(read.number, n as u64 + 1, "reopened: {reopened}");
                assert!(got == [records[n].as_slice()], "batch {n} (reopened: {reopened})");
            }
            assert_eq!(log.end(), end, "reopened: {reopened}");
        };
        check(&mut log, false);
        drop(log);
        let (mut log, recovery) = Log::open(dir.path(), options).unwrap();
        assert!(recovery.cut.is_none(), "nothing to cut: {:?}", recovery.cut);
        check(&mut log, true);
    }

    /// A region laid out for one tail, then settled for another after the buffer
    /// grew, holds the new tail then the batch, at an aligned address (fails if
    /// `settle` keeps a stale tail or moves the batch wrong).
    #[test]
    fn a_region_settles_to_a_new_tail_and_stays_aligned() {
        let mut buf = Vec::new();
        for (old, new) in [(100usize, 32usize), (32, 4000), (0, 7), (4095, 0)] {
            let old_tail = vec![1u8; old];
            let region = Region::begin(&mut buf, &old_tail).unwrap();
            let batch: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
            buf.extend_from_slice(&batch);
            // Grown (and likely moved) while the batch was built.
            buf.reserve(1 << 20);
            let new_tail = vec![2u8; new];
            let region = region.settle(&mut buf, &new_tail).unwrap();
            assert_eq!(buf[region.pad..].as_ptr().align_offset(BLOCK as usize), 0);
            assert_eq!(&buf[region.pad..region.lead], &new_tail[..]);
            assert!(buf[region.lead..] == batch[..], "the batch moved whole ({old} -> {new})");
        }
    }
}
