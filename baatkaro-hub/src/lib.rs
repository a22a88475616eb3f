//! The sans-IO core of the BaatKaro server: the state it keeps (accounts, groups,
//! conversations, files) and every request applied to it by the rules of
//! `baatkaro-proto`, in the manner of quinn-proto's `Endpoint`. [`Hub`] takes
//! `handle_*` inputs, each with the time, and gives [`Output`]s to carry out
//! (deliveries to connections, batches to commit, password hashes, disk work); its
//! docs state the drive-loop contract.
//!
//! Nothing here touches a socket, a file or a clock: the server (`baatkaro-server`)
//! is a thin tokio shell around it, and a test can drive the very same hub with a
//! hand-advanced clock and an in-memory store (`tests/simulation.rs`).

#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

mod hub;
mod output;
pub mod store;

pub use hub::{Entropy, Hub, HubConfig, IN_FLIGHT};
pub use output::{
    ConnId, ConnIdHasher, ConnMap, Delivery, DiskDone, DiskJob, Download, FileAccess, FileGrant,
    HashDone, HashJob, HashKind, HashOutcome, HashPurpose, ListReply, Output, Req, Routed,
};
