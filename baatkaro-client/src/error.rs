//! What can go wrong, in layers: the server refused a request; the server said
//! something this client cannot make sense of; the connection or the machine
//! failed; or the caller asked for something that cannot be sent.

use baatkaro_proto::transport::AddressError;
use baatkaro_proto::{ErrorCode, Failure, ValidationError};

use crate::tls::TrustError;

/// Why a request or the connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the request: its SPEC.md code, its note (which, for
    /// `RATE_LIMITED`, names the limit) and, when it said, when to try again.
    /// Nothing was changed.
    #[error("{}", refused_text(.0))]
    Refused(Failure),
    /// The server answered with something this client did not expect or cannot
    /// read: a bug on one side or the other.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    /// Connecting, reading or writing failed, or a local file could not be used.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The connection is gone for good (the server closed it, with its BYE if it
    /// sent one, or the client was logged out); make a new client.
    #[error("connection closed{}", .0.as_ref().map(|f| format!(" by the server: {}", f.code)).unwrap_or_default())]
    Closed(Option<Failure>),
    /// The connection dropped before the server answered a request that is not
    /// safe to repeat ([`Command::is_idempotent`]), or one was asked for while
    /// the client reconnects: whether it was carried out is unknown, or it was not
    /// sent. Look (GROUPS, MEMBERS, …) and try again once reconnected.
    ///
    /// [`Command::is_idempotent`]: baatkaro_proto::Command::is_idempotent
    #[error("not connected: the server is being reconnected to ({0})")]
    NotConnected(String),
    /// A value given to the client is not valid on the wire.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The server's address could not be read.
    #[error("bad server address: {0}")]
    Address(#[from] AddressError),
    /// The server's TLS certificate was not trusted.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A password or token would have crossed the network in clear (SPEC.md 11.7).
    #[error(
        "refusing to send a password or token in clear to {0}, which is not this machine: \
         connect with baatkaros://, or allow plain text (ConnectOptions::insecure_plaintext; \
         --insecure-plaintext in the command-line client) if the network is trusted"
    )]
    Plaintext(std::net::SocketAddr),
    /// The server does not offer the feature the request needs (SPEC.md 10).
    #[error("the server does not offer the feature {0:?}")]
    Unsupported(&'static str),
    /// The caller cancelled the operation (an upload: the server deleted what it
    /// held of it).
    #[error("cancelled")]
    Cancelled,
}

impl ClientError {
    /// The server's error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused(f) => Some(f.code),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again, in milliseconds, if
    /// it refused with a `retry=` hint.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ClientError::Refused(f) => f.retry_after,
            _ => None,
        }
    }
}

/// A refusal as a person reads it: `CODE: note (try again in 2.5 s)`.
fn refused_text(f: &Failure) -> String {
    let mut text = f.code.to_string();
    if let Some(note) = &f.note {
        text.push_str(&format!(": {note}"));
    }
    if let Some(ms) = f.retry_after {
        text.push_str(&format!(" (try again in {})", wait_text(ms)));
    }
    text
}

/// A wait in milliseconds, in words: `250 ms`, `2.5 s`, `3 min 5 s`.
pub(crate) fn wait_text(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{} s", ms / 1_000, ms % 1_000 / 100),
        _ => {
            let s = ms.div_ceil(1_000);
            match s % 60 {
                0 => format!("{} min", s / 60),
                rest => format!("{} min {rest} s", s / 60),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_says_which_and_when() {
        let f = Failure {
            retry_after: Some(2_500),
            note: baatkaro_proto::Note::new("token logins from this address: over their budget")
                .ok(),
            ..Failure::new(ErrorCode::RateLimited)
        };
        let e = ClientError::Refused(f);
        assert_eq!(e.retry_after(), Some(2_500));
        assert_eq!(e.code(), Some(ErrorCode::RateLimited));
        assert_eq!(
            e.to_string(),
            "RATE_LIMITED: token logins from this address: over their budget (try again in 2.5 s)"
        );
        assert_eq!(wait_text(250), "250 ms");
        assert_eq!(wait_text(60_000), "1 min");
        assert_eq!(wait_text(185_000), "3 min 5 s");
        assert_eq!(
            ClientError::Refused(Failure::new(ErrorCode::NotMember)).to_string(),
            "NOT_MEMBER: acting or target user not a member of the group"
        );
    }
}
