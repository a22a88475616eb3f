//! File content on disk: finished files under `files/`, named by their SHA-256,
//! and unfinished uploads under `partial/`, named by their file id. Display names
//! never become paths. Every function here blocks: call them off the async threads.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use baatkaro_proto::{ErrorCode, FileId, Sha256};
use sha2::Digest;

/// The two directories of file content.
#[derive(Debug)]
pub(crate) struct Disk {
    files: PathBuf,
    partial: PathBuf,
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
    pub(crate) fn open(data_dir: &Path) -> io::Result<Disk> {
        let disk = Disk { files: data_dir.join("files"), partial: data_dir.join("partial") };
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

    /// Writes a chunk of an upload at its offset.
    pub(crate) fn write_chunk(&self, id: &FileId, offset: u64, data: &[u8]) -> io::Result<()> {
        let f =
            OpenOptions::new().create(true).truncate(false).write(true).open(self.partial(id))?;
        f.write_all_at(data, offset)
    }

    /// Makes what an upload holds so far durable.
    pub(crate) fn sync_partial(&self, id: &FileId) -> io::Result<()> {
        File::open(self.partial(id))?.sync_data()
    }

    /// Checks an upload's content against its SHA-256, reading it back, then
    /// [`Disk::settle`]s it. Whether it matched.
    pub(crate) fn finish(&self, id: &FileId, size: u64, sha: &Sha256) -> io::Result<bool> {
        let path = self.partial(id);
        if size == 0 {
            // An empty upload may never have been written.
            File::create(&path)?;
        }
        let mut f = File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            hasher.update(&buf[..n]);
        }
        let matches = total == size && hasher.finalize().as_slice() == sha.0;
        self.settle(id, sha, matches)?;
        Ok(matches)
    }

    /// Settles a verified upload: on a match its content is made durable and moved
    /// among the finished files (where the same content may already be); on a
    /// mismatch it is deleted.
    pub(crate) fn settle(&self, id: &FileId, sha: &Sha256, matches: bool) -> io::Result<()> {
        let path = self.partial(id);
        if !matches {
            return std::fs::remove_file(&path);
        }
        if !path.exists() {
            // An empty upload may never have been written.
            File::create(&path)?;
        }
        File::open(&path)?.sync_all()?;
        let target = self.content(sha);
        if target.exists() {
            std::fs::remove_file(&path)?;
        } else {
            std::fs::rename(&path, &target)?;
            // The rename itself must survive a crash.
            File::open(&self.files)?.sync_all()?;
        }
        Ok(())
    }

    /// Reads `len` bytes of finished content from `offset`.
    pub(crate) fn read(&self, sha: &Sha256, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let f = File::open(self.content(sha))?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        f.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Deletes an unfinished upload's bytes.
    pub(crate) fn drop_partial(&self, id: &FileId) {
        // Already gone is fine: it may never have been written.
        let _ = std::fs::remove_file(self.partial(id));
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
