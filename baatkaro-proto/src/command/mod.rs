//! Client-to-server frames: a [`Request`] is a tag and a [`Command`].
//!
//! Each variant's doc gives its wire syntax; SPEC.md gives who may send it, the
//! replies, errors and events.

mod decode;
mod encode;

use bytes::Bytes;

use crate::types::{
    Conversation, FileId, GroupName, HistoryRange, IdemKey, JoinRule, OfferName, Password, Seq,
    Sha256, Software, Tag, Text, TokenId, TokenSecret, UserName, Versions,
};

/// One client frame: `tag SP command`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The client-chosen tag that every reply line to this request carries.
    pub tag: Tag,
    /// What the client asks for.
    pub command: Command,
}

/// A client command. Payloads (`{n}` then n bytes and CRLF) are shown as `{n}`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `HELLO versions [SP software]`: open the session.
    Hello {
        /// The versions the client speaks, in order of preference.
        versions: Versions,
        /// The client software, for the server's logs.
        client: Option<Software>,
    },
    /// `REGISTER user-name {n}` + password: create an account and log in.
    Register {
        /// The new account's name.
        user: UserName,
        /// Its password.
        password: Password,
    },
    /// `LOGIN user-name {n}` + password: log in.
    Login {
        /// The account.
        user: UserName,
        /// Its password.
        password: Password,
    },
    /// `LOGOUT [SP "revoke"]`: end the session; the server replies and closes. With
    /// `revoke` (the `tokens` feature), the token the session logged in with is
    /// revoked too.
    Logout {
        /// Also revoke the session's token.
        revoke: bool,
    },
    /// `PING`: keep-alive and round-trip check.
    Ping,
    /// `CREATE group-name [SP join-rule]`: create a group and become its owner.
    Create {
        /// The new group.
        group: GroupName,
        /// Its join rule; absent means `approval`.
        rule: Option<JoinRule>,
    },
    /// `JOIN group-name [{n}]` + optional reason: ask to join.
    Join {
        /// The group.
        group: GroupName,
        /// Why, for the approvers.
        reason: Option<Text>,
    },
    /// `REQUESTS group-name`: list pending join requests.
    Requests {
        /// The group.
        group: GroupName,
    },
    /// `APPROVE group-name SP user-name`: admit a requester.
    Approve {
        /// The group.
        group: GroupName,
        /// The requester.
        user: UserName,
    },
    /// `REJECT group-name SP user-name`: refuse a request.
    Reject {
        /// The group.
        group: GroupName,
        /// The requester.
        user: UserName,
    },
    /// `INVITE group-name SP user-name`: invite a user.
    Invite {
        /// The group.
        group: GroupName,
        /// The invitee.
        user: UserName,
    },
    /// `ACCEPT group-name`: accept an invite.
    Accept {
        /// The group.
        group: GroupName,
    },
    /// `DECLINE group-name`: decline an invite.
    Decline {
        /// The group.
        group: GroupName,
    },
    /// `LEAVE group-name`: leave a group, or withdraw a pending request.
    Leave {
        /// The group.
        group: GroupName,
    },
    /// `KICK group-name SP user-name [SP "ban"]`: remove a member, optionally banning.
    Kick {
        /// The group.
        group: GroupName,
        /// The member to remove.
        user: UserName,
        /// Also ban them.
        ban: bool,
    },
    /// `UNBAN group-name SP user-name`: lift a ban.
    Unban {
        /// The group.
        group: GroupName,
        /// The banned user.
        user: UserName,
    },
    /// `PROMOTE group-name SP user-name`: make a member an admin.
    Promote {
        /// The group.
        group: GroupName,
        /// The member.
        user: UserName,
    },
    /// `DEMOTE group-name SP user-name`: make an admin a plain member.
    Demote {
        /// The group.
        group: GroupName,
        /// The admin.
        user: UserName,
    },
    /// `TRANSFER group-name SP user-name`: offer ownership to a member.
    Transfer {
        /// The group.
        group: GroupName,
        /// The member offered ownership.
        user: UserName,
    },
    /// `TRANSFER-ACCEPT group-name`: accept an ownership offer.
    TransferAccept {
        /// The group.
        group: GroupName,
    },
    /// `TRANSFER-CANCEL group-name`: withdraw an ownership offer.
    TransferCancel {
        /// The group.
        group: GroupName,
    },
    /// `RULE group-name SP join-rule`: change the join rule.
    Rule {
        /// The group.
        group: GroupName,
        /// The new rule.
        rule: JoinRule,
    },
    /// `DELETE group-name`: delete a group.
    Delete {
        /// The group.
        group: GroupName,
    },
    /// `GROUPS`: list my groups, invites and requests.
    Groups,
    /// `CONVERSATIONS`: list every conversation I can read, with its newest sequence
    /// number (to find what to catch up on).
    Conversations,
    /// `CONVERSATIONS read`: as [`Command::Conversations`], each item also carrying my
    /// read marker and unread count (the `read` feature; items are
    /// [`Item::ConversationMarked`](crate::Item::ConversationMarked)).
    ConversationsWithMarkers,
    /// `GROUPS offers`: as [`Command::Groups`], a group with a pending ownership offer
    /// also naming the member it is offered to (the `group-state` feature; such items
    /// are [`Item::GroupOffered`](crate::Item::GroupOffered)).
    GroupsWithOffers,
    /// `MEMBERS group-name`: list members with roles and presence.
    Members {
        /// The group.
        group: GroupName,
    },
    /// `ONLINE [group-name]`: list online users, everywhere or in one group.
    Online {
        /// Restrict to this group's members.
        group: Option<GroupName>,
    },
    /// `SEND conv SP idem-key {n}` + text: send a message.
    Send {
        /// A group (`#name`) or a user (`@name`).
        to: Conversation,
        /// The idempotency key: a retry with the same key is not stored twice.
        key: IdemKey,
        /// The message.
        text: Text,
    },
    /// `HISTORY conv SP history-range SP limit`: fetch stored events.
    History {
        /// The conversation.
        conv: Conversation,
        /// Which events.
        range: HistoryRange,
        /// At most this many (1 or more; the server caps it at its `page` limit).
        limit: u32,
    },
    /// `FILE-OFFER conv SP size SP sha256 {n}` + file name: offer a file.
    FileOffer {
        /// Where to share it.
        to: Conversation,
        /// Its size in bytes.
        size: u64,
        /// The SHA-256 of its content.
        sha256: Sha256,
        /// Its display name (not beginning with `.`).
        name: OfferName,
    },
    /// `FILE-CHUNK file-id SP offset {n}` + bytes: upload bytes at an offset.
    FileChunk {
        /// The file being uploaded.
        file: FileId,
        /// Where the bytes go.
        offset: u64,
        /// The bytes (may be empty).
        data: Bytes,
    },
    /// `FILE-STATUS file-id`: which ranges the server holds (to resume).
    FileStatus {
        /// The file being uploaded.
        file: FileId,
    },
    /// `FILE-COMMIT file-id`: verify the whole file and share it.
    FileCommit {
        /// The file being uploaded.
        file: FileId,
    },
    /// `FILE-CANCEL file-id`: give up an unfinished upload; the server deletes what
    /// it holds of it (the `file-cancel` feature).
    FileCancel {
        /// The file being uploaded.
        file: FileId,
    },
    /// `FILES conv`: list the files shared in a conversation.
    Files {
        /// The conversation.
        conv: Conversation,
    },
    /// `FILE-GET file-id SP offset SP length`: download a range.
    FileGet {
        /// The file.
        file: FileId,
        /// First byte.
        offset: u64,
        /// How many bytes (0: to the end of the file).
        length: u64,
    },
    /// `AUTH user-name SP token-id SP secret`: log in with a session token (the
    /// `tokens` feature).
    Auth {
        /// The account.
        user: UserName,
        /// The token's number.
        token: TokenId,
        /// The token's secret.
        secret: TokenSecret,
    },
    /// `TOKEN {n}` + device label: make a session token for this account.
    Token {
        /// Which device holds it, for the user's list of tokens.
        label: Text,
    },
    /// `TOKENS`: list this account's session tokens.
    Tokens,
    /// `REVOKE token-id`: revoke one of this account's session tokens; the sessions
    /// logged in with it end.
    Revoke {
        /// The token's number.
        token: TokenId,
    },
    /// `PASSWORD number {n}` + old password, then new: change the password (the
    /// `account` feature). The number is the old password's length in octets.
    Password {
        /// The password now.
        old: Password,
        /// The password from now on.
        new: Password,
    },
    /// `DELETE-ACCOUNT {n}` + password: delete this account for good (the `account`
    /// feature); its name is never given to anyone else.
    DeleteAccount {
        /// The account's password.
        password: Password,
    },
    /// `READ conv SP seq`: I have read the conversation up to `seq` (the `read`
    /// feature). The marker only moves forward and never past the newest event; my
    /// other sessions hear where it is now.
    Read {
        /// The conversation, as I name it.
        conv: Conversation,
        /// The sequence number read up to.
        seq: Seq,
    },
    /// `BANS group-name`: list the users banned from a group, and who banned each (the
    /// `group-state` feature; owner and admins).
    Bans {
        /// The group.
        group: GroupName,
    },
}

/// The verbs of client commands, used where a reply names the command it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Verb {
    /// HELLO
    Hello,
    /// REGISTER
    Register,
    /// LOGIN
    Login,
    /// LOGOUT
    Logout,
    /// PING
    Ping,
    /// CREATE
    Create,
    /// JOIN
    Join,
    /// REQUESTS
    Requests,
    /// APPROVE
    Approve,
    /// REJECT
    Reject,
    /// INVITE
    Invite,
    /// ACCEPT
    Accept,
    /// DECLINE
    Decline,
    /// LEAVE
    Leave,
    /// KICK
    Kick,
    /// UNBAN
    Unban,
    /// PROMOTE
    Promote,
    /// DEMOTE
    Demote,
    /// TRANSFER
    Transfer,
    /// TRANSFER-ACCEPT
    TransferAccept,
    /// TRANSFER-CANCEL
    TransferCancel,
    /// RULE
    Rule,
    /// DELETE
    Delete,
    /// GROUPS
    Groups,
    /// CONVERSATIONS
    Conversations,
    /// MEMBERS
    Members,
    /// ONLINE
    Online,
    /// SEND
    Send,
    /// HISTORY
    History,
    /// FILE-OFFER
    FileOffer,
    /// FILE-CHUNK
    FileChunk,
    /// FILE-STATUS
    FileStatus,
    /// FILE-COMMIT
    FileCommit,
    /// FILE-CANCEL
    FileCancel,
    /// FILES
    Files,
    /// FILE-GET
    FileGet,
    /// AUTH
    Auth,
    /// TOKEN
    Token,
    /// TOKENS
    Tokens,
    /// REVOKE
    Revoke,
    /// PASSWORD
    Password,
    /// DELETE-ACCOUNT
    DeleteAccount,
    /// READ
    Read,
    /// BANS
    Bans,
}

impl Verb {
    /// Every verb.
    pub const ALL: &'static [Verb] = &[
        Verb::Hello,
        Verb::Register,
        Verb::Login,
        Verb::Logout,
        Verb::Ping,
        Verb::Create,
        Verb::Join,
        Verb::Requests,
        Verb::Approve,
        Verb::Reject,
        Verb::Invite,
        Verb::Accept,
        Verb::Decline,
        Verb::Leave,
        Verb::Kick,
        Verb::Unban,
        Verb::Promote,
        Verb::Demote,
        Verb::Transfer,
        Verb::TransferAccept,
        Verb::TransferCancel,
        Verb::Rule,
        Verb::Delete,
        Verb::Groups,
        Verb::Conversations,
        Verb::Members,
        Verb::Online,
        Verb::Send,
        Verb::History,
        Verb::FileOffer,
        Verb::FileChunk,
        Verb::FileStatus,
        Verb::FileCommit,
        Verb::FileCancel,
        Verb::Files,
        Verb::FileGet,
        Verb::Auth,
        Verb::Token,
        Verb::Tokens,
        Verb::Revoke,
        Verb::Password,
        Verb::DeleteAccount,
        Verb::Read,
        Verb::Bans,
    ];

    /// The verb on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Hello => "HELLO",
            Verb::Register => "REGISTER",
            Verb::Login => "LOGIN",
            Verb::Logout => "LOGOUT",
            Verb::Ping => "PING",
            Verb::Create => "CREATE",
            Verb::Join => "JOIN",
            Verb::Requests => "REQUESTS",
            Verb::Approve => "APPROVE",
            Verb::Reject => "REJECT",
            Verb::Invite => "INVITE",
            Verb::Accept => "ACCEPT",
            Verb::Decline => "DECLINE",
            Verb::Leave => "LEAVE",
            Verb::Kick => "KICK",
            Verb::Unban => "UNBAN",
            Verb::Promote => "PROMOTE",
            Verb::Demote => "DEMOTE",
            Verb::Transfer => "TRANSFER",
            Verb::TransferAccept => "TRANSFER-ACCEPT",
            Verb::TransferCancel => "TRANSFER-CANCEL",
            Verb::Rule => "RULE",
            Verb::Delete => "DELETE",
            Verb::Groups => "GROUPS",
            Verb::Conversations => "CONVERSATIONS",
            Verb::Members => "MEMBERS",
            Verb::Online => "ONLINE",
            Verb::Send => "SEND",
            Verb::History => "HISTORY",
            Verb::FileOffer => "FILE-OFFER",
            Verb::FileChunk => "FILE-CHUNK",
            Verb::FileStatus => "FILE-STATUS",
            Verb::FileCommit => "FILE-COMMIT",
            Verb::FileCancel => "FILE-CANCEL",
            Verb::Files => "FILES",
            Verb::FileGet => "FILE-GET",
            Verb::Auth => "AUTH",
            Verb::Token => "TOKEN",
            Verb::Tokens => "TOKENS",
            Verb::Revoke => "REVOKE",
            Verb::Password => "PASSWORD",
            Verb::DeleteAccount => "DELETE-ACCOUNT",
            Verb::Read => "READ",
            Verb::Bans => "BANS",
        }
    }

    /// Parses a wire verb.
    pub fn from_wire(bytes: &[u8]) -> Option<Verb> {
        // A match on byte strings compiles to a length switch and a few compares,
        // which matters: this runs once per frame.
        Some(match bytes {
            b"HELLO" => Verb::Hello,
            b"REGISTER" => Verb::Register,
            b"LOGIN" => Verb::Login,
            b"LOGOUT" => Verb::Logout,
            b"PING" => Verb::Ping,
            b"CREATE" => Verb::Create,
            b"JOIN" => Verb::Join,
            b"REQUESTS" => Verb::Requests,
            b"APPROVE" => Verb::Approve,
            b"REJECT" => Verb::Reject,
            b"INVITE" => Verb::Invite,
            b"ACCEPT" => Verb::Accept,
            b"DECLINE" => Verb::Decline,
            b"LEAVE" => Verb::Leave,
            b"KICK" => Verb::Kick,
            b"UNBAN" => Verb::Unban,
            b"PROMOTE" => Verb::Promote,
            b"DEMOTE" => Verb::Demote,
            b"TRANSFER" => Verb::Transfer,
            b"TRANSFER-ACCEPT" => Verb::TransferAccept,
            b"TRANSFER-CANCEL" => Verb::TransferCancel,
            b"RULE" => Verb::Rule,
            b"DELETE" => Verb::Delete,
            b"GROUPS" => Verb::Groups,
            b"CONVERSATIONS" => Verb::Conversations,
            b"MEMBERS" => Verb::Members,
            b"ONLINE" => Verb::Online,
            b"SEND" => Verb::Send,
            b"HISTORY" => Verb::History,
            b"FILE-OFFER" => Verb::FileOffer,
            b"FILE-CHUNK" => Verb::FileChunk,
            b"FILE-STATUS" => Verb::FileStatus,
            b"FILE-COMMIT" => Verb::FileCommit,
            b"FILE-CANCEL" => Verb::FileCancel,
            b"FILES" => Verb::Files,
            b"FILE-GET" => Verb::FileGet,
            b"AUTH" => Verb::Auth,
            b"TOKEN" => Verb::Token,
            b"TOKENS" => Verb::Tokens,
            b"REVOKE" => Verb::Revoke,
            b"PASSWORD" => Verb::Password,
            b"DELETE-ACCOUNT" => Verb::DeleteAccount,
            b"READ" => Verb::Read,
            b"BANS" => Verb::Bans,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Command {
    /// Whether the command or its reply carries a secret (a password, or a
    /// session token: AUTH sends one, TOKEN's reply holds one), which a client
    /// must not send or ask for in clear beyond loopback (SPEC.md 11.7,
    /// [`transport::plaintext_allowed`](crate::transport::plaintext_allowed)).
    pub fn carries_secret(&self) -> bool {
        matches!(
            self,
            Command::Register { .. }
                | Command::Login { .. }
                | Command::Auth { .. }
                | Command::Token { .. }
                | Command::Password { .. }
                | Command::DeleteAccount { .. }
        )
    }

    /// Whether sending the command again, after a connection was lost before its
    /// final reply, is safe (SPEC.md 9): its effect once is its effect twice. Reads
    /// are; SEND is, by its idempotency key (section 5.2); FILE-CHUNK writes the same
    /// bytes at the same place, and FILE-COMMIT of a file committed already answers
    /// as the first time (section 6.7); READ only ever moves a marker forward. FILE-OFFER is not: an offer of content the
    /// server holds shares it again each time. A
    /// client queues these while it reconnects and sends them again; it fails the
    /// others at once, since their outcome is unknown.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            Command::Ping
                | Command::Requests { .. }
                | Command::Groups
                | Command::Conversations
                | Command::Members { .. }
                | Command::Online { .. }
                | Command::Send { .. }
                | Command::History { .. }
                | Command::FileChunk { .. }
                | Command::FileCommit { .. }
                | Command::ConversationsWithMarkers
                | Command::GroupsWithOffers
                | Command::Bans { .. }
                | Command::Read { .. }
                | Command::FileStatus { .. }
                | Command::Files { .. }
                | Command::FileGet { .. }
                | Command::Tokens
        )
    }

    /// The command's verb.
    pub fn verb(&self) -> Verb {
        match self {
            Command::Hello { .. } => Verb::Hello,
            Command::Register { .. } => Verb::Register,
            Command::Login { .. } => Verb::Login,
            Command::Logout { .. } => Verb::Logout,
            Command::Ping => Verb::Ping,
            Command::Create { .. } => Verb::Create,
            Command::Join { .. } => Verb::Join,
            Command::Requests { .. } => Verb::Requests,
            Command::Approve { .. } => Verb::Approve,
            Command::Reject { .. } => Verb::Reject,
            Command::Invite { .. } => Verb::Invite,
            Command::Accept { .. } => Verb::Accept,
            Command::Decline { .. } => Verb::Decline,
            Command::Leave { .. } => Verb::Leave,
            Command::Kick { .. } => Verb::Kick,
            Command::Unban { .. } => Verb::Unban,
            Command::Promote { .. } => Verb::Promote,
            Command::Demote { .. } => Verb::Demote,
            Command::Transfer { .. } => Verb::Transfer,
            Command::TransferAccept { .. } => Verb::TransferAccept,
            Command::TransferCancel { .. } => Verb::TransferCancel,
            Command::Rule { .. } => Verb::Rule,
            Command::Delete { .. } => Verb::Delete,
            Command::Groups => Verb::Groups,
            Command::Conversations | Command::ConversationsWithMarkers => Verb::Conversations,
            Command::GroupsWithOffers => Verb::Groups,
            Command::Members { .. } => Verb::Members,
            Command::Online { .. } => Verb::Online,
            Command::Send { .. } => Verb::Send,
            Command::History { .. } => Verb::History,
            Command::FileOffer { .. } => Verb::FileOffer,
            Command::FileChunk { .. } => Verb::FileChunk,
            Command::FileStatus { .. } => Verb::FileStatus,
            Command::FileCommit { .. } => Verb::FileCommit,
            Command::FileCancel { .. } => Verb::FileCancel,
            Command::Files { .. } => Verb::Files,
            Command::FileGet { .. } => Verb::FileGet,
            Command::Auth { .. } => Verb::Auth,
            Command::Token { .. } => Verb::Token,
            Command::Tokens => Verb::Tokens,
            Command::Revoke { .. } => Verb::Revoke,
            Command::Password { .. } => Verb::Password,
            Command::DeleteAccount { .. } => Verb::DeleteAccount,
            Command::Read { .. } => Verb::Read,
            Command::Bans { .. } => Verb::Bans,
        }
    }
}
