//! What the hub makes durable and reads back: the records of the store, the batches
//! it commits and the snapshot it loads at start. Only data: the engine that keeps
//! them (SQLite, in the server) implements the server's `Store` trait over them.

use baatkaro_proto::group::{GroupEvent, GroupId};
use baatkaro_proto::transfer::Ranges;
use baatkaro_proto::{
    Address, Conversation, FileId, FileName, GroupName, IdemKey, Millis, Seq, Sha256, StoredEvent,
    Text, TokenId, UserName,
};

/// A conversation as the store keys it: a group incarnation's, or two users'.
///
/// A group's history belongs to one incarnation (a deleted and recreated group
/// starts afresh); a private conversation has one name for both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvKey {
    /// A group's conversation.
    Group(GroupId),
    /// The private conversation of two users, the lesser name first.
    Direct(UserName, UserName),
}

impl ConvKey {
    /// The private conversation of `a` and `b`, in either order.
    pub fn direct(a: UserName, b: UserName) -> Self {
        if a <= b { ConvKey::Direct(a, b) } else { ConvKey::Direct(b, a) }
    }

    /// The key as stored: `g:ID` or `d:A:B` (names cannot hold `:`).
    pub fn to_db(&self) -> String {
        let mut out = Vec::with_capacity(2 + 2 * UserName::MAX_LEN + 1);
        self.write_db(&mut out);
        // Digits, names and separators: ASCII.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends [`ConvKey::to_db`]'s spelling to `out`, without formatting machinery
    /// (the event log writes it in every event record).
    pub fn write_db(&self, out: &mut Vec<u8>) {
        match self {
            ConvKey::Group(id) => {
                out.extend_from_slice(b"g:");
                out.extend_from_slice(itoa::Buffer::new().format(id.0).as_bytes());
            }
            ConvKey::Direct(a, b) => {
                out.extend_from_slice(b"d:");
                out.extend_from_slice(a.as_bytes());
                out.push(b':');
                out.extend_from_slice(b.as_bytes());
            }
        }
    }

    /// Parses a stored key.
    pub fn from_db(s: &str) -> Option<Self> {
        if let Some(id) = s.strip_prefix("g:") {
            return id.parse().ok().map(|id| ConvKey::Group(GroupId(id)));
        }
        let (a, b) = s.strip_prefix("d:")?.split_once(':')?;
        Some(ConvKey::Direct(a.parse().ok()?, b.parse().ok()?))
    }
}

/// A stored conversation event, as a reader of `conv` sees it (for a private
/// conversation, as the first user of the key sees it): the very frame (`* MSG …`)
/// that was fanned out, so that it is encoded once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// Its conversation.
    pub conv: ConvKey,
    /// Its sequence number.
    pub seq: Seq,
    /// When it was stored.
    pub time: Millis,
    /// The encoded event frame.
    pub frame: bytes::Bytes,
}

impl EventRecord {
    /// The record of an event whose frame is `frame`.
    pub fn new(conv: ConvKey, event: &StoredEvent, frame: bytes::Bytes) -> Self {
        EventRecord { conv, seq: event.seq(), time: event.time(), frame }
    }
}

/// One thing to make durable. A batch of them commits atomically, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A new account.
    User {
        /// Its name.
        name: UserName,
        /// The PHC string of its Argon2id password hash.
        hash: String,
        /// When it was made.
        created: Millis,
    },
    /// A new group incarnation.
    GroupCreated {
        /// Its identity.
        id: GroupId,
        /// Its name.
        name: GroupName,
    },
    /// A change to a group, in the order they happened; replayed at start.
    GroupEvent {
        /// Which group.
        id: GroupId,
        /// The change.
        event: GroupEvent,
    },
    /// A group is gone: its log and its history are deleted.
    GroupDeleted {
        /// Which group.
        id: GroupId,
    },
    /// A stored conversation event.
    Event(EventRecord),
    /// An upload was offered, or its held ranges changed. Boxed, as is a file,
    /// so that the writes of every SEND are not as large as these rare ones.
    Upload(Box<UploadRecord>),
    /// An upload is finished or dropped.
    UploadGone {
        /// Its id.
        id: FileId,
    },
    /// A file was shared.
    File(Box<FileRecord>),
    /// A user holds this content (counted once against their quota).
    Content {
        /// The user.
        user: UserName,
        /// The content.
        sha256: Sha256,
        /// Its size.
        size: u64,
    },
    /// An idempotency key, remembered for the `keys` window.
    SendKey {
        /// The sender.
        user: UserName,
        /// The key.
        key: IdemKey,
        /// The conversation, as the sender named it.
        conv: Conversation,
        /// The send's fingerprint.
        fingerprint: u64,
        /// Its sequence number.
        seq: Seq,
        /// Its time.
        time: Millis,
    },
    /// Idempotency keys stored before this time are no longer needed.
    KeysExpired {
        /// The oldest time still kept.
        before: Millis,
    },
    /// A session token was made, or its use recorded: the whole record, replacing
    /// any with its number.
    Token(Box<TokenRecord>),
    /// A session token is gone (revoked, let go of, or expired).
    TokenGone {
        /// Its number.
        id: TokenId,
    },
    /// An account's password changed.
    Password {
        /// The account.
        user: UserName,
        /// The PHC string of the new password's hash.
        hash: String,
    },
    /// An address logged in to an account (SPEC.md 11.5): it keeps a login budget
    /// of its own there.
    KnownAddress {
        /// The account.
        user: UserName,
        /// The address.
        address: Address,
        /// When it last logged in.
        time: Millis,
    },
    /// An address is no longer among the account's newest that logged in.
    KnownAddressGone {
        /// The account.
        user: UserName,
        /// The address.
        address: Address,
    },
    /// A user's read marker of a conversation moved (READ, SPEC.md 6.8): the whole
    /// record, replacing any of the same user and conversation.
    ReadMarker {
        /// The reader.
        user: UserName,
        /// The conversation.
        conv: ConvKey,
        /// The marker: events up to it are read.
        seq: Seq,
    },
    /// A user's read marker of a group is gone: they are no longer a member.
    ReadMarkerGone {
        /// The former member.
        user: UserName,
        /// The group's conversation.
        conv: ConvKey,
    },
    /// An account was deleted: it, its tokens, its read markers and the content it
    /// held go, and its name stays taken for good (a tombstone).
    UserDeleted {
        /// The account.
        user: UserName,
        /// When.
        time: Millis,
    },
}

/// A session token as the store keeps it: never its secret, only the secret's
/// SHA-256 (a 256-bit random secret needs no slow hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its number.
    pub id: TokenId,
    /// Whose it is.
    pub user: UserName,
    /// The SHA-256 of its secret.
    pub digest: [u8; 32],
    /// The device label it was made with.
    pub label: Text,
    /// When it was made.
    pub created: Millis,
    /// When it last logged a session in, as last recorded.
    pub used: Millis,
    /// Where from, as last recorded.
    pub address: Address,
}

/// An unfinished upload, as kept for resuming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    /// The file id the uploader uses.
    pub id: FileId,
    /// The uploader.
    pub user: UserName,
    /// Where it will be shared, as the uploader named it.
    pub conv: Conversation,
    /// The declared size.
    pub size: u64,
    /// The declared SHA-256.
    pub sha256: Sha256,
    /// The display name.
    pub name: FileName,
    /// The bytes held so far.
    pub ranges: Ranges,
    /// When it was offered.
    pub created: Millis,
}

/// A shared file: where, as which event, and what content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// Its id.
    pub id: FileId,
    /// The conversation it was shared in.
    pub key: ConvKey,
    /// That conversation as the uploader named it.
    pub conv: Conversation,
    /// The FILE event's sequence number.
    pub seq: Seq,
    /// When it was shared.
    pub time: Millis,
    /// The uploader.
    pub uploader: UserName,
    /// The content's size.
    pub size: u64,
    /// The content's SHA-256 (its name on disk).
    pub sha256: Sha256,
    /// The display name.
    pub name: FileName,
}

/// A page of history to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The conversation.
    pub conv: ConvKey,
    /// Events after this sequence number (`None`: the newest ones).
    pub after: Option<Seq>,
    /// At most this many.
    pub limit: u32,
    /// Only events up to this sequence number (the newest one when asked).
    pub upto: Seq,
    /// Stop after the event that takes the page past this many bytes (one event
    /// at least), so that a page fits the reader's queue.
    pub max_bytes: u64,
}

/// The unread counts to make for one `CONVERSATIONS read` (SPEC.md 6.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadQuery {
    /// Whose markers: their own messages and files are not unread.
    pub reader: UserName,
    /// For each conversation to count in, the events numbered `after + 1` to `upto`
    /// ([`baatkaro_proto::rules::unread_range`]: at most
    /// [`UNREAD_WINDOW`](baatkaro_proto::rules::UNREAD_WINDOW) of them).
    pub convs: Vec<UnreadRange>,
}

/// The events of one conversation whose unread ones are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnreadRange {
    /// The conversation.
    pub conv: ConvKey,
    /// Events after this sequence number (the reader's marker)…
    pub after: Seq,
    /// …up to this one.
    pub upto: Seq,
}

/// A read the store runs once its batch has committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// A page of history (HISTORY).
    History(HistoryQuery),
    /// Unread counts (`CONVERSATIONS read`).
    Unread(UnreadQuery),
}

/// What a [`Read`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// The page of a [`Read::History`].
    History(HistoryPage),
    /// The counts of a [`Read::Unread`], one per range, in its order: the events in
    /// the range that [`baatkaro_proto::rules::counts_as_unread`] for the reader.
    Unread(Vec<u64>),
}

/// What a history read found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// The events, oldest first.
    pub events: Vec<StoredEvent>,
    /// The oldest sequence number still kept, if any event is.
    pub oldest: Option<Seq>,
}

/// Everything the server holds in memory, as loaded at start.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Accounts and their password hashes.
    pub users: Vec<(UserName, String)>,
    /// Every live group incarnation with its log, oldest event first.
    pub groups: Vec<(GroupId, GroupName, Vec<GroupEvent>)>,
    /// The newest sequence number of every conversation that has events.
    pub latest: Vec<(ConvKey, Seq)>,
    /// The idempotency keys of the last `keys` seconds.
    pub keys: Vec<(UserName, IdemKey, Conversation, u64, Seq, Millis)>,
    /// The next group id to give out (ids are never reused).
    pub next_group_id: u64,
    /// Unfinished uploads.
    pub uploads: Vec<UploadRecord>,
    /// Shared files.
    pub files: Vec<FileRecord>,
    /// Content each user holds: (user, sha256, size).
    pub contents: Vec<(UserName, Sha256, u64)>,
    /// Every session token.
    pub tokens: Vec<TokenRecord>,
    /// The names of deleted accounts, never given out again.
    pub tombstones: Vec<UserName>,
    /// The accounts the operator locked.
    pub locked: Vec<UserName>,
    /// The addresses that logged in to each account, with their last login.
    pub known_addresses: Vec<(UserName, Address, Millis)>,
    /// The next token number to give out (numbers are never reused).
    pub next_token_id: TokenId,
    /// Every read marker: (reader, conversation, marker).
    pub read_markers: Vec<(UserName, ConvKey, Seq)>,
}

/// Writes to commit together, then history reads to run once they are durable (so a
/// HISTORY sees every send acknowledged before it): one transaction, one fsync.
#[derive(Debug, Default)]
pub struct Batch {
    /// The hub's number for it, echoed in its completion.
    pub id: u64,
    /// What to make durable, in order.
    pub writes: Vec<Write>,
    /// The next group id, stored with the writes.
    pub next_group_id: u64,
    /// Reads to run after the commit, with the hub's token for each.
    pub reads: Vec<(u64, Read)>,
}

/// Why the store could not commit a batch or run a read, as far as the hub's answer
/// depends on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreFault {
    /// The store found its database damaged and takes no more writes: the hub
    /// serves only what reads (`STORE_DAMAGED`, SPEC.md 8).
    Damaged(String),
    /// The disk is full (`STORAGE_FULL`).
    Full(String),
    /// Anything else (`INTERNAL`).
    Failed(String),
}

impl StoreFault {
    /// The error code a request that waited on the store gets.
    pub fn code(&self) -> baatkaro_proto::ErrorCode {
        use baatkaro_proto::ErrorCode;
        match self {
            StoreFault::Damaged(_) => ErrorCode::StoreDamaged,
            StoreFault::Full(_) => ErrorCode::StorageFull,
            StoreFault::Failed(_) => ErrorCode::Internal,
        }
    }
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreFault::Damaged(e) => write!(f, "the database is damaged: {e}"),
            StoreFault::Full(e) => write!(f, "the disk is full: {e}"),
            StoreFault::Failed(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baatkaro_proto::group::GroupId;

    /// The stored spelling of a conversation key never changes (stores written by
    /// every earlier server name conversations so), whichever way it is written,
    /// and reads back as the key.
    #[test]
    fn a_conversation_key_is_spelled_as_stores_have_always_spelled_it() {
        let user = |s: &str| UserName::new(s).unwrap();
        let keys = [
            (ConvKey::Group(GroupId(0)), "g:0".to_string()),
            (ConvKey::Group(GroupId(u64::MAX)), format!("g:{}", u64::MAX)),
            (ConvKey::direct(user("bob"), user("alice")), "d:alice:bob".to_string()),
            (ConvKey::direct(user("a.b-c_d"), user("a.b-c_d")), "d:a.b-c_d:a.b-c_d".to_string()),
        ];
        for (key, spelled) in keys {
            assert_eq!(key.to_db(), spelled);
            let mut out = b"before".to_vec();
            key.write_db(&mut out);
            assert_eq!(out, [b"before", spelled.as_bytes()].concat());
            assert_eq!(ConvKey::from_db(&spelled), Some(key));
        }
    }
}
