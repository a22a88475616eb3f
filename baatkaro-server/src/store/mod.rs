//! Persistence: what the server keeps across restarts, behind a narrow trait.
//!
//! The [`Store`] trait is all the rest of the server knows of the disk: load
//! everything at start, commit a batch of writes atomically, read a page of a
//! conversation's history. [`sqlite::Sqlite`] is the embedded default; another
//! engine implements the same four methods. The [`writer`] runs a store on a
//! dedicated thread and commits whatever arrived while the last commit ran in one
//! transaction (group commit), so the async runtime never waits on the disk.

mod accounts;
mod checksum;
mod events;
pub use events::{MIN_SEGMENT_BYTES, SEGMENT_BYTES};
mod group_log;
pub mod identity;
mod key_blocks;
mod key_log;
mod read_markers;

pub use accounts::Admin;
pub mod sqlite;
pub mod verify;
pub mod writer;

use baatkaro_proto::Millis;

// The records themselves belong to the hub's sans-IO core, which makes them.
pub use baatkaro_hub::store::{
    Batch, ConvKey, EventRecord, FileRecord, HistoryPage, HistoryQuery, Read, ReadResult, Snapshot,
    StoreFault, TokenRecord, UnreadQuery, UnreadRange, UploadRecord, Write,
};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("the data directory {0} is in use by another baatkaro-server (its lock file is held)")]
    Locked(std::path::PathBuf),
    /// The database was written by a newer server.
    #[error("the database has schema version {found}; this server knows up to {known}")]
    TooNew {
        /// The database's version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// The database holds something this server cannot read, or that fails its
    /// checksum. The text never quotes what the damaged file holds.
    #[error("the database is corrupt: {0}")]
    Corrupt(String),
    /// The disk has no room for the write.
    #[error("the disk is full: {0}")]
    Full(String),
    /// The data directory holds a store's files but no database: it was deleted or
    /// moved, and the server does not start afresh unless told to.
    #[error(
        "the data directory {} holds a BaatKaro store ({}) but no database {}: it was \
         deleted or moved. Put it back (or restore it from a backup); to start a new, empty \
         store here instead, start once with --fresh",
        dir.display(), found.join(", "), sqlite::DB_FILE
    )]
    NoDatabase {
        /// The data directory.
        dir: std::path::PathBuf,
        /// What it holds of a store.
        found: Vec<&'static str>,
    },
    /// `--fresh` where a database exists: it never replaces one.
    #[error(
        "--fresh starts a new store only where the database is gone, and {} exists: start \
         without --fresh, or move the database away first",
        .0.display()
    )]
    FreshOverDatabase(std::path::PathBuf),
    /// The database is not the one the data directory's identity file names.
    #[error(
        "the database in {} is store {database}, but the directory's {} names store \
         {directory}: the database or the directory was swapped. If this database is the \
         right one, delete {} (it is written again from the database); to start a new, empty \
         store, move the database away and start with --fresh",
        dir.display(), identity::ID_FILE, dir.join(identity::ID_FILE).display()
    )]
    IdentityMismatch {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The database's identity.
        database: String,
        /// The identity file's.
        directory: String,
    },
    /// The engine failed.
    #[error("database error: {0}")]
    Engine(rusqlite::Error),
    /// The file system failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    /// Sorts the engine's errors: damage to the file and a full disk are told apart
    /// from the rest, wherever a statement meets them. The engine's own text is left
    /// out of those two: for a damaged schema it may quote the file.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error() {
            Some(f) if matches!(f.code, C::DatabaseCorrupt | C::NotADatabase) => {
                StoreError::Corrupt(format!(
                    "the database engine found the file malformed (SQLite error {})",
                    f.extended_code
                ))
            }
            Some(f) if f.code == C::DiskFull => {
                StoreError::Full(format!("SQLite error {}", f.extended_code))
            }
            _ => StoreError::Engine(e),
        }
    }
}

impl StoreError {
    /// What the hub makes of the error: damage, a full disk, or anything else.
    pub fn fault(&self) -> StoreFault {
        match self {
            StoreError::Corrupt(e) => StoreFault::Damaged(e.clone()),
            StoreError::Full(e) => StoreFault::Full(e.clone()),
            other => StoreFault::Failed(other.to_string()),
        }
    }
}

/// A storage engine. Methods are called from one dedicated thread.
pub trait Store: Send + 'static {
    /// Reads everything the server keeps in memory; keys stored before
    /// `keys_since` are left out (and may be deleted), and so are all but each user's
    /// newest `keys_per_user` (0: all of them).
    fn load(&mut self, keys_since: Millis, keys_per_user: u64) -> Result<Snapshot, StoreError>;

    /// Makes every write durable, atomically and in order, with the next group id
    /// to give out. `history` > 0 keeps only that many newest events per conversation.
    fn commit(
        &mut self,
        writes: &[Write],
        next_group_id: u64,
        history: u64,
    ) -> Result<(), StoreError>;

    /// Reads a page of one conversation's history.
    fn history(&mut self, query: &HistoryQuery) -> Result<HistoryPage, StoreError>;

    /// Counts the unread events of each range of `query`, in its order: the stored
    /// events that [`baatkaro_proto::rules::counts_as_unread`] for its reader.
    fn unread(&mut self, query: &UnreadQuery) -> Result<Vec<u64>, StoreError>;

    /// Makes the next open quick, where the engine can: at a clean shutdown, after
    /// the last batch.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The store was found damaged (SPEC.md: a server MUST NOT write to a damaged
    /// store again): from now on it writes nothing. A [`Store::load`] reads what it
    /// would have tidied as it stands — a torn tail is left uncut and unread,
    /// expired keys are left out but not removed — and a commit is refused.
    fn stop_writing(&mut self) {}

    /// Runs one read of a batch.
    fn read(&mut self, read: &Read) -> Result<ReadResult, StoreError> {
        match read {
            Read::History(q) => self.history(q).map(ReadResult::History),
            Read::Unread(q) => self.unread(q).map(ReadResult::Unread),
        }
    }
}
