//! Room on the data directory's disk: how much is free, the part of it uploads may
//! not use (so that files filling the disk never stop chat), and a file of space
//! held for the database, let go when the disk is nearly full so that messages can
//! still be stored (and the server can still start) on a disk that something else
//! filled.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes free for this process on the file system of `dir`, and its size.
pub fn free_space(dir: &Path) -> io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir)?;
    let unit = s.f_frsize.max(1);
    Ok((s.f_bavail.saturating_mul(unit), s.f_blocks.saturating_mul(unit)))
}

/// How much of the disk uploads must leave free: a number of bytes, or a share of
/// the file system in percent. Written `1073741824` or `5%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// This many bytes.
    Bytes(u64),
    /// This share of the file system's size, in percent (0 to 100).
    Percent(u8),
}

impl Reserve {
    /// The reference server's default: 1 GiB, room for about five million
    /// messages. Not a share of the disk: 5% of a large disk is more than chat will
    /// ever need, and a busy disk is often more than 95% full.
    pub const DEFAULT: Reserve = Reserve::Bytes(1 << 30);

    /// The reserve in bytes on a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Reserve::Bytes(n) => n,
            Reserve::Percent(p) => total / 100 * u64::from(p),
        }
    }
}

impl std::str::FromStr for Reserve {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected a number of bytes or a percentage such as 5%");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Reserve::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse().map(Reserve::Bytes).map_err(|_| bad()),
        }
    }
}

impl std::fmt::Display for Reserve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reserve::Bytes(n) => write!(f, "{n}"),
            Reserve::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Reserve {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `upload_reserve = 1073741824` or `upload_reserve = "5%"`.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(Reserve::Bytes(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The file that holds space for the database, beside it in the data directory.
pub const STORE_RESERVE_FILE: &str = "baatkaro.reserve";

/// Space held for the database: a file of `size` bytes, written at start when the
/// disk has room for it, and deleted when free space falls below what a few commits
/// need, so that the database can grow (and its log be written) on a disk that
/// something else filled.
#[derive(Debug)]
pub struct StoreReserve {
    dir: PathBuf,
    path: PathBuf,
    size: u64,
    /// Whether the file is there, as far as this process knows.
    held: bool,
}

/// Free space below which the reserve is let go: about what a few large commits
/// write to the database's log (a batch is at most a few MiB of pages).
const LOW_WATER: u64 = 16 << 20;

impl StoreReserve {
    /// The reserve of the data directory `dir` (nothing held yet: see
    /// [`StoreReserve::settle`]).
    pub fn new(dir: &Path, size: u64) -> Self {
        let path = dir.join(STORE_RESERVE_FILE);
        StoreReserve { dir: dir.to_path_buf(), held: path.exists(), path, size }
    }

    /// Below this much free space the reserve is let go.
    fn low_water(&self) -> u64 {
        LOW_WATER.min(self.size)
    }

    /// At start, before the database opens: lets the reserve go if the disk is
    /// nearly full (the database needs room for its log to open at all), or makes
    /// it whole if the disk has room to spare. Says which.
    pub fn settle(&mut self) -> io::Result<()> {
        let (free, _) = free_space(&self.dir)?;
        if self.size == 0 {
            return self.release_quietly();
        }
        if self.held && free < self.low_water() {
            self.release("at start")?;
            return Ok(());
        }
        let have = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if have >= self.size {
            self.held = true;
            return Ok(());
        }
        let need = self.size - have;
        if free < need.saturating_add(self.size) {
            tracing::warn!(
                free,
                reserve = self.size,
                "too little free disk space to set aside the database's reserve; it is made \
                 at a later start once there is room"
            );
            return Ok(());
        }
        self.write()?;
        self.held = true;
        Ok(())
    }

    /// Before a commit: lets the reserve go if free space is below what a commit may
    /// need. Cheap (one `statvfs`) while it is held, free once it is gone.
    pub fn before_commit(&mut self) {
        if !self.held {
            return;
        }
        match free_space(&self.dir) {
            Ok((free, _)) if free < self.low_water() => {
                if let Err(e) = self.release("while running") {
                    tracing::error!(error = %e, "could not delete the database's reserve");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the free disk space"),
        }
    }

    /// Lets the reserve go after a commit failed for want of space.
    pub fn on_full(&mut self) {
        if self.held
            && let Err(e) = self.release("after a commit found the disk full")
        {
            tracing::error!(error = %e, "could not delete the database's reserve");
        }
    }

    fn release(&mut self, when: &str) -> io::Result<()> {
        std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        self.held = false;
        tracing::error!(
            reserve = self.size,
            "the disk is nearly full: let go of the space held for the database ({when}); \
             messages are stored in it now. Free disk space: the reserve is set aside \
             again at the next start"
        );
        Ok(())
    }

    fn release_quietly(&mut self) -> io::Result<()> {
        self.held = false;
        std::fs::remove_file(&self.path).or_else(ignore_missing)
    }

    /// Makes the file: allocated by `fallocate` where the file system does that
    /// (at once, with no writes), else written in full, and not with zeros, which a
    /// file system that compresses would store in no space.
    fn write(&self) -> io::Result<()> {
        let tmp = self.dir.join(format!("{STORE_RESERVE_FILE}.new"));
        let mut f = std::fs::File::create(&tmp)?;
        let flags = rustix::fs::FallocateFlags::empty();
        if rustix::fs::fallocate(&f, flags, 0, self.size).is_ok() {
            f.sync_all()?;
            return std::fs::rename(&tmp, &self.path);
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut piece = vec![0u8; 1 << 20];
        let mut left = self.size;
        while left > 0 {
            for word in piece.chunks_exact_mut(8) {
                // xorshift64: cheap bytes that no file system compresses.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            let n = left.min(piece.len() as u64) as usize;
            f.write_all(&piece[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_parse_as_bytes_or_percent() {
        assert_eq!("5%".parse(), Ok(Reserve::Percent(5)));
        assert_eq!("1048576".parse(), Ok(Reserve::Bytes(1 << 20)));
        assert!("101%".parse::<Reserve>().is_err());
        assert!("lots".parse::<Reserve>().is_err());
        assert_eq!(Reserve::Percent(5).bytes(1000), 50);
        assert_eq!(Reserve::Bytes(7).bytes(1000), 7);
        assert_eq!(Reserve::Percent(5).to_string(), "5%");
    }

    #[test]
    fn the_store_reserve_is_written_whole_and_let_go_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = StoreReserve::new(dir.path(), 3 << 20);
        r.settle().unwrap();
        let path = dir.path().join(STORE_RESERVE_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);
        r.on_full();
        assert!(!path.exists());
        // Size 0: none is kept.
        let mut none = StoreReserve::new(dir.path(), 0);
        none.settle().unwrap();
        assert!(!path.exists());
    }
}
