//! An append-only log of batches: how BaatKaro stores conversation events.
//!
//! The log is a directory of segment files written strictly in order. Each
//! [`Log::commit`] appends one batch — the records of one group commit — with one
//! write and one `fdatasync`, and returns only once the batch is durable. Every batch
//! and every record carries a checksum, so a read finds damage instead of returning
//! it, and [`Log::open`] tells a torn last write (cut, and reported in [`Recovery`])
//! from damage to what was already acknowledged (refused, loudly, with
//! [`LogError::Damaged`]).
//!
//! The log knows nothing of conversations: a record is bytes, and a position is
//! where its bytes start. What indexes them, and which batches belong with the
//! metadata kept elsewhere, is the caller's (`baatkaro-server`'s store).
//!
//! Memory: the log keeps the bases of its segments (one word per segment) and a
//! few open files; nothing that grows with the number of records. What it writes
//! does not stay in the page cache: each commit goes to the device by direct I/O
//! where the file system allows it ([`Options::direct`]), its last block filled
//! with zeros past its end (so the active segment's file may run on by less than a
//! block of them, trimmed at an open and when the log moves on to the next
//! segment); written through the page cache (where direct I/O is refused or off),
//! it stays there only while among the log's last [`CACHED_TAIL`] bytes.
//! What a catch-up reads back is cached as any read is (and, of the active
//! segment, dropped the same way); what a [`Verifier`] reads is dropped after it.

mod blocks;
mod error;
mod frame;
mod log;
mod segment;
mod verify;

pub use error::LogError;
pub use frame::{HEADER as BATCH_HEADER, RECORD_HEADER};
pub use log::{Batch, BatchWriter, CACHED_TAIL, Cut, Log, Options, Recovery, Span, UNCACHE_STEP};
pub use segment::SEGMENT_HEADER;
pub use verify::{Checked, Verifier};

/// A place in the log: its segment's base plus the offset in that segment's file.
/// Positions only grow as the log does (until [`Log::truncate`] cuts it back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
