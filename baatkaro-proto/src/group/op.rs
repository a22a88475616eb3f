//! The operations a user applies to a group.

use super::Denial;
use crate::types::{JoinRule, Text, UserName};

/// An operation on an existing group, applied by an acting user (see
/// [`Group::apply`](super::Group::apply)). Creating a group is
/// [`Group::create`](super::Group::create).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// Ask to join (JOIN), with an optional reason for the approvers.
    Join {
        /// Why.
        reason: Option<Text>,
    },
    /// Admit a requester (APPROVE).
    Approve {
        /// The requester.
        user: UserName,
    },
    /// Refuse a request (REJECT).
    Reject {
        /// The requester.
        user: UserName,
    },
    /// Invite a user (INVITE).
    Invite {
        /// The invitee.
        user: UserName,
    },
    /// Accept an invite (ACCEPT).
    Accept,
    /// Decline an invite (DECLINE).
    Decline,
    /// Leave, or withdraw a pending request (LEAVE).
    Leave,
    /// Remove a member, optionally banning them (KICK).
    Kick {
        /// The member.
        user: UserName,
        /// Also ban them.
        ban: bool,
    },
    /// Lift a ban (UNBAN).
    Unban {
        /// The banned user.
        user: UserName,
    },
    /// Make a member an admin (PROMOTE).
    Promote {
        /// The member.
        user: UserName,
    },
    /// Make an admin a plain member (DEMOTE).
    Demote {
        /// The admin.
        user: UserName,
    },
    /// Offer ownership to a member (TRANSFER).
    Offer {
        /// The member.
        user: UserName,
    },
    /// Accept an ownership offer (TRANSFER-ACCEPT).
    TakeOwnership,
    /// Withdraw an ownership offer (TRANSFER-CANCEL).
    CancelOffer,
    /// Change the join rule (RULE).
    SetRule {
        /// The new rule.
        rule: JoinRule,
    },
    /// Delete the group (DELETE).
    Delete,
}

impl Op {
    /// The command that carries this operation on the wire.
    pub fn verb(&self) -> crate::Verb {
        use crate::Verb;
        match self {
            Op::Join { .. } => Verb::Join,
            Op::Approve { .. } => Verb::Approve,
            Op::Reject { .. } => Verb::Reject,
            Op::Invite { .. } => Verb::Invite,
            Op::Accept => Verb::Accept,
            Op::Decline => Verb::Decline,
            Op::Leave => Verb::Leave,
            Op::Kick { .. } => Verb::Kick,
            Op::Unban { .. } => Verb::Unban,
            Op::Promote { .. } => Verb::Promote,
            Op::Demote { .. } => Verb::Demote,
            Op::Offer { .. } => Verb::Transfer,
            Op::TakeOwnership => Verb::TransferAccept,
            Op::CancelOffer => Verb::TransferCancel,
            Op::SetRule { .. } => Verb::Rule,
            Op::Delete => Verb::Delete,
        }
    }

    /// Every denial this operation can get, in order of first mention in SPEC.md's
    /// transition table (a test compares the two). Where the rules branch (JOIN by a
    /// holder of an invite, under each join rule) this is not one linear order of
    /// checks: the table's row says which check applies in which case.
    pub fn possible_denials(&self) -> &'static [Denial] {
        use Denial::*;
        match self {
            Op::Join { .. } => &[
                NoSuchGroup,
                AlreadyMember,
                Banned,
                GroupFull,
                TooManyGroups,
                AlreadyPending,
                InviteOnly,
                TooManyPending,
            ],
            Op::Approve { .. } => &[NoSuchGroup, NotMember, NotPermitted, NoSuchRequest, GroupFull],
            Op::Reject { .. } => &[NoSuchGroup, NotMember, NotPermitted, NoSuchRequest],
            Op::Invite { .. } => &[
                NoSuchGroup,
                NotMember,
                NotPermitted,
                AlreadyMember,
                Banned,
                AlreadyPending,
                GroupFull,
                TooManyInvites,
            ],
            Op::Accept => &[NoSuchGroup, NoSuchInvite, GroupFull, TooManyGroups],
            Op::Decline => &[NoSuchGroup, NoSuchInvite],
            Op::Leave => &[NoSuchGroup, OwnerMustTransfer, NotMember],
            Op::Kick { .. } => &[NoSuchGroup, NotMember, NotPermitted],
            Op::Unban { .. } => &[NoSuchGroup, NotMember, NotPermitted, NotBanned],
            Op::Promote { .. } | Op::Demote { .. } | Op::Offer { .. } | Op::SetRule { .. } => {
                &[NoSuchGroup, NotMember, NotPermitted, NoChange]
            }
            Op::TakeOwnership => &[NoSuchGroup, NoSuchOffer],
            Op::CancelOffer => &[NoSuchGroup, NotMember, NotPermitted, NoSuchOffer],
            Op::Delete => &[NoSuchGroup, NotMember, NotPermitted],
        }
    }
}
