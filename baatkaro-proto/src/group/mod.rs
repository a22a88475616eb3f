//! The group membership state machine.
//!
//! A [`Group`] holds one incarnation of a group: its owner, admins and members, join
//! rule, pending join requests and invites, bans and ownership offer. [`Group::apply`]
//! takes an operation by an acting user and either returns the [`GroupEvent`]s it
//! caused, each with its [`Recipients`], or a [`Denial`] — and a denial leaves the
//! group exactly as it was, because deciding only reads the group and every change
//! goes through the events. [`Group::replay`] rebuilds a group from its events.
//!
//! Time is a parameter ([`Ctx::now`]): requests and invites expire by it, and nothing
//! here reads a clock. Facts the group cannot know — how many groups a user is in —
//! come in through [`Ctx`] too.

mod decide;
mod denial;
mod event;
mod op;

use std::collections::BTreeMap;

pub use denial::Denial;
pub use event::{GroupEvent, Recipients};
pub use op::Op;

use crate::limits::Limits;
use crate::types::{GroupName, JoinRule, Millis, Role, Text, UserName};

/// The identity of one incarnation of a group. A group deleted and created again
/// with the same name gets a new id, and nothing of the old one (requests, invites,
/// bans, history) applies to it. The caller (the server's storage) assigns ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u64);

/// The limits the group machine enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupRules {
    /// Members per group.
    pub members: u64,
    /// Live join requests per group.
    pub pending: u64,
    /// Live invites per group.
    pub invites: u64,
    /// Groups a user may be in, counting pending requests.
    pub groups: u64,
    /// Milliseconds until a request or invite expires.
    pub expiry: Millis,
}

impl GroupRules {
    /// The rules a server with these limits enforces.
    pub fn from_limits(limits: &Limits) -> Self {
        GroupRules {
            members: limits.members,
            pending: limits.pending,
            invites: limits.invites,
            groups: limits.groups,
            expiry: limits.expiry.saturating_mul(1000),
        }
    }
}

/// What an operation needs from outside the group.
pub struct Ctx<'a> {
    /// The current time.
    pub now: Millis,
    /// The limits.
    pub rules: &'a GroupRules,
    /// How many groups a user is a member of or has a pending request in.
    pub groups_of: &'a dyn Fn(&UserName) -> u64,
}

/// A pending join request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// When it was made.
    pub at: Millis,
    /// Why, if the requester said.
    pub reason: Option<Text>,
}

/// A pending invite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// When it was made.
    pub at: Millis,
    /// By whom.
    pub by: UserName,
}

/// One incarnation of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    id: GroupId,
    name: GroupName,
    rule: JoinRule,
    owner: UserName,
    members: BTreeMap<UserName, Role>,
    requests: BTreeMap<UserName, JoinRequest>,
    invites: BTreeMap<UserName, Invitation>,
    /// Banned users, each with the owner or admin who banned them.
    bans: BTreeMap<UserName, UserName>,
    offer: Option<UserName>,
    expiry: Millis,
    deleted: bool,
}

impl Group {
    /// Creates a group owned by `owner`; fails with [`Denial::TooManyGroups`] if the
    /// owner is at the groups-per-user limit. The event is [`GroupEvent::Created`].
    pub fn create(
        id: GroupId,
        name: GroupName,
        owner: UserName,
        rule: JoinRule,
        ctx: &Ctx<'_>,
    ) -> Result<(Group, GroupEvent), Denial> {
        if (ctx.groups_of)(&owner) >= ctx.rules.groups {
            return Err(Denial::TooManyGroups);
        }
        let event = GroupEvent::Created { owner, rule };
        let mut group = Group::empty(id, name, owner, ctx.rules.expiry);
        group.record(&event);
        Ok((group, event))
    }

    /// Rebuilds a group from its events, the first of which must be `Created`.
    /// `expiry` is the request and invite lifetime in milliseconds.
    pub fn replay<'e>(
        id: GroupId,
        name: GroupName,
        expiry: Millis,
        events: impl IntoIterator<Item = &'e GroupEvent>,
    ) -> Option<Group> {
        let mut events = events.into_iter();
        let first = events.next()?;
        let GroupEvent::Created { owner, .. } = first else { return None };
        let mut group = Group::empty(id, name, *owner, expiry);
        group.record(first);
        for event in events {
            group.record(event);
        }
        Some(group)
    }

    fn empty(id: GroupId, name: GroupName, owner: UserName, expiry: Millis) -> Group {
        Group {
            id,
            name,
            rule: JoinRule::Approval,
            owner,
            members: BTreeMap::new(),
            requests: BTreeMap::new(),
            invites: BTreeMap::new(),
            bans: BTreeMap::new(),
            offer: None,
            expiry,
            deleted: false,
        }
    }

    /// Applies an operation by `actor`: the events it caused, in order, or why not.
    pub fn apply(
        &mut self,
        actor: UserName,
        op: Op,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<GroupEvent>, Denial> {
        let events = self.decide(actor, op, ctx)?;
        for event in &events {
            self.record(event);
        }
        Ok(events)
    }

    /// Drops the requests and invites that have expired at `now`; the event records it
    /// (no one is told). `None` if nothing expired.
    pub fn expire(&mut self, now: Millis) -> Option<GroupEvent> {
        let stale = self.requests.values().any(|r| !self.live(r.at, now))
            || self.invites.values().any(|i| !self.live(i.at, now));
        let event = GroupEvent::Expired { now };
        stale.then(|| {
            self.record(&event);
            event
        })
    }

    /// Makes the change an event describes. Every change to a group goes through here,
    /// from `apply` and from `replay` alike.
    fn record(&mut self, event: &GroupEvent) {
        match event {
            GroupEvent::Created { owner, rule } => {
                self.owner = *owner;
                self.rule = *rule;
                self.members.insert(*owner, Role::Owner);
            }
            GroupEvent::Joined { user, .. } => {
                self.members.insert(*user, Role::Member);
                self.requests.remove(user);
                self.invites.remove(user);
            }
            GroupEvent::Left { user } | GroupEvent::Kicked { user, .. } => self.remove(user),
            GroupEvent::Banned { user, by } => {
                self.remove(user);
                self.bans.insert(*user, *by);
            }
            GroupEvent::Unbanned { user, .. } => {
                self.bans.remove(user);
            }
            GroupEvent::RoleChanged { user, role, .. } => {
                self.members.insert(*user, *role);
            }
            GroupEvent::OwnershipOffered { user, .. } => self.offer = Some(*user),
            GroupEvent::OfferCancelled { .. } => self.offer = None,
            GroupEvent::OwnershipTransferred { user, previous } => {
                self.members.insert(*previous, Role::Admin);
                self.members.insert(*user, Role::Owner);
                self.owner = *user;
                self.offer = None;
            }
            GroupEvent::RuleChanged { rule, .. } => self.rule = *rule,
            GroupEvent::JoinRequested { user, at, reason } => {
                self.requests.insert(*user, JoinRequest { at: *at, reason: reason.clone() });
            }
            GroupEvent::RequestWithdrawn { user }
            | GroupEvent::RequestApproved { user, .. }
            | GroupEvent::RequestRejected { user, .. } => {
                self.requests.remove(user);
            }
            GroupEvent::Invited { user, by, at } => {
                self.invites.insert(*user, Invitation { at: *at, by: *by });
            }
            GroupEvent::InviteDeclined { user } => {
                self.invites.remove(user);
            }
            GroupEvent::Expired { now } => {
                let (expiry, now) = (self.expiry, *now);
                self.requests.retain(|_, r| now < r.at.saturating_add(expiry));
                self.invites.retain(|_, i| now < i.at.saturating_add(expiry));
            }
            GroupEvent::Deleted { .. } => self.deleted = true,
        }
    }

    /// Removes a member; an offer made to them lapses, and the last one out deletes
    /// the group.
    fn remove(&mut self, user: &UserName) {
        self.members.remove(user);
        self.requests.remove(user);
        self.invites.remove(user);
        if self.offer == Some(*user) {
            self.offer = None;
        }
        if self.members.is_empty() {
            self.deleted = true;
        }
    }

    /// Whether a request or invite made at `at` is still live at `now`.
    fn live(&self, at: Millis, now: Millis) -> bool {
        now < at.saturating_add(self.expiry)
    }

    /// The group's identity.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The group's name.
    pub fn name(&self) -> GroupName {
        self.name
    }

    /// The join rule.
    pub fn rule(&self) -> JoinRule {
        self.rule
    }

    /// The owner.
    pub fn owner(&self) -> UserName {
        self.owner
    }

    /// A member's role, or `None` for a non-member.
    pub fn role_of(&self, user: &UserName) -> Option<Role> {
        self.members.get(user).copied()
    }

    /// The members and their roles, by name.
    pub fn members(&self) -> impl Iterator<Item = (UserName, Role)> + '_ {
        self.members.iter().map(|(u, r)| (*u, *r))
    }

    /// How many members the group has.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The join requests live at `now`, by name.
    pub fn requests(&self, now: Millis) -> impl Iterator<Item = (UserName, &JoinRequest)> + '_ {
        self.requests.iter().filter(move |(_, r)| self.live(r.at, now)).map(|(u, r)| (*u, r))
    }

    /// The invites live at `now`, by name.
    pub fn invites(&self, now: Millis) -> impl Iterator<Item = (UserName, Invitation)> + '_ {
        self.invites.iter().filter(move |(_, i)| self.live(i.at, now)).map(|(u, i)| (*u, *i))
    }

    /// `user`'s join request, if one is live at `now`.
    pub fn request_of(&self, user: &UserName, now: Millis) -> Option<&JoinRequest> {
        self.requests.get(user).filter(|r| self.live(r.at, now))
    }

    /// `user`'s invite, if one is live at `now`.
    pub fn invite_of(&self, user: &UserName, now: Millis) -> Option<Invitation> {
        self.invites.get(user).filter(|i| self.live(i.at, now)).copied()
    }

    /// Whether `user` is banned.
    pub fn is_banned(&self, user: &UserName) -> bool {
        self.bans.contains_key(user)
    }

    /// The banned users, by name, each with who banned them.
    pub fn bans(&self) -> impl Iterator<Item = (UserName, UserName)> + '_ {
        self.bans.iter().map(|(u, by)| (*u, *by))
    }

    /// The member ownership is offered to, if any.
    pub fn offer(&self) -> Option<UserName> {
        self.offer
    }

    /// Whether the group was deleted (by DELETE, or when its last member left).
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// The users who receive an event with these recipients, resolved against the
    /// group as it is now (after the operation that caused the event).
    pub fn recipients(&self, to: Recipients) -> Box<dyn Iterator<Item = UserName> + '_> {
        match to {
            Recipients::Nobody => Box::new(std::iter::empty()),
            Recipients::Members => Box::new(self.members.keys().copied()),
            Recipients::MembersAnd(user) => {
                Box::new(self.members.keys().copied().chain(std::iter::once(user)))
            }
            Recipients::Managers => {
                Box::new(self.members.iter().filter(|(_, r)| **r != Role::Member).map(|(u, _)| *u))
            }
            Recipients::User(user) => Box::new(std::iter::once(user)),
        }
    }

    /// Checks the invariants that every reachable state keeps; the message names the
    /// first one broken. For tests and debug assertions.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.deleted {
            return Ok(());
        }
        let owners: Vec<_> = self.members.iter().filter(|(_, r)| **r == Role::Owner).collect();
        if owners.len() != 1 || *owners[0].0 != self.owner {
            return Err(format!("exactly one owner, {}, expected; found {owners:?}", self.owner));
        }
        for user in self.members.keys() {
            if self.requests.contains_key(user) || self.invites.contains_key(user) {
                return Err(format!("{user} is both a member and pending"));
            }
            if self.bans.contains_key(user) {
                return Err(format!("{user} is both a member and banned"));
            }
        }
        if let Some(user) =
            self.bans.keys().find(|u| self.requests.contains_key(u) || self.invites.contains_key(u))
        {
            return Err(format!("{user} is banned and pending"));
        }
        match self.offer {
            Some(user) if user == self.owner || !self.members.contains_key(&user) => {
                Err(format!("ownership offered to {user}, who is the owner or not a member"))
            }
            _ => Ok(()),
        }
    }
}
