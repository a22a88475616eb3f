//! The SQLite side of read markers (SPEC.md 6.8): one row per reader and
//! conversation, with its checksum (checksum.rs), replaced as the marker moves and
//! deleted with the reader's membership, the group or the account. Kept apart from
//! the rest of the engine in `sqlite.rs`, which calls in here for its schema step,
//! its load and the writes that are this table's.

use baatkaro_proto::UserName;
use rusqlite::{Connection, Transaction, params};

use super::checksum::RowSum;
use super::{ConvKey, Snapshot, StoreError, Write};

/// Schema step: read markers, keyed by reader and conversation (`g:ID` or
/// `d:A:B`, as events are).
pub(super) const MIGRATION: &str = "
    CREATE TABLE read_markers (
        user TEXT NOT NULL, conv TEXT NOT NULL, seq INTEGER NOT NULL, row_sum INTEGER,
        PRIMARY KEY (user, conv)) WITHOUT ROWID;
    CREATE INDEX read_markers_by_conv ON read_markers (conv);";

/// Undoes [`MIGRATION`], for tests that make an older database.
pub(super) const UNDO: &str = "DROP TABLE read_markers;";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Reads every marker into `snap`, each checked against its checksum (they are
/// few: at most one per conversation a user reads).
pub(super) fn load(c: &Connection, snap: &mut Snapshot) -> Result<(), StoreError> {
    let mut q = c.prepare("SELECT user, conv, seq, row_sum FROM read_markers")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
        ))
    })?;
    let mut sum = RowSum::new();
    for row in rows {
        let (user, conv, seq, stored) = row?;
        if stored != Some(sum.start().text(&user).text(&conv).int(seq).digest()) {
            return Err(corrupt("a read marker (table read_markers) fails its checksum"));
        }
        let user: UserName =
            user.parse().map_err(|_| corrupt("a stored read marker's user is not valid"))?;
        let conv = ConvKey::from_db(&conv)
            .ok_or_else(|| corrupt("a stored read marker's conversation is not valid"))?;
        snap.read_markers.push((user, conv, seq as u64));
    }
    Ok(())
}

/// Carries out what `w` means for this table: a marker stored or gone, and the
/// markers of a deleted group or account deleted with it. False if `w` touches
/// no marker.
pub(super) fn commit(tx: &Transaction<'_>, rs: &mut RowSum, w: &Write) -> Result<bool, StoreError> {
    match w {
        Write::ReadMarker { user, conv, seq } => {
            let (conv, seq) = (conv.to_db(), *seq as i64);
            let sum = rs.start().text(user.as_str()).text(&conv).int(seq).digest();
            tx.prepare_cached(
                "INSERT OR REPLACE INTO read_markers (user, conv, seq, row_sum) VALUES (?, ?, ?, ?)",
            )?
            .execute(params![user.as_str(), conv, seq, sum])?;
        }
        Write::ReadMarkerGone { user, conv } => {
            tx.prepare_cached("DELETE FROM read_markers WHERE user = ? AND conv = ?")?
                .execute(params![user.as_str(), conv.to_db()])?;
        }
        Write::GroupDeleted { id } => {
            tx.prepare_cached("DELETE FROM read_markers WHERE conv = ?")?
                .execute([ConvKey::Group(*id).to_db()])?;
        }
        Write::UserDeleted { user, .. } => {
            tx.prepare_cached("DELETE FROM read_markers WHERE user = ?")?
                .execute([user.as_str()])?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}
