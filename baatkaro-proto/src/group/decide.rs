//! The rules: which operation by which actor is allowed, and what it causes.
//! Deciding only reads the group; [`Group::apply`] then records the events.

use super::{Ctx, Denial, Group, GroupEvent, Op};
use crate::types::{JoinRule, Role, UserName};

/// A rank for comparisons: nobody acts on someone of equal or higher rank.
fn rank(role: Role) -> u8 {
    match role {
        Role::Member => 0,
        Role::Admin => 1,
        Role::Owner => 2,
    }
}

impl Group {
    /// The events `op` by `actor` causes, or the denial. Checks run in the order of
    /// SPEC.md's transition table, so the first broken rule names the error.
    pub(super) fn decide(
        &self,
        actor: UserName,
        op: Op,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<GroupEvent>, Denial> {
        if self.deleted {
            return Err(Denial::NoSuchGroup);
        }
        let now = ctx.now;
        let role = self.members.get(&actor).copied();
        let has_request = |u: &UserName| self.requests.get(u).is_some_and(|r| self.live(r.at, now));
        let has_invite = |u: &UserName| self.invites.get(u).is_some_and(|i| self.live(i.at, now));
        Ok(match op {
            Op::Join { reason } => {
                if role.is_some() {
                    return Err(Denial::AlreadyMember);
                }
                if self.bans.contains_key(&actor) {
                    return Err(Denial::Banned);
                }
                if has_invite(&actor) {
                    self.room_for(&actor, ctx, true)?;
                    return Ok(vec![GroupEvent::Joined { user: actor, by: actor }]);
                }
                if has_request(&actor) {
                    return Err(Denial::AlreadyPending);
                }
                match self.rule {
                    JoinRule::Invite => return Err(Denial::InviteOnly),
                    JoinRule::Open => {
                        self.room_for(&actor, ctx, true)?;
                        vec![GroupEvent::Joined { user: actor, by: actor }]
                    }
                    JoinRule::Approval => {
                        if (ctx.groups_of)(&actor) >= ctx.rules.groups {
                            return Err(Denial::TooManyGroups);
                        }
                        if self.live_requests(now, ctx.rules.pending) >= ctx.rules.pending {
                            return Err(Denial::TooManyPending);
                        }
                        vec![GroupEvent::JoinRequested { user: actor, at: now, reason }]
                    }
                }
            }
            Op::Approve { user } => {
                manager(role)?;
                if !has_request(&user) {
                    return Err(Denial::NoSuchRequest);
                }
                // A pending request already counts against the requester's groups.
                self.room_for(&user, ctx, false)?;
                vec![
                    GroupEvent::RequestApproved { user, by: actor },
                    GroupEvent::Joined { user, by: actor },
                ]
            }
            Op::Reject { user } => {
                manager(role)?;
                if !has_request(&user) {
                    return Err(Denial::NoSuchRequest);
                }
                vec![GroupEvent::RequestRejected { user, by: actor }]
            }
            Op::Invite { user } => {
                manager(role)?;
                if self.members.contains_key(&user) {
                    return Err(Denial::AlreadyMember);
                }
                if self.bans.contains_key(&user) {
                    return Err(Denial::Banned);
                }
                if has_invite(&user) {
                    return Err(Denial::AlreadyPending);
                }
                if has_request(&user) {
                    self.room_for(&user, ctx, false)?;
                    return Ok(vec![
                        GroupEvent::RequestApproved { user, by: actor },
                        GroupEvent::Joined { user, by: actor },
                    ]);
                }
                if self.live_invites(now, ctx.rules.invites) >= ctx.rules.invites {
                    return Err(Denial::TooManyInvites);
                }
                vec![GroupEvent::Invited { user, by: actor, at: now }]
            }
            Op::Accept => {
                if !has_invite(&actor) {
                    return Err(Denial::NoSuchInvite);
                }
                self.room_for(&actor, ctx, true)?;
                vec![GroupEvent::Joined { user: actor, by: actor }]
            }
            Op::Decline => {
                if !has_invite(&actor) {
                    return Err(Denial::NoSuchInvite);
                }
                vec![GroupEvent::InviteDeclined { user: actor }]
            }
            Op::Leave => match role {
                Some(Role::Owner) if self.members.len() > 1 => {
                    return Err(Denial::OwnerMustTransfer);
                }
                Some(_) => vec![GroupEvent::Left { user: actor }],
                None if has_request(&actor) => vec![GroupEvent::RequestWithdrawn { user: actor }],
                None => return Err(Denial::NotMember),
            },
            Op::Kick { user, ban } => {
                let role = role.ok_or(Denial::NotMember)?;
                let target = self.members.get(&user).copied().ok_or(Denial::NotMember)?;
                if rank(role) <= rank(target) {
                    return Err(Denial::NotPermitted);
                }
                if ban {
                    vec![GroupEvent::Banned { user, by: actor }]
                } else {
                    vec![GroupEvent::Kicked { user, by: actor }]
                }
            }
            Op::Unban { user } => {
                manager(role)?;
                if !self.bans.contains_key(&user) {
                    return Err(Denial::NotBanned);
                }
                vec![GroupEvent::Unbanned { user, by: actor }]
            }
            Op::Promote { user } => {
                owner(role)?;
                match self.members.get(&user).ok_or(Denial::NotMember)? {
                    Role::Member => {
                        vec![GroupEvent::RoleChanged { user, role: Role::Admin, by: actor }]
                    }
                    Role::Admin | Role::Owner => return Err(Denial::NoChange),
                }
            }
            Op::Demote { user } => {
                owner(role)?;
                match self.members.get(&user).ok_or(Denial::NotMember)? {
                    Role::Admin => {
                        vec![GroupEvent::RoleChanged { user, role: Role::Member, by: actor }]
                    }
                    Role::Member => return Err(Denial::NoChange),
                    Role::Owner => return Err(Denial::NotPermitted),
                }
            }
            Op::Offer { user } => {
                owner(role)?;
                if !self.members.contains_key(&user) {
                    return Err(Denial::NotMember);
                }
                if user == actor || self.offer == Some(user) {
                    return Err(Denial::NoChange);
                }
                vec![GroupEvent::OwnershipOffered { user, by: actor }]
            }
            Op::TakeOwnership => {
                if self.offer != Some(actor) {
                    return Err(Denial::NoSuchOffer);
                }
                vec![GroupEvent::OwnershipTransferred { user: actor, previous: self.owner }]
            }
            Op::CancelOffer => {
                owner(role)?;
                if self.offer.is_none() {
                    return Err(Denial::NoSuchOffer);
                }
                vec![GroupEvent::OfferCancelled { by: actor }]
            }
            Op::SetRule { rule } => {
                manager(role)?;
                if rule == self.rule {
                    return Err(Denial::NoChange);
                }
                vec![GroupEvent::RuleChanged { rule, by: actor }]
            }
            Op::Delete => {
                owner(role)?;
                vec![GroupEvent::Deleted { by: actor }]
            }
        })
    }

    /// How many requests are live, counted exactly only when it matters: with fewer
    /// entries than `limit` in all, the live ones are fewer too, and counting would
    /// make every request O(pending).
    fn live_requests(&self, now: u64, limit: u64) -> u64 {
        if (self.requests.len() as u64) < limit {
            return self.requests.len() as u64;
        }
        self.requests.values().filter(|r| self.live(r.at, now)).count() as u64
    }

    /// As [`Group::live_requests`], for invites.
    fn live_invites(&self, now: u64, limit: u64) -> u64 {
        if (self.invites.len() as u64) < limit {
            return self.invites.len() as u64;
        }
        self.invites.values().filter(|i| self.live(i.at, now)).count() as u64
    }

    /// Whether `user` may become a member now: the group has room and, unless a
    /// pending request already counts for them, so does their groups-per-user budget.
    fn room_for(&self, user: &UserName, ctx: &Ctx<'_>, count_groups: bool) -> Result<(), Denial> {
        if self.members.len() as u64 >= ctx.rules.members {
            return Err(Denial::GroupFull);
        }
        if count_groups && (ctx.groups_of)(user) >= ctx.rules.groups {
            return Err(Denial::TooManyGroups);
        }
        Ok(())
    }
}

/// The owner and admins act; members may not; others are not members.
fn manager(role: Option<Role>) -> Result<(), Denial> {
    match role {
        None => Err(Denial::NotMember),
        Some(Role::Member) => Err(Denial::NotPermitted),
        Some(Role::Admin | Role::Owner) => Ok(()),
    }
}

/// Only the owner acts.
fn owner(role: Option<Role>) -> Result<(), Denial> {
    match role {
        None => Err(Denial::NotMember),
        Some(Role::Owner) => Ok(()),
        Some(Role::Admin | Role::Member) => Err(Denial::NotPermitted),
    }
}
