//! Segment files: their names, their headers, and finding them in the directory.
//!
//! A segment is named for the log position of its first byte, in 20 decimal digits
//! (`00000000000067108864.log`), so that names sort in log order and the position of
//! any byte is its segment's base plus its offset in the file. It opens with a
//! 32-byte header that carries the log's checksum seed:
//!
//! ```text
//!   0  magic  b"BKlog\0v1"
//!   8  base   u64   the name's number, again
//!  16  seed   u64   the log's checksum seed (the same in every segment)
//!  24  sum    u64   xxh3-64 of bytes 0..24
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

/// Bytes of a segment header; the first batch of a segment starts here.
pub const SEGMENT_HEADER: u64 = 32;
const MAGIC: [u8; 8] = *b"BKlog\0v1";
const SUFFIX: &str = ".log";

/// The file name of the segment that starts at `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}{SUFFIX}")
}

/// The path of the segment that starts at `base`.
pub(crate) fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(file_name(base))
}

/// The bases of the segments in `dir`, in order. Other files are left alone.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else { continue };
        if stem.len() == 20
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(base) = stem.parse()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// The header of the segment at `base` with `seed`.
fn header(base: u64, seed: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0; SEGMENT_HEADER as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..16].copy_from_slice(&base.to_le_bytes());
    h[16..24].copy_from_slice(&seed.to_le_bytes());
    let sum = xxh3_64(&h[..24]);
    h[24..32].copy_from_slice(&sum.to_le_bytes());
    h
}

/// Reads a segment header: the seed, if the header is whole, right and names `base`.
pub(crate) fn parse_header(h: &[u8], base: u64) -> Option<u64> {
    let h: &[u8; SEGMENT_HEADER as usize] = h.get(..SEGMENT_HEADER as usize)?.try_into().ok()?;
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(w)
    };
    (h[0..8] == MAGIC && word(8) == base && word(24) == xxh3_64(&h[..24])).then(|| word(16))
}

/// Creates the segment at `base`, its header written and synced, and the directory
/// synced so that its name survives a power cut. Fails if it exists.
pub(crate) fn create(dir: &Path, base: u64, seed: u64) -> io::Result<File> {
    let mut file =
        OpenOptions::new().read(true).write(true).create_new(true).open(path(dir, base))?;
    file.write_all(&header(base, seed))?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes the directory's entries (new, removed or shortened files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
