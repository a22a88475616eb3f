//! What can go wrong with the log.

use std::io;

use crate::Position;

/// Why the log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log holds bytes that fail their checksums, or segments that do not
    /// fit together, anywhere but in its very last write. The text names the
    /// segment and the place, never what the damaged bytes hold.
    #[error("the event log is damaged: {0}")]
    Damaged(String),
    /// The disk has no room for the write; nothing of it stays in the log.
    #[error("the disk is full: {0}")]
    Full(io::Error),
    /// A batch larger than a segment can hold.
    #[error("a batch of {0} bytes does not fit in a segment")]
    TooLarge(u64),
    /// An earlier write or sync failed: what is on disk is no longer known, so the
    /// log takes nothing more until it is opened again (which finds out).
    #[error("an earlier write to the event log failed; it must be opened again")]
    Failed,
    /// A position that is not one of the log's: before its first batch, past its
    /// end, or not where a batch or record starts.
    #[error("no batch or record of the event log is at position {0}")]
    NoSuchPosition(Position),
    /// The file system failed.
    #[error("event log: {0}")]
    Io(io::Error),
}

impl From<io::Error> for LogError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::StorageFull { LogError::Full(e) } else { LogError::Io(e) }
    }
}
