//! The whole log read back and checked, a slice at a time, beside the writer: so
//! that damage in batches nobody reads is found too.
//!
//! What a check reads leaves the page cache after it, as what the log writes does
//! (older than the log's last [`CACHED_TAIL`] bytes): a pass over the whole log
//! would otherwise fill the cache with history nobody reads, and the next pass
//! would check the cached copy instead of the disk.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::frame::HEADER;
use crate::log::{CACHED_TAIL, Uncached, damaged, read_batch_at, read_up_to};
use crate::segment::{self, SEGMENT_HEADER};
use crate::{LogError, Position};

/// How far one [`Verifier::check`] got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Bytes of batches read and checked.
    pub bytes: u64,
    /// Batches read and checked.
    pub batches: u64,
    /// Whether the check reached the end it was given (the next one starts over).
    pub pass_done: bool,
}

/// A check of the log in a directory, on files of its own (it may run on another
/// thread than the [`crate::Log`]), and where it is.
#[derive(Debug)]
pub struct Verifier {
    dir: PathBuf,
    /// The next position to check.
    at: u64,
    /// The segment being read: its base, file, length and seed.
    open: Option<(u64, File, u64, u64)>,
    /// How much of the open segment was dropped from the page cache after it was
    /// read.
    uncached: Uncached,
}

impl Verifier {
    /// A check of the log in `dir`, from its start.
    pub fn new(dir: &Path) -> Verifier {
        Verifier { dir: dir.to_path_buf(), at: 0, open: None, uncached: Uncached::default() }
    }

    /// The bytes the log's segments take on disk (0 if there is no log).
    pub fn size(&self) -> io::Result<u64> {
        if !self.dir.exists() {
            return Ok(0);
        }
        let mut total = 0;
        for base in segment::list(&self.dir)? {
            total += std::fs::metadata(segment::path(&self.dir, base)).map_or(0, |m| m.len());
        }
        Ok(total)
    }

    /// Checks batches from where the last check stopped until `budget` bytes were
    /// read (one batch at least) or `end` is reached. `end` must be a position the
    /// writer will never cut back past (what it has indexed): the last, unsynced
    /// write may be cut at a restart, and is not damage. Segments removed meanwhile
    /// are passed over.
    pub fn check(&mut self, end: Position, budget: u64) -> Result<Checked, LogError> {
        let mut done = Checked::default();
        loop {
            if self.at >= end.0 || !self.dir.exists() {
                self.at = 0;
                self.open = None;
                done.pass_done = true;
                return Ok(done);
            }
            if done.bytes >= budget && done.batches > 0 {
                return Ok(done);
            }
            if let Some((_, file, len, _)) = self.open.as_mut() {
                // The segment as long as it is now. If it is the active one it may
                // have grown since it was opened, and `end` lie in what it grew by:
                // only past its end as it is now is the next segment read (one
                // whose header is still being written is not damage). And the
                // writer trims the zeros a direct write left past the active
                // segment's end when it moves on to the next (blocks.rs): the
                // segment then ends where its last batch does.
                *len = file.metadata()?.len();
            }
            let current = self.open.as_ref().map(|(base, ..)| *base);
            let (base, file, len, seed) = match self.open.take() {
                Some(o) if self.at < o.0 + o.2 => o,
                _ => {
                    // The segment holding `at`, or the next one after it.
                    let bases = segment::list(&self.dir)?;
                    let Some(i) = bases.iter().rposition(|&b| b <= self.at).or(
                        // Before the first segment (removed since): start there.
                        (!bases.is_empty()).then_some(0),
                    ) else {
                        self.at = end.0;
                        continue;
                    };
                    let mut base = bases[i];
                    if Some(base) == current {
                        // At the end of the segment just read: the next one, which
                        // begins where it ends. (A segment moved on from ends where
                        // the next begins; a segment short of either lost batches
                        // that `end` says are in the log.)
                        match bases.get(i + 1) {
                            Some(&next) if next == self.at => base = next,
                            Some(_) => {
                                return Err(damaged(
                                    &self.dir,
                                    base,
                                    self.at - base,
                                    "it does not end where the next segment begins",
                                ));
                            }
                            None => {
                                return Err(damaged(
                                    &self.dir,
                                    base,
                                    self.at - base,
                                    "the log ends before what it was checked up to",
                                ));
                            }
                        }
                    }
                    let file = match File::open(segment::path(&self.dir, base)) {
                        Ok(f) => f,
                        // Removed since it was listed (retention let it go), or a name
                        // that is no file: on to the next segment, never this one again.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            let next = bases.iter().find(|&&b| b > base).copied();
                            self.at = next.unwrap_or(end.0);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let len = file.metadata()?.len();
                    let mut head = [0u8; SEGMENT_HEADER as usize];
                    let n = read_up_to(&file, 0, &mut head)?;
                    let Some(seed) = segment::parse_header(&head[..n], base) else {
                        return Err(damaged(&self.dir, base, 0, "its header fails its checksum"));
                    };
                    self.at = self.at.max(base + SEGMENT_HEADER);
                    self.uncached = Uncached::default();
                    (base, file, len, seed)
                }
            };
            let stop = (base + len).min(end.0);
            if self.at + HEADER as u64 > stop {
                // Nothing more to check in this segment.
                self.at = if stop < base + len { end.0 } else { base + len };
                self.open = Some((base, file, len, seed));
                continue;
            }
            let (h, _) = match read_batch_at(&file, seed, &self.dir, base, self.at - base, len) {
                Ok(read) => read,
                // Trimmed to its end since its length was read: the segment ends here.
                Err(_) if self.at >= base + file.metadata()?.len() => {
                    self.open = Some((base, file, len, seed));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let frame = HEADER as u64 + u64::from(h.body_len);
            self.at += frame;
            done.bytes += frame;
            done.batches += 1;
            // What was read, once it is older than the log's cached end (which the
            // writer keeps): a step at a time, and the rest when the segment is done.
            if self.at.saturating_add(CACHED_TAIL) <= end.0 {
                let read = self.at - base;
                self.uncached.drop_before(&file, read, read >= len);
            }
            self.open = Some((base, file, len, seed));
        }
    }
}
