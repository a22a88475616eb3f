//! The BaatKaro client library and the `baatkaro` command-line client.
//!
//! [`Client`] is the async client other Rust programs embed (bots, bridges):
//! connect, log in, send, receive events, catch up, and ([`transfer`]) upload and
//! download files, resumably and verified; over TLS ([`tls`]: trust by CA, a given
//! fingerprint, or pinning on first use). [`show`] renders events and
//! list items as the lines and JSON objects the command-line client prints.

mod client;
pub mod show;
pub mod tls;
pub mod transfer;

pub use client::{Client, ClientError, ClientEvent, ServerInfo};
pub use tls::{ConnectOptions, TlsInfo, Trust};
pub use transfer::{IfExists, Saved, SharedFile};
