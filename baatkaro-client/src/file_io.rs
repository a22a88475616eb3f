//! Positional reads and writes of local files, for uploads and downloads.
//!
//! Reads and writes name their offset, so several chunks may be in flight on one
//! open file without a shared cursor, and go through the page cache (the server
//! bypasses it for stored content; a client reads a file once and the user may
//! well open it next).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use bytes::Bytes;

/// An open local file, read and written at given offsets.
#[derive(Debug)]
pub(crate) struct LocalFile {
    file: File,
}

impl LocalFile {
    /// Opens an existing file for reading.
    pub(crate) fn open_read(path: &Path) -> io::Result<LocalFile> {
        Ok(LocalFile { file: File::open(path)? })
    }

    /// Opens a file for writing (and reading), creating it if missing and keeping
    /// what it holds, where someone else may have planted the name (a download in a
    /// shared directory): a symbolic link is refused (`O_NOFOLLOW`) rather than
    /// followed, and the open never waits on a FIFO or device (`O_NONBLOCK`). The
    /// caller checks what kind of file it got.
    pub(crate) fn open_write_no_follow(path: &Path) -> io::Result<LocalFile> {
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        // The flags' bits are the platform's open(2) flags, which fit an i32.
        let flags = i32::try_from(flags.bits()).map_err(io::Error::other)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(flags)
            .open(path)?;
        Ok(LocalFile { file })
    }

    /// A second view of a file open already (for a thread that reads it while
    /// another writes).
    pub(crate) fn from_plain(file: File) -> LocalFile {
        LocalFile { file }
    }

    /// The open file, for its metadata, length and lock.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Reads exactly `len` bytes at `offset`; a file shorter than that is an
    /// `UnexpectedEof` error.
    pub(crate) fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    }

    /// Writes all of `data` at `offset`.
    pub(crate) fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
}
