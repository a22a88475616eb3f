//! The SQLite side of accounts' credentials and life: session tokens (SPEC.md 4.7),
//! password changes, deleted accounts' tombstones and operator locks (SPEC.md 4.8),
//! and the offline operator's changes ([`Admin`]). Kept apart from the rest of the
//! engine in `sqlite.rs`, which calls in here for its schema steps, its load and the
//! writes that are these tables'.

use baatkaro_proto::{Address, Text, UserName};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Snapshot, StoreError, TokenRecord, Write};

/// Schema step: session tokens, each with the SHA-256 of its secret (never the
/// secret), and the next token number, which only grows (a number is never given
/// to two tokens, even after a revocation).
pub(super) const MIGRATION_TOKENS: &str = "
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY, user TEXT NOT NULL, digest BLOB NOT NULL, label BLOB NOT NULL,
        created INTEGER NOT NULL, used INTEGER NOT NULL, address TEXT NOT NULL);
    CREATE INDEX tokens_by_user ON tokens (user);
    INSERT INTO meta (key, value, row_sum)
        VALUES ('next_token_id', 1, baatkaro_row_sum('next_token_id', 1));";

/// Undoes [`MIGRATION_TOKENS`], for tests that make an older database.
pub(super) const UNDO_TOKENS: &str =
    "DROP TABLE tokens; DELETE FROM meta WHERE key = 'next_token_id';";

/// Schema step: the names of deleted accounts, which stay taken, and the operator's
/// lock on an account.
pub(super) const MIGRATION_ACCOUNTS: &str = "
    CREATE TABLE tombstones (name TEXT PRIMARY KEY, deleted INTEGER NOT NULL);
    ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;";

/// Undoes [`MIGRATION_ACCOUNTS`], for tests that make an older database.
pub(super) const UNDO_ACCOUNTS: &str =
    "DROP TABLE tombstones; ALTER TABLE users DROP COLUMN locked;";

/// Schema step: the addresses that logged in to each account (its newest 16, as the
/// login throttle keeps them), so that they keep their own budget across a restart.
pub(super) const MIGRATION_KNOWN_ADDRESSES: &str = "
    CREATE TABLE login_addresses (
        user TEXT NOT NULL, address TEXT NOT NULL, last INTEGER NOT NULL,
        PRIMARY KEY (user, address)) WITHOUT ROWID;";

/// Undoes [`MIGRATION_KNOWN_ADDRESSES`], for tests that make an older database.
pub(super) const UNDO_KNOWN_ADDRESSES: &str = "DROP TABLE login_addresses;";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Reads every session token, and the next token number, into `snap`.
pub(super) fn load(c: &Connection, snap: &mut Snapshot) -> Result<(), StoreError> {
    let mut q = c.prepare(
        "SELECT id, user, digest, label, created, used, address FROM tokens ORDER BY id",
    )?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, Vec<u8>>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    for row in rows {
        let (id, user, digest, label, created, used, address) = row?;
        snap.tokens.push(TokenRecord {
            id: id as u64,
            user: user.parse::<UserName>().map_err(|_| corrupt(format!("token {id}: user")))?,
            digest: digest
                .try_into()
                .map_err(|_| corrupt(format!("token {id}: digest is not 32 bytes")))?,
            label: Text::from_bytes(label.into())
                .map_err(|e| corrupt(format!("token {id}: label: {e}")))?,
            created: created as u64,
            used: used as u64,
            address: address
                .parse::<Address>()
                .map_err(|_| corrupt(format!("token {id}: address")))?,
        });
    }
    let next: i64 =
        c.query_row("SELECT value FROM meta WHERE key = 'next_token_id'", [], |r| r.get(0))?;
    snap.next_token_id = next as u64;
    let names = |sql: &str| -> Result<Vec<UserName>, StoreError> {
        let mut q = c.prepare(sql)?;
        let rows = q.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let name = row?;
            out.push(name.parse().map_err(|_| corrupt(format!("user name {name:?}")))?);
        }
        Ok(out)
    };
    snap.tombstones = names("SELECT name FROM tombstones")?;
    snap.locked = names("SELECT name FROM users WHERE locked != 0")?;
    let mut q = c.prepare("SELECT user, address, last FROM login_addresses")?;
    let rows = q.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (user, address, last) = row?;
        let user = user.parse::<UserName>().map_err(|_| corrupt(format!("user name {user:?}")))?;
        let address =
            address.parse::<Address>().map_err(|_| corrupt(format!("address {address:?}")))?;
        snap.known_addresses.push((user, address, last as u64));
    }
    Ok(())
}

/// Carries out one write if it is one of these tables'; false if it is not.
pub(super) fn commit(tx: &Transaction<'_>, w: &Write) -> Result<bool, StoreError> {
    match w {
        Write::Token(t) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO tokens (id, user, digest, label, created, used, address)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                t.id as i64,
                t.user.as_str(),
                &t.digest[..],
                &t.label.as_bytes()[..],
                t.created as i64,
                t.used as i64,
                t.address.as_str()
            ])?;
            // Numbers only grow: the next one is past every one made.
            // The row's checksum (checksum.rs) is summed again with the value.
            tx.prepare_cached(
                "UPDATE meta SET value = MAX(value, ?1), \
                 row_sum = baatkaro_row_sum(key, MAX(value, ?1)) WHERE key = 'next_token_id'",
            )?
            .execute([t.id.saturating_add(1) as i64])?;
        }
        Write::TokenGone { id } => {
            tx.prepare_cached("DELETE FROM tokens WHERE id = ?")?.execute([*id as i64])?;
        }
        Write::Password { user, hash } => {
            // The row's checksum (checksum.rs) covers the hash: summed again here.
            tx.prepare_cached(
                "UPDATE users SET hash = ?1, row_sum = baatkaro_row_sum(name, ?1, created) \
                 WHERE name = ?2",
            )?
            .execute(params![hash, user.as_str()])?;
        }
        Write::KnownAddress { user, address, time } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO login_addresses (user, address, last) VALUES (?, ?, ?)",
            )?
            .execute(params![user.as_str(), address.as_str(), *time as i64])?;
        }
        Write::KnownAddressGone { user, address } => {
            tx.prepare_cached("DELETE FROM login_addresses WHERE user = ? AND address = ?")?
                .execute(params![user.as_str(), address.as_str()])?;
        }
        Write::UserDeleted { user, time } => {
            let name = user.as_str();
            tx.prepare_cached("DELETE FROM users WHERE name = ?")?.execute([name])?;
            tx.prepare_cached("DELETE FROM tokens WHERE user = ?")?.execute([name])?;
            tx.prepare_cached("DELETE FROM login_addresses WHERE user = ?")?.execute([name])?;
            tx.prepare_cached("DELETE FROM contents WHERE user = ?")?.execute([name])?;
            tx.prepare_cached("INSERT OR REPLACE INTO tombstones (name, deleted) VALUES (?, ?)")?
                .execute(params![name, *time as i64])?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The operator's offline changes to accounts, made on the database while no server
/// holds the data directory (the store's lock shows none does): `baatkaro-server
/// admin`. Each change is one transaction.
pub struct Admin<'a> {
    pub(super) conn: &'a mut Connection,
}

impl Admin<'_> {
    /// Sets `user`'s password hash (a PHC string) and revokes all their session
    /// tokens: a reset is for a password that is lost or known to others. False if
    /// there is no such account.
    pub fn reset_password(&mut self, user: UserName, hash: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        // The row's checksum is summed anew below: a damaged row would then look
        // whole. It must be whole first.
        let whole: Option<bool> = tx
            .query_row(
                "SELECT row_sum IS baatkaro_row_sum(name, hash, created) FROM users \
                 WHERE name = ?",
                [user.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        if whole == Some(false) {
            return Err(StoreError::Corrupt(format!(
                "the account {user} fails its checksum: repair the database (restore it from a \
                 backup) before resetting its password"
            )));
        }
        let changed = tx.execute(
            "UPDATE users SET hash = ?1, row_sum = baatkaro_row_sum(name, ?1, created) \
             WHERE name = ?2",
            params![hash, user.as_str()],
        )?;
        tx.execute("DELETE FROM tokens WHERE user = ?", [user.as_str()])?;
        tx.commit()?;
        Ok(changed > 0)
    }

    /// Locks or unlocks `user`'s account: a locked account does not log in, with a
    /// password or a token, until it is unlocked. False if there is no such account.
    pub fn set_locked(&mut self, user: UserName, locked: bool) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE users SET locked = ? WHERE name = ?",
            params![i64::from(locked), user.as_str()],
        )?;
        Ok(changed > 0)
    }
}
