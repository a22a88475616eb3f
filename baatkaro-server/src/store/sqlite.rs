//! The embedded default store: one SQLite database in the data directory, in WAL
//! mode with `synchronous=FULL`, so a committed batch survives a power cut.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baatkaro_eventlog::Options as LogOptions;
use baatkaro_proto::group::GroupId;
use baatkaro_proto::{
    Conversation, Event, GroupName, IdemKey, PAYLOAD_CEILING, ServerFrame, StoredEvent, decode_one,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::checksum::{self, RowSum};
use super::events::{self, EventLog};
use super::identity::{self, IDENTITY_VERSION};
use super::{
    ConvKey, EventRecord, FileRecord, HistoryPage, HistoryQuery, Snapshot, Store, StoreError,
    UnreadQuery, UploadRecord, Write, accounts, group_log, key_blocks, key_log, read_markers,
};
use baatkaro_proto::transfer::Ranges;
use baatkaro_proto::{FileName, Sha256};

/// The schema, one step per version: `MIGRATIONS[i]` takes a database from version
/// `i` to `i + 1`. Steps are only ever appended, so every older database opens.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, groups and their logs, conversation events, idempotency keys.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     CREATE TABLE users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, created INTEGER NOT NULL);
     CREATE TABLE groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
     CREATE TABLE group_log (
         group_id INTEGER NOT NULL, n INTEGER NOT NULL, event BLOB NOT NULL,
         PRIMARY KEY (group_id, n)) WITHOUT ROWID;
     CREATE TABLE events (
         conv TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL, frame BLOB NOT NULL,
         PRIMARY KEY (conv, seq)) WITHOUT ROWID;
     CREATE TABLE send_keys (
         user TEXT NOT NULL, key TEXT NOT NULL, conv TEXT NOT NULL,
         fingerprint INTEGER NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL,
         PRIMARY KEY (user, key)) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('next_group_id', 1);",
    // 2: expired idempotency keys are deleted by time at every start.
    "CREATE INDEX send_keys_by_time ON send_keys (time);",
    // 3: file sharing: unfinished uploads, shared files, and who holds which content.
    "CREATE TABLE uploads (
         id TEXT PRIMARY KEY, user TEXT NOT NULL, conv TEXT NOT NULL, size INTEGER NOT NULL,
         sha256 TEXT NOT NULL, name BLOB NOT NULL, ranges TEXT NOT NULL, created INTEGER NOT NULL);
     CREATE TABLE files (
         id TEXT PRIMARY KEY, key TEXT NOT NULL, conv TEXT NOT NULL, seq INTEGER NOT NULL,
         time INTEGER NOT NULL, uploader TEXT NOT NULL, size INTEGER NOT NULL,
         sha256 TEXT NOT NULL, name BLOB NOT NULL);
     CREATE INDEX files_by_key ON files (key, seq);
     CREATE TABLE contents (
         user TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
         PRIMARY KEY (user, sha256)) WITHOUT ROWID;",
    // 4: idempotency keys are appended in the order they were stored, one row each
    // with no index: profiles of small-group traffic had the store thread busy in
    // B-tree inserts at random places of the (user, key) table and its time index.
    // The newest row of a (user, key) wins at load.
    "CREATE TABLE sent_keys (
         user TEXT NOT NULL, key TEXT NOT NULL, conv TEXT NOT NULL,
         fingerprint INTEGER NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL);
     INSERT INTO sent_keys (user, key, conv, fingerprint, seq, time)
         SELECT user, key, conv, fingerprint, seq, time FROM send_keys ORDER BY time;
     DROP TABLE send_keys;",
    // 5: every row carries a checksum of its columns (checksum.rs), which reads and
    // the checks verify; and the store has an identity, also kept in a file beside
    // the database, so that a database put in the wrong directory, or a directory
    // whose database went, is noticed instead of started afresh.
    "ALTER TABLE meta ADD COLUMN row_sum INTEGER;
     UPDATE meta SET row_sum = baatkaro_row_sum(key, value);
     ALTER TABLE users ADD COLUMN row_sum INTEGER;
     UPDATE users SET row_sum = baatkaro_row_sum(name, hash, created);
     ALTER TABLE groups ADD COLUMN row_sum INTEGER;
     UPDATE groups SET row_sum = baatkaro_row_sum(id, name);
     ALTER TABLE group_log ADD COLUMN row_sum INTEGER;
     UPDATE group_log SET row_sum = baatkaro_row_sum(group_id, n, event);
     ALTER TABLE uploads ADD COLUMN row_sum INTEGER;
     UPDATE uploads SET row_sum =
         baatkaro_row_sum(id, user, conv, size, sha256, name, ranges, created);
     ALTER TABLE files ADD COLUMN row_sum INTEGER;
     UPDATE files SET row_sum =
         baatkaro_row_sum(id, key, conv, seq, time, uploader, size, sha256, name);
     ALTER TABLE contents ADD COLUMN row_sum INTEGER;
     UPDATE contents SET row_sum = baatkaro_row_sum(user, sha256, size);
     ALTER TABLE sent_keys ADD COLUMN row_sum INTEGER;
     UPDATE sent_keys SET row_sum = baatkaro_row_sum(user, key, conv, fingerprint, seq, time);
     ALTER TABLE events ADD COLUMN row_sum INTEGER;
     UPDATE events SET row_sum = baatkaro_row_sum(conv, seq, time, frame);
     CREATE TABLE identity (id TEXT NOT NULL, created INTEGER NOT NULL, row_sum INTEGER);
     INSERT INTO identity (id, created, row_sum)
         SELECT id, created, baatkaro_row_sum(id, created) FROM
             (SELECT lower(hex(randomblob(16))) AS id,
                     CAST(unixepoch('subsec') * 1000 AS INTEGER) AS created);",
    // 6: session tokens (store/accounts.rs).
    accounts::MIGRATION_TOKENS,
    // 7: deleted accounts' names and operator locks (store/accounts.rs).
    accounts::MIGRATION_ACCOUNTS,
    // 8: the addresses that logged in to each account (store/accounts.rs).
    accounts::MIGRATION_KNOWN_ADDRESSES,
    // 9: read markers (store/read_markers.rs).
    read_markers::MIGRATION,
    // 10: conversation events move to the event log beside the database, which
    // this index points into (store/events.rs); the events of an older store are
    // moved when it is first opened.
    events::MIGRATION,
    // 11: idempotency keys are written in blocks, one row per flush of the event
    // log's index instead of one per key (store/key_blocks.rs); the rows of
    // `sent_keys` are moved into blocks when the store is first opened.
    key_blocks::MIGRATION,
    // 12: idempotency keys are written to a log of their own beside the database,
    // one batch per flush instead of one row (store/key_log.rs); the blocks are
    // moved into it when the store is first opened.
    key_log::MIGRATION,
    // 13: where the key log may begin is recorded before expired segments go, so
    // that a start finds a missing oldest segment (store/key_log.rs).
    key_log::MIGRATION_FIRST,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema version from which events are kept in the event log.
const EVENT_LOG_VERSION: i64 = 10;

/// The schema version from which idempotency keys are kept in blocks.
const KEY_BLOCK_VERSION: i64 = 11;

/// The schema version from which idempotency keys are kept in the key log.
const KEY_LOG_VERSION: i64 = 12;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "baatkaro.db";

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "baatkaro.lock";

/// A SQLite store, holding the data directory's lock for as long as it lives.
pub struct Sqlite {
    conn: Connection,
    /// Held, never read: the OS lock on it keeps a second server out.
    _lock: File,
    /// The next index of each group's log, so appends need no query.
    log_len: std::collections::HashMap<GroupId, i64>,
    /// The buffer of the rows' checksums (checksum.rs), kept between commits.
    sum: RowSum,
    /// Marks in `sent_keys`, oldest first: every row up to `rowid` was stored at
    /// `time` or before. Keys are appended in time order and the table has no time
    /// index, so expired keys are deleted as a range of rowids below a mark.
    key_marks: std::collections::VecDeque<KeyMark>,
    /// The data directory.
    dir: PathBuf,
    /// Where the events are, from schema 10 on; before it, in table `events`.
    events: Option<EventLog>,
    /// How the logs (events and keys) are written: the event log's segment size,
    /// and whether by direct I/O.
    logs: LogOptions,
    /// Whether idempotency keys are kept in blocks (schema 11) rather than in
    /// `sent_keys` rows.
    key_blocks: bool,
    /// Where idempotency keys are, from schema 12 on.
    key_log: Option<key_log::KeyLog>,
    /// Set when a commit or a load failed: the log may refuse writes, or hold a
    /// last write it has not judged, until it is opened again.
    log_suspect: bool,
    /// Set once the store was found damaged ([`Store::stop_writing`]): nothing is
    /// written from then on, by a load either.
    read_only: bool,
}

/// A place in `sent_keys` and the latest time of any key up to it.
#[derive(Clone, Copy, Debug)]
struct KeyMark {
    rowid: i64,
    time: u64,
    /// The key time at which this mark was first set: it moves on (to later rows)
    /// only within [`KEY_MARK_SPACING`] of that.
    since: u64,
}

/// Marks closer together than this (in milliseconds of key time) are merged, so
/// that the default week of keys holds at most 10,080 marks, and expired keys stay
/// on disk at most this much longer than in memory.
const KEY_MARK_SPACING: u64 = 60_000;

/// How long a held lock is retried before the directory counts as in use.
const LOCK_PATIENCE: Duration = Duration::from_millis(500);

/// Takes the lock on `lock`, the lock file of `dir`.
///
/// A lock that was just let go can still look held for a moment: a process
/// spawned by this one at that time holds a copy of the descriptor until it
/// execs (measured: up to about 2 ms). So a held lock is retried briefly, and
/// only a lock held longer than that means another server.
fn take_lock(lock: &File, dir: &Path) -> Result<(), StoreError> {
    let since = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if since.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

impl Sqlite {
    /// Opens (or creates) the store in `dir`, taking its lock, and migrates the
    /// schema forward. A directory that holds what a store leaves (its identity
    /// file, shared files) but no database is refused ([`StoreError::NoDatabase`]),
    /// and so is a database whose identity is not the directory's.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, false)
    }

    /// As [`Sqlite::open`]; with `fresh`, a directory whose database is gone starts
    /// a new, empty store (the operator's `--fresh`). `fresh` refuses to start where
    /// a database exists: it never replaces one.
    pub fn open_with(dir: &Path, fresh: bool) -> Result<Self, StoreError> {
        Self::open_sized(dir, fresh, events::SEGMENT_BYTES)
    }

    /// As [`Sqlite::open_with`], with the event log's segments `segment_bytes`
    /// long (at least [`super::MIN_SEGMENT_BYTES`]).
    pub fn open_sized(dir: &Path, fresh: bool, segment_bytes: u64) -> Result<Self, StoreError> {
        Self::open_logs(dir, fresh, LogOptions { segment_bytes, direct: true })
    }

    /// As [`Sqlite::open_with`], with the logs written as `logs` says: the event
    /// log's segments `logs.segment_bytes` long (at least
    /// [`super::MIN_SEGMENT_BYTES`]), whole blocks by direct I/O or not.
    pub fn open_logs(dir: &Path, fresh: bool, logs: LogOptions) -> Result<Self, StoreError> {
        let segment_bytes = logs.segment_bytes.max(events::MIN_SEGMENT_BYTES);
        Self::open_inner(dir, SCHEMA_VERSION, fresh, LogOptions { segment_bytes, ..logs })
    }

    /// Opens the store migrated only up to `version`: how tests make a database of
    /// an older server.
    #[doc(hidden)]
    pub fn open_at(dir: &Path, version: i64) -> Result<Self, StoreError> {
        let logs = LogOptions { segment_bytes: events::SEGMENT_BYTES, direct: true };
        Self::open_inner(dir, version, false, logs)
    }

    fn open_inner(
        dir: &Path,
        version: i64,
        fresh: bool,
        logs: LogOptions,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        take_lock(&lock, dir)?;
        let path = dir.join(DB_FILE);
        // Looked at before SQLite makes a database where there was none.
        let had_database = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
        if fresh && had_database {
            return Err(StoreError::FreshOverDatabase(path));
        }
        let left = identity::leftovers(dir);
        let conn = Connection::open(&path).map_err(|e| classify(e.into(), &path))?;
        let mut store = Sqlite {
            conn,
            _lock: lock,
            log_len: Default::default(),
            sum: RowSum::new(),
            key_marks: Default::default(),
            dir: dir.to_path_buf(),
            events: None,
            logs,
            key_blocks: version >= KEY_BLOCK_VERSION,
            key_log: None,
            log_suspect: false,
            read_only: false,
        };
        let found = store.setup(version, |found| {
            // A database that holds nothing yet, where a store was: the old one is
            // gone (deleted, or moved away), and starting afresh silently would let
            // anyone register the old names.
            if found == 0 && !left.is_empty() && !fresh {
                return Err(StoreError::NoDatabase { dir: dir.to_path_buf(), found: left.clone() });
            }
            Ok(())
        });
        let found = found.map_err(|e| {
            if matches!(e, StoreError::NoDatabase { .. }) && !had_database {
                // The empty file SQLite just made is not left behind.
                let _ = std::fs::remove_file(&path);
            }
            classify(e, &path)
        })?;
        if found == 0 && fresh && !left.is_empty() {
            // The old store's identity goes with it; the new one is written below.
            std::fs::remove_file(dir.join(identity::ID_FILE)).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
            })?;
            tracing::warn!(
                dir = %dir.display(),
                "started a new, empty store where one was (--fresh); its shared files under \
                 files/ are kept but no longer listed: delete them if they are not needed"
            );
        }
        if version >= IDENTITY_VERSION {
            store.check_identity(dir)?;
        }
        if version >= EVENT_LOG_VERSION {
            store.events = Some(EventLog::open(dir, logs)?);
            store.move_events()?;
        }
        if store.key_blocks {
            let moved = key_blocks::move_rows(&mut store.conn, &mut store.sum, events::FLUSH_AT)?;
            if moved > 0 {
                tracing::info!(keys = moved, "moved the stored idempotency keys into blocks");
            }
        }
        if version >= KEY_LOG_VERSION {
            let mut keys = key_log::KeyLog::open(dir, logs)?;
            keys.reconcile(&store.conn, &mut store.sum)?;
            let moved = keys.move_blocks(&mut store.conn, &mut store.sum)?;
            if moved > 0 {
                tracing::info!(keys = moved, "moved the stored idempotency keys into the key log");
            }
            store.key_log = Some(keys);
        }
        Ok(store)
    }

    /// Moves the events of a store from before the event log out of table
    /// `events` into the log, once: the log is written and synced first, then one
    /// transaction indexes it and empties the table. A crash before that
    /// transaction leaves the table as it was, and the next open cuts the log back
    /// and moves them again.
    fn move_events(&mut self) -> Result<(), StoreError> {
        let Some(ev) = self.events.as_mut() else { return Ok(()) };
        if events::indexed(&self.conn)?.is_some() {
            return Ok(());
        }
        ev.cut_to_indexed(&self.conn)?;
        let mut moved = 0u64;
        {
            let mut st = self
                .conn
                .prepare("SELECT conv, seq, time, frame, row_sum FROM events ORDER BY conv, seq")?;
            let mut rows = st.query([])?;
            let mut batch: Vec<EventRecord> = Vec::new();
            let mut bytes = 0;
            loop {
                let row = rows.next()?;
                if let Some(r) = row {
                    let frame = checked_frame(r)??;
                    let conv: String = r.get(0)?;
                    let conv = ConvKey::from_db(&conv)
                        .ok_or_else(|| corrupt("a stored conversation is not valid"))?;
                    let (seq, time): (i64, i64) = (r.get(1)?, r.get(2)?);
                    bytes += frame.len();
                    batch.push(EventRecord {
                        conv,
                        seq: seq as u64,
                        time: time as u64,
                        frame: frame.into(),
                    });
                }
                // Batches of a few megabytes: each one write and one sync.
                if !batch.is_empty() && (row.is_none() || batch.len() == 10_000 || bytes > 4 << 20)
                {
                    ev.append_migrated(&batch)?;
                    moved += batch.len() as u64;
                    batch.clear();
                    bytes = 0;
                }
                if row.is_none() {
                    break;
                }
            }
        }
        let tx = self.conn.transaction()?;
        ev.flush(&tx, &mut self.sum)?;
        tx.execute("DELETE FROM events", [])?;
        tx.commit()?;
        ev.flushed(&self.conn);
        if moved > 0 {
            tracing::info!(
                events = moved,
                "moved the stored events from the database to the event log"
            );
        }
        Ok(())
    }

    /// Compares the database's identity with the directory's `baatkaro.id`, and
    /// writes that file where it is missing (a new store, or one an older server
    /// made).
    fn check_identity(&self, dir: &Path) -> Result<(), StoreError> {
        let ours: Option<String> = self
            .conn
            .query_row("SELECT id FROM identity LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(StoreError::from)?;
        let Some(ours) = ours.filter(|id| identity::valid(id)) else {
            return Err(StoreError::Corrupt("the database holds no valid identity".into()));
        };
        match identity::read(dir)? {
            Some(theirs) if theirs == ours => Ok(()),
            Some(theirs) => Err(StoreError::IdentityMismatch {
                dir: dir.to_path_buf(),
                database: ours,
                directory: theirs,
            }),
            None => {
                identity::write(dir, &ours)?;
                tracing::info!(identity = %ours, "wrote the store's identity beside the database");
                Ok(())
            }
        }
    }

    /// Sets the connection up and migrates the schema up to `target`; `before`
    /// sees the version found first and may refuse it. The version found.
    fn setup(
        &mut self,
        target: i64,
        before: impl FnOnce(i64) -> Result<(), StoreError>,
    ) -> Result<i64, StoreError> {
        checksum::register(&self.conn)?;
        let found: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        before(found)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew { found, known: SCHEMA_VERSION });
        }
        // WAL lets readers and the writer overlap; FULL syncs the log at every commit.
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        // 2 MiB of page cache (about SQLite's default). Events live in the event
        // log; the database holds their index and the metadata, whose hot pages
        // (the index's right edge, the tables' upper levels) fit in it, and which
        // the kernel's page cache holds too. The 64 MiB it had when events were
        // rows kept every new index page it wrote until it was full: the server's
        // memory grew by 0.3 MB a million messages stored, for no throughput
        // (BENCHMARKS.md, "SQLite's page cache back to 2 MiB").
        self.conn.pragma_update(None, "cache_size", -2_048)?;
        // A checkpoint every 1,000 pages (SQLite's default; about 4 MB of log). The
        // log holds only index flushes and metadata since events went to the event
        // log, and a log that grew to 40 MB (10,000 pages) before it was reused
        // wrote every page of it fresh, which costs a host fault on a virtual machine
        // that hands free memory back: 7 % of a new server's first seconds at 10 x
        // 10, and no difference in longer runs (BENCHMARKS.md, "The log's page cache").
        self.conn.pragma_update(None, "wal_autocheckpoint", 1_000)?;
        for version in found..target {
            let tx = self.conn.transaction()?;
            // version < SCHEMA_VERSION = MIGRATIONS.len(), so the index is in range.
            tx.execute_batch(MIGRATIONS[version as usize])?;
            tx.pragma_update(None, "user_version", version + 1)?;
            tx.commit()?;
            tracing::info!(from = version, to = version + 1, "migrated the database schema");
        }
        Ok(found)
    }

    /// Takes a database back to an older schema version by undoing the later
    /// migrations: how tests make a database as an older server left it.
    #[doc(hidden)]
    pub fn downgrade_for_tests(dir: &Path, version: i64) -> Result<(), StoreError> {
        // UNDO[i] undoes MIGRATIONS[i]; the first, which makes the tables, stays.
        const UNDO: &[&str] = &[
            "",
            "DROP INDEX send_keys_by_time;",
            "DROP TABLE uploads; DROP TABLE files; DROP TABLE contents;",
            "CREATE TABLE send_keys (
                 user TEXT NOT NULL, key TEXT NOT NULL, conv TEXT NOT NULL,
                 fingerprint INTEGER NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL,
                 PRIMARY KEY (user, key)) WITHOUT ROWID;
             CREATE INDEX send_keys_by_time ON send_keys (time);
             INSERT OR REPLACE INTO send_keys (user, key, conv, fingerprint, seq, time)
                 SELECT user, key, conv, fingerprint, seq, time FROM sent_keys ORDER BY rowid;
             DROP TABLE sent_keys;",
            "ALTER TABLE meta DROP COLUMN row_sum; ALTER TABLE users DROP COLUMN row_sum;
             ALTER TABLE groups DROP COLUMN row_sum; ALTER TABLE group_log DROP COLUMN row_sum;
             ALTER TABLE uploads DROP COLUMN row_sum; ALTER TABLE files DROP COLUMN row_sum;
             ALTER TABLE contents DROP COLUMN row_sum; ALTER TABLE sent_keys DROP COLUMN row_sum;
             ALTER TABLE events DROP COLUMN row_sum; DROP TABLE identity;",
            accounts::UNDO_TOKENS,
            accounts::UNDO_ACCOUNTS,
            accounts::UNDO_KNOWN_ADDRESSES,
            read_markers::UNDO,
            events::UNDO,
            key_blocks::UNDO,
            key_log::UNDO,
            key_log::UNDO_FIRST,
        ];
        let found: i64 =
            Connection::open(dir.join(DB_FILE))?
                .pragma_query_value(None, "user_version", |r| r.get(0))?;
        // A store with an event log is opened once, which migrates it to this
        // build's schema (and moves rows of `sent_keys` into blocks): the steps
        // back start from there, not from the version found.
        let opened = found >= EVENT_LOG_VERSION && version < found;
        let found = if opened { SCHEMA_VERSION } else { found };
        let undo_blocks = opened && version < KEY_BLOCK_VERSION;
        let undo_log = opened && version < EVENT_LOG_VERSION;
        let mut store = if opened {
            let mut store = Sqlite::open(dir)?;
            store.load(0, 0)?;
            store.flush_index()?;
            Some(store)
        } else {
            None
        };
        if let Some(store) = store.as_mut()
            && version < KEY_LOG_VERSION
            && let Some(mut keys) = store.key_log.take()
        {
            // The keys go back into blocks, as before the key log.
            keys.restore_blocks(&mut store.conn, &mut store.sum)?;
            drop(keys);
            std::fs::remove_dir_all(dir.join(key_log::KEY_LOG_DIR))?;
        }
        if let Some(store) = store.as_mut()
            && undo_blocks
        {
            // The keys go back into rows, as before the blocks.
            key_blocks::restore_rows(&mut store.conn)?;
        }
        if let Some(mut store) = store
            && undo_log
        {
            // The events go back into their table, as before the log.
            let Some(ev) = store.events.as_mut() else { return Ok(()) };
            let events = ev.dump(&store.conn)?;
            let tx = store.conn.transaction()?;
            for e in events {
                let (conv, seq, time) = (e.conv.to_db(), e.seq as i64, e.time as i64);
                let sum = store.sum.start().text(&conv).int(seq).int(time).blob(&e.frame).digest();
                tx.execute(
                    "INSERT INTO events (conv, seq, time, frame, row_sum) VALUES (?, ?, ?, ?, ?)",
                    params![conv, seq, time, &e.frame[..], sum],
                )?;
            }
            tx.commit()?;
            drop(store);
            std::fs::remove_dir_all(dir.join(events::LOG_DIR))?;
        }
        let conn = Connection::open(dir.join(DB_FILE))?;
        for v in (version..found).rev() {
            conn.execute_batch(UNDO.get(v as usize).copied().unwrap_or_default())?;
        }
        conn.pragma_update(None, "user_version", version)?;
        if version < IDENTITY_VERSION {
            // Older servers kept no identity beside the database.
            let _ = std::fs::remove_file(dir.join(identity::ID_FILE));
        }
        Ok(())
    }

    /// Writes what the event log's index holds in memory to the database, so that
    /// the next open reads nothing back from the log.
    fn flush_index(&mut self) -> Result<(), StoreError> {
        if self.events.is_none() {
            return Ok(());
        }
        let next: i64 =
            self.conn.query_row("SELECT value FROM meta WHERE key = 'next_group_id'", [], |r| {
                r.get(0)
            })?;
        // A write for the database alone, which expires nothing, makes the flush.
        self.commit(&[Write::KeysExpired { before: 0 }], next as u64, 0)
    }

    /// The operator's offline changes to accounts (`baatkaro-server admin`).
    pub fn admin(&mut self) -> accounts::Admin<'_> {
        accounts::Admin { conn: &mut self.conn }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

/// Names an error on opening that means the file is not a usable database.
fn classify(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Corrupt(why) => StoreError::Corrupt(format!(
            "{} is not a BaatKaro database, or is damaged ({why})",
            path.display()
        )),
        other => other,
    }
}

// What the store reads back and cannot make sense of is named by what it should
// have been, never quoted: the bytes of a damaged file have no place in a log.
fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn name<T: std::str::FromStr>(s: String, what: &str) -> Result<T, StoreError> {
    s.parse().map_err(|_| corrupt(format!("a stored {what} is not valid")))
}

fn sha_of(hex: &str) -> Result<Sha256, StoreError> {
    Sha256::from_hex(hex.as_bytes()).map_err(|_| corrupt("a stored SHA-256 is not valid"))
}

fn hex(sha: &Sha256) -> String {
    sha.to_string()
}

fn file_name_of(bytes: Vec<u8>) -> Result<FileName, StoreError> {
    FileName::from_bytes(bytes.into()).map_err(|_| corrupt("a stored file name is not valid"))
}

fn event_of(frame: &[u8]) -> Result<StoredEvent, StoreError> {
    match decode_one::<ServerFrame>(frame, PAYLOAD_CEILING) {
        Ok(ServerFrame::Event(Event::Stored(e))) => Ok(e),
        _ => Err(corrupt("a stored event does not decode")),
    }
}

/// Reads the keys of `sent_keys` (a store before the blocks) at `keys_since` or
/// later into `out`, deleting older rows (`read_only`: leaving them out), and
/// marks where they end in `marks`.
fn load_key_rows(
    c: &Connection,
    marks: &mut std::collections::VecDeque<KeyMark>,
    keys_since: u64,
    keys_per_user: u64,
    read_only: bool,
    out: &mut Vec<key_blocks::KeyRow>,
) -> Result<(), StoreError> {
    if !read_only {
        c.execute("DELETE FROM sent_keys WHERE time < ?", [keys_since as i64])?;
    }
    let last: Option<(i64, i64)> =
        c.query_row("SELECT MAX(rowid), MAX(time) FROM sent_keys", [], |r| {
            Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
        })?;
    if let Some((rowid, time)) = last {
        let time = time as u64;
        marks.push_back(KeyMark { rowid, time, since: time });
    }
    // In the order they were stored: the newest row of a key is the one that
    // holds, and the hub expires keys oldest first. Only each user's newest rows
    // are read: the hub keeps no more (SPEC.md 5.2, `key-count`).
    let mut q = c.prepare(
        "SELECT user, key, conv, fingerprint, seq, time FROM (
             SELECT rowid AS r, user, key, conv, fingerprint, seq, time,
                    ROW_NUMBER() OVER (PARTITION BY user ORDER BY rowid DESC) AS newest
             FROM sent_keys)
         WHERE newest <= ?1 ORDER BY r",
    )?;
    let per_user = match keys_per_user {
        0 => i64::MAX,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    };
    let rows = q.query_map([per_user], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    for row in rows {
        let (user, key, conv, fp, seq, time) = row?;
        if (time as u64) < keys_since {
            continue; // expired, and not deleted (read_only)
        }
        let key: IdemKey = name(key, "idempotency key")?;
        let conv: Conversation = name(conv, "conversation")?;
        // Fingerprints are u64 stored bit for bit in SQLite's i64.
        out.push((name(user, "user name")?, key, conv, fp as u64, seq as u64, time as u64));
    }
    Ok(())
}

/// The bodies of [`Store::load`] and [`Store::commit`], which note a failure.
impl Sqlite {
    fn load_inner(&mut self, keys_since: u64, keys_per_user: u64) -> Result<Snapshot, StoreError> {
        if self.log_suspect && self.events.is_some() && !self.read_only {
            // Opened again: after a failed commit the log refuses writes until it
            // finds out what its last write left. Replaced only once opened: a
            // store whose `events` is `None` keeps its events in table `events`.
            // (Not a damaged store's: an open cuts a torn tail. Its log is read as
            // it stands, to the end its last whole write left.)
            let reopened = EventLog::open(&self.dir, self.logs)?;
            self.events = Some(reopened);
            if self.key_log.is_some() {
                self.key_log = Some(key_log::KeyLog::open(&self.dir, self.logs)?);
            }
        }
        let c = &self.conn;
        let mut snap = Snapshot::default();
        self.log_len.clear();
        let mut q = c.prepare("SELECT name, hash FROM users")?;
        for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (user, hash) = row?;
            snap.users.push((name(user, "user name")?, hash));
        }
        let mut q = c.prepare("SELECT id, name FROM groups ORDER BY id")?;
        let mut log = c.prepare("SELECT event FROM group_log WHERE group_id = ? ORDER BY n")?;
        for row in q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
            let (id, group) = row?;
            let group: GroupName = name(group, "group name")?;
            let events = log
                .query_map([id], |r| r.get::<_, Vec<u8>>(0))?
                .map(|e| group_log::decode(&e?))
                .collect::<Result<Vec<_>, _>>()?;
            let id = GroupId(id as u64);
            self.log_len.insert(id, events.len() as i64);
            snap.groups.push((id, group, events));
        }
        let latest = match self.events {
            Some(_) => "SELECT conv, MAX(last_seq) FROM event_chunks GROUP BY conv",
            None => "SELECT conv, MAX(seq) FROM events GROUP BY conv",
        };
        let mut q = c.prepare(latest)?;
        for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (conv, seq) = row?;
            let key = ConvKey::from_db(&conv)
                .ok_or_else(|| corrupt("a stored conversation is not valid"))?;
            snap.latest.push((key, seq as u64));
        }
        if let Some(keys) = self.key_log.as_mut() {
            keys.load(c, &mut self.sum, keys_since, keys_per_user, self.read_only, &mut snap.keys)?;
        } else if self.key_blocks {
            key_blocks::load(c, keys_since, keys_per_user, self.read_only, &mut snap.keys)?;
        } else {
            self.key_marks.clear();
            let marks = &mut self.key_marks;
            load_key_rows(c, marks, keys_since, keys_per_user, self.read_only, &mut snap.keys)?;
        }
        if let Some(ev) = self.events.as_mut() {
            // What the log holds past its index: the sends since the last flush,
            // newer than every row read above.
            let mut latest: std::collections::HashMap<ConvKey, u64> = Default::default();
            ev.replay(
                c,
                keys_since,
                self.read_only,
                |key| {
                    if let Write::SendKey { user, key, conv, fingerprint, seq, time } = key {
                        snap.keys.push((*user, *key, *conv, *fingerprint, *seq, *time));
                    }
                },
                |conv, seq| {
                    let e = latest.entry(conv).or_default();
                    *e = (*e).max(seq);
                },
            )?;
            for (conv, seq) in latest {
                match snap.latest.iter_mut().find(|(k, _)| *k == conv) {
                    Some((_, s)) => *s = (*s).max(seq),
                    None => snap.latest.push((conv, seq)),
                }
            }
            if keys_per_user > 0 {
                // Still only each user's newest: counted from the newest back.
                let mut seen: std::collections::HashMap<baatkaro_proto::UserName, u64> =
                    Default::default();
                let mut keep = vec![false; snap.keys.len()];
                for (i, k) in snap.keys.iter().enumerate().rev() {
                    let n = seen.entry(k.0).or_default();
                    *n += 1;
                    keep[i] = *n <= keys_per_user;
                }
                let mut i = 0;
                snap.keys.retain(|_| {
                    i += 1;
                    keep[i - 1]
                });
            }
        }
        let next: i64 =
            c.query_row("SELECT value FROM meta WHERE key = 'next_group_id'", [], |r| r.get(0))?;
        snap.next_group_id = next as u64;
        let mut q =
            c.prepare("SELECT id, user, conv, size, sha256, name, ranges, created FROM uploads")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        for row in rows {
            let (id, user, conv, size, sha, file_name, ranges, created) = row?;
            snap.uploads.push(UploadRecord {
                id: name(id, "file id")?,
                user: name(user, "user name")?,
                conv: name(conv, "conversation")?,
                size: size as u64,
                sha256: sha_of(&sha)?,
                name: file_name_of(file_name)?,
                ranges: Ranges::from_text(&ranges)
                    .ok_or_else(|| corrupt("the stored ranges of an upload are not valid"))?,
                created: created as u64,
            });
        }
        let mut q =
            c.prepare("SELECT id, key, conv, seq, time, uploader, size, sha256, name FROM files")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, Vec<u8>>(8)?,
            ))
        })?;
        for row in rows {
            let (id, key, conv, seq, time, uploader, size, sha, file_name) = row?;
            snap.files.push(FileRecord {
                id: name(id, "file id")?,
                key: ConvKey::from_db(&key)
                    .ok_or_else(|| corrupt("a stored conversation is not valid"))?,
                conv: name(conv, "conversation")?,
                seq: seq as u64,
                time: time as u64,
                uploader: name(uploader, "user name")?,
                size: size as u64,
                sha256: sha_of(&sha)?,
                name: file_name_of(file_name)?,
            });
        }
        let mut q = c.prepare("SELECT user, sha256, size FROM contents")?;
        for row in q.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })? {
            let (user, sha, size) = row?;
            snap.contents.push((name(user, "user name")?, sha_of(&sha)?, size as u64));
        }
        accounts::load(c, &mut snap)?;
        read_markers::load(c, &mut snap)?;
        Ok(snap)
    }

    fn commit_inner(
        &mut self,
        writes: &[Write],
        next_group_id: u64,
        history: u64,
    ) -> Result<(), StoreError> {
        // Events and keys go to the log first, durably; the database commits only
        // when the batch has metadata or enough index waits (events.rs).
        let in_log = self.events.is_some();
        let keys: Vec<Write> = match self.events.as_mut() {
            Some(ev) => {
                // A batch whose database transaction comes after it is flagged in
                // the log, so that a restart cuts it if that transaction never
                // committed.
                let flush = ev.flush_due()
                    || writes.iter().any(|w| !matches!(w, Write::Event(_) | Write::SendKey { .. }));
                ev.commit(writes, flush, history)?;
                if !flush {
                    return Ok(());
                }
                if self.key_blocks {
                    Vec::new()
                } else {
                    // A store of schema 10 (made by tests) keeps them in rows.
                    ev.keys().keys().collect::<Result<_, _>>()?
                }
            }
            None => Vec::new(),
        };
        let rows = keys.iter().chain(
            writes
                .iter()
                .filter(|w| !(in_log && matches!(w, Write::Event(_) | Write::SendKey { .. }))),
        );
        let events = &mut self.events;
        let tx = self.conn.transaction()?;
        // One buffer for every row's checksum of the batch.
        let rs = &mut self.sum;
        // Updated in place: after a failed commit the writer loads again before it
        // commits anything more, and `load` recounts.
        let log_len = &mut self.log_len;
        // The two statements of every SEND are looked up once per batch, not once
        // per write: the statement cache's lookup and hand-back showed in profiles.
        let mut insert_event = None;
        let mut insert_key = None;
        // Updated in place, as `log_len`: a failed commit is followed by a load.
        let marks = &mut self.key_marks;
        let key_log = &mut self.key_log;
        if let Some(ev) = events.as_ref() {
            if let Some(keys) = key_log.as_mut() {
                // The key log's batch is durable before the transaction that
                // records it commits (key_log.rs); first, as the rows were: a
                // `KeysExpired` of the batch applies to them.
                if ev.keys().len() > 0 {
                    keys.append(ev.keys())?;
                    keys.record(&tx, rs)?;
                }
            } else if self.key_blocks {
                ev.keys().insert(&tx, rs)?;
            }
        }
        for w in rows {
            match w {
                // Every row's columns are summed as they are bound, in the table's
                // column order (checksum::TABLES), with the types the schema keeps.
                Write::User { name, hash, created } => {
                    let sum =
                        rs.start().text(name.as_str()).text(hash).int(*created as i64).digest();
                    tx.prepare_cached(
                        "INSERT INTO users (name, hash, created, row_sum) VALUES (?, ?, ?, ?)",
                    )?
                    .execute(params![
                        name.as_str(),
                        hash,
                        *created as i64,
                        sum
                    ])?;
                }
                Write::GroupCreated { id, name } => {
                    let sum = rs.start().int(id.0 as i64).text(name.as_str()).digest();
                    tx.prepare_cached("INSERT INTO groups (id, name, row_sum) VALUES (?, ?, ?)")?
                        .execute(params![id.0 as i64, name.as_str(), sum])?;
                    log_len.insert(*id, 0);
                }
                Write::GroupEvent { id, event } => {
                    let n = log_len.entry(*id).or_insert(0);
                    let event = group_log::encode(event);
                    let sum = rs.start().int(id.0 as i64).int(*n).blob(&event).digest();
                    tx.prepare_cached(
                        "INSERT INTO group_log (group_id, n, event, row_sum) VALUES (?, ?, ?, ?)",
                    )?
                    .execute(params![id.0 as i64, *n, event, sum])?;
                    *n += 1;
                }
                Write::GroupDeleted { id } => {
                    tx.prepare_cached("DELETE FROM groups WHERE id = ?")?.execute([id.0 as i64])?;
                    tx.prepare_cached("DELETE FROM group_log WHERE group_id = ?")?
                        .execute([id.0 as i64])?;
                    match events.as_mut() {
                        Some(ev) => ev.forget(&tx, ConvKey::Group(*id))?,
                        None => {
                            tx.prepare_cached("DELETE FROM events WHERE conv = ?")?
                                .execute([ConvKey::Group(*id).to_db()])?;
                        }
                    }
                    tx.prepare_cached("DELETE FROM files WHERE key = ?")?
                        .execute([ConvKey::Group(*id).to_db()])?;
                    read_markers::commit(&tx, rs, w)?;
                    log_len.remove(id);
                }
                Write::Event(record) => {
                    let conv = record.conv.to_db();
                    let seq = record.seq as i64;
                    let insert = match &mut insert_event {
                        Some(st) => st,
                        None => insert_event.insert(tx.prepare_cached(
                            "INSERT INTO events (conv, seq, time, frame, row_sum)
                             VALUES (?, ?, ?, ?, ?)",
                        )?),
                    };
                    let time = record.time as i64;
                    let sum =
                        rs.start().text(&conv).int(seq).int(time).blob(&record.frame).digest();
                    insert.execute(params![conv, seq, time, &record.frame[..], sum])?;
                    if history > 0 && seq as u64 > history {
                        tx.prepare_cached("DELETE FROM events WHERE conv = ? AND seq <= ?")?
                            .execute(params![conv, seq - history as i64])?;
                    }
                }
                Write::Upload(u) => {
                    let (conv, sha, ranges) =
                        (u.conv.to_string(), hex(&u.sha256), u.ranges.to_text());
                    let sum = rs
                        .start()
                        .text(u.id.as_str())
                        .text(u.user.as_str())
                        .text(&conv)
                        .int(u.size as i64)
                        .text(&sha)
                        .blob(u.name.as_bytes())
                        .text(&ranges)
                        .int(u.created as i64)
                        .digest();
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO uploads
                             (id, user, conv, size, sha256, name, ranges, created, row_sum)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )?
                    .execute(params![
                        u.id.as_str(),
                        u.user.as_str(),
                        conv,
                        u.size as i64,
                        sha,
                        &u.name.as_bytes()[..],
                        ranges,
                        u.created as i64,
                        sum
                    ])?;
                }
                Write::UploadGone { id } => {
                    tx.prepare_cached("DELETE FROM uploads WHERE id = ?")?
                        .execute([id.as_str()])?;
                }
                Write::File(f) => {
                    let (key, conv, sha) = (f.key.to_db(), f.conv.to_string(), hex(&f.sha256));
                    let sum = rs
                        .start()
                        .text(f.id.as_str())
                        .text(&key)
                        .text(&conv)
                        .int(f.seq as i64)
                        .int(f.time as i64)
                        .text(f.uploader.as_str())
                        .int(f.size as i64)
                        .text(&sha)
                        .blob(f.name.as_bytes())
                        .digest();
                    tx.prepare_cached(
                        "INSERT INTO files
                             (id, key, conv, seq, time, uploader, size, sha256, name, row_sum)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )?
                    .execute(params![
                        f.id.as_str(),
                        key,
                        conv,
                        f.seq as i64,
                        f.time as i64,
                        f.uploader.as_str(),
                        f.size as i64,
                        sha,
                        &f.name.as_bytes()[..],
                        sum
                    ])?;
                }
                Write::Content { user, sha256, size } => {
                    let sha = hex(sha256);
                    let sum = rs.start().text(user.as_str()).text(&sha).int(*size as i64).digest();
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO contents (user, sha256, size, row_sum)
                         VALUES (?, ?, ?, ?)",
                    )?
                    .execute(params![
                        user.as_str(),
                        sha,
                        *size as i64,
                        sum
                    ])?;
                }
                Write::SendKey { user, key, conv, fingerprint, seq, time } => {
                    let insert = match &mut insert_key {
                        Some(st) => st,
                        None => insert_key.insert(tx.prepare_cached(
                            "INSERT INTO sent_keys (user, key, conv, fingerprint, seq, time, row_sum)
                             VALUES (?, ?, ?, ?, ?, ?, ?)",
                        )?),
                    };
                    let conv = conv.to_string();
                    let sum = rs
                        .start()
                        .text(user.as_str())
                        .text(key.as_str())
                        .text(&conv)
                        .int(*fingerprint as i64)
                        .int(*seq as i64)
                        .int(*time as i64)
                        .digest();
                    insert.execute(params![
                        user.as_str(),
                        key.as_str(),
                        conv,
                        *fingerprint as i64,
                        *seq as i64,
                        *time as i64,
                        sum
                    ])?;
                    // Read here: the last row of the batch may be another table's.
                    // Marked key by key: the keys of many sends since the last flush
                    // may go in one transaction, and each minute's needs its mark.
                    note_key(marks, *time, tx.last_insert_rowid());
                }
                Write::Token(_)
                | Write::TokenGone { .. }
                | Write::Password { .. }
                | Write::KnownAddress { .. }
                | Write::KnownAddressGone { .. }
                | Write::UserDeleted { .. } => {
                    accounts::commit(&tx, w)?;
                    read_markers::commit(&tx, rs, w)?;
                }
                Write::ReadMarker { .. } | Write::ReadMarkerGone { .. } => {
                    read_markers::commit(&tx, rs, w)?;
                }
                Write::KeysExpired { before } if key_log.is_some() => {
                    if let Some(keys) = key_log.as_mut() {
                        keys.cut(&tx, rs, *before)?;
                    }
                }
                Write::KeysExpired { before } if self.key_blocks => {
                    key_blocks::expire(&tx, *before)?;
                }
                Write::KeysExpired { before } => {
                    // The last mark wholly before the cut: every row up to it goes.
                    let cut = marks.iter().take_while(|m| m.time < *before).count();
                    if let Some(mark) = cut.checked_sub(1).and_then(|i| marks.get(i)) {
                        tx.prepare_cached("DELETE FROM sent_keys WHERE rowid <= ?")?
                            .execute([mark.rowid])?;
                        marks.drain(..cut);
                    }
                }
            }
        }
        let next = next_group_id as i64;
        let sum = rs.start().text("next_group_id").int(next).digest();
        tx.prepare_cached("UPDATE meta SET value = ?, row_sum = ? WHERE key = 'next_group_id'")?
            .execute([next, sum])?;
        if let Some(ev) = events.as_mut() {
            ev.flush(&tx, rs)?;
        }
        // Handed back to the cache before the transaction they borrow ends.
        drop((insert_event, insert_key));
        tx.commit()?;
        if let Some(ev) = self.events.as_mut() {
            ev.flushed(&self.conn);
        }
        if let Some(keys) = self.key_log.as_mut() {
            keys.remove_expired(&self.conn, &mut self.sum);
        }
        Ok(())
    }
}

impl Store for Sqlite {
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        if self.read_only {
            return Ok(());
        }
        self.flush_index()
    }

    fn stop_writing(&mut self) {
        self.read_only = true;
        // Nor does closing the database copy its log into it.
        if let Err(e) = self
            .conn
            .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        {
            tracing::warn!(error = %e, "could not keep the damaged database from a checkpoint at close");
        }
    }

    fn load(&mut self, keys_since: u64, keys_per_user: u64) -> Result<Snapshot, StoreError> {
        let loaded = self.load_inner(keys_since, keys_per_user);
        self.log_suspect = loaded.is_err();
        loaded
    }

    fn commit(
        &mut self,
        writes: &[Write],
        next_group_id: u64,
        history: u64,
    ) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::Io(std::io::Error::other(
                "the store was found damaged: it takes no writes",
            )));
        }
        if self.log_suspect && self.events.is_some() {
            // The failed commit may have left the first parts of a group commit in
            // the log, indexed in memory and never acknowledged: a load cuts them,
            // where this commit's flush would make them permanent (their events
            // without the keys of the parts that never made it). The writer loads
            // after any failure; this holds every other caller to the same.
            return Err(StoreError::Io(std::io::Error::other(
                "an earlier commit or load failed: the store takes no commit until it is loaded again",
            )));
        }
        let committed = self.commit_inner(writes, next_group_id, history);
        if committed.is_err() {
            self.log_suspect = true;
        }
        committed
    }

    fn unread(&mut self, q: &UnreadQuery) -> Result<Vec<u64>, StoreError> {
        let mut counts = Vec::with_capacity(q.convs.len());
        if let Some(ev) = self.events.as_mut() {
            for range in &q.convs {
                // At most UNREAD_WINDOW events each (rules::unread_range).
                let (frames, _) =
                    ev.events(&self.conn, range.conv, range.after, range.upto, usize::MAX, true)?;
                let mut n = 0;
                for frame in frames {
                    if baatkaro_proto::rules::counts_as_unread(&event_of(&frame)?, &q.reader) {
                        n += 1;
                    }
                }
                counts.push(n);
            }
            return Ok(counts);
        }
        for range in &q.convs {
            // At most UNREAD_WINDOW rows each (rules::unread_range), each checked
            // against its checksum before its frame is read.
            let frames: Vec<Result<Vec<u8>, StoreError>> = self
                .conn
                .prepare_cached(
                    "SELECT conv, seq, time, frame, row_sum FROM events
                     WHERE conv = ? AND seq > ? AND seq <= ? ORDER BY seq",
                )?
                .query_map(
                    params![
                        range.conv.to_db(),
                        range.after.min(i64::MAX as u64) as i64,
                        range.upto.min(i64::MAX as u64) as i64
                    ],
                    checked_frame,
                )?
                .collect::<Result<_, _>>()?;
            let mut n = 0;
            for frame in frames {
                if baatkaro_proto::rules::counts_as_unread(&event_of(&frame?)?, &q.reader) {
                    n += 1;
                }
            }
            counts.push(n);
        }
        Ok(counts)
    }

    fn history(&mut self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        if let Some(ev) = self.events.as_mut() {
            let (after, oldest_first) = match q.after {
                Some(after) => (after, true),
                None => (0, false),
            };
            let limit = q.limit as usize;
            let (mut frames, oldest) =
                ev.events(&self.conn, q.conv, after, q.upto, limit, oldest_first)?;
            trim_to_bytes(&mut frames, q.max_bytes, oldest_first);
            return Ok(HistoryPage {
                events: frames.iter().map(|f| event_of(f)).collect::<Result<_, _>>()?,
                oldest,
            });
        }
        let conv = q.conv.to_db();
        let (upto, limit) = (q.upto as i64, i64::from(q.limit));
        // Every row read is checked against its checksum before its frame is used.
        let row = checked_frame;
        let rows: Vec<Result<Vec<u8>, StoreError>> = match q.after {
            Some(after) => self
                .conn
                .prepare_cached(
                    "SELECT conv, seq, time, frame, row_sum FROM events
                     WHERE conv = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                )?
                .query_map(params![conv, after.min(i64::MAX as u64) as i64, upto, limit], row)?
                .collect::<Result<_, _>>()?,
            None => self
                .conn
                .prepare_cached(
                    "SELECT conv, seq, time, frame, row_sum FROM (
                         SELECT conv, seq, time, frame, row_sum FROM events
                         WHERE conv = ? AND seq <= ? ORDER BY seq DESC LIMIT ?)
                     ORDER BY seq",
                )?
                .query_map(params![conv, upto, limit], row)?
                .collect::<Result<_, _>>()?,
        };
        let mut frames = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
        trim_to_bytes(&mut frames, q.max_bytes, q.after.is_some());
        let oldest: Option<i64> = self
            .conn
            .prepare_cached("SELECT MIN(seq) FROM events WHERE conv = ?")?
            .query_row([&conv], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(HistoryPage {
            events: frames.iter().map(|f| event_of(f)).collect::<Result<_, _>>()?,
            oldest: oldest.map(|s| s as u64),
        })
    }
}

/// Notes a key row just written at `rowid`, stored at `time`: the newest mark moves
/// on to it, or a new mark begins once the newest spans [`KEY_MARK_SPACING`].
fn note_key(marks: &mut std::collections::VecDeque<KeyMark>, time: u64, rowid: i64) {
    // A mark's time is the latest of every key up to it, even if the clock stepped
    // back between two keys.
    let time = marks.back().map_or(time, |m| m.time.max(time));
    match marks.back_mut() {
        Some(m) if time < m.since.saturating_add(KEY_MARK_SPACING) => {
            m.rowid = rowid;
            m.time = time;
        }
        _ => marks.push_back(KeyMark { rowid, time, since: time }),
    }
}

/// Cuts a page of frames, oldest first, to what fits in `max_bytes` (one frame at
/// least): the oldest ones when `oldest_first` (a page after a sequence number),
/// else the newest.
fn trim_to_bytes(frames: &mut Vec<Vec<u8>>, max_bytes: u64, oldest_first: bool) {
    let mut bytes = 0u64;
    let mut over = |f: &Vec<u8>| {
        bytes += f.len() as u64;
        bytes > max_bytes
    };
    if oldest_first {
        if let Some(cut) = frames.iter().position(&mut over) {
            frames.truncate(cut.max(1));
        }
    } else if let Some(cut) = frames.iter().rev().position(&mut over) {
        let keep = cut.max(1);
        frames.drain(..frames.len() - keep);
    }
}

/// A row of `events` (conv, seq, time, frame, row_sum) checked against its checksum:
/// its frame, or the damage found.
fn checked_frame(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Vec<u8>, StoreError>> {
    let mut sum = RowSum::new();
    for i in 0..4 {
        sum.value(r.get_ref(i)?);
    }
    let stored: Option<i64> = r.get(4)?;
    if stored != Some(sum.digest()) {
        let seq = r.get_ref(1)?.as_i64().ok();
        return Ok(Err(damaged_event(seq)));
    }
    Ok(r.get::<_, Vec<u8>>(3).map_err(|_| damaged_event(r.get(1).ok())))
}

/// The error for a stored event that fails its checksum: its sequence number (an
/// integer, safe to print) if that much of it reads.
fn damaged_event(seq: Option<i64>) -> StoreError {
    match seq {
        Some(seq) => corrupt(format!(
            "a stored event (sequence number {seq}, table events) fails its checksum"
        )),
        None => corrupt("a stored event (table events) fails its checksum"),
    }
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.conn.path().map(PathBuf::from)).finish()
    }
}
