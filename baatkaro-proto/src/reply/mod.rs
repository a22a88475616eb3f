//! Server-to-client frames: tagged replies and list items, and untagged events.

mod decode;
mod encode;
pub use encode::EventFrame;

use bytes::Bytes;

use crate::event::{Event, Failure, StoredEvent};
use crate::limits::Limits;
use crate::types::{
    Address, Conversation, Features, FileId, GroupName, InviteOutcome, JoinOutcome, JoinRule,
    Membership, Millis, OfferStatus, Presence, Role, Seq, Software, Tag, Text, TokenId,
    TokenSecret, UserName, keyword_enum,
};

/// One server frame.
///
/// ```abnf
/// server-frame = tag SP "OK" SP ok-reply / tag SP "ERR" SP failure / tag SP item / event
/// ```
///
/// Every request gets exactly one final frame (`Ok` or `Err`) with its tag, after any
/// `Item`s with the same tag. Events are untagged and may come between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    /// `tag OK ...`: the request succeeded.
    Ok {
        /// The request's tag.
        tag: Tag,
        /// What the server answers.
        reply: OkReply,
    },
    /// `tag ERR ...`: the request failed and changed nothing.
    Err {
        /// The request's tag.
        tag: Tag,
        /// Why.
        failure: Failure,
    },
    /// `tag item`: one element of a list or download, before the final reply.
    Item {
        /// The request's tag.
        tag: Tag,
        /// The element.
        item: Item,
    },
    /// `* event`: something happened.
    Event(Event),
}

keyword_enum!(
    /// Commands whose reply is a list of items and a count.
    ListVerb {
        /// REQUESTS: `REQUEST` items.
        Requests = "REQUESTS",
        /// GROUPS: `GROUP` items.
        Groups = "GROUPS",
        /// CONVERSATIONS: `CONV` items.
        Conversations = "CONVERSATIONS",
        /// MEMBERS: `MEMBER` items.
        Members = "MEMBERS",
        /// ONLINE: `ONLINE` items.
        Online = "ONLINE",
        /// FILES: `FILE` items.
        Files = "FILES",
        /// TOKENS: `TOKEN` items.
        Tokens = "TOKENS",
        /// BANS: `BAN` items.
        Bans = "BANS",
    }
);

keyword_enum!(
    /// Commands whose success reply carries nothing but the verb.
    DoneVerb {
        /// LOGOUT
        Logout = "LOGOUT",
        /// PING
        Ping = "PING",
        /// CREATE
        Create = "CREATE",
        /// APPROVE
        Approve = "APPROVE",
        /// REJECT
        Reject = "REJECT",
        /// ACCEPT
        Accept = "ACCEPT",
        /// DECLINE
        Decline = "DECLINE",
        /// LEAVE
        Leave = "LEAVE",
        /// KICK
        Kick = "KICK",
        /// UNBAN
        Unban = "UNBAN",
        /// PROMOTE
        Promote = "PROMOTE",
        /// DEMOTE
        Demote = "DEMOTE",
        /// TRANSFER
        Transfer = "TRANSFER",
        /// TRANSFER-ACCEPT
        TransferAccept = "TRANSFER-ACCEPT",
        /// TRANSFER-CANCEL
        TransferCancel = "TRANSFER-CANCEL",
        /// RULE
        Rule = "RULE",
        /// DELETE
        Delete = "DELETE",
        /// FILE-CANCEL
        FileCancel = "FILE-CANCEL",
        /// REVOKE
        Revoke = "REVOKE",
        /// PASSWORD
        Password = "PASSWORD",
        /// DELETE-ACCOUNT
        DeleteAccount = "DELETE-ACCOUNT",
    }
);

/// The body of a success reply, by command.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OkReply {
    /// `HELLO version software [SP "features=" features] *(SP limit-key "=" number)`
    Hello {
        /// The version the server chose from the client's list.
        version: u16,
        /// The server software.
        server: Software,
        /// Optional features on offer.
        features: Features,
        /// Every limit and quota (boxed: the list is long, and a reply is moved often,
        /// this one once per connection).
        limits: Box<Limits>,
    },
    /// `REGISTER user-name`: the account exists and the session is logged in.
    Register {
        /// The account.
        user: UserName,
    },
    /// `LOGIN user-name`: the session is logged in.
    Login {
        /// The account.
        user: UserName,
    },
    /// `JOIN group-name join-outcome`
    Join {
        /// The group.
        group: GroupName,
        /// Joined now, or pending approval.
        outcome: JoinOutcome,
    },
    /// `INVITE group-name user-name invite-outcome`
    Invite {
        /// The group.
        group: GroupName,
        /// The invitee.
        user: UserName,
        /// Invited, or joined at once (they had asked already).
        outcome: InviteOutcome,
    },
    /// `SEND conv seq millis`: stored durably with this sequence number.
    Send {
        /// The conversation.
        conv: Conversation,
        /// The message's sequence number (the original one for a retried key).
        seq: Seq,
        /// When it was stored.
        time: Millis,
    },
    /// `HISTORY conv latest oldest`: the items before this were the events asked for.
    History {
        /// The conversation.
        conv: Conversation,
        /// The newest sequence number in the conversation (0 if it has none).
        latest: Seq,
        /// The oldest sequence number still kept (`latest + 1` if none is kept).
        /// Events before it are gone for good.
        oldest: Seq,
    },
    /// `list-verb count`: the list had this many items.
    Listed {
        /// Which list.
        verb: ListVerb,
        /// How many items came before this reply.
        count: u64,
    },
    /// `FILE-OFFER file-id offer-status`
    FileOffer {
        /// The file's id.
        file: FileId,
        /// Whether to upload, or already shared.
        status: OfferStatus,
    },
    /// `FILE-CHUNK file-id received`: stored; `received` bytes are held in all.
    FileChunk {
        /// The file.
        file: FileId,
        /// Total bytes the server holds for it.
        received: u64,
    },
    /// `FILE-STATUS file-id size received`, after one `HAVE` item per held range.
    FileStatus {
        /// The file.
        file: FileId,
        /// Its declared size.
        size: u64,
        /// Total bytes held.
        received: u64,
    },
    /// `FILE-COMMIT file-id conv seq`: verified and shared as this event.
    FileCommit {
        /// The file.
        file: FileId,
        /// Where it was shared.
        conv: Conversation,
        /// The FILE event's sequence number.
        seq: Seq,
    },
    /// `FILE-GET file-id offset length`: the `CHUNK` items before this covered the range.
    FileGet {
        /// The file.
        file: FileId,
        /// First byte sent.
        offset: u64,
        /// Bytes sent in all.
        length: u64,
    },
    /// `AUTH user-name`: the session is logged in with a token.
    Auth {
        /// The account.
        user: UserName,
    },
    /// `TOKEN token-id secret`: a new session token; the secret is shown this once.
    Token {
        /// Its number.
        token: TokenId,
        /// Its secret.
        secret: TokenSecret,
    },
    /// `READ conv seq`: where my read marker of the conversation is now (the
    /// `read` feature): the one asked for, or further on if it was already there,
    /// or the newest event if the one asked for is past it.
    Read {
        /// The conversation, as I named it.
        conv: Conversation,
        /// The marker: every event up to this sequence number counts as read.
        seq: Seq,
    },
    /// `done-verb`: done, nothing more to say.
    Done {
        /// The command that succeeded.
        verb: DoneVerb,
    },
}

/// One element of a multi-line reply (`tag item`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A stored event, in HISTORY and (FILE events) FILES replies.
    Stored(StoredEvent),
    /// `REQUEST group-name user-name millis [{n}]` + reason: a pending join request.
    Request {
        /// The group.
        group: GroupName,
        /// Who asks.
        user: UserName,
        /// When.
        time: Millis,
        /// Why, if given.
        reason: Option<Text>,
    },
    /// `GROUP group-name membership join-rule members latest`: one of my groups.
    Group {
        /// The group.
        group: GroupName,
        /// My relation to it.
        membership: Membership,
        /// Its join rule.
        rule: JoinRule,
        /// How many members it has.
        members: u64,
        /// Its newest sequence number (0 when I may not read it yet).
        latest: Seq,
    },
    /// `CONV conv latest`: a conversation I can read and its newest sequence number.
    Conversation {
        /// The conversation.
        conv: Conversation,
        /// Its newest sequence number.
        latest: Seq,
    },
    /// `CONV conv latest read unread`: a conversation I can read, its newest sequence
    /// number, my read marker and how many events after the marker are unread
    /// (`CONVERSATIONS read`, the `read` feature).
    ConversationMarked {
        /// The conversation.
        conv: Conversation,
        /// Its newest sequence number.
        latest: Seq,
        /// My read marker: events up to it count as read (0: none).
        read: Seq,
        /// The messages and files of other users among the
        /// [`UNREAD_WINDOW`](crate::rules::UNREAD_WINDOW) events after the marker: exact
        /// when `latest - read` is at most that, a lower bound otherwise.
        unread: u64,
    },
    /// `GROUP group-name membership join-rule members latest "offer" user-name`: one of
    /// my groups, whose ownership is offered to a member (`GROUPS offers`, the
    /// `group-state` feature; a group without an offer is an [`Item::Group`]).
    GroupOffered {
        /// The group.
        group: GroupName,
        /// My relation to it.
        membership: Membership,
        /// Its join rule.
        rule: JoinRule,
        /// How many members it has.
        members: u64,
        /// Its newest sequence number.
        latest: Seq,
        /// The member the owner offered ownership to (me, if it is my name).
        offer: UserName,
    },
    /// `BAN group-name user-name user-name`: a user banned from the group, and the
    /// owner or admin who banned them (the `group-state` feature).
    Ban {
        /// The group.
        group: GroupName,
        /// The banned user.
        user: UserName,
        /// Who banned them.
        by: UserName,
    },
    /// `MEMBER group-name user-name role presence`
    Member {
        /// The group.
        group: GroupName,
        /// The member.
        user: UserName,
        /// Their role.
        role: Role,
        /// Online or not.
        presence: Presence,
    },
    /// `ONLINE user-name`: a user who is online.
    Online {
        /// The user.
        user: UserName,
    },
    /// `HAVE file-id offset length`: a byte range the server holds of an upload.
    Have {
        /// The file.
        file: FileId,
        /// First byte.
        offset: u64,
        /// Length in bytes.
        length: u64,
    },
    /// `CHUNK file-id offset {n}` + bytes: downloaded bytes.
    Chunk {
        /// The file.
        file: FileId,
        /// Where the bytes start.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// `TOKEN token-id created used expires address {n}` + label: one of my session
    /// tokens.
    Token {
        /// Its number.
        token: TokenId,
        /// When it was made.
        created: Millis,
        /// When it last logged a session in (its making counts).
        used: Millis,
        /// When it stops working unless it is used before.
        expires: Millis,
        /// The address it was last used from.
        address: Address,
        /// The device label it was made with.
        label: Text,
    },
}
