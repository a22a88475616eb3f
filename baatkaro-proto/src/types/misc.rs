//! Composite values: conversations, hashes, version and feature lists, history ranges.

use std::fmt;

use super::{Feature, GroupName, UserName};
use crate::ValidationError;
use crate::error::ForbiddenChar;

/// A per-conversation sequence number: gapless and increasing from 1.
pub type Seq = u64;

/// A server timestamp: milliseconds since the Unix epoch, UTC.
pub type Millis = u64;

/// A conversation: a group, or the private conversation with one user.
///
/// ```abnf
/// conv = "#" group-name / "@" user-name
/// ```
///
/// A private conversation is named from the point of view of whoever reads the frame:
/// when alice writes to `@bob`, bob receives it in `@alice`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conversation {
    /// A group's conversation.
    Group(GroupName),
    /// The private conversation with this user.
    Direct(UserName),
}

impl fmt::Display for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conversation::Group(g) => write!(f, "#{g}"),
            Conversation::Direct(u) => write!(f, "@{u}"),
        }
    }
}

impl std::str::FromStr for Conversation {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(g) = s.strip_prefix('#') {
            Ok(Conversation::Group(GroupName::new(g)?))
        } else if let Some(u) = s.strip_prefix('@') {
            Ok(Conversation::Direct(UserName::new(u)?))
        } else {
            Err(ValidationError::BadStart { what: "conversation (# or @)" })
        }
    }
}

/// A SHA-256 digest; on the wire, 64 lowercase hex digits.
///
/// ```abnf
/// sha256 = 64(DIGIT / %x61-66)
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 lowercase hex digits.
    pub fn from_hex(hex: &[u8]) -> Result<Self, ValidationError> {
        let what = "sha256";
        if hex.len() != 64 {
            return Err(ValidationError::OutOfRange { what });
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let mut v = 0u8;
            for &c in pair {
                let d = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => {
                        return Err(ValidationError::Forbidden {
                            what,
                            found: ForbiddenChar::Byte(c),
                        });
                    }
                };
                v = (v << 4) | d;
            }
            *byte = v;
        }
        Ok(Sha256(out))
    }

    /// Writes the 64 lowercase hex digits.
    pub fn to_hex(&self) -> [u8; 64] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair.copy_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
        }
        out
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.to_hex()).unwrap_or_default())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// The number of a session token (SPEC.md section 4.7): given out by the server,
/// never reused.
///
/// ```abnf
/// token-id = number
/// ```
pub type TokenId = u64;

/// A session token's secret: 32 random bytes; on the wire, 64 lower-case hex digits.
///
/// ```abnf
/// secret = 64(DIGIT / %x61-66)
/// ```
///
/// It is as good as the password for as long as the token lives, so its `Debug`
/// shows nothing of it; [`TokenSecret::to_hex`] is the one way to write it out.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct TokenSecret(pub [u8; 32]);

impl TokenSecret {
    /// Parses 64 lower-case hex digits.
    pub fn from_hex(hex: &[u8]) -> Result<Self, ValidationError> {
        // The same alphabet and length as a SHA-256 digest.
        Sha256::from_hex(hex)
            .map(|d| TokenSecret(d.0))
            .map_err(|_| ValidationError::OutOfRange { what: "token secret (64 hex digits)" })
    }

    /// Writes the 64 lower-case hex digits.
    pub fn to_hex(&self) -> [u8; 64] {
        Sha256(self.0).to_hex()
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// The protocol versions a client speaks: 1–16 distinct versions, each ≥ 1.
///
/// ```abnf
/// versions = version *15("," version)
/// version  = number    ; 1-65535
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Versions(Vec<u16>);

impl Versions {
    /// The most versions a HELLO may list.
    pub const MAX: usize = 16;

    /// Validates a version list.
    pub fn new(versions: Vec<u16>) -> Result<Self, ValidationError> {
        let what = "version list";
        if versions.is_empty() {
            return Err(ValidationError::Empty { what });
        }
        let distinct = versions.iter().enumerate().all(|(i, v)| !versions[..i].contains(v));
        if versions.len() > Self::MAX || versions.contains(&0) || !distinct {
            return Err(ValidationError::OutOfRange { what });
        }
        Ok(Versions(versions))
    }

    /// The versions, in the client's order of preference.
    pub fn as_slice(&self) -> &[u16] {
        &self.0
    }
}

/// The optional features a server offers: at most 8.
///
/// ```abnf
/// features = feature *7("," feature)
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features(Vec<Feature>);

impl Features {
    /// The most features a HELLO reply may list.
    pub const MAX: usize = 8;

    /// Validates a feature list.
    pub fn new(features: Vec<Feature>) -> Result<Self, ValidationError> {
        if features.len() > Self::MAX {
            return Err(ValidationError::OutOfRange { what: "feature list" });
        }
        Ok(Features(features))
    }

    /// The features.
    pub fn as_slice(&self) -> &[Feature] {
        &self.0
    }

    /// Whether the named feature is offered.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|f| f.as_str() == name)
    }
}

/// Which part of a conversation's history to fetch.
///
/// ```abnf
/// history-range = "after" SP seq / "last"
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum HistoryRange {
    /// The events with a sequence number greater than this one, oldest first
    /// (catch-up: pass the last sequence number seen, or 0 for the beginning).
    After(Seq),
    /// The newest events (scroll-back), oldest first.
    Last,
}

/// Whether an offered file still needs its bytes.
///
/// ```abnf
/// offer-status = "need" / "done" SP seq
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum OfferStatus {
    /// Upload the content with FILE-CHUNK, then FILE-COMMIT.
    Need,
    /// The server held the content already: the file is shared, as this event.
    Done(Seq),
}
