//! File content I/O that bypasses the page cache where the file system allows it.
//!
//! Shared files are written once and then read in large sequential pieces. Caching
//! them buys little, evicts what the server does want cached (its database), and
//! costs a fresh page of memory for every 4 KiB moved: on a virtual machine whose
//! host backs memory lazily that alone is slower than the disk (BENCHMARKS.md,
//! issue 6). A [`ContentFile`] moves whole aligned blocks with `O_DIRECT`, straight
//! between a reused buffer and the device, and everything else (a file's unaligned
//! tail, a file system that refuses direct I/O, a platform without it) through the
//! page cache as usual.
//!
//! The two paths stay coherent: before a direct read or write of a range the kernel
//! writes back and drops the cached pages of that range. Durability is unchanged:
//! `O_DIRECT` skips the page cache, not the device's own cache, so a caller still
//! syncs ([`ContentFile::file`]) before it relies on what it wrote.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

/// The alignment direct I/O needs of offsets, lengths and memory. 4096 suits
/// devices with 512-byte sectors and with 4 KiB ones.
pub const ALIGN: usize = 4096;

/// An open file whose content moves by direct I/O where it can.
#[derive(Debug)]
pub struct ContentFile {
    /// The usual view, through the page cache.
    plain: File,
    /// The same file opened with `O_DIRECT`, if the file system allowed it.
    direct: Option<File>,
    /// Cleared at the first direct transfer the file system refuses, so a refusal
    /// costs one failed call, not one per chunk.
    direct_ok: AtomicBool,
}

impl ContentFile {
    /// Opens an existing file for reading. `direct` asks for direct I/O; it is used
    /// only where the platform and the file system allow it.
    pub fn open_read(path: &Path, direct: bool) -> io::Result<ContentFile> {
        let mut opts = OpenOptions::new();
        opts.read(true);
        Self::open(path, opts, direct, 0)
    }

    /// Opens a file for writing (and reading), creating it if missing and keeping
    /// what it holds. `direct` as for [`ContentFile::open_read`].
    pub fn open_write(path: &Path, direct: bool) -> io::Result<ContentFile> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        Self::open(path, opts, direct, 0)
    }

    /// Opens a file for writing as [`ContentFile::open_write`] does, for a name that
    /// someone else may have planted (a download in a shared directory): a symbolic
    /// link at `path` is refused (`O_NOFOLLOW`) rather than followed, the open never
    /// waits on a FIFO or device (`O_NONBLOCK`), and the direct view is kept only if
    /// it is the same file as the plain one. The caller checks what kind of file it
    /// got (its [`ContentFile::file`]'s metadata).
    pub fn open_write_no_follow(path: &Path, direct: bool) -> io::Result<ContentFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false).custom_flags(flags);
        let mut file = Self::open(path, opts, direct, flags)?;
        if let Some(d) = &file.direct
            && !same_file(&file.plain, d)?
        {
            // The name was replaced between the two opens: use only the first file.
            file.direct = None;
            file.direct_ok.store(false, Ordering::Relaxed);
        }
        Ok(file)
    }

    /// Opens the plain view with `opts`, then the direct one with the same options,
    /// `O_DIRECT` and `flags` (the custom flags `opts` has: setting custom flags
    /// replaces them).
    fn open(
        path: &Path,
        mut opts: OpenOptions,
        direct: bool,
        flags: i32,
    ) -> io::Result<ContentFile> {
        let plain = opts.open(path)?;
        // The plain open created the file if it had to: the direct one only adds a flag.
        let direct = if direct { open_direct(path, &mut opts, flags) } else { None };
        let direct_ok = AtomicBool::new(direct.is_some());
        Ok(ContentFile { plain, direct, direct_ok })
    }

    /// An open file, read and written through the page cache only: for a second,
    /// cached view of a file open already (a `try_clone` of its [`ContentFile::file`]).
    pub fn from_plain(plain: File) -> ContentFile {
        ContentFile { plain, direct: None, direct_ok: AtomicBool::new(false) }
    }

    /// The file as the page cache sees it: for its length, syncing, truncating.
    pub fn file(&self) -> &File {
        &self.plain
    }

    /// Whether direct transfers are still in use (not refused so far).
    pub fn is_direct(&self) -> bool {
        self.direct_ok.load(Ordering::Relaxed)
    }

    /// The direct view, if a transfer at `offset` of `len` bytes may use it.
    fn direct_for(&self, offset: u64, len: usize) -> Option<&File> {
        let aligned = offset.is_multiple_of(ALIGN as u64) && len > 0;
        self.direct.as_ref().filter(|_| aligned && self.is_direct())
    }

    /// Notes a refused direct transfer: from now on this file goes through the cache.
    fn refused(&self, e: &io::Error) -> bool {
        let refused = is_refusal(e);
        if refused {
            self.direct_ok.store(false, Ordering::Relaxed);
        }
        refused
    }

    /// Writes all of `data` at `offset`. Whole blocks at an aligned offset go
    /// directly to the device; anything else goes through the page cache.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        if data.len().is_multiple_of(ALIGN)
            && let Some(direct) = self.direct_for(offset, data.len())
        {
            // Bytes already aligned in memory (a decoder may see to it) go as they
            // are; others are copied to an aligned buffer first.
            let written = if data.as_ptr().align_offset(ALIGN) == 0 {
                direct.write_all_at(data, offset)
            } else {
                with_aligned(data.len(), |buf| {
                    buf.copy_from_slice(data);
                    direct.write_all_at(buf, offset)
                })
            };
            match written {
                Ok(()) => return Ok(()),
                // Rewritten whole below: a write is idempotent.
                Err(e) if self.refused(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.plain.write_all_at(data, offset)
    }

    /// Reads exactly `len` bytes at `offset` (`UnexpectedEof` if the file ends
    /// first), directly from the device where direct I/O is in use: an unaligned
    /// range is read as the whole blocks around it. So a file written by direct I/O
    /// is never read through the cache, whose pages for it could be stale (a direct
    /// write cannot drop a cached page that another write holds dirty meanwhile).
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = offset - offset % ALIGN as u64;
        // Less than ALIGN: fits in usize.
        let lead = (offset - start) as usize;
        if let Some(direct) = self.direct_for(start, len)
            && let Some(padded) = len.checked_add(lead)
        {
            match read_direct(direct, start, padded) {
                Ok(data) => return Ok(data.slice(lead..)),
                Err(e) if self.refused(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let mut buf = pool::POOL.take(len);
        self.plain.read_exact_at(&mut buf[..len], offset)?;
        Ok(pool::POOL.lend(buf, 0..len))
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path, opts: &mut OpenOptions, flags: i32) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // A file system without direct I/O refuses the open: the plain view serves alone.
    opts.create(false).custom_flags(libc::O_DIRECT | flags).open(path).ok()
}

/// Whether two open files are the same file (device and inode).
fn same_file(a: &File, b: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (a.metadata()?, b.metadata()?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path, _opts: &mut OpenOptions, _flags: i32) -> Option<File> {
    None
}

/// Whether an error is the file system refusing a direct transfer (its alignment
/// needs are stricter than [`ALIGN`], or it has no direct I/O after all).
fn is_refusal(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

/// Runs `f` on an aligned buffer of `len` bytes, taken from the pool of read
/// buffers and given back after.
fn with_aligned<T>(len: usize, f: impl FnOnce(&mut [u8]) -> io::Result<T>) -> io::Result<T> {
    let mut buf = pool::POOL.take(len.saturating_add(ALIGN));
    let done = aligned_range(&mut buf, len).and_then(|range| f(&mut buf[range]));
    pool::POOL.give(buf);
    done
}

/// Where in `buf` `len` bytes start at an aligned address, `buf` grown to hold them.
fn aligned_range(buf: &mut Vec<u8>, len: usize) -> io::Result<Range<usize>> {
    let need = len.checked_add(ALIGN).ok_or(io::ErrorKind::OutOfMemory)?;
    if buf.len() < need {
        buf.resize(need, 0);
    }
    let start = buf.as_ptr().align_offset(ALIGN);
    // `align_offset` may in principle decline; the caller then takes the plain path.
    if start >= ALIGN {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    Ok(start..start + len)
}

/// Reads `len` bytes at an aligned `offset` into a fresh aligned buffer, rounded up
/// to whole blocks (the device reads no less), and returns just the asked bytes.
fn read_direct(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let padded = len.div_ceil(ALIGN).checked_mul(ALIGN).ok_or(io::ErrorKind::OutOfMemory)?;
    let mut buf = pool::POOL.take(padded.saturating_add(ALIGN));
    let range = aligned_range(&mut buf, padded)?;
    let slice = &mut buf[range.clone()];
    let mut got = 0;
    // Each pass reads whole blocks or meets the end of the file: a read of nothing,
    // or one short of a whole number of blocks, is the end.
    while got < len {
        let n = match file.read_at(&mut slice[got..], offset + got as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        got += n;
        if n == 0 || !n.is_multiple_of(ALIGN) {
            break;
        }
    }
    if got < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(pool::POOL.lend(buf, range.start..range.start + len))
}

mod pool;

#[cfg(test)]
mod tests;
