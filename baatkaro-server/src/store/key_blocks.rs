//! Idempotency keys kept in SQLite as blocks: one row per flush holding every key
//! of it, instead of one row per key. Schema 11; from schema 12 the same blocks
//! go to the key log instead (key_log.rs), which uses this module's encoding, and
//! the rows of a schema 11 store are moved there at open.
//!
//! A key is written twice: to the event log with its send, durably, and again
//! when the log's index is flushed (events.rs), for a start to read without going
//! through the log. Profiles of small-group traffic had those per-key rows at about
//! 15 % of the server (a bound statement, a B-tree append and a checksum per key).
//! A block is the log's own key records, concatenated as the flush took them, in
//! one row: about a tenth of that.
//!
//! - **Order.** Blocks are numbered in the order they are written, and keys in a
//!   block are in the order they were stored: the newest record of a key wins.
//! - **Expiry.** A block's `floor` is the time before which its keys are gone; it
//!   starts at its oldest key's. `KeysExpired { before }` deletes the blocks whose
//!   newest key is older than `before`, and raises the floor of the few that hold
//!   keys on both sides of it: a start leaves out the keys below a block's floor,
//!   so a key expires exactly when it did in memory, while the rest of its block
//!   waits on disk for its newest key to expire.
//! - **Reading.** A start reads blocks newest first and keeps each user's newest
//!   `keys_per_user` keys (SPEC.md 5.2, `key-count`): memory bounded by that, not by
//!   how many keys the window holds.

use baatkaro_proto::{Conversation, IdemKey, Seq, UserName};
use rusqlite::{Connection, Transaction, params};

use super::checksum::RowSum;
use super::{StoreError, Write};

/// The record kind of a key, in the event log and in a block.
pub(super) const KEY: u8 = 2;

/// The schema step that adds the blocks; the rows of `sent_keys` are moved into
/// them when the store is opened ([`move_rows`]).
pub(super) const MIGRATION: &str = "CREATE TABLE key_blocks (
         id INTEGER PRIMARY KEY, floor INTEGER NOT NULL, newest INTEGER NOT NULL,
         keys BLOB NOT NULL, row_sum INTEGER);
     CREATE INDEX key_blocks_by_newest ON key_blocks (newest);
     CREATE INDEX key_blocks_by_floor ON key_blocks (floor);";

/// What undoes [`MIGRATION`] once [`restore_rows`] put the keys back in rows.
pub(super) const UNDO: &str = "DROP TABLE key_blocks;";

/// A key as the snapshot holds it.
pub(super) type KeyRow = (UserName, IdemKey, Conversation, u64, Seq, u64);

/// Keys waiting to be written as one block: their records, concatenated.
#[derive(Debug, Default)]
pub(super) struct KeyBlock {
    bytes: Vec<u8>,
    count: usize,
    oldest: u64,
    newest: u64,
}

impl KeyBlock {
    /// Adds a key record (as [`encode`] makes it) stored at `time`.
    pub(super) fn push(&mut self, record: &[u8], time: u64) {
        if self.count == 0 {
            (self.oldest, self.newest) = (time, time);
        }
        self.oldest = self.oldest.min(time);
        self.newest = self.newest.max(time);
        self.bytes.extend_from_slice(record);
        self.count += 1;
    }

    /// How many keys it holds.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Empties it, keeping its memory.
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    /// Its keys, in the order they were added.
    pub(super) fn keys(&self) -> Keys<'_> {
        Keys(&self.bytes)
    }

    /// Its records, concatenated.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The time of its newest key (0 if it holds none).
    pub(super) fn newest(&self) -> u64 {
        if self.count == 0 { 0 } else { self.newest }
    }

    /// Its records cut into pieces of at most `max` bytes each (one record at
    /// least), on record boundaries, in order.
    pub(super) fn pieces(&self, max: usize) -> impl Iterator<Item = &[u8]> {
        let mut rest = &self.bytes[..];
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            if rest.len() <= max {
                return Some(std::mem::take(&mut rest));
            }
            // Walked record by record only for a block too large for one piece.
            let mut len = 0;
            while len < rest.len() {
                let n = record_len(&rest[len..]).unwrap_or(rest.len() - len);
                if len > 0 && len + n > max {
                    break;
                }
                len += n;
            }
            let (piece, tail) = rest.split_at(len);
            rest = tail;
            Some(piece)
        })
    }

    /// Writes it as the next block, if it holds any key.
    pub(super) fn insert(&self, tx: &Transaction<'_>, rs: &mut RowSum) -> Result<(), StoreError> {
        if self.count == 0 {
            return Ok(());
        }
        // Times are u64 kept bit for bit in SQLite's i64.
        let (floor, newest) = (self.oldest as i64, self.newest as i64);
        let sum = rs.start().int(floor).int(newest).blob(&self.bytes).digest();
        tx.prepare_cached(
            "INSERT INTO key_blocks (floor, newest, keys, row_sum) VALUES (?, ?, ?, ?)",
        )?
        .execute(params![floor, newest, &self.bytes[..], sum])?;
        Ok(())
    }
}

/// The keys of a block's bytes, decoded one by one.
pub(super) struct Keys<'a>(&'a [u8]);

/// The keys of `bytes`, key records concatenated (a block).
pub(super) fn keys_of(bytes: &[u8]) -> Keys<'_> {
    Keys(bytes)
}

/// The length of the key record at the front of `b`, if it is whole.
fn record_len(b: &[u8]) -> Option<usize> {
    let mut len = 1;
    for _ in 0..3 {
        len += 1 + usize::from(*b.get(len)?);
    }
    len += 24;
    (len <= b.len()).then_some(len)
}

impl Iterator for Keys<'_> {
    type Item = Result<Write, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let key = decode_from(&mut self.0);
        if key.is_err() {
            self.0 = &[]; // nothing after a record that does not decode is trusted
        }
        Some(key)
    }
}

/// A key record: [`KEY`], then user, key and conversation as length and bytes,
/// then fingerprint, sequence number and time (little-endian u64). Nothing if
/// `w` is not a key.
pub(super) fn encode(out: &mut Vec<u8>, w: &Write) {
    let Write::SendKey { user, key, conv, fingerprint, seq, time } = w else { return };
    out.push(KEY);
    // Bytes, not strings: making a name a `&str` checks it as UTF-8 again.
    for s in [user.as_bytes(), key.as_bytes()] {
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }
    // As `Conversation`'s `Display` spells it, without the formatting machinery.
    let (sigil, name) = match conv {
        Conversation::Group(g) => (b'#', g.as_bytes()),
        Conversation::Direct(u) => (b'@', u.as_bytes()),
    };
    out.push(1 + name.len() as u8);
    out.push(sigil);
    out.extend_from_slice(name);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&time.to_le_bytes());
}

/// Decodes a whole key record, as [`encode`] made it.
pub(super) fn decode(data: &[u8]) -> Result<Write, StoreError> {
    let mut b = data;
    let key = decode_from(&mut b)?;
    if !b.is_empty() {
        return Err(bad());
    }
    Ok(key)
}

/// Decodes the key record at the front of `b`, and moves past it.
fn decode_from(b: &mut &[u8]) -> Result<Write, StoreError> {
    let (&kind, rest) = b.split_first().ok_or_else(bad)?;
    if kind != KEY {
        return Err(bad());
    }
    *b = rest;
    let user = take_str(b)?.parse().map_err(|_| bad())?;
    let key = take_str(b)?.parse().map_err(|_| bad())?;
    let conv = take_str(b)?.parse().map_err(|_| bad())?;
    let fingerprint = take_u64(b)?;
    let seq = take_u64(b)?;
    let time = take_u64(b)?;
    Ok(Write::SendKey { user, key, conv, fingerprint, seq, time })
}

/// What a record that does not decode is.
pub(super) fn bad() -> StoreError {
    StoreError::Corrupt("an event log record does not decode".into())
}

/// Splits a length-prefixed string off the front of `b`.
pub(super) fn take_str<'a>(b: &mut &'a [u8]) -> Result<&'a str, StoreError> {
    let (&n, rest) = b.split_first().ok_or_else(bad)?;
    let (s, rest) = rest.split_at_checked(n as usize).ok_or_else(bad)?;
    *b = rest;
    std::str::from_utf8(s).map_err(|_| bad())
}

/// Splits a little-endian u64 off the front of `b`.
pub(super) fn take_u64(b: &mut &[u8]) -> Result<u64, StoreError> {
    let (n, rest) = b.split_first_chunk::<8>().ok_or_else(bad)?;
    *b = rest;
    Ok(u64::from_le_bytes(*n))
}

/// Expires the keys stored before `before`: deletes the blocks wholly older, and
/// raises the floor of those that straddle it (the module's documentation).
pub(super) fn expire(conn: &Connection, before: u64) -> Result<(), StoreError> {
    // Compared as SQLite's i64, as stored: times before 2262 are positive.
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    conn.prepare_cached("DELETE FROM key_blocks WHERE newest < ?")?.execute([before])?;
    // Every block left has a key at `before` or later: those with older keys too
    // are the few around the cut, found by the floor's index. The new checksum is
    // written only over a block that passes the old one: summing a damaged block
    // afresh would make its damage pass the load and the check, so it is left as
    // it is for them to report.
    conn.prepare_cached(
        "UPDATE key_blocks SET floor = ?1, row_sum = baatkaro_row_sum(?1, newest, keys)
         WHERE floor < ?1 AND row_sum IS baatkaro_row_sum(floor, newest, keys)",
    )?
    .execute([before])?;
    Ok(())
}

/// Reads the keys stored at `keys_since` or later, and not expired, into `out`,
/// oldest first: only each user's newest `keys_per_user` of them (0: all). The
/// keys before `keys_since` are expired as by [`expire`]: a later start with an
/// earlier cut (a longer `keys` window, a clock set back) does not find them
/// again, as it did not when they were rows (`read_only`: they are only left
/// out).
pub(super) fn load(
    conn: &Connection,
    keys_since: u64,
    keys_per_user: u64,
    read_only: bool,
    out: &mut Vec<KeyRow>,
) -> Result<(), StoreError> {
    let since = i64::try_from(keys_since).unwrap_or(i64::MAX);
    if !read_only {
        expire(conn, keys_since)?;
    }
    let mut per_user: std::collections::HashMap<UserName, u64> = Default::default();
    let limit = if keys_per_user == 0 { u64::MAX } else { keys_per_user };
    let mut newest_first = Vec::new();
    let mut st = conn.prepare(
        "SELECT floor, newest, keys, row_sum FROM key_blocks WHERE newest >= ? ORDER BY id DESC",
    )?;
    let mut rows = st.query([since])?;
    let mut rs = RowSum::new();
    let mut block = Vec::new();
    while let Some(r) = rows.next()? {
        let (floor, keys) = checked_block(r, &mut rs)?;
        let from = floor.max(keys_since);
        block.clear();
        for key in Keys(keys) {
            if let Write::SendKey { user, key, conv, fingerprint, seq, time } =
                key.map_err(|_| undecodable_block())?
                && time >= from
            {
                block.push((user, key, conv, fingerprint, seq, time));
            }
        }
        for k in block.drain(..).rev() {
            let n = per_user.entry(k.0).or_default();
            if *n < limit {
                *n += 1;
                newest_first.push(k);
            }
        }
    }
    out.extend(newest_first.into_iter().rev());
    Ok(())
}

/// A row of `floor, newest, keys, row_sum` from `key_blocks`, checked against its
/// checksum: the block's floor and keys.
fn checked_block<'r>(
    r: &'r rusqlite::Row<'_>,
    rs: &mut RowSum,
) -> Result<(u64, &'r [u8]), StoreError> {
    let (floor, newest): (i64, i64) = (r.get(0)?, r.get(1)?);
    let keys = r.get_ref(2)?.as_blob().map_err(|_| corrupt_block())?;
    let sum: Option<i64> = r.get(3)?;
    if sum != Some(rs.start().int(floor).int(newest).blob(keys).digest()) {
        return Err(corrupt_block());
    }
    Ok((floor as u64, keys))
}

/// Calls `f` with each block's floor and keys, in the order they were written,
/// each checked against its checksum first.
pub(super) fn each_block(
    conn: &Connection,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut st = conn.prepare("SELECT floor, newest, keys, row_sum FROM key_blocks ORDER BY id")?;
    let mut rows = st.query([])?;
    let mut rs = RowSum::new();
    while let Some(r) = rows.next()? {
        let (floor, keys) = checked_block(r, &mut rs)?;
        f(floor, keys)?;
    }
    Ok(())
}

fn corrupt_block() -> StoreError {
    StoreError::Corrupt("a block of idempotency keys (table key_blocks) fails its checksum".into())
}

/// A block that passes its checksum but does not decode: written so by a bug,
/// not by the disk.
fn undecodable_block() -> StoreError {
    StoreError::Corrupt("a block of idempotency keys (table key_blocks) does not decode".into())
}

/// Moves the rows of `sent_keys` (a store from before the blocks) into blocks of
/// at most `per_block` keys, in one transaction.
pub(super) fn move_rows(
    conn: &mut Connection,
    rs: &mut RowSum,
    per_block: usize,
) -> Result<u64, StoreError> {
    let tx = conn.transaction()?;
    let mut moved = 0;
    {
        let mut st = tx.prepare(
            "SELECT user, key, conv, fingerprint, seq, time, row_sum FROM sent_keys ORDER BY rowid",
        )?;
        let mut rows = st.query([])?;
        let mut block = KeyBlock::default();
        let mut record = Vec::new();
        let mut check = RowSum::new();
        loop {
            let row = rows.next()?;
            if let Some(r) = row {
                let (user, key, conv): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
                let (fp, seq, time): (i64, i64, i64) = (r.get(3)?, r.get(4)?, r.get(5)?);
                let sum: Option<i64> = r.get(6)?;
                let expected = check
                    .start()
                    .text(&user)
                    .text(&key)
                    .text(&conv)
                    .int(fp)
                    .int(seq)
                    .int(time)
                    .digest();
                if sum != Some(expected) {
                    return Err(StoreError::Corrupt(
                        "an idempotency key (table sent_keys) fails its checksum".into(),
                    ));
                }
                let invalid =
                    || StoreError::Corrupt("a stored idempotency key is not valid".into());
                let w = Write::SendKey {
                    user: user.parse().map_err(|_| invalid())?,
                    key: key.parse().map_err(|_| invalid())?,
                    conv: conv.parse().map_err(|_| invalid())?,
                    fingerprint: fp as u64,
                    seq: seq as u64,
                    time: time as u64,
                };
                record.clear();
                encode(&mut record, &w);
                block.push(&record, time as u64);
            }
            if block.len() > 0 && (row.is_none() || block.len() == per_block) {
                block.insert(&tx, rs)?;
                moved += block.len() as u64;
                block.clear();
            }
            if row.is_none() {
                break;
            }
        }
    }
    tx.execute("DELETE FROM sent_keys", [])?;
    tx.commit()?;
    Ok(moved)
}

/// Puts the keys of the blocks back in `sent_keys` rows, oldest first, leaving
/// out those below their block's floor (expired): how tests take a store back to
/// before the blocks.
pub(super) fn restore_rows(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let mut blocks = Vec::new();
    let mut rs = RowSum::new();
    {
        let mut st =
            tx.prepare("SELECT floor, newest, keys, row_sum FROM key_blocks ORDER BY id")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let (floor, newest, keys): (i64, i64, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            // Checked as a load checks it: rows summed afresh would hide damage.
            if r.get::<_, Option<i64>>(3)?
                != Some(rs.start().int(floor).int(newest).blob(&keys).digest())
            {
                return Err(corrupt_block());
            }
            blocks.push((floor as u64, keys));
        }
    }
    for (floor, b) in &blocks {
        for key in Keys(b) {
            let Write::SendKey { user, key, conv, fingerprint, seq, time } = key? else {
                continue;
            };
            if time < *floor {
                continue;
            }
            let conv = conv.to_string();
            let (fp, seq, time) = (fingerprint as i64, seq as i64, time as i64);
            let sum = rs
                .start()
                .text(user.as_str())
                .text(key.as_str())
                .text(&conv)
                .int(fp)
                .int(seq)
                .int(time)
                .digest();
            tx.execute(
                "INSERT INTO sent_keys (user, key, conv, fingerprint, seq, time, row_sum)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![user.as_str(), key.as_str(), conv, fp, seq, time, sum],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Write {
        Write::SendKey {
            user: format!("u{}", i % 3).parse().unwrap(),
            key: format!("k{i}").parse().unwrap(),
            conv: if i.is_multiple_of(2) {
                "#room".parse().unwrap()
            } else {
                "@bob".parse().unwrap()
            },
            fingerprint: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            seq: i + 1,
            time: 1_000 + i,
        }
    }

    #[test]
    fn a_block_gives_back_its_keys_in_order_and_stops_at_damage() {
        let mut block = KeyBlock::default();
        let mut record = Vec::new();
        for i in 0..50 {
            record.clear();
            encode(&mut record, &key(i));
            assert_eq!(decode(&record).unwrap(), key(i));
            block.push(&record, 1_000 + i);
        }
        assert_eq!((block.len(), block.oldest, block.newest), (50, 1_000, 1_049));
        let back: Vec<Write> = block.keys().map(Result::unwrap).collect();
        assert_eq!(back, (0..50).map(key).collect::<Vec<_>>());
        // A cut record is an error, and nothing after it is read.
        let cut = &block.bytes[..block.bytes.len() - 3];
        let read: Vec<_> = Keys(cut).collect();
        assert_eq!(read.len(), 50);
        assert!(read[49].is_err());
        assert!(decode(&[KEY + 1]).is_err());
    }

    #[test]
    fn a_load_keeps_only_each_users_newest_keys_and_those_above_the_floors() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::checksum::register(&conn).unwrap();
        conn.execute_batch(MIGRATION).unwrap();
        let mut rs = RowSum::new();
        let mut record = Vec::new();
        // Keys 0..90 of three users, in three blocks of thirty.
        for b in 0..3 {
            let mut block = KeyBlock::default();
            for i in b * 30..(b + 1) * 30 {
                record.clear();
                encode(&mut record, &key(i));
                block.push(&record, 1_000 + i);
            }
            let tx = conn.transaction().unwrap();
            block.insert(&tx, &mut rs).unwrap();
            tx.commit().unwrap();
        }
        let read = |conn: &Connection, since, per_user| {
            let mut out = Vec::new();
            load(conn, since, per_user, false, &mut out).unwrap();
            out.iter().map(|k| k.5 - 1_000).collect::<Vec<_>>()
        };
        // Read from the newest block back, and no more than asked for kept: what
        // the start holds in memory at any time is bounded by it too.
        assert_eq!(read(&conn, 0, 2), [84, 85, 86, 87, 88, 89]);
        assert_eq!(read(&conn, 0, 0), (0..90).collect::<Vec<_>>());
        // A cut through the middle block: its older keys are gone, and so is the
        // first block; the floor keeps them gone for a start that cuts earlier.
        let tx = conn.transaction().unwrap();
        expire(&tx, 1_045).unwrap();
        tx.commit().unwrap();
        let blocks: i64 =
            conn.query_row("SELECT COUNT(*) FROM key_blocks", [], |r| r.get(0)).unwrap();
        assert_eq!(blocks, 2);
        assert_eq!(read(&conn, 0, 0), (45..90).collect::<Vec<_>>());
        assert_eq!(read(&conn, 1_050, 0), (50..90).collect::<Vec<_>>());
        assert_eq!(read(&conn, 0, 0), (50..90).collect::<Vec<_>>());
    }
}
