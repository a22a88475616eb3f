//! `arbitrary::Arbitrary` impls for the validated types (feature `arbitrary`).
//!
//! Every impl builds a *valid* value out of whatever bytes it is given: raw bytes are
//! mapped into the type's alphabet and lengths are clamped to its limits, so an impl
//! only ever fails when the input runs out (and mostly not even then: `Unstructured`
//! hands out zeros once it is empty). Each value these impls build encodes to a frame
//! the decoder accepts and decodes to the same value; the `roundtrip_values` fuzz
//! target checks exactly that.
//!
//! The keyword enums, [`ErrorCode`](crate::ErrorCode), [`Sha256`](crate::Sha256),
//! [`Limits`](crate::Limits), [`HistoryRange`](crate::HistoryRange),
//! [`OfferStatus`](crate::OfferStatus), [`Verb`](crate::Verb), [`ListVerb`](crate::ListVerb)
//! and [`DoneVerb`](crate::DoneVerb) derive `Arbitrary` where they are defined: every
//! value of those types is valid.

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;

use crate::command::{Command, Request, Verb};
use crate::event::{Event, Failure, StoredEvent};
use crate::reply::{Item, OkReply, ServerFrame};
use crate::types::{
    Address, Conversation, Feature, Features, FileId, FileName, GroupName, IdemKey, Note,
    OfferName, Password, Software, Tag, Text, UserName, Versions,
};
use crate::{ErrorCode, ValidationError};

/// Unwraps a constructor's result. The impls below only ever pass valid input, so an
/// error here is a bug in this file (or a constructor that got stricter): fail loudly.
fn valid<T>(what: &str, result: std::result::Result<T, ValidationError>) -> T {
    result.unwrap_or_else(|e| panic!("Arbitrary built an invalid {what}: {e}"))
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
/// `name = LOWER *31(LOWER / DIGIT / "_" / "." / "-")`, after the first byte.
const NAME: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_.-";
/// `tag = 1*32(ALPHA / DIGIT / "_" / "." / "-")`
const TAG: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
/// `idem-key = 1*64(ALPHA / DIGIT / "_" / "." / "-" / ":")`
const IDEM_KEY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-:";
/// `file-id = 1*64(ALPHA / DIGIT / "_" / "-")`
const FILE_ID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
/// `software = 1*64(ALPHA / DIGIT / "_" / "." / "-" / "/" / "+")`
const SOFTWARE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-/+";
/// `feature = 1*24(LOWER / DIGIT / "-")`
const FEATURE: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
/// `address = 1*45(DIGIT / %x61-66 / "." / ":")`
const ADDRESS: &[u8] = b"0123456789abcdef.:";

/// Builds 1..=`max` ASCII bytes (`max` <= 64): the first from `first`, the rest from
/// `rest`, one input byte each, after one byte for the length.
fn ascii_atom<'u>(
    u: &mut Unstructured<'_>,
    buf: &'u mut [u8; 64],
    max: usize,
    first: &[u8],
    rest: &[u8],
) -> Result<&'u [u8]> {
    let len = u.int_in_range(1..=max.min(buf.len()))?;
    for (i, slot) in buf[..len].iter_mut().enumerate() {
        let alphabet = if i == 0 { first } else { rest };
        *slot = alphabet[usize::from(u8::arbitrary(u)?) % alphabet.len()];
    }
    Ok(&buf[..len])
}

/// `Arbitrary` for an inline atom type.
macro_rules! arbitrary_atom {
    ($ty:ty, $what:literal, first = $first:expr, rest = $rest:expr) => {
        impl<'a> Arbitrary<'a> for $ty {
            fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
                let mut buf = [0u8; 64];
                let bytes = ascii_atom(u, &mut buf, <$ty>::MAX_LEN, $first, $rest)?;
                Ok(valid($what, <$ty>::from_bytes(bytes)))
            }

            fn size_hint(_depth: usize) -> (usize, Option<usize>) {
                (1, Some(1 + <$ty>::MAX_LEN))
            }
        }
    };
}

arbitrary_atom!(UserName, "user name", first = LOWER, rest = NAME);
arbitrary_atom!(GroupName, "group name", first = LOWER, rest = NAME);
arbitrary_atom!(Tag, "tag", first = TAG, rest = TAG);
arbitrary_atom!(IdemKey, "idempotency key", first = IDEM_KEY, rest = IDEM_KEY);
arbitrary_atom!(FileId, "file id", first = FILE_ID, rest = FILE_ID);
arbitrary_atom!(Software, "software name", first = SOFTWARE, rest = SOFTWARE);
arbitrary_atom!(Feature, "feature", first = FEATURE, rest = FEATURE);
arbitrary_atom!(Address, "address", first = ADDRESS, rest = ADDRESS);

/// Replaces a character that text may not hold (every control character but TAB)
/// with a printable one, keeping some of the input's variety.
fn printable(c: char) -> char {
    match c {
        '\t' => '\t',
        // C0 controls to `@`..`_`, C1 controls to U+00A0..U+00BF.
        '\0'..='\x1f' | '\u{80}'..='\u{9f}' => char::from_u32(u32::from(c) + 0x40).unwrap_or('?'),
        '\x7f' => '?',
        c => c,
    }
}

/// Arbitrary text of 1..=`max` bytes without control characters (TAB excepted),
/// with `fix` applied to each character.
fn text_string(u: &mut Unstructured<'_>, max: usize, fix: impl Fn(char) -> char) -> Result<String> {
    let raw = <&str>::arbitrary(u)?;
    let mut s = String::with_capacity(raw.len().min(max));
    for c in raw.chars().map(|c| fix(printable(c))) {
        if s.len() + c.len_utf8() > max {
            break;
        }
        s.push(c);
    }
    if s.is_empty() {
        // `max` is at least 4 for every caller, so one character always fits.
        s.push(fix(printable(char::arbitrary(u)?)));
    }
    Ok(s)
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let s = text_string(u, Text::MAX_LEN, |c| c)?;
        Ok(valid("text", Text::from_bytes(Bytes::from(s))))
    }
}

impl<'a> Arbitrary<'a> for FileName {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut s =
            text_string(u, FileName::MAX_LEN, |c| if FileName::allows(c) { c } else { '_' })?;
        if s == "." || s == ".." {
            s.push('_');
        }
        Ok(valid("file name", FileName::from_bytes(Bytes::from(s))))
    }
}

impl<'a> Arbitrary<'a> for OfferName {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let name = FileName::arbitrary(u)?;
        // An offered name may not begin with a dot: the first one becomes `_`, which
        // also keeps "." and ".." (made "._" and ".._") valid.
        let s = match name.as_str().strip_prefix('.') {
            Some(rest) => format!("_{rest}"),
            None => name.as_str().to_owned(),
        };
        Ok(valid("offered file name", OfferName::new(&s)))
    }
}

impl<'a> Arbitrary<'a> for Password {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let raw = <&[u8]>::arbitrary(u)?;
        let bytes = if raw.is_empty() {
            vec![u8::arbitrary(u)?]
        } else {
            raw[..raw.len().min(Password::MAX_LEN)].to_vec()
        };
        Ok(valid("password", Password::from_bytes(Bytes::from(bytes))))
    }
}

/// Maps a byte into `note = 1*256(%x20-7A / "|" / "~")`: printable ASCII and space,
/// without `{` and `}`.
fn note_char(b: u8) -> char {
    match b % 93 {
        91 => '|',
        92 => '~',
        n => char::from(0x20 + n),
    }
}

impl<'a> Arbitrary<'a> for Note {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let raw = <&[u8]>::arbitrary(u)?;
        let mut s: String = raw.iter().take(Note::MAX_LEN).map(|&b| note_char(b)).collect();
        if s.is_empty() {
            s.push(note_char(u8::arbitrary(u)?));
        }
        Ok(valid("note", Note::new(&s)))
    }
}

impl<'a> Arbitrary<'a> for Versions {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // 1-16 distinct versions, each >= 1. A repeat is dropped, so the list may come
        // out shorter than drawn, but never empty.
        let len = u.int_in_range(1..=Versions::MAX)?;
        let mut list = Vec::with_capacity(len);
        for _ in 0..len {
            let v = u.int_in_range(1..=u16::MAX)?;
            if !list.contains(&v) {
                list.push(v);
            }
        }
        Ok(valid("version list", Versions::new(list)))
    }
}

impl<'a> Arbitrary<'a> for Features {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let len = u.int_in_range(0..=Features::MAX)?;
        let list = (0..len).map(|_| Feature::arbitrary(u)).collect::<Result<Vec<_>>>()?;
        Ok(valid("feature list", Features::new(list)))
    }
}

impl<'a> Arbitrary<'a> for Conversation {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if bool::arbitrary(u)? {
            Conversation::Direct(u.arbitrary()?)
        } else {
            Conversation::Group(u.arbitrary()?)
        })
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (2, Some(2 + UserName::MAX_LEN))
    }
}

impl<'a> Arbitrary<'a> for Request {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Request { tag: u.arbitrary()?, command: u.arbitrary()? })
    }
}

impl<'a> Arbitrary<'a> for Command {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // The verb picks the variant, so that a new verb cannot be forgotten here.
        Ok(match Verb::arbitrary(u)? {
            Verb::Hello => Command::Hello { versions: u.arbitrary()?, client: u.arbitrary()? },
            Verb::Register => Command::Register { user: u.arbitrary()?, password: u.arbitrary()? },
            Verb::Login => Command::Login { user: u.arbitrary()?, password: u.arbitrary()? },
            Verb::Logout => Command::Logout { revoke: u.arbitrary()? },
            Verb::Ping => Command::Ping,
            Verb::Create => Command::Create { group: u.arbitrary()?, rule: u.arbitrary()? },
            Verb::Join => Command::Join { group: u.arbitrary()?, reason: u.arbitrary()? },
            Verb::Requests => Command::Requests { group: u.arbitrary()? },
            Verb::Approve => Command::Approve { group: u.arbitrary()?, user: u.arbitrary()? },
            Verb::Reject => Command::Reject { group: u.arbitrary()?, user: u.arbitrary()? },
            Verb::Invite => Command::Invite { group: u.arbitrary()?, user: u.arbitrary()? },
            Verb::Accept => Command::Accept { group: u.arbitrary()? },
            Verb::Decline => Command::Decline { group: u.arbitrary()? },
            Verb::Leave => Command::Leave { group: u.arbitrary()? },
            Verb::Kick => {
                Command::Kick { group: u.arbitrary()?, user: u.arbitrary()?, ban: u.arbitrary()? }
            }
            Verb::Unban => Command::Unban { group: u.arbitrary()?, user: u.arbitrary()? },
            Verb::Promote => Command::Promote { group: u.arbitrary()?, user: u.arbitrary()? },
            Verb::Demote => Command::Demote { group: u.arbitrary()?, user: u.arbitrary()? },
            Verb::Transfer => Command::Transfer { group: u.arbitrary()?, user: u.arbitrary()? },
            Verb::TransferAccept => Command::TransferAccept { group: u.arbitrary()? },
            Verb::TransferCancel => Command::TransferCancel { group: u.arbitrary()? },
            Verb::Rule => Command::Rule { group: u.arbitrary()?, rule: u.arbitrary()? },
            Verb::Delete => Command::Delete { group: u.arbitrary()? },
            Verb::Groups if bool::arbitrary(u)? => Command::GroupsWithOffers,
            Verb::Groups => Command::Groups,
            Verb::Conversations if bool::arbitrary(u)? => Command::ConversationsWithMarkers,
            Verb::Conversations => Command::Conversations,
            Verb::Members => Command::Members { group: u.arbitrary()? },
            Verb::Online => Command::Online { group: u.arbitrary()? },
            Verb::Send => {
                Command::Send { to: u.arbitrary()?, key: u.arbitrary()?, text: u.arbitrary()? }
            }
            Verb::History => Command::History {
                conv: u.arbitrary()?,
                range: u.arbitrary()?,
                // `limit = number`, 1 or more.
                limit: u.int_in_range(1..=u32::MAX)?,
            },
            Verb::FileOffer => Command::FileOffer {
                to: u.arbitrary()?,
                size: u.arbitrary()?,
                sha256: u.arbitrary()?,
                name: u.arbitrary()?,
            },
            Verb::FileChunk => Command::FileChunk {
                file: u.arbitrary()?,
                offset: u.arbitrary()?,
                data: arbitrary_bytes(u)?,
            },
            Verb::FileStatus => Command::FileStatus { file: u.arbitrary()? },
            Verb::FileCommit => Command::FileCommit { file: u.arbitrary()? },
            Verb::FileCancel => Command::FileCancel { file: u.arbitrary()? },
            Verb::Files => Command::Files { conv: u.arbitrary()? },
            Verb::FileGet => Command::FileGet {
                file: u.arbitrary()?,
                offset: u.arbitrary()?,
                length: u.arbitrary()?,
            },
            Verb::Auth => Command::Auth {
                user: u.arbitrary()?,
                token: u.arbitrary()?,
                secret: u.arbitrary()?,
            },
            Verb::Token => Command::Token { label: u.arbitrary()? },
            Verb::Tokens => Command::Tokens,
            Verb::Revoke => Command::Revoke { token: u.arbitrary()? },
            Verb::Password => Command::Password { old: u.arbitrary()?, new: u.arbitrary()? },
            Verb::DeleteAccount => Command::DeleteAccount { password: u.arbitrary()? },
            Verb::Read => Command::Read { conv: u.arbitrary()?, seq: u.arbitrary()? },
            Verb::Bans => Command::Bans { group: u.arbitrary()? },
        })
    }
}

/// Arbitrary payload bytes (possibly empty).
fn arbitrary_bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
    Ok(Bytes::copy_from_slice(<&[u8]>::arbitrary(u)?))
}

impl<'a> Arbitrary<'a> for Failure {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let code: ErrorCode = u.arbitrary()?;
        // SPEC.md: `retry=` is present only for codes whose table entry allows it.
        let retry_after = if code.has_retry() { u.arbitrary()? } else { None };
        Ok(Failure { code, retry_after, note: u.arbitrary()? })
    }
}

impl<'a> Arbitrary<'a> for ServerFrame {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.choose_index(4)? {
            0 => ServerFrame::Ok { tag: u.arbitrary()?, reply: u.arbitrary()? },
            1 => ServerFrame::Err { tag: u.arbitrary()?, failure: u.arbitrary()? },
            2 => ServerFrame::Item { tag: u.arbitrary()?, item: u.arbitrary()? },
            _ => ServerFrame::Event(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for crate::Limits {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // `limit-value = "0" / (%x31-39 *13DIGIT)`.
        let mut limits = crate::Limits::default();
        for key in crate::Limits::KEYS {
            limits.set(key.as_bytes(), u.int_in_range(0..=crate::LIMIT_VALUE_MAX)?);
        }
        Ok(limits)
    }
}

impl<'a> Arbitrary<'a> for OkReply {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.choose_index(17)? {
            0 => OkReply::Hello {
                // `version = number`, 1-65535.
                version: u.int_in_range(1..=u16::MAX)?,
                server: u.arbitrary()?,
                features: u.arbitrary()?,
                limits: u.arbitrary()?,
            },
            1 => OkReply::Register { user: u.arbitrary()? },
            2 => OkReply::Login { user: u.arbitrary()? },
            3 => OkReply::Join { group: u.arbitrary()?, outcome: u.arbitrary()? },
            4 => OkReply::Invite {
                group: u.arbitrary()?,
                user: u.arbitrary()?,
                outcome: u.arbitrary()?,
            },
            5 => OkReply::Send { conv: u.arbitrary()?, seq: u.arbitrary()?, time: u.arbitrary()? },
            6 => OkReply::History {
                conv: u.arbitrary()?,
                latest: u.arbitrary()?,
                oldest: u.arbitrary()?,
            },
            7 => OkReply::Listed { verb: u.arbitrary()?, count: u.arbitrary()? },
            8 => OkReply::FileOffer { file: u.arbitrary()?, status: u.arbitrary()? },
            9 => OkReply::FileChunk { file: u.arbitrary()?, received: u.arbitrary()? },
            10 => OkReply::FileStatus {
                file: u.arbitrary()?,
                size: u.arbitrary()?,
                received: u.arbitrary()?,
            },
            11 => OkReply::FileCommit {
                file: u.arbitrary()?,
                conv: u.arbitrary()?,
                seq: u.arbitrary()?,
            },
            12 => OkReply::FileGet {
                file: u.arbitrary()?,
                offset: u.arbitrary()?,
                length: u.arbitrary()?,
            },
            13 => OkReply::Auth { user: u.arbitrary()? },
            14 => OkReply::Token { token: u.arbitrary()?, secret: u.arbitrary()? },
            15 => OkReply::Read { conv: u.arbitrary()?, seq: u.arbitrary()? },
            _ => OkReply::Done { verb: u.arbitrary()? },
        })
    }
}

impl<'a> Arbitrary<'a> for Item {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.choose_index(12)? {
            0 => Item::Stored(u.arbitrary()?),
            9 => Item::ConversationMarked {
                conv: u.arbitrary()?,
                latest: u.arbitrary()?,
                read: u.arbitrary()?,
                unread: u.arbitrary()?,
            },
            10 => Item::GroupOffered {
                group: u.arbitrary()?,
                membership: u.arbitrary()?,
                rule: u.arbitrary()?,
                members: u.arbitrary()?,
                latest: u.arbitrary()?,
                offer: u.arbitrary()?,
            },
            11 => Item::Ban { group: u.arbitrary()?, user: u.arbitrary()?, by: u.arbitrary()? },
            1 => Item::Request {
                group: u.arbitrary()?,
                user: u.arbitrary()?,
                time: u.arbitrary()?,
                reason: u.arbitrary()?,
            },
            2 => Item::Group {
                group: u.arbitrary()?,
                membership: u.arbitrary()?,
                rule: u.arbitrary()?,
                members: u.arbitrary()?,
                latest: u.arbitrary()?,
            },
            3 => Item::Member {
                group: u.arbitrary()?,
                user: u.arbitrary()?,
                role: u.arbitrary()?,
                presence: u.arbitrary()?,
            },
            4 => Item::Online { user: u.arbitrary()? },
            5 => {
                Item::Have { file: u.arbitrary()?, offset: u.arbitrary()?, length: u.arbitrary()? }
            }
            6 => Item::Conversation { conv: u.arbitrary()?, latest: u.arbitrary()? },
            7 => Item::Token {
                token: u.arbitrary()?,
                created: u.arbitrary()?,
                used: u.arbitrary()?,
                expires: u.arbitrary()?,
                address: u.arbitrary()?,
                label: u.arbitrary()?,
            },
            _ => Item::Chunk {
                file: u.arbitrary()?,
                offset: u.arbitrary()?,
                data: arbitrary_bytes(u)?,
            },
        })
    }
}

impl<'a> Arbitrary<'a> for Event {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.choose_index(10)? {
            0 => Event::Stored(u.arbitrary()?),
            9 => Event::ReadMarker { conv: u.arbitrary()?, seq: u.arbitrary()? },
            1 => Event::JoinRequested {
                group: u.arbitrary()?,
                user: u.arbitrary()?,
                time: u.arbitrary()?,
                reason: u.arbitrary()?,
            },
            2 => Event::Invited { group: u.arbitrary()?, by: u.arbitrary()?, time: u.arbitrary()? },
            3 => Event::RequestApproved { group: u.arbitrary()?, by: u.arbitrary()? },
            4 => Event::RequestRejected { group: u.arbitrary()?, by: u.arbitrary()? },
            5 => Event::GroupDeleted { group: u.arbitrary()?, by: u.arbitrary()? },
            6 => Event::Presence { user: u.arbitrary()?, presence: u.arbitrary()? },
            7 => Event::Error(u.arbitrary()?),
            _ => Event::Bye(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for StoredEvent {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.choose_index(10)? {
            0 => StoredEvent::Message {
                conv: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                from: u.arbitrary()?,
                text: u.arbitrary()?,
            },
            1 => StoredEvent::File {
                conv: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                from: u.arbitrary()?,
                file: u.arbitrary()?,
                size: u.arbitrary()?,
                sha256: u.arbitrary()?,
                name: u.arbitrary()?,
            },
            2 => StoredEvent::Joined {
                group: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                user: u.arbitrary()?,
                by: u.arbitrary()?,
            },
            3 => StoredEvent::Left {
                group: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                user: u.arbitrary()?,
            },
            4 => StoredEvent::Kicked {
                group: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                user: u.arbitrary()?,
                by: u.arbitrary()?,
            },
            5 => StoredEvent::Banned {
                group: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                user: u.arbitrary()?,
                by: u.arbitrary()?,
            },
            6 => StoredEvent::RoleChanged {
                group: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                user: u.arbitrary()?,
                role: u.arbitrary()?,
                by: u.arbitrary()?,
            },
            7 => StoredEvent::OwnershipOffered {
                group: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                user: u.arbitrary()?,
                by: u.arbitrary()?,
            },
            8 => StoredEvent::OwnershipTransferred {
                group: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                user: u.arbitrary()?,
                previous: u.arbitrary()?,
            },
            _ => StoredEvent::RuleChanged {
                group: u.arbitrary()?,
                seq: u.arbitrary()?,
                time: u.arbitrary()?,
                rule: u.arbitrary()?,
                by: u.arbitrary()?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::mem::discriminant;

    use super::*;

    /// Deterministic pseudo-random bytes (xorshift64*), so the tests need no RNG crate.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    /// Builds `n` values of `T`, each from its own noise.
    fn samples<T: for<'a> Arbitrary<'a>>(n: u64, len: usize) -> Vec<T> {
        (0..n)
            .map(|seed| {
                let data = noise(seed, len);
                T::arbitrary(&mut Unstructured::new(&data)).unwrap()
            })
            .collect()
    }

    // These exhaustive matches stop compiling when a variant is added, which is the
    // reminder to extend the impls above (and the counts they choose from).
    fn ok_index(r: &OkReply) -> usize {
        match r {
            OkReply::Hello { .. } => 0,
            OkReply::Register { .. } => 1,
            OkReply::Login { .. } => 2,
            OkReply::Join { .. } => 3,
            OkReply::Invite { .. } => 4,
            OkReply::Send { .. } => 5,
            OkReply::History { .. } => 6,
            OkReply::Listed { .. } => 7,
            OkReply::FileOffer { .. } => 8,
            OkReply::FileChunk { .. } => 9,
            OkReply::FileStatus { .. } => 10,
            OkReply::FileCommit { .. } => 11,
            OkReply::FileGet { .. } => 12,
            OkReply::Auth { .. } => 13,
            OkReply::Token { .. } => 14,
            OkReply::Done { .. } => 15,
            OkReply::Read { .. } => 16,
        }
    }

    fn item_index(i: &Item) -> usize {
        match i {
            Item::Stored(_) => 0,
            Item::Request { .. } => 1,
            Item::Group { .. } => 2,
            Item::Member { .. } => 3,
            Item::Online { .. } => 4,
            Item::Have { .. } => 5,
            Item::Chunk { .. } => 6,
            Item::Conversation { .. } => 7,
            Item::Token { .. } => 8,
            Item::ConversationMarked { .. } => 9,
            Item::GroupOffered { .. } => 10,
            Item::Ban { .. } => 11,
        }
    }

    fn event_index(e: &Event) -> usize {
        match e {
            Event::Stored(_) => 0,
            Event::JoinRequested { .. } => 1,
            Event::Invited { .. } => 2,
            Event::RequestApproved { .. } => 3,
            Event::RequestRejected { .. } => 4,
            Event::GroupDeleted { .. } => 5,
            Event::Presence { .. } => 6,
            Event::Error(_) => 7,
            Event::Bye(_) => 8,
            Event::ReadMarker { .. } => 9,
        }
    }

    fn stored_index(e: &StoredEvent) -> usize {
        match e {
            StoredEvent::Message { .. } => 0,
            StoredEvent::File { .. } => 1,
            StoredEvent::Joined { .. } => 2,
            StoredEvent::Left { .. } => 3,
            StoredEvent::Kicked { .. } => 4,
            StoredEvent::Banned { .. } => 5,
            StoredEvent::RoleChanged { .. } => 6,
            StoredEvent::OwnershipOffered { .. } => 7,
            StoredEvent::OwnershipTransferred { .. } => 8,
            StoredEvent::RuleChanged { .. } => 9,
        }
    }

    fn server_index(f: &ServerFrame) -> usize {
        match f {
            ServerFrame::Ok { .. } => 0,
            ServerFrame::Err { .. } => 1,
            ServerFrame::Item { .. } => 2,
            ServerFrame::Event(_) => 3,
        }
    }

    fn all_indices<T>(values: &[T], index: fn(&T) -> usize) -> HashSet<usize> {
        values.iter().map(index).collect()
    }

    #[test]
    fn every_variant_is_reachable() {
        let expect = |n: usize| (0..n).collect::<HashSet<_>>();
        assert_eq!(all_indices(&samples::<OkReply>(2000, 64), ok_index), expect(17));
        assert_eq!(all_indices(&samples::<Item>(2000, 64), item_index), expect(12));
        assert_eq!(all_indices(&samples::<Event>(2000, 64), event_index), expect(10));
        assert_eq!(all_indices(&samples::<StoredEvent>(2000, 64), stored_index), expect(10));
        assert_eq!(all_indices(&samples::<ServerFrame>(2000, 64), server_index), expect(4));
        let verbs: HashSet<Verb> = samples::<Command>(4000, 64).iter().map(Command::verb).collect();
        assert_eq!(verbs.len(), Verb::ALL.len());
        let kinds: HashSet<_> = samples::<Conversation>(100, 8).iter().map(discriminant).collect();
        assert_eq!(kinds.len(), 2);
    }

    #[test]
    fn empty_and_exhausted_input_still_builds_valid_values() {
        let mut u = Unstructured::new(&[]);
        assert_eq!(UserName::arbitrary(&mut u).unwrap().as_str(), "a");
        assert_eq!(Tag::arbitrary(&mut u).unwrap().as_str(), "A");
        assert_eq!(Text::arbitrary(&mut u).unwrap().as_str(), "@");
        assert_eq!(FileName::arbitrary(&mut u).unwrap().as_str(), "@");
        assert_eq!(Password::arbitrary(&mut u).unwrap().expose(), b"\0");
        assert_eq!(Note::arbitrary(&mut u).unwrap().as_str(), " ");
        assert_eq!(Versions::arbitrary(&mut u).unwrap().as_slice(), &[1]);
        assert!(Features::arbitrary(&mut u).unwrap().as_slice().is_empty());
        Request::arbitrary(&mut u).unwrap();
        ServerFrame::arbitrary(&mut u).unwrap();
    }

    #[test]
    fn lengths_are_clamped_and_alphabets_respected() {
        // All 0xff: maximal lengths, and the last character of each alphabet.
        let data = vec![0xff; 8192];
        let mut u = Unstructured::new(&data);
        assert_eq!(UserName::arbitrary(&mut u).unwrap().as_bytes().len(), UserName::MAX_LEN);
        assert_eq!(IdemKey::arbitrary(&mut u).unwrap().as_bytes().len(), IdemKey::MAX_LEN);
        assert!(Feature::arbitrary(&mut u).unwrap().as_bytes().len() <= Feature::MAX_LEN);
        for seed in 0..500 {
            let data = noise(seed, 2048);
            let mut u = Unstructured::new(&data);
            let name = FileName::arbitrary(&mut u).unwrap();
            assert!(name.as_bytes().len() <= FileName::MAX_LEN);
            let note = Note::arbitrary(&mut u).unwrap();
            assert!(note.as_str().len() <= Note::MAX_LEN);
            let pw = Password::arbitrary(&mut u).unwrap();
            assert!(!pw.expose().is_empty() && pw.expose().len() <= Password::MAX_LEN);
            let v = Versions::arbitrary(&mut u).unwrap();
            let distinct: HashSet<_> = v.as_slice().iter().collect();
            assert_eq!(distinct.len(), v.as_slice().len());
            let f = Features::arbitrary(&mut u).unwrap();
            assert!(f.as_slice().len() <= Features::MAX);
        }
    }

    #[test]
    fn note_alphabet_is_the_grammar() {
        let chars: HashSet<char> = (0..=u8::MAX).map(note_char).collect();
        let grammar: HashSet<char> = (0x20u8..=0x7a).chain([b'|', b'~']).map(char::from).collect();
        assert_eq!(chars, grammar);
    }

    #[test]
    fn retry_hints_only_where_the_code_allows_them() {
        let failures = samples::<Failure>(2000, 32);
        assert!(failures.iter().all(|f| f.retry_after.is_none() || f.code.has_retry()));
        assert!(failures.iter().any(|f| f.retry_after.is_some()));
    }

    #[test]
    fn control_characters_and_separators_are_mapped() {
        assert_eq!(printable('\0'), '@');
        assert_eq!(printable('\r'), 'M');
        assert_eq!(printable('\n'), 'J');
        assert_eq!(printable('\t'), '\t');
        assert_eq!(printable('\x7f'), '?');
        assert_eq!(printable('\u{85}'), '\u{c5}');
        assert!(!printable('\u{9f}').is_control());
        // Every short input made of dots, separators and a few other bytes gives a valid
        // file name (`valid` panics otherwise); "." and ".." come out with a suffix.
        let pieces = [b'.', b'/', b'\\', b'a', 0, 0xff, 1, 2];
        let mut names = HashSet::new();
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for data in [&[a, b][..], &[a, b, c][..]] {
                        let name = FileName::arbitrary(&mut Unstructured::new(data)).unwrap();
                        assert!(!name.as_str().contains(['/', '\\']), "{name:?}");
                        names.insert(name.as_str().to_owned());
                    }
                }
            }
        }
        assert!(names.contains("._") || names.contains(".._"), "{names:?}");
    }
}
