//! Group commands: the proto crate's group machine decides, the hub persists its
//! events, numbers the stored ones and delivers them.

use baatkaro_proto::group::{Ctx, Group, GroupEvent, GroupId, Op};
use baatkaro_proto::rules;
use baatkaro_proto::session::RequestId;
use baatkaro_proto::{
    Command, DoneVerb, ErrorCode, Event, Failure, GroupName, InviteOutcome, Item, JoinOutcome,
    JoinRule, ListVerb, Membership, Millis, OkReply, Presence, Role, ServerFrame, Text, UserName,
};

use super::{GroupRec, Hub};
use crate::output::ConnId;
use crate::store::{ConvKey, EventRecord, Write};

/// A request's address, for its answer.
pub(super) type Req = (ConnId, RequestId);

/// The group and operation a command carries, for the commands that are one.
pub(super) fn op_of(command: Command) -> Option<(GroupName, Op)> {
    use Command as C;
    Some(match command {
        C::Approve { group, user } => (group, Op::Approve { user }),
        C::Reject { group, user } => (group, Op::Reject { user }),
        C::Invite { group, user } => (group, Op::Invite { user }),
        C::Accept { group } => (group, Op::Accept),
        C::Decline { group } => (group, Op::Decline),
        C::Leave { group } => (group, Op::Leave),
        C::Kick { group, user, ban } => (group, Op::Kick { user, ban }),
        C::Unban { group, user } => (group, Op::Unban { user }),
        C::Promote { group, user } => (group, Op::Promote { user }),
        C::Demote { group, user } => (group, Op::Demote { user }),
        C::Transfer { group, user } => (group, Op::Offer { user }),
        C::TransferAccept { group } => (group, Op::TakeOwnership),
        C::TransferCancel { group } => (group, Op::CancelOffer),
        C::Rule { group, rule } => (group, Op::SetRule { rule }),
        C::Delete { group } => (group, Op::Delete),
        _ => return None,
    })
}

/// The success reply of an operation, given the events it caused.
fn reply_of(group: GroupName, op: &Op, events: &[GroupEvent]) -> Option<OkReply> {
    let joined = events.iter().any(|e| matches!(e, GroupEvent::Joined { .. }));
    Some(match op {
        Op::Join { .. } => OkReply::Join {
            group,
            outcome: if joined { JoinOutcome::Joined } else { JoinOutcome::Pending },
        },
        Op::Invite { user } => OkReply::Invite {
            group,
            user: *user,
            outcome: if joined { InviteOutcome::Joined } else { InviteOutcome::Invited },
        },
        other => {
            let verb = DoneVerb::from_wire(other.verb().as_str().as_bytes())?;
            OkReply::Done { verb }
        }
    })
}

impl Hub {
    /// How many groups `user` is a member of or has a live request in.
    fn groups_of(&self, user: &UserName, now: Millis) -> u64 {
        let Some(u) = self.users.get(user) else { return 0 };
        u.relations
            .iter()
            .filter_map(|g| self.groups.get(g))
            .filter(|r| r.group.role_of(user).is_some() || r.group.request_of(user, now).is_some())
            .count() as u64
    }

    pub(super) fn create(
        &mut self,
        (conn, id): Req,
        user: UserName,
        name: GroupName,
        rule: JoinRule,
        now: Millis,
    ) {
        if self.groups.contains_key(&name) {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::GroupExists)));
        }
        let gid = GroupId(self.next_group_id);
        let count = |u: &UserName| self.groups_of(u, now);
        let ctx = Ctx { now, rules: &self.group_rules, groups_of: &count };
        match Group::create(gid, name, user, rule, &ctx) {
            Err(denial) => self.reply(conn, id, Err(Failure::new(denial.code()))),
            Ok((group, event)) => {
                self.next_group_id += 1;
                self.write(Write::GroupCreated { id: gid, name });
                self.write(Write::GroupEvent { id: gid, event });
                self.groups.insert(name, GroupRec::new(group));
                self.group_names.insert(gid, name);
                if let Some(u) = self.users.get_mut(&user) {
                    u.relations.insert(name);
                }
                self.reply(conn, id, Ok(OkReply::Done { verb: DoneVerb::Create }));
            }
        }
    }

    pub(super) fn join(
        &mut self,
        r: Req,
        user: UserName,
        group: GroupName,
        reason: Option<Text>,
        now: Millis,
    ) {
        if let Err(code) = self.rules.join_reason(reason.as_ref()) {
            return self.reply(r.0, r.1, Err(Failure::new(code)));
        }
        self.group_op(r, user, group, Op::Join { reason }, now);
    }

    /// Applies one operation to a group, then stages, numbers and delivers its events.
    pub(super) fn group_op(
        &mut self,
        (conn, id): Req,
        actor: UserName,
        name: GroupName,
        op: Op,
        now: Millis,
    ) {
        match self.apply_op(actor, name, op.clone(), now) {
            Err(code) => self.reply(conn, id, Err(Failure::new(code))),
            Ok((events, wire)) => {
                match reply_of(name, &op, &events) {
                    Some(reply) => self.reply(conn, id, Ok(reply)),
                    None => self.reply(conn, id, Err(Failure::new(ErrorCode::Internal))),
                }
                for (frame, to) in wire {
                    self.frame_to_users(frame, to, Some((conn, id)));
                }
            }
        }
    }

    /// Applies one operation to a group and stages its events (numbered, stored and
    /// encoded once): the events, and each encoded one with its recipients, for the
    /// caller to deliver. A group its last member left is deleted.
    #[allow(clippy::type_complexity, reason = "events, and frames with their readers")]
    pub(super) fn apply_op(
        &mut self,
        actor: UserName,
        name: GroupName,
        op: Op,
        now: Millis,
    ) -> Result<(Vec<GroupEvent>, Vec<(bytes::Bytes, Vec<UserName>)>), ErrorCode> {
        // The group is taken out while it changes; groups_of never needs it (it is
        // asked only about users who are neither members nor requesters of it).
        let Some(mut rec) = self.groups.remove(&name) else {
            return Err(ErrorCode::NoSuchGroup);
        };
        if let Op::Invite { user } = &op
            && let Err(code) = rules::invite_target(self.users.contains_key(user))
        {
            self.groups.insert(name, rec);
            return Err(code);
        }
        let count = |u: &UserName| self.groups_of(u, now);
        let ctx = Ctx { now, rules: &self.group_rules, groups_of: &count };
        let events = match rec.group.apply(actor, op, &ctx) {
            Ok(events) => {
                // Members may have come or gone.
                rec.fanout = None;
                events
            }
            Err(denial) => {
                self.groups.insert(name, rec);
                return Err(denial.code());
            }
        };
        let gid = rec.group.id();
        let mut wire = Vec::new();
        for event in &events {
            self.write(Write::GroupEvent { id: gid, event: event.clone() });
            let seq = if event.is_stored() {
                rec.latest += 1;
                rec.latest
            } else {
                0
            };
            if let Some(e) = event.to_wire(name, seq, now) {
                // Encoded once: the same bytes are stored and fanned out.
                let e = ServerFrame::Event(e);
                let frame = self.arena.encode(&e);
                if let ServerFrame::Event(Event::Stored(stored)) = &e {
                    let record = EventRecord::new(ConvKey::Group(gid), stored, frame.clone());
                    self.write(Write::Event(record));
                }
                let to: Vec<UserName> = rec.group.recipients(event.recipients()).collect();
                wire.push((frame, to));
            }
            if let Some(user) = super::related_user(event)
                && let Some(u) = self.users.get_mut(&user)
            {
                u.relations.insert(name);
            }
        }
        if rec.group.is_deleted() {
            self.write(Write::GroupDeleted { id: gid });
            self.group_names.remove(&gid);
            self.files.forget_conv(&ConvKey::Group(gid));
            self.forget_markers_of_conv(&ConvKey::Group(gid));
        } else {
            // A member who is gone keeps no marker of the group (SPEC.md 6.8).
            for event in &events {
                if let GroupEvent::Left { user }
                | GroupEvent::Kicked { user, .. }
                | GroupEvent::Banned { user, .. } = event
                {
                    self.forget_marker(*user, ConvKey::Group(gid));
                }
            }
            self.groups.insert(name, rec);
        }
        Ok((events, wire))
    }

    /// Looks up a group that `user` is a member of.
    fn member_group(&self, user: &UserName, name: &GroupName) -> Result<&GroupRec, ErrorCode> {
        let rec = self.groups.get(name).ok_or(ErrorCode::NoSuchGroup)?;
        rec.group.role_of(user).ok_or(ErrorCode::NotMember)?;
        Ok(rec)
    }

    pub(super) fn list_groups(&mut self, r: Req, user: UserName, now: Millis) {
        self.list_groups_of(r, user, now, false);
    }

    /// `GROUPS offers`: GROUPS, where a group with a pending ownership offer names the
    /// member it is offered to, for each of its members (SPEC.md 6.5).
    pub(super) fn list_groups_with_offers(&mut self, r: Req, user: UserName, now: Millis) {
        self.list_groups_of(r, user, now, true);
    }

    fn list_groups_of(&mut self, (conn, id): Req, user: UserName, now: Millis, offers: bool) {
        let Some(u) = self.users.get(&user) else { return };
        let mut items = Vec::new();
        let mut stale = Vec::new();
        for name in &u.relations {
            let Some(rec) = self.groups.get(name) else {
                stale.push(*name);
                continue;
            };
            let g = &rec.group;
            let membership = match g.role_of(&user) {
                Some(Role::Owner) => Membership::Owner,
                Some(Role::Admin) => Membership::Admin,
                Some(Role::Member) => Membership::Member,
                None if g.invite_of(&user, now).is_some() => Membership::Invited,
                None if g.request_of(&user, now).is_some() => Membership::Requested,
                None => {
                    stale.push(*name);
                    continue;
                }
            };
            let member = g.role_of(&user).is_some();
            let (group, rule, members) = (*name, g.rule(), g.member_count() as u64);
            let latest = if member { rec.latest } else { 0 };
            items.push(match g.offer() {
                Some(offer) if offers && member => {
                    Item::GroupOffered { group, membership, rule, members, latest, offer }
                }
                _ => Item::Group { group, membership, rule, members, latest },
            });
        }
        if let Some(u) = self.users.get_mut(&user) {
            for name in stale {
                u.relations.remove(&name);
            }
        }
        // Only GROUP items are listed here; both kinds carry a group and a membership.
        let key = |i: &Item| match i {
            Item::Group { group, membership, .. }
            | Item::GroupOffered { group, membership, .. } => Some((*membership, *group)),
            _ => None,
        };
        items.sort_by(|a, b| match (key(a), key(b)) {
            (Some(a), Some(b)) => rules::groups_order(a, b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        });
        self.list(conn, id, ListVerb::Groups, items);
    }

    pub(super) fn list_members(&mut self, (conn, id): Req, user: UserName, group: GroupName) {
        let rec = match self.member_group(&user, &group) {
            Ok(rec) => rec,
            Err(code) => return self.reply(conn, id, Err(Failure::new(code))),
        };
        let mut members: Vec<(UserName, Role)> = rec.group.members().collect();
        members.sort_by(rules::members_order);
        let items = members
            .into_iter()
            .map(|(u, role)| Item::Member {
                group,
                user: u,
                role,
                presence: if self.is_online(&u) { Presence::Online } else { Presence::Offline },
            })
            .collect();
        self.list(conn, id, ListVerb::Members, items);
    }

    pub(super) fn list_online(
        &mut self,
        (conn, id): Req,
        user: UserName,
        group: Option<GroupName>,
    ) {
        let mut users: Vec<UserName> = match group {
            Some(g) => match self.member_group(&user, &g) {
                Ok(rec) => rec.group.members().map(|(u, _)| u).collect(),
                Err(code) => return self.reply(conn, id, Err(Failure::new(code))),
            },
            None => {
                let mut all = self.co_members(user);
                all.insert(user);
                all.into_iter().collect()
            }
        };
        users.retain(|u| self.is_online(u));
        users.sort_by(rules::online_order);
        let items = users.into_iter().map(|user| Item::Online { user }).collect();
        self.list(conn, id, ListVerb::Online, items);
    }

    pub(super) fn list_requests(
        &mut self,
        (conn, id): Req,
        user: UserName,
        group: GroupName,
        now: Millis,
    ) {
        let Some(rec) = self.groups.get(&group) else {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::NoSuchGroup)));
        };
        if let Err(code) = rules::may_list_requests(rec.group.role_of(&user)) {
            return self.reply(conn, id, Err(Failure::new(code)));
        }
        let mut requests: Vec<_> =
            rec.group.requests(now).map(|(u, r)| (r.at, u, r.reason.clone())).collect();
        requests.sort_by(|a, b| rules::requests_order(&(a.0, a.1), &(b.0, b.1)));
        let items = requests
            .into_iter()
            .map(|(time, u, reason)| Item::Request { group, user: u, time, reason })
            .collect();
        self.list(conn, id, ListVerb::Requests, items);
    }

    /// BANS (SPEC.md 6.9): the group's banned users by name, each with who banned
    /// them, for its owner and admins.
    pub(super) fn list_bans(&mut self, (conn, id): Req, user: UserName, group: GroupName) {
        let Some(rec) = self.groups.get(&group) else {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::NoSuchGroup)));
        };
        if let Err(code) = rules::may_list_bans(rec.group.role_of(&user)) {
            return self.reply(conn, id, Err(Failure::new(code)));
        }
        let mut bans: Vec<(UserName, UserName)> = rec.group.bans().collect();
        bans.sort_by(|a, b| rules::bans_order(&a.0, &b.0));
        let items = bans.into_iter().map(|(user, by)| Item::Ban { group, user, by }).collect();
        self.list(conn, id, ListVerb::Bans, items);
    }

    /// The conversations `user` reads, as they name them, with their keys and newest
    /// sequence numbers: their groups, then their private ones.
    pub(super) fn conversations_of(
        &self,
        user: UserName,
    ) -> Vec<(baatkaro_proto::Conversation, ConvKey, baatkaro_proto::Seq)> {
        let Some(u) = self.users.get(&user) else { return Vec::new() };
        let mut out = Vec::new();
        for name in &u.relations {
            if let Ok(rec) = self.member_group(&user, name) {
                let conv = baatkaro_proto::Conversation::Group(*name);
                out.push((conv, ConvKey::Group(rec.group.id()), rec.latest));
            }
        }
        for peer in &u.peers {
            let key = ConvKey::direct(user, *peer);
            let latest = self.direct.get(&key).copied().unwrap_or(0);
            out.push((baatkaro_proto::Conversation::Direct(*peer), key, latest));
        }
        out
    }

    /// The conversations `user` reads: their groups, then their private ones.
    pub(super) fn list_conversations(&mut self, (conn, id): Req, user: UserName) {
        if !self.users.contains_key(&user) {
            return;
        }
        let items = self
            .conversations_of(user)
            .into_iter()
            .map(|(conv, _, latest)| Item::Conversation { conv, latest })
            .collect();
        self.list(conn, id, ListVerb::Conversations, items);
    }
}
