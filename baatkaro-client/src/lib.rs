//! The async client of the BaatKaro group chat protocol, for bots, bridges and
//! other programs that speak it.
//!
//! [`Client`] is one connection to a server, and a cheap handle to it: clone it
//! into as many tasks as you like, every method takes `&self`. [`Client::events`]
//! is the [`Stream`](futures::Stream) of what happens. Every command of SPEC.md
//! has a typed method returning what its reply means ([`Client::join`],
//! [`Client::kick`], [`Client::history`], [`Client::upload`], …), and errors come
//! in layers ([`ClientError`]): the server refused (with its SPEC.md code and
//! when to retry), the server broke the protocol, or I/O failed.
//!
//! With [`ConnectOptions::reconnect`], a dropped connection comes back by
//! itself: with backoff as SPEC.md 9 says, logging in again (with the session
//! token, if the session used one), catching up on every stored event that was
//! missed, and sending again what is safe to send again — messages sent while
//! away are queued and stored once each.
//!
//! Files go up and down resumably and verified ([`transfer`]); TLS trust is by
//! CA, a given fingerprint, or pinning on first use ([`tls`]).
//!
//! The types of the protocol (names, texts, events) are [`baatkaro_proto`]'s,
//! re-exported here: a program needs no other BaatKaro crate.
//!
//! # Reconnecting
//!
//! With [`ConnectOptions::reconnect`], the stream says [`ClientEvent::Disconnected`]
//! (with when the next attempt is), then, once logged in again, hands over the
//! stored events that were missed, in order, and says [`ClientEvent::Reconnected`].
//! Requests in flight that are safe to repeat ([`Command::is_idempotent`]: reads,
//! SEND, FILE-CHUNK, FILE-COMMIT, READ) are sent again, and those made while away
//! wait (up to 1,024 of them); any other fails at once with
//! [`ClientError::NotConnected`], since whether it was carried out is unknown. A
//! refused login (the password changed elsewhere, the token revoked) ends it with
//! [`ClientEvent::Closed`]; so do [`Client::logout`] and [`Client::close`].
//!
//! # An echo bot
//!
//! ```
//! use baatkaro_client::{Client, ClientEvent, Event, Password, StoredEvent, Text};
//!
//! # async fn bot(addr: &str) -> Result<(), baatkaro_client::ClientError> {
//! let client = Client::connect(addr).await?;
//! let mut events = client.events();
//! client.register("echo".parse()?, Password::new("echo-password")?).await?;
//! # let alice = Client::connect(addr).await?;
//! # alice.register("alice".parse()?, Password::new("alice-password")?).await?;
//! # alice.send("@echo".parse()?, Text::new("hello")?).await?;
//! while let Some(event) = events.next().await {
//!     if let ClientEvent::Event(Event::Stored(StoredEvent::Message { conv, from, text, .. })) = event
//!         && Some(from) != client.user()
//!     {
//!         // A private message arrives in `@sender`; answer there.
//!         let to = format!("@{from}").parse()?;
//!         client.send(to, Text::new(&format!("you said: {text}"))?).await?;
//! #       break;
//!     }
//! }
//! # Ok(()) }
//! # let dir = tempfile::tempdir().unwrap();
//! # let rt = tokio::runtime::Runtime::new().unwrap();
//! # rt.block_on(async {
//! #     let config = baatkaro_server::config::Config::new(dir.path().into());
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let addr = listener.local_addr().unwrap().to_string();
//! #     let server = baatkaro_server::server::Server::open(config).await.unwrap();
//! #     let stop = tokio::sync::oneshot::channel::<()>();
//! #     let serving = tokio::spawn(server.run(listener, async { let _ = stop.1.await; }));
//! #     bot(&addr).await.unwrap();
//! #     let _ = stop.0.send(());
//! #     let _ = serving.await;
//! # });
//! ```

mod client;
mod connection;
mod error;
mod events;
mod file_io;
mod methods;
pub mod tls;
pub mod transfer;

pub use client::Client;
pub use connection::ServerInfo;
pub use error::ClientError;
pub use events::{ClientEvent, EVENT_QUEUE, Events};
pub use methods::{
    Ban, ConversationEntry, FileBytes, GroupEntry, History, JoinRequest, Member, NewToken, Offer,
    Sent, TokenEntry, UploadState,
};
pub use tls::{ConnectOptions, TlsInfo, Trust};
pub use transfer::{IfExists, Saved, SharedFile, UploadProgress};

/// The rest of the protocol crate, for what the list above leaves out.
pub use baatkaro_proto as proto;
/// The protocol's client session, sans IO, for programs that drive their own
/// sockets.
pub use baatkaro_proto::client::{Answer, ClientSession};
/// The protocol's types an embedder names.
pub use baatkaro_proto::transport::Fingerprint;
/// The protocol's types an embedder names.
pub use baatkaro_proto::{
    Command, Conversation, ErrorCode, Event, Failure, Features, FileId, FileName, GroupName,
    HistoryRange, IdemKey, InviteOutcome, Item, JoinOutcome, JoinRule, Limits, Membership, Millis,
    OfferName, OfferStatus, OkReply, Password, Presence, Role, Seq, Sha256, Software, StoredEvent,
    Text, TokenId, TokenSecret, UserName, ValidationError,
};
