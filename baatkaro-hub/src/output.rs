//! What the hub asks of the world, and what the world tells it back: deliveries to
//! connections, batches for the store, password hashes and disk work. The shell that
//! drives the hub carries each [`Output`] out and feeds its completion back through
//! the matching `handle_*` call.

use std::net::IpAddr;

use baatkaro_proto::session::RequestId;
use baatkaro_proto::{
    ErrorCode, Failure, FileId, FileName, Item, Millis, OkReply, Password, Sha256, TokenId,
    TokenSecret, UserName,
};
use bytes::Bytes;

use crate::store::{Batch, UploadRecord};

/// Identifies a connection for the life of the server (the shell hands them out).
pub type ConnId = u64;

/// A map by connection, hashed with [`ConnIdHasher`]: looked up once per delivery,
/// by the hub and by the shell.
pub type ConnMap<V> =
    std::collections::HashMap<ConnId, V, std::hash::BuildHasherDefault<ConnIdHasher>>;

/// Hashes connection ids with one multiplication instead of SipHash. Only for ids
/// the shell hands out itself (sequential numbers, never chosen by a client), so
/// that nobody can pick ids that share a slot.
#[derive(Default)]
pub struct ConnIdHasher(u64);

impl std::hash::Hasher for ConnIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: the high bits (which the table also uses) mix well.
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A request's address, for its answer.
pub type Req = (ConnId, RequestId);

/// Something the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Hand a connection its share of a committed batch, in this order.
    Deliver {
        /// The connection.
        conn: ConnId,
        /// The batch as routed, shared by every connection it goes to: one
        /// reference per connection and batch, not per event.
        batch: std::sync::Arc<Routed>,
        /// Which of the batch's deliveries are this connection's
        /// ([`Routed::share`]).
        share: std::ops::Range<u32>,
    },
    /// Stream a download on a connection: its chunks, read as its queue drains,
    /// then its reply.
    Download {
        /// The connection.
        conn: ConnId,
        /// What to send.
        job: Download,
    },
    /// Say goodbye to a connection with this BYE and close it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        failure: Failure,
    },
    /// Commit a batch, then run its reads; answer with [`crate::Hub::handle_committed`].
    Commit(Batch),
    /// Load a snapshot (after a failed commit); answer with
    /// [`crate::Hub::handle_loaded`]. Keys stored before `keys_since` may be left out.
    Load {
        /// The oldest idempotency key still needed.
        keys_since: Millis,
        /// Only the newest this many keys of each user are needed (0: all).
        keys_per_user: u64,
    },
    /// Hash or check a password; answer with [`crate::Hub::handle_hashed`].
    Hash(HashJob),
    /// Disk work for a file transfer; answer with [`crate::Hub::handle_disk`] (except
    /// for the jobs that say they have no answer).
    Disk(DiskJob),
}

/// A committed batch as routed to its connections: every connection's deliveries,
/// one share after another, and the frames, results and lists they name, in one
/// allocation of each that they all share (a vector per connection and a box per
/// reply, allocated by the hub and freed by each connection, showed in every
/// profile at load). A delivery is plain data (it only names what it sends), so
/// that dropping a batch's million deliveries costs nothing per delivery.
#[derive(Debug, Default)]
pub struct Routed {
    /// The batch's encoded events: [`Delivery::Frame`] names one by index.
    pub frames: Vec<Bytes>,
    /// The batch's final replies: [`Delivery::Reply`] names one by index.
    pub results: Vec<Result<OkReply, Failure>>,
    /// The batch's list replies: [`Delivery::List`] names one by index.
    pub lists: Vec<ListReply>,
    /// The batch's goodbyes: [`Delivery::Close`] names one by index.
    pub closes: Vec<Failure>,
    /// Every connection's deliveries, each connection's share in the batch's order.
    pub deliveries: Vec<Delivery>,
}

impl Routed {
    /// A connection's share (what [`Output::Deliver`] names): empty if out of range.
    pub fn share(&self, share: &std::ops::Range<u32>) -> &[Delivery] {
        self.deliveries.get(share.start as usize..share.end as usize).unwrap_or(&[])
    }

    /// The frame a [`Delivery::Frame`] names.
    pub fn frame(&self, index: u32) -> Option<&Bytes> {
        self.frames.get(index as usize)
    }

    /// The result a [`Delivery::Reply`] names.
    pub fn result(&self, index: u32) -> Option<&Result<OkReply, Failure>> {
        self.results.get(index as usize)
    }

    /// The list reply a [`Delivery::List`] names.
    pub fn list(&self, index: u32) -> Option<&ListReply> {
        self.lists.get(index as usize)
    }

    /// The goodbye a [`Delivery::Close`] names.
    pub fn close(&self, index: u32) -> Option<&Failure> {
        self.closes.get(index as usize)
    }
}

/// One output for a connection, naming what it sends in its [`Routed`] batch.
/// Small (24 bytes) and plain: a batch's share for one connection of a large group
/// is mostly frames, one of these each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A final reply.
    Reply {
        /// The request.
        id: RequestId,
        /// Its answer: an index into the batch's [`Routed::results`].
        result: u32,
    },
    /// The items of a list reply, then the reply: an index into the batch's
    /// [`Routed::lists`].
    List(u32),
    /// Say goodbye with this BYE and close, after what comes before it (a session
    /// whose token was revoked hears the revocation's reply first): an index into
    /// the batch's [`Routed::closes`].
    Close(u32),
    /// One of the batch's encoded events.
    Frame {
        /// Its index in the batch's frames.
        index: u32,
        /// Set when this connection's own request caused it: it goes right after
        /// that request's final reply (SPEC.md section 5.1).
        after: Option<RequestId>,
    },
}

/// A list reply: its items, then its final reply.
#[derive(Debug)]
pub struct ListReply {
    /// The request.
    pub id: RequestId,
    /// Its items, in order.
    pub items: Vec<Item>,
    /// Its answer.
    pub result: Result<OkReply, Failure>,
}

/// One FILE-GET, checked: the range to send from a file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The request.
    pub id: RequestId,
    /// The file, as the client names it.
    pub file: FileId,
    /// Its content's name on disk.
    pub sha256: Sha256,
    /// Where the range starts.
    pub offset: u64,
    /// Its length.
    pub length: u64,
    /// The chunk size.
    pub chunk: u64,
}

/// A download over HTTP to check (SPEC.md 12.4), given to
/// [`crate::Hub::handle_file_access`]: the session token it carries, as AUTH would
/// present it, the address it comes from, and the file it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAccess {
    /// The address the request came from, whose budget of token logins it spends.
    pub peer: IpAddr,
    /// The account the token is said to belong to.
    pub user: UserName,
    /// The token's number.
    pub token: TokenId,
    /// The token's secret (its `Debug` shows nothing of it).
    pub secret: TokenSecret,
    /// The file asked for.
    pub file: FileId,
}

/// What a checked download serves: the shared file's size, its content's SHA-256
/// (the name of its content on disk, and its entity tag) and the name it was
/// shared under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    /// Its size in bytes.
    pub size: u64,
    /// Its content's SHA-256, checked when it was uploaded.
    pub sha256: Sha256,
    /// The name it was shared under (not yet made safe to save under).
    pub name: FileName,
}

/// A password to hash (REGISTER, a new password) or check (LOGIN, and before an
/// account's password is changed or the account deleted).
#[derive(Debug)]
pub struct HashJob {
    /// The request it answers.
    pub req: Req,
    /// The account.
    pub user: UserName,
    /// What to do.
    pub kind: HashKind,
    /// What the hub does with the outcome; the shell hands it back untouched.
    pub purpose: HashPurpose,
}

/// Which request a password job serves, and what it still needs once done.
#[derive(Debug)]
pub enum HashPurpose {
    /// REGISTER: the new account's password is hashed.
    Register,
    /// LOGIN: the password is checked.
    Login,
    /// PASSWORD: the old password is checked; the new one is hashed next.
    CheckOld {
        /// The new password.
        new: Password,
    },
    /// PASSWORD: the new password is hashed.
    HashNew,
    /// DELETE-ACCOUNT: the password is checked.
    DeleteAccount,
}

/// What a [`HashJob`] does.
#[derive(Debug)]
pub enum HashKind {
    /// Hash a new password into a PHC string.
    Hash {
        /// The password.
        password: Password,
    },
    /// Check a password against the stored hash, or — for an unknown user — against
    /// a decoy, spending the same time, and fail.
    Verify {
        /// The password given.
        password: Password,
        /// The stored PHC string, if the user exists.
        stored: Option<std::sync::Arc<str>>,
    },
}

/// What a [`HashJob`] found.
#[derive(Debug)]
pub struct HashDone {
    /// The request it answers.
    pub req: Req,
    /// The account.
    pub user: UserName,
    /// The outcome.
    pub outcome: HashOutcome,
    /// The job's purpose, as it was given.
    pub purpose: HashPurpose,
}

/// The outcome of a [`HashJob`].
#[derive(Debug)]
pub enum HashOutcome {
    /// A check: whether the password matched.
    Checked(bool),
    /// A new password's PHC string, or why hashing failed.
    Hashed(Result<String, String>),
}

/// Disk work of an upload or a download.
#[derive(Debug)]
pub enum DiskJob {
    /// A new upload: hash its content as its chunks arrive in order, so that its
    /// commit need not read it back. No answer.
    Begin {
        /// The upload.
        file: FileId,
    },
    /// Write a chunk of an upload (of `size` bytes in all), and hash it if the upload
    /// is hashed as it arrives. Answered by [`DiskDone::Chunk`].
    Chunk {
        /// Whose request.
        req: Req,
        /// The upload.
        file: FileId,
        /// Its declared size.
        size: u64,
        /// Where the chunk goes.
        offset: u64,
        /// Its bytes.
        data: Bytes,
    },
    /// Verify a complete upload against its SHA-256 (by its running hash if every
    /// byte was hashed as it came, else by reading it back) and move it into the
    /// content store if it matches. Answered by [`DiskDone::Finished`].
    Finish {
        /// The upload.
        file: FileId,
        /// Its size.
        size: u64,
        /// Its declared SHA-256.
        sha256: Sha256,
    },
    /// Make an upload's bytes durable; answered by [`DiskDone::Synced`] with `rec`, to
    /// be saved once its bytes are.
    Sync {
        /// The upload's record as it will be saved.
        rec: Box<UploadRecord>,
    },
    /// Let go of the chunks parked for an upload's running hash (its uploader left);
    /// its commit will read it back. No answer.
    Release {
        /// The upload.
        file: FileId,
    },
    /// Delete an abandoned upload's bytes. Answered by [`DiskDone::Dropped`] only
    /// when `req` (a FILE-CANCEL, whose reply says the bytes are gone) is set.
    Drop {
        /// The upload.
        file: FileId,
        /// The FILE-CANCEL that waits for the bytes to go, if any.
        req: Option<Req>,
    },
    /// Forget every running hash: the state was reloaded from the store, and the
    /// uploads' commits read their content back. No answer.
    ForgetHashes,
}

/// The outcome of a [`DiskJob`].
#[derive(Debug)]
pub enum DiskDone {
    /// A chunk was written (or not).
    Chunk {
        /// Whose request.
        req: Req,
        /// The upload.
        file: FileId,
        /// Where the chunk went.
        offset: u64,
        /// Its length.
        len: u64,
        /// Whether it was written.
        result: Result<(), ErrorCode>,
    },
    /// An upload was verified: whether its hash matched.
    Finished {
        /// The upload.
        file: FileId,
        /// Whether the content matched, or why it could not be checked:
        /// `UPLOAD_INCOMPLETE` when the bytes the upload held are gone (lost in a
        /// crash, during an earlier commit of it, say), which the hub answers by forgetting
        /// its ranges, so that they are sent again.
        result: Result<bool, ErrorCode>,
    },
    /// A cancelled upload's bytes are deleted.
    Dropped {
        /// The FILE-CANCEL that waited for it.
        req: Req,
    },
    /// The bytes of an upload are durable up to these ranges (or could not be made so).
    Synced {
        /// The record to save.
        rec: Box<UploadRecord>,
        /// Whether the sync worked.
        result: Result<(), ErrorCode>,
    },
}
