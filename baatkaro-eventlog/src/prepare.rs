//! Segment files prepared ahead, off the commit path: written with zeros to their
//! size and synced, so that a commit into one overwrites blocks that are already
//! allocated and written.
//!
//! Why written and not only allocated: on ext4 a write that grows a file, or that
//! lands in an extent `posix_fallocate` left unwritten, makes its `fdatasync`
//! commit the journal too (the new size, or the extent turned written); a write
//! over written blocks syncs the data alone. Measured on the disk this was made
//! on, an 8 KiB write and `fdatasync`: 192–223 µs into a growing file,
//! 126–146 µs into a file already written with zeros.
//!
//! One file is prepared at a time, by a thread of its own, under a name that
//! [`crate::segment::list`] passes over ([`TEMP`]). It becomes a segment only when
//! the log rolls into it: its header written and synced, then renamed to the
//! segment's name. A file left by a crash is removed at open.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// The name of the file being prepared, in the log's directory.
pub(crate) const TEMP: &str = "prepare.tmp";
/// Zeros written per call; the cancel flag is read between calls.
const CHUNK: usize = 1 << 20;
/// Zeros written between two syncs: the written-back data comes in steps, not as
/// one burst that would hold up the commits' own syncs, and a cancel waits for
/// at most one such sync.
const SYNC_EVERY: u64 = 8 << 20;

/// The path of the file being prepared in `dir`.
pub(crate) fn temp_path(dir: &Path) -> PathBuf {
    dir.join(TEMP)
}

/// Removes a prepared file a crash left behind (it never became a segment).
pub(crate) fn remove_leftover(dir: &Path) -> io::Result<()> {
    fs::remove_file(temp_path(dir)).or_else(|e| match e.kind() {
        io::ErrorKind::NotFound => Ok(()),
        _ => Err(e),
    })
}

/// The preparing of the next segment's file, and the file once ready.
#[derive(Debug)]
pub(crate) struct Preparer {
    dir: PathBuf,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Nothing prepared, nothing being prepared.
    Idle,
    /// A thread writing a file of `size` bytes.
    Busy { size: u64, cancel: Arc<AtomicBool>, thread: JoinHandle<io::Result<File>> },
    /// A file of `size` bytes of zeros, synced, at [`temp_path`].
    Ready { file: File, size: u64 },
    /// A preparation for the segment at `base` failed (a full disk, say): none is
    /// tried again until the log has rolled past it, so that a failing disk is not
    /// written to on every commit.
    Off { base: u64 },
}

impl Preparer {
    /// Prepares in `dir` (whose leftover the caller removed).
    pub(crate) fn new(dir: &Path) -> Preparer {
        Preparer { dir: dir.to_path_buf(), state: State::Idle }
    }

    /// Whether a file is being prepared or is ready: nothing more to ask for.
    pub(crate) fn is_asked(&self) -> bool {
        matches!(self.state, State::Busy { .. } | State::Ready { .. })
    }

    /// Starts preparing a file of `size` bytes, for the segment after the one at
    /// `base`, unless one is being prepared or is ready, or preparing failed for
    /// this segment already.
    pub(crate) fn ask(&mut self, size: u64, base: u64) {
        match self.state {
            State::Idle => {}
            State::Off { base: off } if off != base => {}
            _ => return,
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let path = temp_path(&self.dir);
        let stop = Arc::clone(&cancel);
        let spawned = std::thread::Builder::new()
            .name("eventlog-prepare".into())
            .spawn(move || write_zeros(&path, size, &stop));
        self.state = match spawned {
            Ok(thread) => State::Busy { size, cancel, thread },
            Err(_) => State::Off { base },
        };
    }

    /// Whether a prepared file is ready to take. Never waits.
    pub(crate) fn poll(&mut self, base: u64) -> bool {
        if let State::Busy { thread, .. } = &self.state
            && thread.is_finished()
        {
            self.join(base);
        }
        matches!(self.state, State::Ready { .. })
    }

    /// Waits for the file being prepared, if any; whether one is ready.
    pub(crate) fn wait(&mut self, base: u64) -> bool {
        if matches!(self.state, State::Busy { .. }) {
            self.join(base);
        }
        matches!(self.state, State::Ready { .. })
    }

    /// The ready file and its size; the caller renames it or [`Preparer::discard`]s it.
    pub(crate) fn take(&mut self) -> Option<(File, u64)> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Ready { file, size } => Some((file, size)),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Removes a taken file that did not become a segment, and prepares none again
    /// for the segment at `base`.
    pub(crate) fn discard(&mut self, base: u64) {
        let _ = fs::remove_file(temp_path(&self.dir));
        self.state = State::Off { base };
    }

    fn join(&mut self, base: u64) {
        let State::Busy { size, thread, .. } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        self.state = match thread.join() {
            Ok(Ok(file)) => State::Ready { file, size },
            // The thread removed what it wrote (or panicked, which it has no way to).
            _ => State::Off { base },
        };
    }
}

impl Drop for Preparer {
    /// Stops the thread (it stops between two chunks) and removes its file.
    fn drop(&mut self) {
        let prepared = match std::mem::replace(&mut self.state, State::Idle) {
            State::Busy { cancel, thread, .. } => {
                cancel.store(true, Ordering::Relaxed);
                thread.join().is_ok_and(|r| r.is_ok())
            }
            State::Ready { .. } => true,
            State::Idle | State::Off { .. } => false,
        };
        if prepared {
            let _ = fs::remove_file(temp_path(&self.dir));
        }
    }
}

/// The thread's work: a file at `path` of `size` zeros, synced; removed again if
/// anything fails or `cancel` is set.
fn write_zeros(path: &Path, size: u64, cancel: &AtomicBool) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    if let Err(e) = fill(&file, size, cancel) {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

fn fill(file: &File, size: u64, cancel: &AtomicBool) -> io::Result<()> {
    let zeros = vec![0u8; CHUNK];
    let mut at = 0;
    let mut unsynced = 0;
    while at < size {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the log was closed"));
        }
        let n = (size - at).min(CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
        unsynced += n as u64;
        if unsynced >= SYNC_EVERY && at < size {
            file.sync_data()?;
            unsynced = 0;
        }
    }
    // The size and the extents, so that a write into the file later changes no
    // metadata for its own sync to commit.
    file.sync_all()
}
