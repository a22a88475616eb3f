//! The async client of the BaatKaro group chat protocol, for bots, bridges and
//! other programs that speak it.
//!
//! [`Client`] is one connection to a server: connect, log in, send, receive
//! events, catch up, and ([`transfer`]) upload and download files, resumably and
//! verified; over TLS ([`tls`]: trust by CA, a given fingerprint, or pinning on
//! first use).

mod client;
mod file_io;
pub mod tls;
pub mod transfer;

pub use client::{Client, ClientError, ClientEvent, ServerInfo};
pub use tls::{ConnectOptions, TlsInfo, Trust};
pub use transfer::{IfExists, Saved, SharedFile};
