//! Server events: untagged frames (`* ...`) the server sends when something
//! happens, and the stored conversation events that history replays.

pub(crate) mod decode;
pub(crate) mod encode;

pub(crate) use decode::{event, stored_event};

use crate::error::ErrorCode;
use crate::types::{
    Conversation, FileId, FileName, GroupName, JoinRule, Millis, Note, Presence, Role, Seq, Sha256,
    Text, UserName,
};

/// An event stored in a conversation's history, with its gapless sequence number.
///
/// Group events carry `#group` as their conversation on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredEvent {
    /// `MSG conv seq millis user-name {n}` + text: a group or private message.
    Message {
        /// The conversation, named from the reader's side.
        conv: Conversation,
        /// Its sequence number in the conversation.
        seq: Seq,
        /// When the server stored it.
        time: Millis,
        /// The sender.
        from: UserName,
        /// The message.
        text: Text,
    },
    /// `FILE conv seq millis user-name file-id size sha256 {n}` + name: a shared file.
    File {
        /// The conversation, named from the reader's side.
        conv: Conversation,
        /// Its sequence number.
        seq: Seq,
        /// When it was shared.
        time: Millis,
        /// The uploader.
        from: UserName,
        /// The id to download it by.
        file: FileId,
        /// Its size in bytes.
        size: u64,
        /// The SHA-256 of its content.
        sha256: Sha256,
        /// Its display name.
        name: FileName,
    },
    /// `JOINED #group seq millis user-name user-name`: a member joined (user, admitted by).
    Joined {
        /// The group.
        group: GroupName,
        /// Sequence number.
        seq: Seq,
        /// When.
        time: Millis,
        /// The new member.
        user: UserName,
        /// Who admitted them (themselves for an open group or an accepted invite).
        by: UserName,
    },
    /// `LEFT #group seq millis user-name`: a member left.
    Left {
        /// The group.
        group: GroupName,
        /// Sequence number.
        seq: Seq,
        /// When.
        time: Millis,
        /// Who left.
        user: UserName,
    },
    /// `KICKED #group seq millis user-name user-name`: a member was removed (user, by).
    Kicked {
        /// The group.
        group: GroupName,
        /// Sequence number.
        seq: Seq,
        /// When.
        time: Millis,
        /// Who was removed.
        user: UserName,
        /// Who removed them.
        by: UserName,
    },
    /// `BANNED #group seq millis user-name user-name`: a member was removed and banned.
    Banned {
        /// The group.
        group: GroupName,
        /// Sequence number.
        seq: Seq,
        /// When.
        time: Millis,
        /// Who was banned.
        user: UserName,
        /// Who banned them.
        by: UserName,
    },
    /// `ROLE #group seq millis user-name role user-name`: a member's role changed.
    RoleChanged {
        /// The group.
        group: GroupName,
        /// Sequence number.
        seq: Seq,
        /// When.
        time: Millis,
        /// Whose role.
        user: UserName,
        /// The new role.
        role: Role,
        /// Who changed it.
        by: UserName,
    },
    /// `OFFERED #group seq millis user-name user-name`: ownership offered (to, by).
    OwnershipOffered {
        /// The group.
        group: GroupName,
        /// Sequence number.
        seq: Seq,
        /// When.
        time: Millis,
        /// The member offered ownership.
        user: UserName,
        /// The owner who offered it.
        by: UserName,
    },
    /// `OWNER #group seq millis user-name user-name`: ownership moved (new, previous).
    OwnershipTransferred {
        /// The group.
        group: GroupName,
        /// Sequence number.
        seq: Seq,
        /// When.
        time: Millis,
        /// The new owner.
        user: UserName,
        /// The previous owner, now an admin.
        previous: UserName,
    },
    /// `RULE #group seq millis join-rule user-name`: the join rule changed.
    RuleChanged {
        /// The group.
        group: GroupName,
        /// Sequence number.
        seq: Seq,
        /// When.
        time: Millis,
        /// The new rule.
        rule: JoinRule,
        /// Who changed it.
        by: UserName,
    },
}

impl StoredEvent {
    /// The event's sequence number in its conversation.
    pub fn seq(&self) -> Seq {
        match self {
            StoredEvent::Message { seq, .. }
            | StoredEvent::File { seq, .. }
            | StoredEvent::Joined { seq, .. }
            | StoredEvent::Left { seq, .. }
            | StoredEvent::Kicked { seq, .. }
            | StoredEvent::Banned { seq, .. }
            | StoredEvent::RoleChanged { seq, .. }
            | StoredEvent::OwnershipOffered { seq, .. }
            | StoredEvent::OwnershipTransferred { seq, .. }
            | StoredEvent::RuleChanged { seq, .. } => *seq,
        }
    }

    /// When the server stored the event.
    pub fn time(&self) -> Millis {
        match self {
            StoredEvent::Message { time, .. }
            | StoredEvent::File { time, .. }
            | StoredEvent::Joined { time, .. }
            | StoredEvent::Left { time, .. }
            | StoredEvent::Kicked { time, .. }
            | StoredEvent::Banned { time, .. }
            | StoredEvent::RoleChanged { time, .. }
            | StoredEvent::OwnershipOffered { time, .. }
            | StoredEvent::OwnershipTransferred { time, .. }
            | StoredEvent::RuleChanged { time, .. } => *time,
        }
    }

    /// The same event as a reader of `conv` sees it. A private conversation is
    /// named from the reader's side (SPEC.md section 5.1), so one stored event reads
    /// `@bob` to alice and `@alice` to bob. Group events keep their group unless
    /// `conv` names another group.
    pub fn renamed(mut self, conv: Conversation) -> StoredEvent {
        match (&mut self, conv) {
            (StoredEvent::Message { conv: c, .. } | StoredEvent::File { conv: c, .. }, _) => {
                *c = conv;
            }
            (
                StoredEvent::Joined { group, .. }
                | StoredEvent::Left { group, .. }
                | StoredEvent::Kicked { group, .. }
                | StoredEvent::Banned { group, .. }
                | StoredEvent::RoleChanged { group, .. }
                | StoredEvent::OwnershipOffered { group, .. }
                | StoredEvent::OwnershipTransferred { group, .. }
                | StoredEvent::RuleChanged { group, .. },
                Conversation::Group(g),
            ) => *group = g,
            _ => {}
        }
        self
    }

    /// The conversation the event belongs to.
    pub fn conv(&self) -> Conversation {
        match self {
            StoredEvent::Message { conv, .. } | StoredEvent::File { conv, .. } => *conv,
            StoredEvent::Joined { group, .. }
            | StoredEvent::Left { group, .. }
            | StoredEvent::Kicked { group, .. }
            | StoredEvent::Banned { group, .. }
            | StoredEvent::RoleChanged { group, .. }
            | StoredEvent::OwnershipOffered { group, .. }
            | StoredEvent::OwnershipTransferred { group, .. }
            | StoredEvent::RuleChanged { group, .. } => Conversation::Group(*group),
        }
    }
}

/// An error or farewell the server sends: a code, an optional retry hint and note.
///
/// ```abnf
/// failure = error-code [SP "retry=" number] [SP ":" note]
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// Milliseconds to wait before trying again, where the code allows it.
    pub retry_after: Option<u64>,
    /// Human-readable detail.
    pub note: Option<Note>,
}

impl Failure {
    /// A failure with the code's default text as its note.
    pub fn new(code: ErrorCode) -> Self {
        Failure { code, retry_after: None, note: Note::new(code.text()).ok() }
    }
}

/// An untagged server event (`* ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A stored conversation event (to everyone in the conversation).
    Stored(StoredEvent),
    /// `REQUESTED group-name user-name millis [{n}]` + reason: a join request
    /// (to the owner and admins).
    JoinRequested {
        /// The group.
        group: GroupName,
        /// Who asks.
        user: UserName,
        /// When they asked.
        time: Millis,
        /// Why, if they said.
        reason: Option<Text>,
    },
    /// `INVITED group-name user-name millis`: you were invited (by) (to the invitee).
    Invited {
        /// The group.
        group: GroupName,
        /// Who invited you.
        by: UserName,
        /// When.
        time: Millis,
    },
    /// `APPROVED group-name user-name`: your request was approved (by) (to the requester).
    RequestApproved {
        /// The group.
        group: GroupName,
        /// Who approved it.
        by: UserName,
    },
    /// `REJECTED group-name user-name`: your request was rejected (by) (to the requester).
    RequestRejected {
        /// The group.
        group: GroupName,
        /// Who rejected it.
        by: UserName,
    },
    /// `DELETED group-name user-name`: the group was deleted (by) (to its members).
    GroupDeleted {
        /// The group.
        group: GroupName,
        /// Who deleted it.
        by: UserName,
    },
    /// `PRESENCE user-name presence`: a user came online or went offline
    /// (to everyone sharing a group with them).
    Presence {
        /// The user.
        user: UserName,
        /// Now online or offline.
        presence: Presence,
    },
    /// `READ conv seq`: my read marker of a conversation moved, by another of my
    /// sessions (the `read` feature; to the user's sessions but the one that sent
    /// READ).
    ReadMarker {
        /// The conversation, as I name it.
        conv: Conversation,
        /// The marker now.
        seq: Seq,
    },
    /// `ERR failure`: an error that belongs to no request (its tag was unreadable).
    Error(Failure),
    /// `BYE failure`: the server is closing the connection, and why.
    Bye(Failure),
}
