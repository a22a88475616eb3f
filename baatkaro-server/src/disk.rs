//! File content on disk: finished files under `files/`, named by their SHA-256,
//! and unfinished uploads under `partial/`, named by their file id. Display names
//! never become paths. Every function here blocks: call them off the async threads.
//!
//! Content moves by direct I/O where the file system allows it ([`ContentFile`]):
//! a file is written once and read in large pieces, so the page cache would only
//! copy it and crowd out the database's pages.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use baatkaro_direct_io::ContentFile;
use baatkaro_proto::{ErrorCode, FileId, Sha256};
use sha2::Digest;

use crate::space::{Reserve, free_space};

/// The two directories of file content.
#[derive(Debug)]
pub(crate) struct Disk {
    files: PathBuf,
    partial: PathBuf,
    /// Whether content moves by direct I/O where it can.
    direct: bool,
    /// Unfinished uploads kept open between their chunks (at most [`OPEN_MAX`]).
    open: Mutex<HashMap<FileId, Arc<ContentFile>>>,
    /// What uploads must leave free on the disk.
    reserve: Reserve,
    /// When a chunk refused for the reserve was last logged (at most once a minute).
    refused_logged: Mutex<Option<Instant>>,
}

/// Unfinished uploads kept open at once; past it one is closed (and opened again
/// at its next chunk), so many uploads cannot use up the process's descriptors.
const OPEN_MAX: usize = 64;

/// How much of an upload is read back at a time to verify it.
const VERIFY_PIECE: u64 = 1 << 20;

/// What checking an upload's content found ([`Disk::finish`], [`Disk::settle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// It is the offered content, now among the finished files.
    Matched,
    /// It is not the offered content; its bytes are deleted.
    Mismatched,
    /// The bytes the upload held are not there (a crash during an earlier commit
    /// of it moved or deleted them): nothing was moved, and the bytes must be sent
    /// again. Never made up from the finished files, whose names anyone may know
    /// (SPEC.md 11.6).
    Gone,
}

/// The error code for a failed file operation: a full disk says so.
pub(crate) fn code_of(e: &io::Error) -> ErrorCode {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorCode::StorageFull,
        _ => ErrorCode::Internal,
    }
}

impl Disk {
    /// The directories under a data directory, created if missing.
    /// `direct`: move content by direct I/O where the file system allows it;
    /// `reserve`: what uploads must leave free on the disk.
    pub(crate) fn open(data_dir: &Path, direct: bool, reserve: Reserve) -> io::Result<Disk> {
        let disk = Disk {
            files: data_dir.join("files"),
            partial: data_dir.join("partial"),
            direct,
            open: Mutex::default(),
            reserve,
            refused_logged: Mutex::default(),
        };
        std::fs::create_dir_all(&disk.files)?;
        std::fs::create_dir_all(&disk.partial)?;
        Ok(disk)
    }

    fn content(&self, sha: &Sha256) -> PathBuf {
        // 64 lower-case hex digits: a safe file name by construction.
        self.files.join(sha.to_string())
    }

    fn partial(&self, id: &FileId) -> PathBuf {
        // File ids are letters, digits, '_' and '-': never a separator or "..".
        self.partial.join(id.as_str())
    }

    fn open_partials(&self) -> MutexGuard<'_, HashMap<FileId, Arc<ContentFile>>> {
        // The map holds only open files: one left by a panic is as good as any.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An unfinished upload of `size` bytes, open for its chunks.
    fn partial_file(&self, id: &FileId, size: u64) -> io::Result<Arc<ContentFile>> {
        if let Some(f) = self.open_partials().get(id) {
            return Ok(f.clone());
        }
        let f = ContentFile::open_write(&self.partial(id), self.direct)?;
        // The file takes its full length (sparse) before its first chunk: a chunk
        // that extends a file is written alone, one at a time, on some file systems
        // (ext4 among them), while chunks within it are written side by side.
        if f.file().metadata()?.len() < size {
            f.file().set_len(size)?;
        }
        let f = Arc::new(f);
        let mut open = self.open_partials();
        if open.len() >= OPEN_MAX
            && let Some(other) = open.keys().next().copied()
        {
            open.remove(&other);
        }
        open.insert(*id, f.clone());
        Ok(f)
    }

    /// Closes an unfinished upload's file, if open.
    fn close_partial(&self, id: &FileId) {
        self.open_partials().remove(id);
    }

    /// Writes a chunk of an upload of `size` bytes at its offset, if the disk keeps
    /// its reserve for messages after it (a full disk otherwise).
    pub(crate) fn write_chunk(
        &self,
        id: &FileId,
        size: u64,
        offset: u64,
        data: &[u8],
    ) -> io::Result<()> {
        let (free, total) = free_space(&self.partial)?;
        let reserve = self.reserve.bytes(total);
        if baatkaro_proto::storage::chunk_fits(free, reserve, data.len() as u64).is_err() {
            self.log_refused(free, reserve);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "the upload would take the disk's reserve for messages",
            ));
        }
        self.partial_file(id, size)?.write_at(data, offset)
    }

    /// Tells the operator that uploads are refused for want of room, at most once a
    /// minute however many chunks come.
    fn log_refused(&self, free: u64, reserve: u64) {
        let mut last = self.refused_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            free,
            reserve,
            "upload chunks are refused with STORAGE_FULL: the disk is down to the space kept \
             for messages (upload_reserve); free disk space"
        );
    }

    /// Makes what an upload holds so far durable.
    pub(crate) fn sync_partial(&self, id: &FileId) -> io::Result<()> {
        let open = self.open_partials().get(id).cloned();
        match open {
            Some(f) => f.file().sync_data(),
            None => File::open(self.partial(id))?.sync_data(),
        }
    }

    /// Checks an upload's content against its SHA-256, reading it back, then
    /// [`Disk::settle`]s it.
    pub(crate) fn finish(&self, id: &FileId, size: u64, sha: &Sha256) -> io::Result<Settled> {
        self.close_partial(id);
        let path = self.partial(id);
        if size == 0 {
            // An empty upload may never have been written.
            File::create(&path)?;
        }
        let f = match ContentFile::open_read(&path, self.direct) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Settled::Gone),
            Err(e) => return Err(e),
        };
        let matches = f.file().metadata()?.len() == size && {
            let mut hasher = sha2::Sha256::new();
            let mut offset = 0;
            while offset < size {
                let len = VERIFY_PIECE.min(size - offset);
                hasher.update(f.read_at(offset, len as usize)?);
                offset += len;
            }
            hasher.finalize().as_slice() == sha.0
        };
        self.settle(id, size, sha, matches)
    }

    /// Settles a verified upload of `size` bytes: on a match its content is made
    /// durable and moved among the finished files (where the same content may
    /// already be); on a mismatch it is deleted. An upload whose file is gone, or
    /// is not `size` bytes long, is [`Settled::Gone`]: nothing is moved.
    pub(crate) fn settle(
        &self,
        id: &FileId,
        size: u64,
        sha: &Sha256,
        matches: bool,
    ) -> io::Result<Settled> {
        self.close_partial(id);
        let path = self.partial(id);
        if !matches {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(Settled::Mismatched),
            };
        }
        if size == 0 && !path.exists() {
            // An empty upload may never have been written.
            File::create(&path)?;
        }
        let held = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Settled::Gone),
            Err(e) => return Err(e),
        };
        if held.metadata()?.len() != size {
            // Not what the upload wrote (it is made its full size before its first
            // chunk): what is sent again starts from a clean file.
            drop(held);
            std::fs::remove_file(&path)?;
            return Ok(Settled::Gone);
        }
        held.sync_all()?;
        let target = self.content(sha);
        if target.exists() {
            std::fs::remove_file(&path)?;
        } else {
            std::fs::rename(&path, &target)?;
        }
        // The rename must survive a crash; so must another settle's of the same
        // content, which may have renamed it and not yet synced when this one found
        // it there.
        File::open(&self.files)?.sync_all()?;
        Ok(Settled::Matched)
    }

    /// Finished content, open for reading (a download reads all its chunks from it).
    pub(crate) fn open_content(&self, sha: &Sha256) -> io::Result<ContentFile> {
        ContentFile::open_read(&self.content(sha), self.direct)
    }

    /// Deletes an unfinished upload's bytes.
    pub(crate) fn drop_partial(&self, id: &FileId) {
        self.close_partial(id);
        // Already gone is fine: it may never have been written.
        match std::fs::remove_file(self.partial(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(error = %e, file = %id, "could not delete an unfinished upload");
            }
            _ => {}
        }
    }

    /// Deletes every unfinished upload not in `keep` (left by a crash, say).
    pub(crate) fn sweep_partials(&self, keep: &dyn Fn(&str) -> bool) {
        let Ok(dir) = std::fs::read_dir(&self.partial) else { return };
        for entry in dir.flatten() {
            let name = entry.file_name();
            if !keep(&name.to_string_lossy()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
