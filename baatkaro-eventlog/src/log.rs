//! The log itself: opening (and recovering), committing, reading, cutting.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::blocks::{BLOCK, Blocks, Region, Wrote};
use crate::frame::{self, HEADER, Header, RECORD_HEADER};
use crate::segment::{self, SEGMENT_HEADER};
use crate::{LogError, Position};

/// Sizes the log keeps to.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// A segment is closed and the next begun once a batch would take it past
    /// this many bytes (a batch never spans two segments).
    pub segment_bytes: u64,
    /// Whether each batch is written by direct I/O (`O_DIRECT`), past the page
    /// cache, where the file system allows it: whole blocks, the last filled with
    /// zeros past the batch's end. Off, batches go through the page cache.
    pub direct: bool,
}

impl Default for Options {
    /// 64 MiB segments: large enough that a roll (a file created and two syncs) is
    /// rare, small enough that scanning the last one at start is quick. Direct
    /// writes.
    fn default() -> Self {
        Options { segment_bytes: 64 << 20, direct: true }
    }
}

/// What opening the log found at its end.
#[derive(Debug, Default)]
pub struct Recovery {
    /// What was cut from the end, if anything.
    pub cut: Option<Cut>,
    /// The number of the last whole batch, if the log holds any batch.
    pub last_number: Option<u64>,
}

/// Bytes cut from the end of the log at open: a write that a crash left torn.
/// None of it was ever acknowledged: a commit returns only after its sync.
#[derive(Debug)]
pub struct Cut {
    /// Where the log now ends.
    pub at: Position,
    /// How many bytes were cut.
    pub bytes: u64,
    /// The segment they were cut from.
    pub segment: PathBuf,
    /// What was wrong with them.
    pub reason: &'static str,
}

/// One batch, read and checked.
#[derive(Debug)]
pub struct Batch {
    /// Where it starts.
    pub position: Position,
    /// The number it was committed with.
    pub number: u64,
    /// The flags it was committed with.
    pub flags: u32,
    body: Vec<u8>,
    seed: u64,
}

impl Batch {
    /// Its records in order, each with the position a [`Log::read_record`] reads
    /// it back from.
    pub fn records(&self) -> impl Iterator<Item = (Position, &[u8])> {
        let base = self.position.0 + HEADER as u64;
        // The body passed its batch checksum and was walked whole when read.
        frame::records(self.seed, &self.body)
            .filter_map(Result::ok)
            .map(move |(at, data)| (Position(base + at as u64), data))
    }

    /// Where the next batch starts (or would).
    pub fn next(&self) -> Position {
        Position(self.position.0 + (HEADER + self.body.len()) as u64)
    }
}

/// Consecutive records, read and checked ([`Log::read_span`]).
#[derive(Debug)]
pub struct Span {
    at: Position,
    data: Vec<u8>,
    seed: u64,
}

impl Span {
    /// The records, each with its position.
    pub fn records(&self) -> impl Iterator<Item = (Position, &[u8])> {
        let base = self.at.0;
        // Every record was checked when the span was read.
        frame::records(self.seed, &self.data)
            .filter_map(Result::ok)
            .map(move |(at, data)| (Position(base + at as u64), data))
    }
}

/// A sealed segment: where it starts and where it ends (the next one's base).
#[derive(Clone, Copy, Debug)]
struct Sealed {
    base: u64,
    end: u64,
}

/// How many sealed segments' files stay open for reading.
const READERS: usize = 4;

/// How much of the active segment's end stays in the page cache, of what was
/// written through it (all of a batch, by a log not writing directly) or read
/// back: what a client catching up after a short absence reads. Older pages are
/// dropped (of a sealed segment, all), [`UNCACHE_STEP`] bytes at a time.
pub const CACHED_TAIL: u64 = 4 << 20;

/// How many written bytes past [`CACHED_TAIL`] are dropped from the page cache at
/// once, at least: one `fadvise` per this much written, not one per commit.
pub const UNCACHE_STEP: u64 = 256 << 10;

/// The page size the page-cache bookkeeping rounds to. Where pages are larger, the
/// kernel keeps any page a range only partly covers.
const PAGE: u64 = 4096;

/// An open log. Every method takes `&mut self`: the log is one thread's.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    options: Options,
    seed: u64,
    /// Sealed segments, oldest first: one entry per `segment_bytes` of history.
    sealed: Vec<Sealed>,
    active: File,
    active_base: u64,
    /// Bytes of the active segment, its header included.
    active_len: u64,
    /// Open sealed segments, the most recently read last.
    readers: Vec<(u64, File)>,
    /// The frame being written, kept to reuse its memory: all of it, or from
    /// `region`'s lead when it is to be written directly.
    buf: Vec<u8>,
    /// Where the batch being built is in `buf` when it is to be written directly:
    /// after the active segment's last partial block, at an aligned address.
    region: Option<Region>,
    /// Set by a failed write or sync.
    failed: bool,
    /// How much of the active segment the last drop from the page cache covered
    /// ([`Log::uncache`]).
    uncached: Uncached,
    /// The active segment opened for direct writes, while they are in use.
    blocks: Option<Blocks>,
}

impl Log {
    /// Opens the log in `dir`, creating the directory and an empty log if there is
    /// none. A torn last write is cut (and the cut made durable); any other damage
    /// the open can see — a segment header, a gap between segments, a bad batch
    /// followed by a good one in the last segment — is [`LogError::Damaged`].
    /// Batches of earlier segments are checked when they are read.
    pub fn open(dir: &Path, options: Options) -> Result<(Log, Recovery), LogError> {
        if !dir.is_dir() {
            fs::create_dir_all(dir)?;
            // The new directory's own entry durable in its parent: without it a power
            // cut soon after a first start could take the directory, with every
            // batch acknowledged into it, while the metadata that points into it
            // (the server's database) survived.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent)?;
            }
        }
        let mut bases = segment::list(dir)?;
        let mut recovery = Recovery::default();
        let Some(&last) = bases.last() else {
            return Ok((Self::create(dir, options)?, recovery));
        };
        let active = OpenOptions::new().read(true).write(true).open(segment::path(dir, last))?;
        let active_len = active.metadata()?.len();
        let mut head = [0u8; SEGMENT_HEADER as usize];
        let whole = read_up_to(&active, 0, &mut head)?;
        let Some(seed) = segment::parse_header(&head[..whole], last) else {
            if active_len > SEGMENT_HEADER {
                return Err(damaged(dir, last, 0, "its header fails its checksum"));
            }
            // A segment whose creation a crash cut short: it never held a batch.
            drop(active);
            fs::remove_file(segment::path(dir, last))?;
            segment::sync_dir(dir)?;
            recovery.cut = Some(Cut {
                at: Position(last),
                bytes: active_len,
                segment: segment::path(dir, last),
                reason: "a segment whose header was never finished",
            });
            bases.pop();
            if bases.is_empty() {
                return Ok((Self::create(dir, options)?, recovery));
            }
            let (log, mut again) = Self::open(dir, options)?;
            again.cut = again.cut.or(recovery.cut);
            return Ok((log, again));
        };
        let mut sealed = Vec::with_capacity(bases.len() - 1);
        for pair in bases.windows(2) {
            let (base, next) = (pair[0], pair[1]);
            let file = File::open(segment::path(dir, base))?;
            let len = file.metadata()?.len();
            let mut head = [0u8; SEGMENT_HEADER as usize];
            let n = read_up_to(&file, 0, &mut head)?;
            if segment::parse_header(&head[..n], base) != Some(seed) {
                return Err(damaged(
                    dir,
                    base,
                    0,
                    "its header fails its checksum or its seed differs",
                ));
            }
            if base + len != next {
                return Err(damaged(
                    dir,
                    base,
                    len,
                    "it does not end where the next segment begins (a segment is missing or cut short)",
                ));
            }
            sealed.push(Sealed { base, end: next });
        }
        let mut log = Log {
            dir: dir.to_path_buf(),
            options,
            seed,
            sealed,
            active,
            active_base: last,
            active_len,
            readers: Vec::new(),
            buf: Vec::new(),
            region: None,
            failed: false,
            uncached: Uncached::default(),
            blocks: None,
        };
        recovery.last_number = log.recover_tail(&mut recovery)?;
        log.blocks = log.open_blocks();
        if recovery.last_number.is_none()
            && let Some(prev) = log.sealed.last().copied()
        {
            // The active segment is empty: the last batch is the previous segment's.
            let mut at = Position(prev.base + SEGMENT_HEADER);
            while at.0 < prev.end {
                let batch = log.read_batch(at)?;
                recovery.last_number = Some(batch.number);
                at = batch.next();
            }
        }
        Ok((log, recovery))
    }

    /// A new log: its first segment, at position 0, with a fresh seed.
    fn create(dir: &Path, options: Options) -> Result<Log, LogError> {
        let seed = new_seed();
        let active = segment::create(dir, 0, seed)?;
        let mut log = Log {
            dir: dir.to_path_buf(),
            options,
            seed,
            sealed: Vec::new(),
            active,
            active_base: 0,
            active_len: SEGMENT_HEADER,
            readers: Vec::new(),
            buf: Vec::new(),
            region: None,
            failed: false,
            uncached: Uncached::default(),
            blocks: None,
        };
        log.blocks = log.open_blocks();
        Ok(log)
    }

    /// The active segment opened for direct writes, if the options ask for them
    /// and the file system takes them.
    fn open_blocks(&self) -> Option<Blocks> {
        if !self.options.direct {
            return None;
        }
        Blocks::open(&segment::path(&self.dir, self.active_base))
    }

    /// Whether batches are being written by direct I/O (asked for, and taken by
    /// the file system so far).
    pub fn writes_direct(&self) -> bool {
        self.blocks.is_some()
    }

    /// Walks the active segment's batches, cuts a torn last write, and returns the
    /// last batch's number.
    fn recover_tail(&mut self, recovery: &mut Recovery) -> Result<Option<u64>, LogError> {
        let file_len = self.active_len;
        let mut at = SEGMENT_HEADER;
        let mut last = None;
        let mut body = Vec::new();
        let reason = loop {
            if at == file_len {
                return Ok(last);
            }
            let mut head = [0u8; HEADER];
            if read_up_to(&self.active, at, &mut head)? < HEADER {
                break "a batch header cut short";
            }
            let Some(h) = Header::parse(&head) else {
                break "bytes that are not a batch";
            };
            let Some(end) = at.checked_add(HEADER as u64 + u64::from(h.body_len)) else {
                break "a batch length past any file";
            };
            if end > file_len {
                break "a batch cut short";
            }
            body.resize(h.body_len as usize, 0);
            self.active.read_exact_at(&mut body, at + HEADER as u64)?;
            if !h.checks(self.seed, &head, &body) {
                break "a batch that fails its checksum";
            }
            if !walks(self.seed, &body, h.count) {
                return Err(damaged(
                    &self.dir,
                    self.active_base,
                    at,
                    "a batch whose records do not add up",
                ));
            }
            last = Some(h.number);
            at = end;
        };
        // Only the last write can be torn: each commit syncs before the next begins.
        // So the bad bytes are a torn write only if no good batch follows them.
        let rest_len = file_len - at;
        if self.is_padding(at, rest_len)? {
            // Zeros a direct write filled its last block with (blocks.rs): not a
            // torn write. Trimmed, so that the file ends where the log does.
            self.active.set_len(at)?;
            self.active.sync_all()?;
            self.active_len = at;
            return Ok(last);
        }
        // A torn write is at most one batch, and no batch is larger than a segment
        // (of this size or, bounded, the size the segment was written with).
        if rest_len > self.options.segment_bytes.max(1 << 30) {
            return Err(damaged(&self.dir, self.active_base, at, reason));
        }
        let mut rest = vec![0u8; rest_len as usize];
        self.active.read_exact_at(&mut rest, at)?;
        // Each candidate costs the hashing of its body: a torn write holding text
        // crafted to look like many batch headers must not keep a start busy for
        // hours. Past the budget the start is refused, saying why.
        let mut budget = TAIL_CHECK_BUDGET;
        match holds_a_batch(self.seed, &rest[1..], &mut budget) {
            Some(false) => {}
            Some(true) => return Err(damaged(&self.dir, self.active_base, at, reason)),
            None => {
                let why = format!(
                    "{reason}, and what follows it could not be told from damage within \
                     {TAIL_CHECK_BUDGET} bytes of checksums"
                );
                return Err(damaged(&self.dir, self.active_base, at, &why));
            }
        }
        self.active.set_len(at)?;
        self.active.sync_all()?;
        self.active_len = at;
        recovery.cut = Some(Cut {
            at: Position(self.active_base + at),
            bytes: rest_len,
            segment: segment::path(&self.dir, self.active_base),
            reason,
        });
        Ok(last)
    }

    /// Whether the `len` bytes at `at` of the active segment, the rest of its file,
    /// are the zeros a direct write fills its last block with: fewer than a
    /// block, all zero, and ending at a block's end.
    fn is_padding(&self, at: u64, len: u64) -> io::Result<bool> {
        if len >= BLOCK || !(at + len).is_multiple_of(BLOCK) {
            return Ok(false);
        }
        let mut rest = vec![0u8; len as usize];
        self.active.read_exact_at(&mut rest, at)?;
        Ok(rest.iter().all(|&b| b == 0))
    }

    /// Appends a batch of `records` numbered `number` with the caller's `flags`,
    /// and returns once it is durable, with its position. Record `k` of the batch
    /// is at the position plus [`crate::BATCH_HEADER`] plus, for each record before
    /// it, [`RECORD_HEADER`] and its length ([`Batch::records`] says the same).
    ///
    /// After a failed write or sync the log refuses everything with
    /// [`LogError::Failed`] until opened again.
    pub fn commit<'a>(
        &mut self,
        number: u64,
        flags: u32,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Position, LogError> {
        let mut batch = self.begin()?;
        for data in records {
            batch.record(|out| out.extend_from_slice(data))?;
        }
        batch.commit(number, flags)
    }

    /// Begins a batch whose records are written straight into the log's buffer
    /// ([`BatchWriter::record`]), with no copy of their own; nothing is written
    /// until [`BatchWriter::commit`], which is [`Log::commit`]'s.
    pub fn begin(&mut self) -> Result<BatchWriter<'_>, LogError> {
        if self.failed {
            return Err(LogError::Failed);
        }
        self.buf.clear();
        self.region = None;
        if let Some(blocks) = &mut self.blocks {
            // Built where it is written from: after the segment's last partial
            // block, at an aligned address.
            let tail = blocks.tail(&self.active, self.active_len)?;
            self.region = Region::begin(&mut self.buf, tail);
        }
        frame::start(&mut self.buf);
        Ok(BatchWriter { log: self, count: 0, last: None })
    }

    /// Where the batch being built starts in `buf`.
    fn lead(&self) -> usize {
        self.region.map_or(0, |r| r.lead)
    }

    /// Writes the batch in the buffer, durably (see [`Log::commit`]).
    fn write_batch(&mut self, number: u64, flags: u32, count: u32) -> Result<Position, LogError> {
        let too_large = |n| LogError::TooLarge(n);
        let lead = self.lead();
        frame::finish(&mut self.buf[lead..], self.seed, number, flags, count)
            .ok_or_else(|| too_large(u64::from(u32::MAX)))?;
        let len = (self.buf.len() - lead) as u64;
        if len > self.options.segment_bytes.saturating_sub(SEGMENT_HEADER) {
            return Err(too_large(len));
        }
        if self.active_len + len > self.options.segment_bytes && self.active_len > SEGMENT_HEADER {
            self.roll()?;
        }
        let at = self.active_len;
        let written = self.write_at(at).and_then(|()| self.active.sync_data());
        if let Err(e) = written {
            self.failed = true;
            // Best effort: leave no partial batch behind for the next open to cut.
            let _ = self.active.set_len(at);
            return Err(e.into());
        }
        self.active_len += len;
        // Also when writing directly: what catch-ups read back leaves the cache too.
        self.uncache();
        Ok(Position(self.active_base + at))
    }

    /// Writes the batch in the buffer at `at` (not synced): directly while the
    /// file system takes it, else through the page cache.
    fn write_at(&mut self, at: u64) -> io::Result<()> {
        if let Some(blocks) = &mut self.blocks {
            // As laid out at `begin`, unless the buffer moved as the batch grew, or
            // a roll put the batch at the start of a new segment.
            let tail = blocks.tail(&self.active, at)?;
            let region = self.region.and_then(|r| r.settle(&mut self.buf, tail));
            self.region = region;
            match region {
                Some(r) => match blocks.write(at, &mut self.buf, r)? {
                    Wrote::All => return Ok(()),
                    Wrote::Refused => self.blocks = None,
                },
                // No aligned address to be had: this batch through the page cache.
                None => blocks.forget_tail(),
            }
        }
        self.active.write_all_at(&self.buf[self.lead()..], at)
    }

    /// Drops the active segment's synced pages older than its last
    /// [`CACHED_TAIL`] bytes from the page cache, [`UNCACHE_STEP`] at a time.
    ///
    /// The log is written once and read back rarely, and mostly near its end: kept
    /// cached, its pages would only grow the page cache by every byte written,
    /// evicting what is read often (the database). And every new page of cache is
    /// a free page the kernel must hand out: on a virtual machine whose host takes
    /// back free memory (free page reporting), touching one costs the host a fault
    /// of microseconds — at a full load, more than the rest of the write
    /// (BENCHMARKS.md, "The log's page cache"). Pages dropped here are free at once,
    /// and the next writes take them back while the host still backs them.
    ///
    /// Advice only: a failure changes nothing stored, so it is not an error.
    fn uncache(&mut self) {
        let upto = self.active_len.saturating_sub(CACHED_TAIL) / PAGE * PAGE;
        self.uncached.drop_before(&self.active, upto, false);
    }

    /// Closes the active segment (already synced: every commit syncs) and begins
    /// the next where it ends.
    fn roll(&mut self) -> Result<(), LogError> {
        let base = self.active_base + self.active_len;
        // Without the zeros a direct write left past its end (blocks.rs), durably
        // before the next segment exists: a sealed segment ends where the next
        // begins, or the next open refuses the log.
        let trimmed = self.active.metadata().and_then(|m| {
            if m.len() == self.active_len {
                return Ok(());
            }
            self.active.set_len(self.active_len)?;
            self.active.sync_all()
        });
        trimmed.inspect_err(|_| self.failed = true)?;
        let next =
            segment::create(&self.dir, base, self.seed).inspect_err(|_| self.failed = true)?;
        self.sealed.push(Sealed { base: self.active_base, end: base });
        // The sealed segment is read only by clients far behind: none of it stays
        // cached (its whole length: it takes no more writes, unless a truncate
        // makes it the active segment again).
        let sealed = std::mem::replace(&mut self.active, next);
        uncache(&sealed, 0, self.active_len);
        self.uncached = Uncached::default();
        self.active_base = base;
        self.active_len = SEGMENT_HEADER;
        if self.blocks.is_some() {
            self.blocks = self.open_blocks();
        }
        Ok(())
    }

    /// Where the next batch will be written.
    pub fn end(&self) -> Position {
        Position(self.active_base + self.active_len)
    }

    /// Where the oldest batch kept starts (the end, if there is none).
    pub fn start(&self) -> Position {
        Position(self.sealed.first().map_or(self.active_base, |s| s.base) + SEGMENT_HEADER)
    }

    /// The segment holding `at`: its file, its base, the offset of `at` in it and
    /// its length. A position at a segment's very start or end (the next one's
    /// base) is taken as the first batch of the segment that starts there.
    fn locate(&mut self, at: Position) -> Result<(&File, u64, u64, u64), LogError> {
        let pos = at.0;
        let first = self.sealed.first().map_or(self.active_base, |s| s.base);
        if pos < first {
            return Err(LogError::NoSuchPosition(at));
        }
        if pos >= self.active_base {
            let off = (pos - self.active_base).max(SEGMENT_HEADER);
            return Ok((&self.active, self.active_base, off, self.active_len));
        }
        let i = self.sealed.partition_point(|s| s.base <= pos) - 1;
        let s = self.sealed[i];
        let k = match self.readers.iter().position(|(b, _)| *b == s.base) {
            Some(k) => k,
            None => {
                if self.readers.len() == READERS {
                    self.readers.remove(0);
                }
                self.readers.push((s.base, File::open(segment::path(&self.dir, s.base))?));
                self.readers.len() - 1
            }
        };
        let entry = self.readers.remove(k);
        self.readers.push(entry);
        let file = &self.readers[self.readers.len() - 1].1;
        Ok((file, s.base, (pos - s.base).max(SEGMENT_HEADER), s.end - s.base))
    }

    /// Reads and checks the batch at `at` (a position [`Log::commit`] returned, or
    /// a [`Batch::next`]). A position at the end of a segment reads the next
    /// segment's first batch.
    pub fn read_batch(&mut self, at: Position) -> Result<Batch, LogError> {
        let seed = self.seed;
        let dir = self.dir.clone();
        let end = self.end().0;
        let (file, base, off, len) = self.locate(at)?;
        if off == len && base + len < end {
            // The end of a sealed segment: the next one's first batch.
            return self.read_batch(Position(base + len + SEGMENT_HEADER));
        }
        if off + HEADER as u64 > len {
            return Err(LogError::NoSuchPosition(at));
        }
        let (h, body) = read_batch_at(file, seed, &dir, base, off, len)?;
        Ok(Batch { position: Position(base + off), number: h.number, flags: h.flags, body, seed })
    }

    /// Reads and checks the record at `at` (a position from [`Batch::records`] or
    /// computed as [`Log::commit`] says).
    pub fn read_record(&mut self, at: Position) -> Result<Vec<u8>, LogError> {
        let seed = self.seed;
        let dir = self.dir.clone();
        let (file, base, off, len) = self.locate(at)?;
        if at.0 - base < SEGMENT_HEADER + HEADER as u64 || off + RECORD_HEADER as u64 > len {
            return Err(LogError::NoSuchPosition(at));
        }
        let mut head = [0u8; RECORD_HEADER];
        file.read_exact_at(&mut head, off)?;
        let n = frame::record_len(&head) as u64;
        if off + RECORD_HEADER as u64 + n > len {
            return Err(damaged(&dir, base, off, "a record runs past the end of its segment"));
        }
        let mut data = vec![0u8; n as usize];
        file.read_exact_at(&mut data, off + RECORD_HEADER as u64)?;
        if !frame::check_record(seed, &head, &data) {
            return Err(damaged(&dir, base, off, "a record fails its checksum"));
        }
        Ok(data)
    }

    /// Reads and checks the records in the `len` bytes from `at`: consecutive whole
    /// records of one batch (as [`Batch::records`] gives their positions), read
    /// with one call.
    pub fn read_span(&mut self, at: Position, len: u64) -> Result<Span, LogError> {
        let seed = self.seed;
        let dir = self.dir.clone();
        let (file, base, off, seg_len) = self.locate(at)?;
        if at.0 - base < SEGMENT_HEADER + HEADER as u64 || off.saturating_add(len) > seg_len {
            return Err(LogError::NoSuchPosition(at));
        }
        let mut data = vec![0u8; len as usize];
        file.read_exact_at(&mut data, off)?;
        if frame::records(seed, &data).any(|r| r.is_err()) {
            return Err(damaged(&dir, base, off, "a record fails its checksum"));
        }
        Ok(Span { at, data, seed })
    }

    /// The batches from `from` (a batch's position, or [`Log::start`]) to the end,
    /// in order.
    pub fn scan(&mut self, from: Position) -> impl Iterator<Item = Result<Batch, LogError>> + '_ {
        let mut at = from;
        let mut done = false;
        std::iter::from_fn(move || {
            if done || self.is_end(at) {
                return None;
            }
            let batch = self.read_batch(at);
            match &batch {
                Ok(b) => at = b.next(),
                Err(_) => done = true,
            }
            Some(batch)
        })
    }

    /// Whether no batch starts at or after `at`.
    fn is_end(&self, at: Position) -> bool {
        at.0 >= self.active_base + self.active_len
            || (at.0 >= self.active_base && self.active_len == SEGMENT_HEADER)
    }

    /// Cuts the log back so that it ends at `at` (a batch's position or a
    /// [`Log::end`] seen before), durably: for batches whose other half — the
    /// metadata committed elsewhere after them — never committed. After a failure
    /// the log refuses everything with [`LogError::Failed`] until opened again.
    pub fn truncate(&mut self, at: Position) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::Failed);
        }
        if at < self.start() && at.0 != self.sealed.first().map_or(self.active_base, |s| s.base) {
            return Err(LogError::NoSuchPosition(at));
        }
        if at > self.end() {
            return Err(LogError::NoSuchPosition(at));
        }
        // From here on the files change: a failure part way leaves the log's idea
        // of them in doubt (which segment is active, which file its direct writes
        // go to, what its last block holds), so the log refuses everything until
        // opened again, as after a failed write.
        self.cut_back(at).inspect_err(|_| self.failed = true)
    }

    /// [`Log::truncate`] once `at` is known to be in the log.
    fn cut_back(&mut self, at: Position) -> Result<(), LogError> {
        let mut removed = false;
        while at.0 < self.active_base {
            let Some(prev) = self.sealed.pop() else { return Err(LogError::NoSuchPosition(at)) };
            fs::remove_file(segment::path(&self.dir, self.active_base))?;
            removed = true;
            self.readers.retain(|(b, _)| *b != prev.base);
            self.active = OpenOptions::new()
                .read(true)
                .write(true)
                .open(segment::path(&self.dir, prev.base))?;
            self.active_base = prev.base;
            self.active_len = prev.end - prev.base;
        }
        if removed {
            // The later segments' removal durable before the segment they follow is
            // cut short: a power cut between the two must not leave a short segment
            // followed by another, which the next open refuses as damage. The other
            // way round, the next open finds the batches being cut still whole, and
            // the caller cuts them again.
            segment::sync_dir(&self.dir)?;
        }
        let keep = (at.0 - self.active_base).max(SEGMENT_HEADER);
        if removed {
            self.blocks = self.blocks.take().and_then(|_| self.open_blocks());
        }
        if let Some(blocks) = &mut self.blocks {
            blocks.forget_tail();
        }
        self.active.set_len(keep)?;
        self.active.sync_all()?;
        self.active_len = keep;
        self.uncached.cut_back(keep / PAGE * PAGE);
        Ok(())
    }

    /// Deletes the sealed segments that end at or before `before`: the history a
    /// retention rule let go. Returns how many went. The active segment stays.
    pub fn remove_before(&mut self, before: Position) -> Result<usize, LogError> {
        let n = self.sealed.partition_point(|s| s.end <= before.0);
        // Oldest first, so that what stays is always whole from its first segment;
        // a segment whose removal failed stays known, and is removed by a later call.
        let mut removed = 0;
        let mut failed = None;
        for s in &self.sealed[..n] {
            self.readers.retain(|(b, _)| *b != s.base);
            match fs::remove_file(segment::path(&self.dir, s.base)) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => removed += 1,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.sealed.drain(..removed);
        if removed > 0 {
            segment::sync_dir(&self.dir)?;
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(removed),
        }
    }

    /// How many segments the log has, the active one included.
    pub fn segments(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Where each segment begins, oldest first, the active one last: a batch at
    /// position `p` lies in the last segment whose start is at or before `p`, and
    /// [`Log::remove_before`] with a segment's start removes every segment before
    /// it. For callers that keep something per segment (the newest time in it).
    pub fn segment_starts(&self) -> impl Iterator<Item = Position> + '_ {
        self.sealed.iter().map(|s| s.base).chain([self.active_base]).map(Position)
    }
}

/// A batch being written into the log's buffer ([`Log::begin`]).
#[derive(Debug)]
pub struct BatchWriter<'a> {
    log: &'a mut Log,
    count: u32,
    /// Where the last record starts in the log's buffer, until it is taken back:
    /// the only record [`BatchWriter::undo`] takes back, as anything else would
    /// leave the header's count and the body disagreeing (a batch that never reads
    /// back).
    last: Option<usize>,
}

impl BatchWriter<'_> {
    /// Appends a record whose data `write` appends to the vector it is given (and
    /// must not otherwise change), and returns the record's offset from the
    /// batch's position: its data is that plus [`RECORD_HEADER`] into the log.
    pub fn record(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<u64, LogError> {
        let count = self.count.checked_add(1).ok_or(LogError::TooLarge(u64::from(u32::MAX)))?;
        let at = frame::push_record(&mut self.log.buf, write)
            .ok_or(LogError::TooLarge(u64::from(u32::MAX)))?;
        self.count = count;
        self.last = Some(at);
        Ok((at - self.log.lead()) as u64)
    }

    /// The data of the last record appended, which [`BatchWriter::record`] put at
    /// `at`; empty for any other `at`.
    pub fn last_data(&self, at: u64) -> &[u8] {
        match self.last {
            Some(last) if (last - self.log.lead()) as u64 == at => {
                &self.log.buf[last + RECORD_HEADER..]
            }
            _ => &[],
        }
    }

    /// Takes back the last record, which [`BatchWriter::record`] put at `at`. Any
    /// other `at` (an earlier record's, or the last one's again) is ignored.
    pub fn undo(&mut self, at: u64) {
        let lead = self.log.lead();
        if let Some(last) = self.last.filter(|&last| (last - lead) as u64 == at) {
            self.log.buf.truncate(last);
            self.count -= 1;
            self.last = None;
        }
    }

    /// Bytes of the batch so far, its header included.
    pub fn len(&self) -> u64 {
        (self.log.buf.len() - self.log.lead()) as u64
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many records it holds.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Appends the batch, numbered `number` with the caller's `flags`, and returns
    /// once it is durable, with its position: as [`Log::commit`].
    pub fn commit(self, number: u64, flags: u32) -> Result<Position, LogError> {
        self.log.write_batch(number, flags, self.count)
    }
}

/// Reads and checks the batch at offset `off` of the segment at `base` whose
/// length is `len`.
pub(crate) fn read_batch_at(
    file: &File,
    seed: u64,
    dir: &Path,
    base: u64,
    off: u64,
    len: u64,
) -> Result<(Header, Vec<u8>), LogError> {
    let mut head = [0u8; HEADER];
    file.read_exact_at(&mut head, off)?;
    let Some(h) = Header::parse(&head) else {
        return Err(damaged(dir, base, off, "no batch starts here"));
    };
    if off + HEADER as u64 + u64::from(h.body_len) > len {
        return Err(damaged(dir, base, off, "a batch runs past the end of its segment"));
    }
    let mut body = vec![0u8; h.body_len as usize];
    file.read_exact_at(&mut body, off + HEADER as u64)?;
    if !h.checks(seed, &head, &body) || !walks(seed, &body, h.count) {
        return Err(damaged(dir, base, off, "a batch fails its checksum"));
    }
    Ok((h, body))
}

/// Whether a checked body holds exactly `count` records that pass their checksums.
fn walks(seed: u64, body: &[u8], count: u32) -> bool {
    let mut n: u32 = 0;
    for r in frame::records(seed, body) {
        if r.is_err() {
            return false;
        }
        n += 1;
    }
    n == count
}

/// Bytes of candidate batches an open may checksum while it tells a torn last
/// write from damage (about a tenth of a second of hashing).
const TAIL_CHECK_BUDGET: u64 = 256 << 20;

/// How far a file's pages were last dropped from the page cache: they are dropped
/// again once [`UNCACHE_STEP`] more may go, one `fadvise` per step rather than one
/// per write or read.
#[derive(Debug, Default)]
pub(crate) struct Uncached(u64);

impl Uncached {
    /// Drops `file`'s pages before `upto` once a step has gathered since the last
    /// drop, or at once if `now`. From the file's start each time, not from the
    /// last drop's end: the kernel drops only the folios wholly inside the range,
    /// and a large folio across that end would stay cached for good.
    pub(crate) fn drop_before(&mut self, file: &File, upto: u64, now: bool) {
        if upto > self.0 && (now || upto >= self.0 + UNCACHE_STEP) {
            uncache(file, 0, upto);
            self.0 = upto;
        }
    }

    /// The file was cut back to `to` bytes: what is written past it again is new.
    pub(crate) fn cut_back(&mut self, to: u64) {
        self.0 = self.0.min(to);
    }
}

/// Advises the kernel that the bytes `from..to` of `file`, written and synced,
/// will not be read soon: their clean pages leave the page cache.
fn uncache(file: &File, from: u64, to: u64) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    if let Some(len) = std::num::NonZeroU64::new(to.saturating_sub(from)) {
        let _ = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let _ = (file, from, to);
}

/// Whether a whole, valid batch starts anywhere in `bytes`; `None` if telling would
/// take more than `budget` bytes of checksums.
fn holds_a_batch(seed: u64, bytes: &[u8], budget: &mut u64) -> Option<bool> {
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], &frame::MAGIC) {
        let at = from + i;
        if let Some(head) = bytes.get(at..at + HEADER)
            && let Ok(head) = <&[u8; HEADER]>::try_from(head)
            && let Some(h) = Header::parse(head)
            && let Some(body) = bytes.get(at + HEADER..at + HEADER + h.body_len as usize)
        {
            *budget = budget.checked_sub(HEADER as u64 + u64::from(h.body_len))?;
            if h.checks(seed, head, body) {
                return Some(true);
            }
        }
        from = at + 1;
    }
    Some(false)
}

/// The first place `needle` occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads as much of `buf` as the file holds from `at`; returns how much.
pub(crate) fn read_up_to(file: &File, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A damage report: the segment and offset, and what is wrong there.
pub(crate) fn damaged(dir: &Path, base: u64, offset: u64, what: &str) -> LogError {
    LogError::Damaged(format!("{} at offset {offset}: {what}", segment::path(dir, base).display()))
}

/// A seed no one outside can guess: the standard library's per-process random
/// keys, mixed with the time.
fn new_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}
