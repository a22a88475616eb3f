//! The sans-IO core of BaatKaro, a group chat protocol: validated types, the wire
//! codec, the group membership state machine ([`group`]) and the connection session
//! machine ([`session`], whose docs state the drive-loop contract).
//!
//! Nothing here touches a socket or reads a clock: bytes come in through a
//! [`Decoder`], frames go out through [`Encode`], and time, where a rule needs it, is
//! a parameter. SPEC.md at the repository root is the normative description of
//! the wire format; every ABNF rule there has a parser here with the rule in its doc.
//!
//! ```
//! use baatkaro_proto::{Command, Encode, Request, RequestDecoder, Tag, Versions};
//!
//! let hello = Request {
//!     tag: Tag::new("a1").unwrap(),
//!     command: Command::Hello { versions: Versions::new(vec![1]).unwrap(), client: None },
//! };
//! let bytes = hello.to_bytes();
//! assert_eq!(&bytes[..], b"a1 HELLO 1\r\n");
//!
//! let mut decoder = RequestDecoder::new(1024);
//! decoder.push(&bytes[..5]); // any split works
//! assert!(decoder.next_frame().is_none());
//! decoder.push(&bytes[5..]);
//! assert_eq!(decoder.next_frame().unwrap().unwrap(), hello);
//! ```
//!
//! A client that reads many messages can take them borrowed from the decoder's
//! buffer instead ([`ServerFrameDecoder::next_peeked`], checked by the same rules):
//!
//! ```
//! use baatkaro_proto::{Peeked, ServerFrameDecoder};
//!
//! let mut decoder = ServerFrameDecoder::new(1024);
//! decoder.push(b"* MSG #rust 41 1764072100000 bob {5}\r\nhello\r\n");
//! match decoder.next_peeked() {
//!     Some(Ok(Peeked::Msg(m))) => assert_eq!((m.conv(), m.seq(), m.text()), ("#rust", 41, "hello")),
//!     other => panic!("{other:?}"),
//! }
//! ```

#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

#[cfg(feature = "arbitrary")]
mod arbitrary;
pub mod client;
mod codec;
mod command;
pub mod credentials;
pub mod delivery;
pub mod disk_name;
mod error;
mod event;
pub mod fuzzing;
pub mod group;
mod hot;
mod limits;
mod parse;
mod reply;
pub mod rules;
pub mod session;
pub mod storage;
pub mod throttle;
pub mod transfer;
pub mod transport;
pub mod types;
pub mod web;
mod wire;

pub use codec::{
    Decode, Decoder, Encode, LINE_PAD, MsgRef, PAYLOAD_ALIGN, Peeked, RequestDecoder,
    ServerFrameDecoder, decode_one,
};
pub use command::{Command, Request, Verb};
pub use error::{DecodeError, ErrorCode, ForbiddenChar, ValidationError};
pub use event::{Event, Failure, StoredEvent};
pub use limits::{LIMIT_VALUE_MAX, LINE_MAX, Limits, PAYLOAD_CEILING};
pub use reply::{DoneVerb, EventFrame, Item, ListVerb, OkReply, ServerFrame};
pub use types::*;

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
