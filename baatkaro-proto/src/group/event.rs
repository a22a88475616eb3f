//! What a group operation causes: domain events, each with its recipients.
//!
//! Every change to a group is one of these events, and [`Group::replay`](super::Group::replay)
//! rebuilds a group from them: the history is the truth. The stored ones become
//! sequence-numbered conversation events on the wire ([`GroupEvent::to_wire`]).

use crate::event::{Event, StoredEvent};
use crate::types::{GroupName, JoinRule, Millis, Role, Seq, Text, UserName};

/// One change to a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEvent {
    /// The group was created with this owner and rule (not sent; replay only).
    Created {
        /// The creator, now its owner.
        owner: UserName,
        /// Its join rule.
        rule: JoinRule,
    },
    /// A user became a member (stored: JOINED).
    Joined {
        /// The new member.
        user: UserName,
        /// Who admitted them (themselves for an open join or an accepted invite).
        by: UserName,
    },
    /// A member left (stored: LEFT).
    Left {
        /// Who left.
        user: UserName,
    },
    /// A member was removed (stored: KICKED).
    Kicked {
        /// Who was removed.
        user: UserName,
        /// By whom.
        by: UserName,
    },
    /// A member was removed and banned (stored: BANNED).
    Banned {
        /// Who was banned.
        user: UserName,
        /// By whom.
        by: UserName,
    },
    /// A ban was lifted (not sent).
    Unbanned {
        /// Who.
        user: UserName,
        /// By whom.
        by: UserName,
    },
    /// A member's role changed (stored: ROLE).
    RoleChanged {
        /// Whose.
        user: UserName,
        /// The new role (admin or member).
        role: Role,
        /// By whom.
        by: UserName,
    },
    /// Ownership was offered (stored: OFFERED).
    OwnershipOffered {
        /// To whom.
        user: UserName,
        /// By the owner.
        by: UserName,
    },
    /// The owner withdrew the offer (not sent).
    OfferCancelled {
        /// The owner.
        by: UserName,
    },
    /// Ownership moved (stored: OWNER); the previous owner is now an admin.
    OwnershipTransferred {
        /// The new owner.
        user: UserName,
        /// The previous owner.
        previous: UserName,
    },
    /// The join rule changed (stored: RULE).
    RuleChanged {
        /// The new rule.
        rule: JoinRule,
        /// By whom.
        by: UserName,
    },
    /// A join request was recorded (sent: REQUESTED).
    JoinRequested {
        /// Who asks.
        user: UserName,
        /// When.
        at: Millis,
        /// Why.
        reason: Option<Text>,
    },
    /// A requester withdrew their request (not sent).
    RequestWithdrawn {
        /// Who.
        user: UserName,
    },
    /// A request was approved (sent: APPROVED); `Joined` follows.
    RequestApproved {
        /// The requester.
        user: UserName,
        /// By whom.
        by: UserName,
    },
    /// A request was rejected (sent: REJECTED).
    RequestRejected {
        /// The requester.
        user: UserName,
        /// By whom.
        by: UserName,
    },
    /// A user was invited (sent: INVITED).
    Invited {
        /// The invitee.
        user: UserName,
        /// By whom.
        by: UserName,
        /// When.
        at: Millis,
    },
    /// An invitee declined (not sent).
    InviteDeclined {
        /// Who.
        user: UserName,
    },
    /// Requests and invites older than the expiry were dropped (not sent).
    Expired {
        /// The time the expiry was evaluated at.
        now: Millis,
    },
    /// The group was deleted (sent: DELETED).
    Deleted {
        /// By whom.
        by: UserName,
    },
}

/// Who receives an event: resolved against the group right after the operation
/// (see [`Group::recipients`](super::Group::recipients)), without building a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipients {
    /// Nobody: the event only records the change.
    Nobody,
    /// Every member.
    Members,
    /// Every member, and this user who is no longer one (left, kicked, banned).
    MembersAnd(UserName),
    /// The owner and the admins.
    Managers,
    /// One user.
    User(UserName),
}

impl GroupEvent {
    /// Who receives the event.
    pub fn recipients(&self) -> Recipients {
        match self {
            GroupEvent::Created { .. }
            | GroupEvent::Unbanned { .. }
            | GroupEvent::OfferCancelled { .. }
            | GroupEvent::RequestWithdrawn { .. }
            | GroupEvent::InviteDeclined { .. }
            | GroupEvent::Expired { .. } => Recipients::Nobody,
            GroupEvent::Joined { .. }
            | GroupEvent::RoleChanged { .. }
            | GroupEvent::OwnershipOffered { .. }
            | GroupEvent::OwnershipTransferred { .. }
            | GroupEvent::RuleChanged { .. }
            | GroupEvent::Deleted { .. } => Recipients::Members,
            GroupEvent::Left { user }
            | GroupEvent::Kicked { user, .. }
            | GroupEvent::Banned { user, .. } => Recipients::MembersAnd(*user),
            GroupEvent::JoinRequested { .. } => Recipients::Managers,
            GroupEvent::RequestApproved { user, .. }
            | GroupEvent::RequestRejected { user, .. }
            | GroupEvent::Invited { user, .. } => Recipients::User(*user),
        }
    }

    /// Whether the event enters the group's history with a sequence number.
    pub fn is_stored(&self) -> bool {
        matches!(
            self,
            GroupEvent::Joined { .. }
                | GroupEvent::Left { .. }
                | GroupEvent::Kicked { .. }
                | GroupEvent::Banned { .. }
                | GroupEvent::RoleChanged { .. }
                | GroupEvent::OwnershipOffered { .. }
                | GroupEvent::OwnershipTransferred { .. }
                | GroupEvent::RuleChanged { .. }
        )
    }

    /// The wire event for this group event, if it is sent: `seq` and `time` are used by
    /// stored events (the storage assigns them), `time` also by REQUESTED and INVITED.
    pub fn to_wire(&self, group: GroupName, seq: Seq, time: Millis) -> Option<Event> {
        let stored = |e: StoredEvent| Some(Event::Stored(e));
        match self.clone() {
            GroupEvent::Joined { user, by } => {
                stored(StoredEvent::Joined { group, seq, time, user, by })
            }
            GroupEvent::Left { user } => stored(StoredEvent::Left { group, seq, time, user }),
            GroupEvent::Kicked { user, by } => {
                stored(StoredEvent::Kicked { group, seq, time, user, by })
            }
            GroupEvent::Banned { user, by } => {
                stored(StoredEvent::Banned { group, seq, time, user, by })
            }
            GroupEvent::RoleChanged { user, role, by } => {
                stored(StoredEvent::RoleChanged { group, seq, time, user, role, by })
            }
            GroupEvent::OwnershipOffered { user, by } => {
                stored(StoredEvent::OwnershipOffered { group, seq, time, user, by })
            }
            GroupEvent::OwnershipTransferred { user, previous } => {
                stored(StoredEvent::OwnershipTransferred { group, seq, time, user, previous })
            }
            GroupEvent::RuleChanged { rule, by } => {
                stored(StoredEvent::RuleChanged { group, seq, time, rule, by })
            }
            GroupEvent::JoinRequested { user, at, reason } => {
                Some(Event::JoinRequested { group, user, time: at, reason })
            }
            GroupEvent::Invited { by, at, .. } => Some(Event::Invited { group, by, time: at }),
            GroupEvent::RequestApproved { by, .. } => Some(Event::RequestApproved { group, by }),
            GroupEvent::RequestRejected { by, .. } => Some(Event::RequestRejected { group, by }),
            GroupEvent::Deleted { by } => Some(Event::GroupDeleted { group, by }),
            GroupEvent::Created { .. }
            | GroupEvent::Unbanned { .. }
            | GroupEvent::OfferCancelled { .. }
            | GroupEvent::RequestWithdrawn { .. }
            | GroupEvent::InviteDeclined { .. }
            | GroupEvent::Expired { .. } => None,
        }
    }
}
