//! Persistence: what the server keeps across restarts, behind a narrow trait.
//!
//! The [`Store`] trait is all the rest of the server knows of the disk: load
//! everything at start, commit a batch of writes atomically, read a page of a
//! conversation's history. [`sqlite::Sqlite`] is the embedded default; another
//! engine implements the same four methods. The [`writer`] runs a store on a
//! dedicated thread and commits whatever arrived while the last commit ran in one
//! transaction (group commit), so the async runtime never waits on the disk.

mod accounts;
mod group_log;

pub use accounts::Admin;
pub mod sqlite;
pub mod writer;

use baatkaro_proto::Millis;

// The records themselves belong to the hub's sans-IO core, which makes them.
pub use baatkaro_hub::store::{
    Batch, ConvKey, EventRecord, FileRecord, HistoryPage, HistoryQuery, Snapshot, TokenRecord,
    UploadRecord, Write,
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
    /// The database holds something this server cannot read.
    #[error("the database is corrupt: {0}")]
    Corrupt(String),
    /// The engine failed.
    #[error("database error: {0}")]
    Engine(#[from] rusqlite::Error),
    /// The file system failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
}
