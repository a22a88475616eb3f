//! Idempotency keys kept in an append-only log of their own (`keys/` in the data
//! directory, a second `baatkaro_eventlog::Log`), one batch per flush of the event
//! log's index, instead of one SQLite row per flush (key_blocks.rs, schema 11).
//!
//! Profiles at high load had the insert and COMMIT of those half-megabyte rows at
//! 4–7 % of the server: overflow pages, a write per 4 KiB page of SQLite's own
//! log, then the checkpoint writing them again. Here a flush's keys are one
//! record (a block, as key_blocks.rs encodes it), one write and one `fdatasync`.
//!
//! - **Order of commit.** At a flush the key log's batch is made durable first;
//!   then the database transaction records in `meta.keys_logged` where the key
//!   log ends after it. At open (and at a load after a failed commit) a key log
//!   that ends past `keys_logged` is cut back to it: those keys are still in the
//!   event log past `log_indexed`, and are read back and written again by the
//!   next flush. A key log that ends before `keys_logged` lost what the database
//!   says it holds: the store refuses to start.
//! - **Expiry.** An expiry cut (`KeysExpired`, or a start's `keys_since`) applies
//!   to the keys stored before it, as it did to the blocks that existed then: it
//!   is kept in `key_floors` as the log's end at the cut and the time below which
//!   the keys before that end are gone, in the cut's transaction. A start leaves
//!   those keys out, so a later start with an earlier cut does not find them
//!   again, and keys stored after a cut are judged by the cuts after them (a cut
//!   past every key, or a clock set back, expires nothing written later). A cut
//!   replaces every earlier one it covers, so the table holds one row while the
//!   cuts go forward, and one more each time a cut goes back. Whole segments
//!   whose newest key is below their floor are removed; a segment with keys on
//!   both sides stays on disk, filtered at load. What is kept in memory for it is
//!   one time per segment.
//! - **Removal.** Before expired segments are removed, the database records where
//!   the log may then begin (`meta.keys_first`, in a transaction of its own). A
//!   log that begins past it lost segments nothing expired: the store refuses to
//!   start, as it does for a log that ends short. One that begins before it had
//!   its removal cut short, and the next expiry finishes it.
//! - **Reading.** A start reads the log from its first batch and keeps each user's
//!   newest `keys_per_user` keys (SPEC.md 5.2, `key-count`): memory bounded by
//!   that, not by how many keys the log holds.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use baatkaro_eventlog::{Log, Options, Position};
use rusqlite::{Connection, OptionalExtension, params};

use super::checksum::RowSum;
use super::events::{log_error, open_log};
use super::key_blocks::{self, KeyBlock, KeyRow};
use super::{StoreError, Write};

/// The directory of the key log, inside the data directory.
pub(super) const KEY_LOG_DIR: &str = "keys";

/// The key log's segment size: smaller than the event log's, so that expiry lets
/// disk go in steps of a few hours of keys at high load, not days.
pub(super) const KEY_SEGMENT_BYTES: u64 = 16 << 20;

/// The schema step of the key log: the expiry cuts; the keys of the blocks are
/// moved at open ([`KeyLog::move_blocks`]).
pub(super) const MIGRATION: &str =
    "CREATE TABLE key_floors (pos INTEGER PRIMARY KEY, floor INTEGER NOT NULL, row_sum INTEGER);
     DELETE FROM meta WHERE key = 'keys_logged';";

/// What undoes [`MIGRATION`] once [`KeyLog::restore_blocks`] put the keys back.
pub(super) const UNDO: &str = "DROP TABLE key_floors; DELETE FROM meta WHERE key = 'keys_logged';";

/// The schema step that records where the key log may begin (`meta.keys_first`,
/// see Removal above). A version of its own: a build from before it, which would
/// remove expired segments without moving `keys_first`, refuses the store as too
/// new, rather than leaving one that a later start refuses as missing a segment.
/// A store from before it is taken as its key log begins.
pub(super) const MIGRATION_FIRST: &str = "DELETE FROM meta WHERE key = 'keys_first';";

/// What undoes [`MIGRATION_FIRST`].
pub(super) const UNDO_FIRST: &str = "DELETE FROM meta WHERE key = 'keys_first';";

/// What the database says of the key log ([`KeyLog::judge`]).
struct Judged {
    /// Where the log begins, to be recorded: nothing said so yet.
    record_first: Option<u64>,
    /// Where the log is to be cut back to, if it runs past what was recorded.
    cut_to: Option<Cut>,
}

/// A cut the database calls for.
struct Cut {
    at: Position,
    /// A flush wrote past what its transaction recorded (said in the log), rather
    /// than nothing being recorded at all.
    unrecorded: bool,
}

/// The key log side of the store.
#[derive(Debug)]
pub(super) struct KeyLog {
    log: Log,
    dir: PathBuf,
    /// The number of the last batch written.
    number: u64,
    /// Per segment, oldest first: its start and the time of its newest key.
    newest: Vec<(u64, u64)>,
    /// The expiry cuts as last read or made: the log's end at the cut and the
    /// time below which the keys before it are gone; ends ascending, times
    /// descending (a cut replaces those it covers).
    floors: Vec<(u64, u64)>,
    /// The most bytes of keys one batch holds (a quarter segment).
    piece_bytes: usize,
}

impl KeyLog {
    /// Opens the key log in the data directory `dir`, written as `options` says,
    /// with segments of at most their `segment_bytes` (a torn last write is cut).
    pub(super) fn open(dir: &Path, options: Options) -> Result<KeyLog, StoreError> {
        let segment_bytes = options.segment_bytes.min(KEY_SEGMENT_BYTES);
        let path = dir.join(KEY_LOG_DIR);
        let (log, recovery) = open_log(&path, Options { segment_bytes, ..options }, "key log")?;
        Ok(KeyLog {
            log,
            dir: path,
            number: recovery.last_number.unwrap_or(0),
            newest: Vec::new(),
            floors: Vec::new(),
            piece_bytes: (segment_bytes / 4) as usize,
        })
    }

    /// Makes the log end where the database says (`meta.keys_logged`): cuts what a
    /// flush wrote and never recorded, refuses a log that lost what it recorded.
    /// Refuses as well a log that begins past where the database says it may
    /// (`meta.keys_first`), and records where it begins if nothing says so yet (a
    /// store from before that was recorded).
    pub(super) fn reconcile(
        &mut self,
        conn: &Connection,
        rs: &mut RowSum,
    ) -> Result<(), StoreError> {
        let judged = self.judge(conn)?;
        if let Some(first) = judged.record_first {
            write_meta(conn, rs, "keys_first", first)?;
        }
        match judged.cut_to {
            Some(Cut { at, unrecorded: true }) => {
                tracing::warn!(
                    at = at.0,
                    "cut the key log back to where the database says it ends (a flush whose \
                     database transaction never committed; its keys are in the event log)"
                );
                self.log.truncate(at).map_err(log_error)
            }
            Some(Cut { at, unrecorded: false }) => self.log.truncate(at).map_err(log_error),
            None => Ok(()),
        }
    }

    /// What [`KeyLog::reconcile`] would do, without doing it: the same refusals,
    /// and where it would record the log's beginning and cut it back to.
    fn judge(&mut self, conn: &Connection) -> Result<Judged, StoreError> {
        let first = self.log.segment_starts().next().map_or(0, |p| p.0);
        let record_first = match read_meta(conn, "keys_first")? {
            Some(may_begin) if first > may_begin => {
                return Err(StoreError::Corrupt(format!(
                    "the key log ({}) begins at {first} but the database says it begins at \
                     {may_begin}: a segment of it is missing (no expiry removed it)",
                    self.dir.display()
                )));
            }
            Some(_) => None,
            // A store from before the beginning was recorded: taken as it is.
            None => Some(first),
        };
        let logged = read_meta(conn, "keys_logged")?;
        let end = self.log.end().0;
        let cut_to = match logged {
            Some(at) if at > end => {
                return Err(StoreError::Corrupt(format!(
                    "the key log ({}) ends at {end} but the database says it holds keys up \
                     to {at}: the key log lost what was acknowledged, or is not this database's",
                    self.dir.display()
                )));
            }
            // Past `at` only if a batch starts there: a log cut back to the end of a
            // segment ends past it, at the next one's header.
            Some(at) if at < end && self.log.scan(Position(at)).next().is_some() => {
                Some(Cut { at: Position(at), unrecorded: true })
            }
            Some(_) => None,
            // Nothing recorded yet: anything in the log is a move of the blocks or
            // a flush that never committed.
            None if end > first + baatkaro_eventlog::SEGMENT_HEADER => {
                Some(Cut { at: Position(first), unrecorded: false })
            }
            None => None,
        };
        Ok(Judged { record_first, cut_to })
    }

    /// Appends `block`'s keys, durably, as one batch (several if it is larger than
    /// a quarter segment). [`KeyLog::record`] then says so in the flush's
    /// transaction.
    pub(super) fn append(&mut self, block: &KeyBlock) -> Result<(), StoreError> {
        for piece in block.pieces(self.piece_bytes) {
            self.number += 1;
            self.log.commit(self.number, 0, [piece]).map_err(log_error)?;
            // Written into the active segment, the last.
            let start = self.log.segment_starts().last().map_or(0, |p| p.0);
            match self.newest.last_mut() {
                Some((s, t)) if *s == start => *t = (*t).max(block.newest()),
                _ => self.newest.push((start, block.newest())),
            }
        }
        Ok(())
    }

    /// Records in `tx` where the log ends (`meta.keys_logged`).
    pub(super) fn record(&self, tx: &Connection, rs: &mut RowSum) -> Result<(), StoreError> {
        write_meta(tx, rs, "keys_logged", self.log.end().0)
    }

    /// Expires the keys stored so far that are older than `before`, in `tx`; the
    /// segments that leaves wholly expired go once `tx` committed
    /// ([`KeyLog::remove_expired`]).
    pub(super) fn cut(
        &mut self,
        tx: &Connection,
        rs: &mut RowSum,
        before: u64,
    ) -> Result<(), StoreError> {
        // Compared as SQLite's i64, as stored: a cut past 2262 is one past every key.
        let before = before.min(i64::MAX as u64);
        let end = self.log.end().0;
        if before == 0 || self.floors.iter().any(|&(p, f)| p >= end && f >= before) {
            return Ok(());
        }
        // Times and positions kept bit for bit in SQLite's i64.
        let (pos, floor) = (end as i64, before as i64);
        tx.prepare_cached("DELETE FROM key_floors WHERE floor <= ? OR pos <= ?")?
            .execute(params![floor, self.log.start().0 as i64])?;
        let sum = rs.start().int(pos).int(floor).digest();
        tx.prepare_cached(
            "INSERT OR REPLACE INTO key_floors (pos, floor, row_sum) VALUES (?, ?, ?)",
        )?
        .execute(params![pos, floor, sum])?;
        let start = self.log.start().0;
        self.floors.retain(|&(p, f)| f > before && p > start);
        self.floors.push((end, before));
        Ok(())
    }

    /// The time below which a key of the batch at `pos` is expired.
    fn floor_at(&self, pos: u64) -> u64 {
        floor_at(&self.floors, pos)
    }

    /// Removes the oldest segments whose keys are all expired, once `conn` has
    /// recorded where the log then begins. Only space: a failure is logged and
    /// tried again at the next expiry.
    pub(super) fn remove_expired(&mut self, conn: &Connection, rs: &mut RowSum) {
        let starts: Vec<u64> = self.log.segment_starts().map(|p| p.0).collect();
        let mut before = None;
        for pair in starts.windows(2) {
            let (start, next) = (pair[0], pair[1]);
            // A segment whose newest time is not known (nothing loaded since the
            // open) is kept: taken for empty, its live keys would go with it.
            let newest =
                self.newest.iter().find(|(s, _)| *s == start).map_or(u64::MAX, |(_, t)| *t);
            // Its keys lie before `next`: the floor there is the lowest of theirs.
            if newest >= self.floor_at(next - 1) {
                break;
            }
            before = Some(next);
        }
        let Some(before) = before else { return };
        // Recorded first: a crash after it leaves segments the next expiry removes,
        // while a log found beginning past it lost some (`reconcile`).
        if let Err(e) = write_meta(conn, rs, "keys_first", before) {
            tracing::warn!(error = %e, "could not record the key log's new beginning; kept it");
            return;
        }
        match self.log.remove_before(Position(before)) {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "removed key log segments of expired keys"),
            Err(e) => tracing::warn!(error = %e, "could not remove expired key log segments"),
        }
        let first = self.log.segment_starts().next().map_or(0, |p| p.0);
        self.newest.retain(|(s, _)| *s >= first);
    }

    /// The expiry cuts read from the database.
    fn read_floors(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.floors.clear();
        let mut st =
            conn.prepare_cached("SELECT pos, floor, row_sum FROM key_floors ORDER BY pos")?;
        let mut rows = st.query([])?;
        let mut rs = RowSum::new();
        while let Some(r) = rows.next()? {
            let (pos, floor, sum): (i64, i64, Option<i64>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if sum != Some(rs.start().int(pos).int(floor).digest()) {
                return Err(StoreError::Corrupt(
                    "an expiry cut of the key log (table key_floors) fails its checksum".into(),
                ));
            }
            self.floors.push((pos as u64, floor as u64));
        }
        Ok(())
    }

    /// Reads the keys stored at `keys_since` or later and not expired into `out`,
    /// oldest first: only each user's newest `keys_per_user` of them (0: all). The
    /// keys older than `keys_since` are expired as by [`KeyLog::cut`].
    pub(super) fn load(
        &mut self,
        conn: &Connection,
        rs: &mut RowSum,
        keys_since: u64,
        keys_per_user: u64,
        read_only: bool,
        out: &mut Vec<KeyRow>,
    ) -> Result<(), StoreError> {
        // A damaged store's log is read as far as the database says it holds, and
        // nothing is cut, recorded, expired or removed (`Store::stop_writing`).
        let until = if read_only {
            self.judge(conn)?.cut_to.map_or(u64::MAX, |c| c.at.0)
        } else {
            self.reconcile(conn, rs)?;
            u64::MAX
        };
        self.read_floors(conn)?;
        let floors = self.floors.clone();
        let limit = if keys_per_user == 0 { usize::MAX } else { keys_per_user as usize };
        let starts: Vec<u64> = self.log.segment_starts().map(|p| p.0).collect();
        let mut newest = vec![0u64; starts.len()];
        // Each user's newest keys so far, with their place in the log.
        let mut kept: HashMap<_, VecDeque<(u64, KeyRow)>> = HashMap::new();
        let mut n = 0u64;
        // Stopped before a batch at or past `until` is read (after the one it ends
        // at): one the database does not count may be a torn write, and is not
        // damage. (A batch that ends a segment is followed by the next segment's
        // first, past its header.)
        let scan = (self.log.start().0 < until).then(|| self.log.scan(self.log.start()));
        for batch in scan.into_iter().flatten() {
            let batch = batch.map_err(log_error)?;
            let next = batch.next().0;
            let header = baatkaro_eventlog::SEGMENT_HEADER;
            let next = if starts.binary_search(&next).is_ok() { next + header } else { next };
            let past = next >= until;
            let seg = starts.partition_point(|&s| s <= batch.position.0).saturating_sub(1);
            let cut = floor_at(&floors, batch.position.0).max(keys_since);
            for (_, data) in batch.records() {
                for key in key_blocks::keys_of(data) {
                    let Write::SendKey { user, key, conv, fingerprint, seq, time } =
                        key.map_err(|_| undecodable())?
                    else {
                        return Err(undecodable());
                    };
                    newest[seg] = newest[seg].max(time);
                    if time < cut {
                        continue;
                    }
                    n += 1;
                    let q = kept.entry(user).or_default();
                    q.push_back((n, (user, key, conv, fingerprint, seq, time)));
                    if q.len() > limit {
                        q.pop_front();
                    }
                }
            }
            if past {
                break;
            }
        }
        let mut all: Vec<(u64, KeyRow)> = kept.into_values().flatten().collect();
        all.sort_unstable_by_key(|(n, _)| *n);
        out.extend(all.into_iter().map(|(_, k)| k));
        self.newest = starts.into_iter().zip(newest).collect();
        if read_only {
            return Ok(());
        }
        // One transaction: the cuts it replaces are deleted only with its row
        // written, or a failure between the two loses them.
        let floors = self.floors.clone();
        let cut = conn.unchecked_transaction().map_err(StoreError::from).and_then(|tx| {
            self.cut(&tx, rs, keys_since)?;
            Ok(tx.commit()?)
        });
        match cut {
            Ok(()) => self.remove_expired(conn, rs),
            // The cut only records what this load left out, for the loads after
            // it, which leave out as much by their own `keys_since`. On a full
            // disk it waits for the next load or expiry: the reload after a
            // commit refused for want of room must not fail for it and stop the
            // server (SPEC.md 11.8).
            Err(StoreError::Full(e)) => {
                self.floors = floors;
                tracing::warn!(error = %e, "the disk is full: the expired keys' cut waits");
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Moves the blocks of `key_blocks` (a store of schema 11) into the log, each
    /// block's keys below its floor or the log's left out: the log is written and
    /// synced first, then one transaction empties the table and records where the
    /// log ends. A crash between the two leaves the table as it was, and the next
    /// open cuts the log back ([`KeyLog::reconcile`]) and moves them again.
    pub(super) fn move_blocks(
        &mut self,
        conn: &mut Connection,
        rs: &mut RowSum,
    ) -> Result<u64, StoreError> {
        let any: Option<i64> =
            conn.query_row("SELECT id FROM key_blocks LIMIT 1", [], |r| r.get(0)).optional()?;
        if any.is_none() {
            return Ok(0);
        }
        self.reconcile(conn, rs)?;
        let mut moved = 0u64;
        let mut block = KeyBlock::default();
        let mut record = Vec::new();
        let piece = self.piece_bytes;
        key_blocks::each_block(conn, |block_floor, keys| {
            for key in key_blocks::keys_of(keys) {
                let key = key?;
                let Write::SendKey { time, .. } = key else { continue };
                if time < block_floor {
                    continue;
                }
                record.clear();
                key_blocks::encode(&mut record, &key);
                block.push(&record, time);
                moved += 1;
                if block.bytes().len() >= piece {
                    self.append(&block)?;
                    block.clear();
                }
            }
            Ok(())
        })?;
        self.append(&block)?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM key_blocks", [])?;
        self.record(&tx, rs)?;
        tx.commit()?;
        Ok(moved)
    }

    /// Puts the keys of the log back in `key_blocks`, one block per batch, leaving
    /// out those expired: how tests take a store back to schema 11. The
    /// caller removes the log's directory and undoes [`MIGRATION`].
    pub(super) fn restore_blocks(
        &mut self,
        conn: &mut Connection,
        rs: &mut RowSum,
    ) -> Result<(), StoreError> {
        self.read_floors(conn)?;
        let floors = self.floors.clone();
        let tx = conn.transaction()?;
        let mut block = KeyBlock::default();
        let mut record = Vec::new();
        for batch in self.log.scan(self.log.start()) {
            let batch = batch.map_err(log_error)?;
            let floor = floor_at(&floors, batch.position.0);
            for (_, data) in batch.records() {
                block.clear();
                for key in key_blocks::keys_of(data) {
                    let key = key.map_err(|_| undecodable())?;
                    if let Write::SendKey { time, .. } = key
                        && time >= floor
                    {
                        record.clear();
                        key_blocks::encode(&mut record, &key);
                        block.push(&record, time);
                    }
                }
                block.insert(&tx, rs)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The time below which a key of the batch at `pos` is expired, by `floors`
/// (ends ascending, times descending): the floor of the first cut made after it.
fn floor_at(floors: &[(u64, u64)], pos: u64) -> u64 {
    let i = floors.partition_point(|&(p, _)| p <= pos);
    floors.get(i).map_or(0, |&(_, f)| f)
}

/// A record of the key log that passes its checksum but does not decode: written
/// so by a bug, not by the disk.
fn undecodable() -> StoreError {
    StoreError::Corrupt("a block of idempotency keys in the key log does not decode".into())
}

/// `meta.keys_logged`: where the key log ends, as the last flush left it; `None`
/// before the first.
pub(super) fn logged(conn: &Connection) -> Result<Option<u64>, StoreError> {
    read_meta(conn, "keys_logged")
}

/// A `meta` value, checked against its checksum.
fn read_meta(conn: &Connection, key: &str) -> Result<Option<u64>, StoreError> {
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT value, row_sum FROM meta WHERE key = ?")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((v, sum)) if sum == Some(RowSum::new().text(key).int(v).digest()) => {
            Ok(Some(v as u64))
        }
        Some(_) => Err(StoreError::Corrupt(format!("meta {key} fails its checksum"))),
    }
}

/// Sets a `meta` value (positions and times, kept bit for bit in SQLite's i64).
fn write_meta(conn: &Connection, rs: &mut RowSum, key: &str, value: u64) -> Result<(), StoreError> {
    let value = value as i64;
    let sum = rs.start().text(key).int(value).digest();
    conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value, row_sum) VALUES (?, ?, ?)")?
        .execute(params![key, value, sum])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_judged_by_the_first_cut_made_after_it() {
        // Cuts at log ends 100 (time 50) and 300 (time 20, a clock set back).
        let floors = [(100, 50), (300, 20)];
        assert_eq!(floor_at(&floors, 32), 50);
        assert_eq!(floor_at(&floors, 99), 50);
        assert_eq!(floor_at(&floors, 100), 20, "stored at the first cut's end: after it");
        assert_eq!(floor_at(&floors, 299), 20);
        assert_eq!(floor_at(&floors, 300), 0, "stored after every cut");
        assert_eq!(floor_at(&[], 7), 0);
    }

    #[test]
    fn a_block_is_cut_into_pieces_on_record_boundaries() {
        let mut block = KeyBlock::default();
        let mut record = Vec::new();
        for i in 0..100u64 {
            let w = Write::SendKey {
                user: format!("u{}", i % 3).parse().unwrap(),
                key: format!("key{}", "k".repeat((i % 20) as usize)).parse().unwrap(),
                conv: "#room".parse().unwrap(),
                fingerprint: i,
                seq: i,
                time: 1_000 + i,
            };
            record.clear();
            key_blocks::encode(&mut record, &w);
            block.push(&record, 1_000 + i);
        }
        let whole: Vec<&[u8]> = block.pieces(usize::MAX).collect();
        assert_eq!(whole, [block.bytes()]);
        let pieces: Vec<&[u8]> = block.pieces(300).collect();
        assert!(pieces.len() > 10);
        assert!(pieces.iter().all(|p| p.len() <= 300));
        assert_eq!(pieces.concat(), block.bytes());
        // Each piece decodes whole, and together they give every key in order.
        let seqs: Vec<u64> = pieces
            .iter()
            .flat_map(|p| key_blocks::keys_of(p))
            .map(|k| match k.unwrap() {
                Write::SendKey { seq, .. } => seq,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(seqs, (0..100).collect::<Vec<_>>());
        // One record larger than the limit is a piece of its own.
        assert_eq!(block.pieces(1).count(), 100);
    }
}
