//! Conversation events kept in an append-only log (`baatkaro-eventlog`) beside the
//! database, instead of one SQLite row each.
//!
//! Profiles of small groups and private pairs put more than half of the server in
//! SQLite's B-tree inserts: two rows per SEND (the event and its idempotency key).
//! Here a SEND costs one record appended to the log, and the log's one write and
//! `fdatasync` per group commit. What SQLite keeps of the events is an index built
//! in batches:
//!
//! - **Records.** An event record holds the conversation key, the sequence number,
//!   the time and the frame that was fanned out; a key record holds a send's
//!   idempotency key (key_blocks.rs), and is written again as part of a block, to
//!   the key log (key_log.rs; to SQLite in a store of schema 11).
//!   A batch's event records are ordered by conversation, so that each
//!   conversation's events of a batch lie together.
//! - **Chunks.** `event_chunks` has a row for each run of a conversation's
//!   consecutive events lying together in the log, up to [`CHUNK_BYTES`]: a page of
//!   history is a few reads of a few kilobytes. Chunks and keys of the batches
//!   committed since the last flush wait in memory ([`EventLog::pending`]), at most
//!   [`FLUSH_AT`] of them, and go to SQLite in one transaction (the keys, as one
//!   block, to the key log just before it), with the position the log is indexed
//!   up to (`meta.log_indexed`).
//! - **Order of commit.** A batch's records are made durable in the log first;
//!   then, if the batch also writes metadata (accounts, groups, files, markers),
//!   its SQLite transaction commits, and it always flushes: so `log_indexed` is the
//!   end of the last batch whose metadata committed. Such a batch is flagged
//!   [`FLAG_META`] in the log. At load, every batch past `log_indexed` is read back
//!   into memory, and a flagged one there is a batch whose metadata never committed
//!   (a crash between the two, or a failed transaction): the log is cut back to
//!   it, and the batch is gone from both halves, as it was never acknowledged.
//! - **Parts.** A group commit larger than half a segment goes to the log as
//!   several batches; every one but the last is flagged [`FLAG_MORE`]. A group
//!   commit is acknowledged only once all its parts are durable, and its keys are
//!   written after its events, so a start also cuts a run of parts that a crash or
//!   a failed write left without its last one: else events would be kept without
//!   the keys that make a retried send the same send.
//! - **Retention and deletion.** A conversation keeps only its newest `history`
//!   events when the operator says so: `event_floors` holds, per conversation, the
//!   sequence number at and below which events are gone, and chunks wholly below
//!   it are deleted; a deleted group's chunks go with it. A batch committed with a
//!   limit ends with a record of it, so that the floors it moved in memory are
//!   moved again when a start reads it back. The log's segments are
//!   removed once no chunk points into them.

use std::collections::HashMap;
use std::path::Path;

use baatkaro_eventlog::{Log, LogError, Options, Position, RECORD_HEADER};
use baatkaro_proto::Seq;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::checksum::RowSum;
use super::key_blocks::{self, KeyBlock, bad, take_str, take_u64};
use super::{ConvKey, EventRecord, StoreError, Write};

/// The directory of the log, inside the data directory.
pub(super) const LOG_DIR: &str = "events";
/// The event log's segment size unless the operator says otherwise.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// The smallest segment: larger than any one event.
pub const MIN_SEGMENT_BYTES: u64 = 1 << 20;
/// A batch flag: the batch also wrote to SQLite.
pub(super) const FLAG_META: u32 = 1;
/// A batch flag: more parts of the same group commit follow this one.
pub(super) const FLAG_MORE: u32 = 2;
/// The most bytes of records one chunk spans.
pub(super) const CHUNK_BYTES: u64 = 64 << 10;
/// Chunks and keys in memory that make a flush due.
pub(super) const FLUSH_AT: usize = 8192;

const EVENT: u8 = 1;
const KEY: u8 = key_blocks::KEY;
/// The record that ends a batch committed with a `history` limit, so that a start
/// moves the retention floors of the batches it reads back as the commit did.
const RETAIN: u8 = 3;

/// The schema step that adds the index: see the module's documentation.
pub(super) const MIGRATION: &str = "CREATE TABLE event_chunks (
         conv TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
         pos INTEGER NOT NULL, len INTEGER NOT NULL, row_sum INTEGER,
         PRIMARY KEY (conv, first_seq)) WITHOUT ROWID;
     CREATE INDEX event_chunks_by_pos ON event_chunks (pos);
     CREATE TABLE event_floors (
         conv TEXT PRIMARY KEY, floor INTEGER NOT NULL, row_sum INTEGER) WITHOUT ROWID;";

/// What undoes [`MIGRATION`], for tests that make an older server's database.
pub(super) const UNDO: &str = "DROP TABLE event_chunks; DROP TABLE event_floors;
     DELETE FROM meta WHERE key = 'log_indexed';";

/// A run of one conversation's consecutive events lying together in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chunk {
    first: Seq,
    last: Seq,
    pos: u64,
    len: u64,
}

/// The log side of the store.
#[derive(Debug)]
pub(super) struct EventLog {
    log: Log,
    /// Chunks committed to the log and not yet to SQLite, each conversation's in
    /// sequence order.
    pending: HashMap<ConvKey, Vec<Chunk>>,
    pending_chunks: usize,
    /// Keys committed to the log and not yet to SQLite, in order: their records.
    pending_keys: KeyBlock,
    /// Retention floors moved since the last flush.
    floors: HashMap<ConvKey, Seq>,
    /// The number of the last batch written.
    number: u64,
    /// Indices of the batch's writes in the order their records go.
    order: Vec<usize>,
    /// The records of the part being written: which of the batch's, and their
    /// offset and length in the part; kept to reuse the memory.
    placed: Vec<(usize, u64, u64)>,
    /// A batch larger than this goes to the log in parts of at most this size.
    part_bytes: u64,
}

pub(super) fn log_error(e: LogError) -> StoreError {
    match e {
        LogError::Damaged(why) => StoreError::Corrupt(why),
        LogError::Full(e) => StoreError::Full(e.to_string()),
        LogError::Io(e) => StoreError::Io(e),
        // Only the index gives positions to read: one outside the log is damage.
        LogError::NoSuchPosition(at) => {
            StoreError::Corrupt(format!("an event index entry points outside the event log ({at})"))
        }
        other => StoreError::Io(std::io::Error::other(other.to_string())),
    }
}

/// Opens the `baatkaro-eventlog` log at `path` (the event log or the key log, named
/// `what` in the warning), saying so when its open cut a torn last write.
pub(super) fn open_log(
    path: &Path,
    options: Options,
    what: &str,
) -> Result<(Log, baatkaro_eventlog::Recovery), StoreError> {
    let (log, recovery) = Log::open(path, options).map_err(log_error)?;
    if let Some(cut) = &recovery.cut {
        tracing::warn!(
            segment = %cut.segment.display(),
            at = cut.at.0,
            bytes = cut.bytes,
            reason = cut.reason,
            "cut a torn write from the end of the {what} (it was never acknowledged)"
        );
    }
    Ok((log, recovery))
}

impl EventLog {
    /// Opens the log in the data directory `dir` (a torn last write is cut).
    pub(super) fn open(dir: &Path, options: Options) -> Result<EventLog, StoreError> {
        let (log, recovery) = open_log(&dir.join(LOG_DIR), options, "event log")?;
        Ok(EventLog {
            log,
            pending: HashMap::new(),
            pending_chunks: 0,
            pending_keys: KeyBlock::default(),
            floors: HashMap::new(),
            number: recovery.last_number.unwrap_or(0),
            order: Vec::new(),
            placed: Vec::new(),
            part_bytes: options.segment_bytes / 2,
        })
    }

    /// Whether enough waits in memory that the next commit should flush it.
    pub(super) fn flush_due(&self) -> bool {
        self.pending_chunks + self.pending_keys.len() >= FLUSH_AT
    }

    /// Appends the events and keys of `writes` to the log, durably, and indexes
    /// them in memory. `meta`: the batch also commits metadata to SQLite, after
    /// this. `history` > 0 keeps that many newest events per conversation.
    pub(super) fn commit(
        &mut self,
        writes: &[Write],
        meta: bool,
        history: u64,
    ) -> Result<(), StoreError> {
        self.order.clear();
        self.order.extend(
            writes.iter().enumerate().filter(|(_, w)| matches!(w, Write::Event(_))).map(|(i, _)| i),
        );
        if self.order.is_empty() && !writes.iter().any(|w| matches!(w, Write::SendKey { .. })) {
            return Ok(());
        }
        // Each conversation's events together; a stable sort keeps their order. (By
        // reference: a key by value copied both conversations at every comparison.)
        let conv_of = |i: usize| match &writes[i] {
            Write::Event(r) => Some(&r.conv),
            _ => None,
        };
        self.order.sort_by(|&a, &b| conv_of(a).cmp(&conv_of(b)));
        let events = self.order.len();
        self.order.extend(
            writes
                .iter()
                .enumerate()
                .filter(|(_, w)| matches!(w, Write::SendKey { .. }))
                .map(|(i, _)| i),
        );
        let writes_in_log = self.order.len();
        let retain = history > 0 && events > 0;
        let total = writes_in_log + usize::from(retain);
        // Every part of a batch whose metadata commits after it is flagged: a
        // restart cuts them all if that commit never happened.
        let flags = if meta { FLAG_META } else { 0 };
        // A failure leaves what was written of the batch indexed in memory: the
        // store takes no commit until a load reads the log back (sqlite.rs).
        self.write_parts(writes, events, total, flags, history)
    }

    /// Writes records `0..total` of the batch (`order`'s, then a RETAIN record) in
    /// parts of at most `part_bytes`, each encoded straight into the log's buffer,
    /// and indexes them in memory.
    fn write_parts(
        &mut self,
        writes: &[Write],
        events: usize,
        total: usize,
        flags: u32,
        history: u64,
    ) -> Result<(), StoreError> {
        let EventLog {
            log,
            pending,
            pending_chunks,
            pending_keys,
            floors,
            number,
            order,
            placed,
            part_bytes,
        } = self;
        let encode = |k: usize, out: &mut Vec<u8>| match order.get(k).map(|&i| &writes[i]) {
            Some(Write::Event(r)) => encode_event(out, r),
            Some(key) => key_blocks::encode(out, key),
            None => {
                out.push(RETAIN);
                out.extend_from_slice(&history.to_le_bytes());
            }
        };
        let mut k = 0;
        while k < total {
            let mut part = log.begin().map_err(log_error)?;
            placed.clear();
            while k < total {
                let at = part.record(|out| encode(k, out)).map_err(log_error)?;
                // A part holds as many records as fit in `part_bytes`, one at least.
                if part.count() > 1 && part.len() > *part_bytes {
                    part.undo(at);
                    break;
                }
                if let Some(Write::SendKey { time, .. }) = order.get(k).map(|&i| &writes[i]) {
                    pending_keys.push(part.last_data(at), *time);
                }
                placed.push((k, at, part.len() - at));
                k += 1;
            }
            *number += 1;
            let more = if k < total { FLAG_MORE } else { 0 };
            let at = part.commit(*number, flags | more).map_err(log_error)?;
            // The events come a conversation at a time (sorted by it in `commit`):
            // its chunks are looked up once for each run, not once for each event.
            let event = |&(k, offset, len): &(usize, u64, u64)| match &writes[order[k]] {
                Write::Event(r) => Some((r, at.0 + offset, len)),
                _ => None,
            };
            let mut events_placed =
                placed.iter().filter(|(k, ..)| *k < events).filter_map(event).peekable();
            while let Some((r, pos, len)) = events_placed.next() {
                let chunks = pending.entry(r.conv).or_default();
                add_chunk(chunks, pending_chunks, r.seq, pos, len);
                let mut newest = r.seq;
                while let Some((next, pos, len)) = events_placed.next_if(|(n, ..)| n.conv == r.conv)
                {
                    add_chunk(chunks, pending_chunks, next.seq, pos, len);
                    newest = next.seq;
                }
                if history > 0 && newest > history {
                    floors.insert(r.conv, newest - history);
                }
            }
        }
        Ok(())
    }

    /// The keys waiting for SQLite: the caller writes them in the flush's
    /// transaction, and [`EventLog::flushed`] lets them go.
    pub(super) fn keys(&self) -> &KeyBlock {
        &self.pending_keys
    }

    /// Writes the chunks and floors in memory, and where the log is indexed up to,
    /// in the flush's transaction. [`EventLog::flushed`] after it commits.
    pub(super) fn flush(
        &mut self,
        tx: &Transaction<'_>,
        rs: &mut RowSum,
    ) -> Result<(), StoreError> {
        let mut insert = tx.prepare_cached(
            "INSERT INTO event_chunks (conv, first_seq, last_seq, pos, len, row_sum)
             VALUES (?, ?, ?, ?, ?, ?)",
        )?;
        for (conv, chunks) in &self.pending {
            let conv = conv.to_db();
            for c in chunks {
                let (first, last, pos, len) =
                    (c.first as i64, c.last as i64, c.pos as i64, c.len as i64);
                let sum = rs.start().text(&conv).int(first).int(last).int(pos).int(len).digest();
                insert.execute(params![conv, first, last, pos, len, sum])?;
            }
        }
        for (conv, floor) in &self.floors {
            let (conv, floor) = (conv.to_db(), *floor as i64);
            tx.prepare_cached("DELETE FROM event_chunks WHERE conv = ? AND last_seq <= ?")?
                .execute(params![conv, floor])?;
            let sum = rs.start().text(&conv).int(floor).digest();
            tx.prepare_cached(
                "INSERT OR REPLACE INTO event_floors (conv, floor, row_sum) VALUES (?, ?, ?)",
            )?
            .execute(params![conv, floor, sum])?;
        }
        set_indexed(tx, rs, self.log.end().0)
    }

    /// After the flush's transaction committed: what was in memory is in SQLite.
    /// The flush is durable whatever happens here, so nothing here fails it.
    pub(super) fn flushed(&mut self, conn: &Connection) {
        self.pending.clear();
        self.pending_chunks = 0;
        self.pending_keys.clear();
        self.floors.clear();
        match self.remove_unused(conn) {
            Ok(0) => {}
            Ok(removed) => {
                tracing::debug!(removed, "removed event log segments no event is read from")
            }
            // Only space: tried again at the next flush.
            Err(e) => tracing::warn!(error = %e, "could not remove unused event log segments"),
        }
    }

    /// Removes the segments that no chunk points into any more (retention, deleted
    /// groups); never past what is indexed, which a restart reads back.
    fn remove_unused(&mut self, conn: &Connection) -> Result<usize, StoreError> {
        if self.log.segments() == 1 {
            return Ok(0);
        }
        let min: Option<i64> = conn
            .prepare_cached("SELECT MIN(pos) FROM event_chunks")?
            .query_row([], |r| r.get(0))?;
        let keep = min.map_or(self.log.end().0, |p| p as u64);
        self.log.remove_before(Position(keep)).map_err(log_error)
    }

    /// Deletes a conversation's chunks and floor (a deleted group), in memory too.
    pub(super) fn forget(&mut self, tx: &Transaction<'_>, conv: ConvKey) -> Result<(), StoreError> {
        if let Some(chunks) = self.pending.remove(&conv) {
            self.pending_chunks -= chunks.len();
        }
        self.floors.remove(&conv);
        let conv = conv.to_db();
        tx.prepare_cached("DELETE FROM event_chunks WHERE conv = ?")?.execute([&conv])?;
        tx.prepare_cached("DELETE FROM event_floors WHERE conv = ?")?.execute([&conv])?;
        Ok(())
    }

    /// Reads back what the log holds past `meta.log_indexed`, after the last
    /// flush: its chunks into memory, and its keys stored at `keys_since` or later
    /// and newest sequence numbers for the snapshot (`on_key`, `on_latest`). A
    /// batch flagged [`FLAG_META`] there never committed its metadata: the log is
    /// cut back to it (`read_only`: it is only left unread).
    pub(super) fn replay(
        &mut self,
        conn: &Connection,
        keys_since: u64,
        read_only: bool,
        mut on_key: impl FnMut(&Write),
        mut on_latest: impl FnMut(ConvKey, Seq),
    ) -> Result<(), StoreError> {
        self.pending.clear();
        self.pending_chunks = 0;
        self.pending_keys.clear();
        self.floors.clear();
        let indexed = indexed(conn)?.unwrap_or(0);
        if indexed > self.log.end().0 {
            // The database points past the log's end: acknowledged events are gone.
            return Err(StoreError::Corrupt(format!(
                "the event log ends at {} but the database says it is indexed up to {indexed}: \
                 the log lost what was acknowledged, or is not this database's",
                self.log.end()
            )));
        }
        // Segments go only once no chunk points into them (`remove_unused`): a chunk
        // before the log's beginning is history whose segment is missing.
        let oldest: Option<i64> = conn
            .prepare_cached("SELECT MIN(pos) FROM event_chunks")?
            .query_row([], |r| r.get(0))?;
        if let Some(pos) = oldest
            && (pos as u64) < self.log.start().0
        {
            return Err(StoreError::Corrupt(format!(
                "the event log begins at {} but the database has events stored at {pos}: a \
                 segment of the log is missing",
                self.log.start()
            )));
        }
        let EventLog { log, pending, pending_chunks, pending_keys, floors, .. } = self;
        let mut cut = None;
        // The first part of a group commit whose last part is not read yet, and
        // its records so far: indexed only once that last part is (FLAG_MORE).
        let mut first_part: Option<Position> = None;
        let mut found = Vec::new();
        let mut encoded = Vec::new();
        for batch in log.scan(Position(indexed)) {
            let batch = batch.map_err(log_error)?;
            if batch.flags & FLAG_META != 0 {
                cut = Some(first_part.unwrap_or(batch.position));
                break;
            }
            first_part.get_or_insert(batch.position);
            for (pos, data) in batch.records() {
                found.push((pos.0, decode(data)?));
            }
            if batch.flags & FLAG_MORE != 0 {
                continue;
            }
            first_part = None;
            // The batch's `history`, as its commit moved the floors.
            let history = found.iter().find_map(|(_, r)| match r {
                Decoded::Retain(h) => Some(*h),
                _ => None,
            });
            for (pos, record) in found.drain(..) {
                match record {
                    Decoded::Event { conv, seq, len } => {
                        index_into(pending, pending_chunks, conv, seq, pos, len);
                        on_latest(conv, seq);
                        if let Some(h) = history
                            && seq > h
                        {
                            floors.insert(conv, seq - h);
                        }
                    }
                    Decoded::Retain(_) => {}
                    Decoded::Key(key) => {
                        // Older keys are expired, as the load expires those of the
                        // blocks: not written to a block, they never come back.
                        if let Write::SendKey { time, .. } = key
                            && time >= keys_since
                        {
                            on_key(&key);
                            encoded.clear();
                            key_blocks::encode(&mut encoded, &key);
                            pending_keys.push(&encoded, time);
                        }
                    }
                }
            }
        }
        if let Some(cut) = cut.or(first_part).filter(|_| !read_only) {
            tracing::warn!(
                at = cut.0,
                "cut the event log back to a batch that never wholly committed (its other \
                 half, in the database, or its last part is missing); it was never acknowledged"
            );
            self.log.truncate(cut).map_err(log_error)?;
        }
        Ok(())
    }

    /// Cuts the log back to where it is indexed: before a migration starts again.
    pub(super) fn cut_to_indexed(&mut self, conn: &Connection) -> Result<(), StoreError> {
        let indexed = indexed(conn)?.unwrap_or(0);
        if self.log.end().0 > indexed {
            self.log.truncate(Position(indexed)).map_err(log_error)?;
        }
        Ok(())
    }

    /// Appends events read from the old `events` table (a store from before the
    /// log), indexing them in memory; the caller flushes.
    pub(super) fn append_migrated(&mut self, events: &[EventRecord]) -> Result<(), StoreError> {
        let writes: Vec<Write> = events.iter().cloned().map(Write::Event).collect();
        self.commit(&writes, false, 0)
    }

    /// The retention floor of `conv`: its events numbered at or below it are gone.
    fn floor(&self, conn: &Connection, conv: &str, key: ConvKey) -> Result<Seq, StoreError> {
        if let Some(f) = self.floors.get(&key) {
            return Ok(*f);
        }
        let row: Option<(i64, Option<i64>)> = conn
            .prepare_cached("SELECT floor, row_sum FROM event_floors WHERE conv = ?")?
            .query_row([conv], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            None => Ok(0),
            Some((floor, sum)) => {
                if sum != Some(RowSum::new().text(conv).int(floor).digest()) {
                    return Err(StoreError::Corrupt(
                        "a retention floor (table event_floors) fails its checksum".into(),
                    ));
                }
                Ok(floor as u64)
            }
        }
    }

    /// The events of `key` numbered in `(after, upto]`, oldest first, at most
    /// `limit` of them: the oldest ones when `oldest_first`, else the newest. And
    /// the oldest sequence number still kept.
    pub(super) fn events(
        &mut self,
        conn: &Connection,
        key: ConvKey,
        after: Seq,
        upto: Seq,
        limit: usize,
        oldest_first: bool,
    ) -> Result<(Vec<Vec<u8>>, Option<Seq>), StoreError> {
        let conv = key.to_db();
        let floor = self.floor(conn, &conv, key)?;
        let after = after.max(floor);
        let (lo, hi) = (after.min(i64::MAX as u64) as i64, upto.min(i64::MAX as u64) as i64);
        // The chunks that overlap the range, in the order they are read: stored ones
        // are older than those in memory.
        let pending: Vec<Chunk> = self
            .pending
            .get(&key)
            .map(|c| c.iter().filter(|c| c.last > after && c.first <= upto).copied().collect())
            .unwrap_or_default();
        let mut frames: Vec<(Seq, Vec<u8>)> = Vec::new();
        let sql = if oldest_first {
            "SELECT first_seq, last_seq, pos, len, row_sum FROM event_chunks
             WHERE conv = ? AND last_seq > ? AND first_seq <= ? ORDER BY first_seq"
        } else {
            "SELECT first_seq, last_seq, pos, len, row_sum FROM event_chunks
             WHERE conv = ? AND last_seq > ? AND first_seq <= ? ORDER BY first_seq DESC"
        };
        let mut st = conn.prepare_cached(sql)?;
        let mut rows = st.query(params![conv, lo, hi])?;
        let mut stored = Vec::new();
        let mut sum = RowSum::new();
        let collect = |log: &mut Log, c: Chunk, frames: &mut Vec<(Seq, Vec<u8>)>| {
            read_chunk(log, &key, c, after, upto, frames)
        };
        if !oldest_first {
            for c in pending.iter().rev() {
                collect(&mut self.log, *c, &mut frames)?;
                if frames.len() >= limit {
                    break;
                }
            }
        }
        while frames.len() < limit
            && let Some(r) = rows.next()?
        {
            let (first, last, pos, len): (i64, i64, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let stored_sum: Option<i64> = r.get(4)?;
            if stored_sum
                != Some(sum.start().text(&conv).int(first).int(last).int(pos).int(len).digest())
            {
                return Err(StoreError::Corrupt(format!(
                    "an event chunk (sequence numbers {first} to {last}, table event_chunks) fails its checksum"
                )));
            }
            let c =
                Chunk { first: first as u64, last: last as u64, pos: pos as u64, len: len as u64 };
            stored.push(c);
            collect(&mut self.log, c, &mut frames)?;
        }
        if oldest_first {
            for c in &pending {
                if frames.len() >= limit {
                    break;
                }
                collect(&mut self.log, *c, &mut frames)?;
            }
        }
        drop(rows);
        frames.sort_by_key(|(seq, _)| *seq);
        if frames.len() > limit {
            if oldest_first {
                frames.truncate(limit);
            } else {
                frames.drain(..frames.len() - limit);
            }
        }
        let oldest = self.oldest(conn, &conv, key, floor)?;
        Ok((frames.into_iter().map(|(_, f)| f).collect(), oldest))
    }

    /// The oldest sequence number of `key` still kept.
    fn oldest(
        &self,
        conn: &Connection,
        conv: &str,
        key: ConvKey,
        floor: Seq,
    ) -> Result<Option<Seq>, StoreError> {
        let stored: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(first_seq) FROM event_chunks WHERE conv = ? AND last_seq > ?",
            )?
            .query_row(params![conv, floor.min(i64::MAX as u64) as i64], |r| r.get(0))?;
        let pending = self
            .pending
            .get(&key)
            .and_then(|c| c.iter().filter(|c| c.last > floor).map(|c| c.first).min());
        Ok(match (stored.map(|s| s as u64), pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|s| s.max(floor + 1)))
    }
}

impl EventLog {
    /// Every event kept, as records for table `events`, each conversation's in
    /// order: how tests take a store back to before the log.
    pub(super) fn dump(&mut self, conn: &Connection) -> Result<Vec<EventRecord>, StoreError> {
        let mut chunks = Vec::new();
        let mut st =
            conn.prepare("SELECT conv, pos, len FROM event_chunks ORDER BY conv, first_seq")?;
        for row in st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })? {
            let (conv, pos, len) = row?;
            let conv = ConvKey::from_db(&conv).ok_or_else(bad)?;
            chunks.push((conv, pos as u64, len as u64));
        }
        let mut out = Vec::new();
        for (conv, pos, len) in chunks {
            let floor = self.floor(conn, &conv.to_db(), conv)?;
            let span = self.log.read_span(Position(pos), len).map_err(log_error)?;
            for (_, data) in span.records() {
                let (_, seq, time, frame) = decode_event(data)?;
                if seq > floor {
                    out.push(EventRecord { conv, seq, time, frame: frame.to_vec().into() });
                }
            }
        }
        Ok(out)
    }
}

/// Reads the events of a chunk numbered in `(after, upto]` into `out`.
fn read_chunk(
    log: &mut Log,
    key: &ConvKey,
    c: Chunk,
    after: Seq,
    upto: Seq,
    out: &mut Vec<(Seq, Vec<u8>)>,
) -> Result<(), StoreError> {
    let span = log.read_span(Position(c.pos), c.len).map_err(log_error)?;
    for (_, data) in span.records() {
        match decode_event(data)? {
            (conv, seq, _, frame) if conv == *key => {
                if seq > after && seq <= upto {
                    out.push((seq, frame.to_vec()));
                }
            }
            _ => {
                return Err(StoreError::Corrupt(
                    "an event chunk points at another conversation's event".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Adds an event at `pos` to the chunks in memory (`count`: how many there are).
fn index_into(
    pending: &mut HashMap<ConvKey, Vec<Chunk>>,
    count: &mut usize,
    conv: ConvKey,
    seq: Seq,
    pos: u64,
    len: u64,
) {
    add_chunk(pending.entry(conv).or_default(), count, seq, pos, len);
}

/// Adds an event at `pos` to its conversation's chunks in memory (`count`: how
/// many chunks there are in all).
fn add_chunk(chunks: &mut Vec<Chunk>, count: &mut usize, seq: Seq, pos: u64, len: u64) {
    if let Some(c) = chunks.last_mut()
        && c.last + 1 == seq
        && c.pos + c.len == pos
        && c.len + len <= CHUNK_BYTES
    {
        c.last = seq;
        c.len += len;
        return;
    }
    chunks.push(Chunk { first: seq, last: seq, pos, len });
    *count += 1;
}

/// Sets `meta.log_indexed` in `tx`.
pub(super) fn set_indexed(
    tx: &Transaction<'_>,
    rs: &mut RowSum,
    end: u64,
) -> Result<(), StoreError> {
    let end = end as i64;
    let sum = rs.start().text("log_indexed").int(end).digest();
    tx.prepare_cached(
        "INSERT OR REPLACE INTO meta (key, value, row_sum) VALUES ('log_indexed', ?, ?)",
    )?
    .execute(params![end, sum])?;
    Ok(())
}

/// `meta.log_indexed`: where the log is indexed up to; `None` where the events are
/// still in SQLite (a store that has not moved them).
pub(super) fn indexed(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT value, row_sum FROM meta WHERE key = 'log_indexed'")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((v, sum)) if sum == Some(RowSum::new().text("log_indexed").int(v).digest()) => {
            Ok(Some(v as u64))
        }
        Some(_) => Err(StoreError::Corrupt("meta log_indexed fails its checksum".into())),
    }
}

/// An event record: `1`, the conversation key's length and bytes, the sequence
/// number and time (little-endian u64), the frame.
fn encode_event(out: &mut Vec<u8>, r: &EventRecord) {
    out.push(EVENT);
    // Written in place, as `ConvKey::to_db` spells it: no string per event.
    with_length(out, |out| r.conv.write_db(out));
    out.extend_from_slice(&r.seq.to_le_bytes());
    out.extend_from_slice(&r.time.to_le_bytes());
    out.extend_from_slice(&r.frame);
}

/// Appends what `write` writes, after a byte that holds its length: names and
/// conversation keys, all shorter than 256 bytes.
fn with_length(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.push(0);
    write(out);
    out[at] = (out.len() - at - 1) as u8;
}

/// A record read back.
enum Decoded {
    Event { conv: ConvKey, seq: Seq, len: u64 },
    Key(Write),
    Retain(u64),
}

/// An event record's conversation, sequence number, time and frame.
fn decode_event(data: &[u8]) -> Result<(ConvKey, Seq, u64, &[u8]), StoreError> {
    let (&kind, mut b) = data.split_first().ok_or_else(bad)?;
    if kind != EVENT {
        return Err(bad());
    }
    let conv = ConvKey::from_db(take_str(&mut b)?).ok_or_else(bad)?;
    let seq = take_u64(&mut b)?;
    let time = take_u64(&mut b)?;
    Ok((conv, seq, time, b))
}

fn decode(data: &[u8]) -> Result<Decoded, StoreError> {
    match data.first() {
        Some(&EVENT) => {
            let (conv, seq, _, _) = decode_event(data)?;
            Ok(Decoded::Event { conv, seq, len: (RECORD_HEADER + data.len()) as u64 })
        }
        Some(&KEY) => Ok(Decoded::Key(key_blocks::decode(data)?)),
        Some(&RETAIN) => {
            let mut b = &data[1..];
            let history = take_u64(&mut b)?;
            if !b.is_empty() {
                return Err(bad());
            }
            Ok(Decoded::Retain(history))
        }
        _ => Err(bad()),
    }
}
