//! Model-based test of the group membership machine (`baatkaro_proto::group`).
//!
//! A small reference model, written from the rules (the issue, SPEC.md 6.1–6.4 and
//! Appendix D) and not from the machine's code, runs alongside a real [`Group`] over
//! random operation sequences. After every step the machine must agree with the model
//! on the outcome (events or denial), on the resulting state and on each event's
//! recipients; its invariants must hold; a denial must leave the group untouched and be
//! one of `op.possible_denials()`; and replaying every event so far must rebuild the
//! live group. Plain tests below pin the edge cases one by one.

// Test code: a failed unwrap or assertion is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use baatkaro_proto::group::{Ctx, Denial, Group, GroupEvent, GroupId, GroupRules, Op};
use baatkaro_proto::{GroupName, JoinRule, Millis, Role, Text, UserName};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// The pool every actor and target comes from.
const NAMES: [&str; 5] = ["ann", "bob", "cat", "dan", "eve"];
/// Request and invite lifetime, in milliseconds.
const EXPIRY: Millis = 1000;
/// Time starts here (not 0, so "made at 0" bugs cannot hide).
const START: Millis = 1_000_000;

fn user(i: usize) -> UserName {
    UserName::new(NAMES[i]).unwrap()
}

fn users() -> impl Iterator<Item = UserName> {
    (0..NAMES.len()).map(user)
}

fn group_name() -> GroupName {
    GroupName::new("rust").unwrap()
}

/// Rank for "nobody acts on someone of equal or higher rank".
fn rank(role: Role) -> u8 {
    match role {
        Role::Owner => 2,
        Role::Admin => 1,
        Role::Member => 0,
    }
}

// ---------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------

/// One pending request or invite as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending<T> {
    at: Millis,
    extra: T,
}

/// The group as the rules describe it. Requests and invites are dropped from the
/// model as soon as they expire: an expired one counts as absent everywhere.
#[derive(Clone, Debug)]
struct Model {
    limits: GroupRules,
    rule: JoinRule,
    owner: UserName,
    members: BTreeMap<UserName, Role>,
    /// Live requests: when, and the reason.
    requests: BTreeMap<UserName, Pending<Option<Text>>>,
    /// Live invites: when, and by whom.
    invites: BTreeMap<UserName, Pending<UserName>>,
    bans: BTreeSet<UserName>,
    offer: Option<UserName>,
    deleted: bool,
    /// Groups each user is in (member or live request) other than this one.
    elsewhere: BTreeMap<UserName, u64>,
}

/// What the model expects of an operation: the events, each with its recipients
/// (sorted), or a denial.
type Expected = Result<Vec<(GroupEvent, Vec<UserName>)>, Denial>;

impl Model {
    fn new(
        owner: UserName,
        rule: JoinRule,
        limits: GroupRules,
        elsewhere: BTreeMap<UserName, u64>,
    ) -> Model {
        Model {
            limits,
            rule,
            owner,
            members: BTreeMap::from([(owner, Role::Owner)]),
            requests: BTreeMap::new(),
            invites: BTreeMap::new(),
            bans: BTreeSet::new(),
            offer: None,
            deleted: false,
            elsewhere,
        }
    }

    /// Forgets what has expired at `now`: live means `now < at + expiry`.
    fn prune(&mut self, now: Millis) {
        let expiry = self.limits.expiry;
        self.requests.retain(|_, p| now < p.at + expiry);
        self.invites.retain(|_, p| now < p.at + expiry);
    }

    /// What `Ctx::groups_of` says: other groups, plus this one if the user is a
    /// member or has a live request here (an invite does not count).
    fn groups_of(&self, u: &UserName) -> u64 {
        let here = self.members.contains_key(u) || self.requests.contains_key(u);
        self.elsewhere.get(u).copied().unwrap_or(0) + u64::from(here)
    }

    fn full(&self) -> bool {
        self.members.len() as u64 >= self.limits.members
    }

    fn at_group_limit(&self, u: &UserName) -> bool {
        self.groups_of(u) >= self.limits.groups
    }

    fn sorted_members(&self) -> Vec<UserName> {
        self.members.keys().copied().collect()
    }

    fn managers(&self) -> Vec<UserName> {
        self.members.iter().filter(|(_, r)| **r != Role::Member).map(|(u, _)| *u).collect()
    }

    fn members_and(&self, u: UserName) -> Vec<UserName> {
        let mut v = self.sorted_members();
        v.push(u);
        v.sort();
        v
    }

    /// `u` becomes a plain member; returns the JOINED event and its recipients.
    fn admit(&mut self, u: UserName, by: UserName) -> (GroupEvent, Vec<UserName>) {
        self.requests.remove(&u);
        self.invites.remove(&u);
        self.members.insert(u, Role::Member);
        (GroupEvent::Joined { user: u, by }, self.sorted_members())
    }

    /// `u` stops being a member: an offer to them lapses, the last one out deletes.
    fn remove(&mut self, u: UserName) {
        self.members.remove(&u);
        if self.offer == Some(u) {
            self.offer = None;
        }
        if self.members.is_empty() {
            self.deleted = true;
        }
    }

    /// Checks the actor is an owner or admin: `NotMember` / `NotPermitted`.
    fn manager(&self, a: &UserName) -> Result<Role, Denial> {
        match self.members.get(a) {
            None => Err(Denial::NotMember),
            Some(Role::Member) => Err(Denial::NotPermitted),
            Some(r) => Ok(*r),
        }
    }

    /// Checks the actor is the owner: `NotMember` / `NotPermitted`.
    fn the_owner(&self, a: &UserName) -> Result<(), Denial> {
        match self.members.get(a) {
            None => Err(Denial::NotMember),
            Some(Role::Owner) => Ok(()),
            Some(_) => Err(Denial::NotPermitted),
        }
    }

    /// The target must be a member: `NotMember`.
    fn target(&self, u: &UserName) -> Result<Role, Denial> {
        self.members.get(u).copied().ok_or(Denial::NotMember)
    }

    /// Applies `op` by `a` at `now` (after `prune(now)`): the expected outcome. On a
    /// denial the model is left as it was.
    fn apply(&mut self, a: UserName, op: &Op, now: Millis) -> Expected {
        let mut next = self.clone();
        let out = next.decide(a, op, now)?;
        *self = next;
        Ok(out)
    }

    fn decide(&mut self, a: UserName, op: &Op, now: Millis) -> Expected {
        use Denial::*;
        if self.deleted {
            return Err(NoSuchGroup);
        }
        match op {
            Op::Join { reason } => {
                if self.members.contains_key(&a) {
                    return Err(AlreadyMember);
                }
                if self.bans.contains(&a) {
                    return Err(Banned);
                }
                let join = |m: &mut Model| {
                    if m.full() {
                        return Err(GroupFull);
                    }
                    if m.at_group_limit(&a) {
                        return Err(TooManyGroups);
                    }
                    Ok(vec![m.admit(a, a)])
                };
                if self.invites.contains_key(&a) {
                    // Holding an invite, JOIN accepts it whatever the rule.
                    return join(self);
                }
                if self.requests.contains_key(&a) {
                    return Err(AlreadyPending);
                }
                match self.rule {
                    JoinRule::Invite => Err(InviteOnly),
                    JoinRule::Open => join(self),
                    JoinRule::Approval => {
                        if self.at_group_limit(&a) {
                            return Err(TooManyGroups);
                        }
                        if self.requests.len() as u64 >= self.limits.pending {
                            return Err(TooManyPending);
                        }
                        self.requests.insert(a, Pending { at: now, extra: reason.clone() });
                        let ev =
                            GroupEvent::JoinRequested { user: a, at: now, reason: reason.clone() };
                        Ok(vec![(ev, self.managers())])
                    }
                }
            }
            Op::Approve { user: u } => {
                self.manager(&a)?;
                if !self.requests.contains_key(u) {
                    return Err(NoSuchRequest);
                }
                if self.full() {
                    return Err(GroupFull);
                }
                let approved = (GroupEvent::RequestApproved { user: *u, by: a }, vec![*u]);
                Ok(vec![approved, self.admit(*u, a)])
            }
            Op::Reject { user: u } => {
                self.manager(&a)?;
                if self.requests.remove(u).is_none() {
                    return Err(NoSuchRequest);
                }
                Ok(vec![(GroupEvent::RequestRejected { user: *u, by: a }, vec![*u])])
            }
            Op::Invite { user: u } => {
                self.manager(&a)?;
                if self.members.contains_key(u) {
                    return Err(AlreadyMember);
                }
                if self.bans.contains(u) {
                    return Err(Banned);
                }
                if self.invites.contains_key(u) {
                    return Err(AlreadyPending);
                }
                if self.requests.contains_key(u) {
                    // An invite to a requester admits them at once, as APPROVE.
                    if self.full() {
                        return Err(GroupFull);
                    }
                    let approved = (GroupEvent::RequestApproved { user: *u, by: a }, vec![*u]);
                    return Ok(vec![approved, self.admit(*u, a)]);
                }
                if self.invites.len() as u64 >= self.limits.invites {
                    return Err(TooManyInvites);
                }
                self.invites.insert(*u, Pending { at: now, extra: a });
                Ok(vec![(GroupEvent::Invited { user: *u, by: a, at: now }, vec![*u])])
            }
            Op::Accept => {
                if !self.invites.contains_key(&a) {
                    return Err(NoSuchInvite);
                }
                if self.full() {
                    return Err(GroupFull);
                }
                if self.at_group_limit(&a) {
                    return Err(TooManyGroups);
                }
                Ok(vec![self.admit(a, a)])
            }
            Op::Decline => {
                if self.invites.remove(&a).is_none() {
                    return Err(NoSuchInvite);
                }
                Ok(vec![(GroupEvent::InviteDeclined { user: a }, vec![])])
            }
            Op::Leave => match self.members.get(&a) {
                Some(Role::Owner) if self.members.len() > 1 => Err(OwnerMustTransfer),
                Some(_) => {
                    self.remove(a);
                    Ok(vec![(GroupEvent::Left { user: a }, self.members_and(a))])
                }
                None => {
                    if self.requests.remove(&a).is_none() {
                        return Err(NotMember);
                    }
                    Ok(vec![(GroupEvent::RequestWithdrawn { user: a }, vec![])])
                }
            },
            Op::Kick { user: u, ban } => {
                // Appendix D: NOT_MEMBER (actor), NOT_MEMBER (u), NOT_PERMITTED (u not
                // of lower rank) — so a plain member is refused by the rank check.
                let actor = self.members.get(&a).copied().ok_or(NotMember)?;
                let target = self.target(u)?;
                if rank(target) >= rank(actor) {
                    return Err(NotPermitted);
                }
                self.remove(*u);
                let ev = if *ban {
                    self.bans.insert(*u);
                    GroupEvent::Banned { user: *u, by: a }
                } else {
                    GroupEvent::Kicked { user: *u, by: a }
                };
                Ok(vec![(ev, self.members_and(*u))])
            }
            Op::Unban { user: u } => {
                self.manager(&a)?;
                if !self.bans.remove(u) {
                    return Err(NotBanned);
                }
                Ok(vec![(GroupEvent::Unbanned { user: *u, by: a }, vec![])])
            }
            Op::Promote { user: u } => {
                self.the_owner(&a)?;
                if self.target(u)? != Role::Member {
                    return Err(NoChange);
                }
                self.members.insert(*u, Role::Admin);
                let ev = GroupEvent::RoleChanged { user: *u, role: Role::Admin, by: a };
                Ok(vec![(ev, self.sorted_members())])
            }
            Op::Demote { user: u } => {
                self.the_owner(&a)?;
                match self.target(u)? {
                    Role::Member => return Err(NoChange),
                    Role::Owner => return Err(NotPermitted),
                    Role::Admin => {}
                }
                self.members.insert(*u, Role::Member);
                let ev = GroupEvent::RoleChanged { user: *u, role: Role::Member, by: a };
                Ok(vec![(ev, self.sorted_members())])
            }
            Op::Offer { user: u } => {
                self.the_owner(&a)?;
                self.target(u)?;
                if *u == self.owner || self.offer == Some(*u) {
                    return Err(NoChange);
                }
                self.offer = Some(*u);
                Ok(vec![(GroupEvent::OwnershipOffered { user: *u, by: a }, self.sorted_members())])
            }
            Op::TakeOwnership => {
                if self.offer != Some(a) {
                    return Err(NoSuchOffer);
                }
                let previous = self.owner;
                self.members.insert(previous, Role::Admin);
                self.members.insert(a, Role::Owner);
                self.owner = a;
                self.offer = None;
                Ok(vec![(
                    GroupEvent::OwnershipTransferred { user: a, previous },
                    self.sorted_members(),
                )])
            }
            Op::CancelOffer => {
                self.the_owner(&a)?;
                if self.offer.take().is_none() {
                    return Err(NoSuchOffer);
                }
                Ok(vec![(GroupEvent::OfferCancelled { by: a }, vec![])])
            }
            Op::SetRule { rule } => {
                self.manager(&a)?;
                if *rule == self.rule {
                    return Err(NoChange);
                }
                self.rule = *rule;
                Ok(vec![(GroupEvent::RuleChanged { rule: *rule, by: a }, self.sorted_members())])
            }
            Op::Delete => {
                self.the_owner(&a)?;
                // DELETED goes to every member the group had.
                let to = self.sorted_members();
                self.deleted = true;
                Ok(vec![(GroupEvent::Deleted { by: a }, to)])
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The harness: machine and model side by side
// ---------------------------------------------------------------------------------

struct Harness {
    group: Group,
    model: Model,
    /// Every event so far, `Created` first, for replay.
    history: Vec<GroupEvent>,
    now: Millis,
}

/// Runs `f` with a `Ctx` at `now` whose `groups_of` is the model's.
fn with_ctx<R>(model: &Model, now: Millis, f: impl FnOnce(&Ctx<'_>) -> R) -> R {
    let counts: BTreeMap<UserName, u64> = users().map(|u| (u, model.groups_of(&u))).collect();
    let groups_of = move |u: &UserName| counts.get(u).copied().unwrap_or(0);
    let ctx = Ctx { now, rules: &model.limits, groups_of: &groups_of };
    f(&ctx)
}

impl Harness {
    fn new(
        owner: UserName,
        rule: JoinRule,
        limits: GroupRules,
        elsewhere: BTreeMap<UserName, u64>,
        now: Millis,
        id: GroupId,
    ) -> Harness {
        let model = Model::new(owner, rule, limits, elsewhere);
        // The creator must be below the groups limit before the group exists.
        assert!(model.elsewhere.get(&owner).copied().unwrap_or(0) < limits.groups);
        let counts = model.elsewhere.clone();
        let groups_of = move |u: &UserName| counts.get(u).copied().unwrap_or(0);
        let ctx = Ctx { now, rules: &limits, groups_of: &groups_of };
        let (group, created) = Group::create(id, group_name(), owner, rule, &ctx).unwrap();
        assert_eq!(created, GroupEvent::Created { owner, rule });
        let h = Harness { group, model, history: vec![created], now };
        h.check();
        h
    }

    /// A harness with generous limits (for the scenarios).
    fn simple(owner: &str, rule: JoinRule) -> Harness {
        let limits =
            GroupRules { members: 10, pending: 10, invites: 10, groups: 10, expiry: EXPIRY };
        Harness::new(owner.parse().unwrap(), rule, limits, BTreeMap::new(), START, GroupId(1))
    }

    fn advance(&mut self, dt: Millis) {
        self.now += dt;
        self.model.prune(self.now);
    }

    /// Applies `op` by `actor` to machine and model and checks they agree; returns
    /// the machine's result.
    fn apply(&mut self, actor: UserName, op: Op) -> Result<Vec<GroupEvent>, Denial> {
        let now = self.now;
        self.model.prune(now);
        let before = self.group.clone();
        let model_before = self.model.clone();
        let got = with_ctx(&model_before, now, |ctx| self.group.apply(actor, op.clone(), ctx));
        let expected = self.model.apply(actor, &op, now);
        let what = format!("{actor} {op:?} at +{}", now - START);
        match (&got, &expected) {
            (Err(d), Ok(exp)) => {
                let exp: Vec<&GroupEvent> = exp.iter().map(|(e, _)| e).collect();
                panic!("{what}: expected events {exp:?}, the machine denied it with {d:?}")
            }
            (Err(d), Err(e)) => {
                assert_eq!(d, e, "{what}: denial");
                assert_eq!(self.group, before, "{what}: denied with {d:?} but the group changed");
                assert!(
                    op.possible_denials().contains(d),
                    "{what}: {d:?} is not in possible_denials {:?}",
                    op.possible_denials()
                );
            }
            (Ok(events), Err(d)) => {
                panic!("{what}: expected {d:?}, the machine applied it with events {events:?}")
            }
            (Ok(events), Ok(exp)) => {
                let exp_events: Vec<GroupEvent> = exp.iter().map(|(e, _)| e.clone()).collect();
                assert_eq!(events, &exp_events, "{what}: events");
                for (event, to) in exp {
                    let mut got_to: Vec<UserName> =
                        self.group.recipients(event.recipients()).collect();
                    got_to.sort();
                    assert_eq!(&got_to, to, "{what}: recipients of {event:?}");
                }
                self.history.extend(events.iter().cloned());
            }
        }
        self.check();
        got
    }

    /// `expire(now)`: may drop only what is no longer live, and reports it exactly once.
    fn expire(&mut self) {
        let before = self.group.clone();
        match self.group.expire(self.now) {
            None => assert_eq!(self.group, before, "expire returned None but changed the group"),
            Some(ev) => {
                assert_eq!(ev, GroupEvent::Expired { now: self.now });
                assert_ne!(self.group, before, "expire returned an event but changed nothing");
                self.history.push(ev);
                assert_eq!(self.group.expire(self.now), None, "expire at the same time twice");
            }
        }
        self.check();
    }

    /// The machine's state agrees with the model, its invariants hold, and replay
    /// rebuilds it.
    fn check(&self) {
        let (g, m, now) = (&self.group, &self.model, self.now);
        g.check_invariants().unwrap_or_else(|e| panic!("invariant broken: {e}\n{g:?}"));
        let replayed = Group::replay(g.id(), group_name(), EXPIRY, &self.history);
        assert_eq!(replayed.as_ref(), Some(g), "replay of {:?}", self.history);
        assert_eq!(g.is_deleted(), m.deleted, "deleted");
        if m.deleted {
            return;
        }
        assert_eq!(g.owner(), m.owner, "owner");
        assert_eq!(g.rule(), m.rule, "rule");
        assert_eq!(g.members().collect::<BTreeMap<_, _>>(), m.members, "members");
        assert_eq!(g.member_count(), m.members.len(), "member count");
        for u in users() {
            assert_eq!(g.role_of(&u), m.members.get(&u).copied(), "role of {u}");
            assert_eq!(g.is_banned(&u), m.bans.contains(&u), "ban of {u}");
        }
        let requests: BTreeMap<UserName, Pending<Option<Text>>> = g
            .requests(now)
            .map(|(u, r)| (u, Pending { at: r.at, extra: r.reason.clone() }))
            .collect();
        assert_eq!(requests, m.requests, "live requests at +{}", now - START);
        let invites: BTreeMap<UserName, Pending<UserName>> =
            g.invites(now).map(|(u, i)| (u, Pending { at: i.at, extra: i.by })).collect();
        assert_eq!(invites, m.invites, "live invites at +{}", now - START);
        assert_eq!(g.offer(), m.offer, "offer");
    }
}

// ---------------------------------------------------------------------------------
// Random sequences
// ---------------------------------------------------------------------------------

/// Who an actor or target is, chosen against the model's state when the step runs,
/// so that most operations come from (and aim at) users they can succeed for. The
/// index picks among the candidates.
#[derive(Clone, Copy, Debug)]
enum Who {
    Anyone,
    Owner,
    Admin,
    PlainMember,
    Outsider,
    Requester,
    Invitee,
    Banned,
    Offered,
}

#[derive(Clone, Copy, Debug)]
struct Pick {
    who: Who,
    index: usize,
}

impl Pick {
    fn resolve(self, m: &Model) -> UserName {
        let all: Vec<UserName> = users().collect();
        let with_role =
            |role: Role| m.members.iter().filter(|(_, r)| **r == role).map(|(u, _)| *u).collect();
        let candidates: Vec<UserName> = match self.who {
            Who::Anyone => all.clone(),
            Who::Owner => vec![m.owner],
            Who::Admin => with_role(Role::Admin),
            Who::PlainMember => with_role(Role::Member),
            Who::Outsider => all
                .iter()
                .filter(|u| !m.members.contains_key(u) && !m.bans.contains(u))
                .copied()
                .collect(),
            Who::Requester => m.requests.keys().copied().collect(),
            Who::Invitee => m.invites.keys().copied().collect(),
            Who::Banned => m.bans.iter().copied().collect(),
            Who::Offered => m.offer.into_iter().collect(),
        };
        // None of that kind: a member where one was wanted, else anyone.
        let members: Vec<UserName> = m.members.keys().copied().collect();
        let from = match self.who {
            _ if !candidates.is_empty() => &candidates,
            Who::Admin | Who::PlainMember | Who::Offered if !members.is_empty() => &members,
            _ => &all,
        };
        from[self.index % from.len()]
    }
}

/// An operation whose users are picked when it runs.
#[derive(Clone, Debug)]
enum OpT {
    Join(Option<Text>),
    Approve(Pick),
    Reject(Pick),
    Invite(Pick),
    Accept,
    Decline,
    Leave,
    Kick(Pick, bool),
    Unban(Pick),
    Promote(Pick),
    Demote(Pick),
    Offer(Pick),
    TakeOwnership,
    CancelOffer,
    SetRule(JoinRule),
    Delete,
}

impl OpT {
    fn build(&self, m: &Model) -> Op {
        match self {
            OpT::Join(reason) => Op::Join { reason: reason.clone() },
            OpT::Approve(p) => Op::Approve { user: p.resolve(m) },
            OpT::Reject(p) => Op::Reject { user: p.resolve(m) },
            OpT::Invite(p) => Op::Invite { user: p.resolve(m) },
            OpT::Accept => Op::Accept,
            OpT::Decline => Op::Decline,
            OpT::Leave => Op::Leave,
            OpT::Kick(p, ban) => Op::Kick { user: p.resolve(m), ban: *ban },
            OpT::Unban(p) => Op::Unban { user: p.resolve(m) },
            OpT::Promote(p) => Op::Promote { user: p.resolve(m) },
            OpT::Demote(p) => Op::Demote { user: p.resolve(m) },
            OpT::Offer(p) => Op::Offer { user: p.resolve(m) },
            OpT::TakeOwnership => Op::TakeOwnership,
            OpT::CancelOffer => Op::CancelOffer,
            OpT::SetRule(rule) => Op::SetRule { rule: *rule },
            OpT::Delete => Op::Delete,
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// Time passes by `dt`, then `actor` applies `op`.
    Apply { dt: Millis, actor: Pick, op: OpT },
    /// Time passes by `dt`, then `expire(now)`.
    Expire { dt: Millis },
    /// The user's count of other groups changes (they joined or left elsewhere).
    Elsewhere { user: usize, groups: u64 },
}

#[derive(Clone, Debug)]
struct Setup {
    owner: usize,
    rule: JoinRule,
    limits: GroupRules,
    elsewhere: Vec<u64>,
}

fn rule() -> impl Strategy<Value = JoinRule> {
    prop_oneof![Just(JoinRule::Approval), Just(JoinRule::Open), Just(JoinRule::Invite)]
}

fn setup() -> impl Strategy<Value = Setup> {
    (0..NAMES.len(), rule(), 3u64..=5, 2u64..=3)
        .prop_flat_map(|(owner, rule, members, groups)| {
            let limits = GroupRules { members, pending: 2, invites: 2, groups, expiry: EXPIRY };
            // Mostly below the limit, sometimes at it; the creator strictly below.
            let counts = proptest::collection::vec(
                prop_oneof![4 => 0..groups, 1 => Just(groups)],
                NAMES.len(),
            );
            (Just(owner), Just(rule), Just(limits), counts)
        })
        .prop_map(|(owner, rule, limits, mut elsewhere)| {
            elsewhere[owner] = elsewhere[owner].min(limits.groups - 1);
            Setup { owner, rule, limits, elsewhere }
        })
}

/// Time steps: mostly short, on a 50 ms grid so expiry boundaries are hit exactly,
/// sometimes near or past the expiry.
fn dt() -> impl Strategy<Value = Millis> {
    prop_oneof![
        12 => (0u64..=2).prop_map(|k| k * 50),
        1 => (18u64..=21).prop_map(|k| k * 50),
        1 => 0u64..=2500,
    ]
}

fn pick(weights: [u32; 9]) -> impl Strategy<Value = Pick> {
    let who = [
        Who::Anyone,
        Who::Owner,
        Who::Admin,
        Who::PlainMember,
        Who::Outsider,
        Who::Requester,
        Who::Invitee,
        Who::Banned,
        Who::Offered,
    ];
    let who = proptest::strategy::Union::new_weighted(
        who.into_iter().zip(weights).filter(|(_, w)| *w > 0).map(|(w, n)| (n, Just(w))).collect(),
    );
    (who, 0..NAMES.len()).prop_map(|(who, index)| Pick { who, index })
}

// Weights of each kind of user, in the order of `Who`:
//                          any own adm mem out req inv ban off
const JOINER: [u32; 9] = [1, 0, 0, 1, 5, 1, 3, 1, 0];
const MANAGER: [u32; 9] = [0, 3, 3, 1, 1, 0, 0, 0, 0];
const OWNER: [u32; 9] = [0, 6, 1, 1, 1, 0, 0, 0, 0];
const INVITEE: [u32; 9] = [0, 0, 0, 1, 1, 0, 5, 0, 0];
const LEAVER: [u32; 9] = [0, 1, 2, 3, 1, 2, 1, 0, 0];
const OFFERED: [u32; 9] = [1, 1, 0, 0, 0, 0, 0, 0, 5];
const REQUESTER: [u32; 9] = [1, 0, 0, 1, 1, 5, 0, 0, 0];
const OUTSIDER: [u32; 9] = [1, 0, 0, 1, 4, 2, 1, 1, 0];
const KICKED: [u32; 9] = [1, 1, 2, 4, 1, 0, 0, 0, 0];
const BANNED: [u32; 9] = [1, 0, 0, 0, 0, 0, 0, 5, 0];
const PLAIN: [u32; 9] = [0, 1, 1, 4, 1, 0, 0, 0, 0];
const ADMIN: [u32; 9] = [0, 1, 4, 1, 1, 0, 0, 0, 0];
const HEIR: [u32; 9] = [0, 1, 2, 2, 1, 0, 0, 0, 1];

/// An operation and who applies it, each op with actors (and targets) it can succeed
/// for most of the time, and others now and then.
fn action() -> impl Strategy<Value = (Pick, OpT)> {
    let reason = prop_oneof![3 => Just(None), 1 => Just(Some(Text::new("I write Rust").unwrap()))];
    let by = |who: [u32; 9], op: OpT| (pick(who), Just(op));
    prop_oneof![
        10 => (pick(JOINER), reason).prop_map(|(a, r)| (a, OpT::Join(r))),
        5 => (pick(MANAGER), pick(REQUESTER)).prop_map(|(a, t)| (a, OpT::Approve(t))),
        2 => (pick(MANAGER), pick(REQUESTER)).prop_map(|(a, t)| (a, OpT::Reject(t))),
        6 => (pick(MANAGER), pick(OUTSIDER)).prop_map(|(a, t)| (a, OpT::Invite(t))),
        4 => by(INVITEE, OpT::Accept),
        1 => by(INVITEE, OpT::Decline),
        3 => by(LEAVER, OpT::Leave),
        3 => (pick(MANAGER), pick(KICKED), any::<bool>()).prop_map(|(a, t, ban)| (a, OpT::Kick(t, ban))),
        2 => (pick(MANAGER), pick(BANNED)).prop_map(|(a, t)| (a, OpT::Unban(t))),
        3 => (pick(OWNER), pick(PLAIN)).prop_map(|(a, t)| (a, OpT::Promote(t))),
        2 => (pick(OWNER), pick(ADMIN)).prop_map(|(a, t)| (a, OpT::Demote(t))),
        3 => (pick(OWNER), pick(HEIR)).prop_map(|(a, t)| (a, OpT::Offer(t))),
        3 => by(OFFERED, OpT::TakeOwnership),
        1 => by(OWNER, OpT::CancelOffer),
        2 => (pick(MANAGER), rule()).prop_map(|(a, r)| (a, OpT::SetRule(r))),
        1 => by(OWNER, OpT::Delete),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => (dt(), action()).prop_map(|(dt, (actor, op))| Step::Apply { dt, actor, op }),
        2 => dt().prop_map(|dt| Step::Expire { dt }),
        1 => (0..NAMES.len(), prop_oneof![3 => 0u64..=1, 1 => 2u64..=3])
            .prop_map(|(user, groups)| Step::Elsewhere { user, groups }),
    ]
}

/// A config with `cases` cases, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig {
        cases,
        // Relative to the package root, where `cargo test` runs integration tests.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/group_model.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Runs the steps. Once the group is deleted, one more operation checks that it is
/// refused, and then a new group is created (by the first user who may create one)
/// so the rest of the sequence still exercises something. On a failure, the message
/// starts with the steps as they ran (users resolved).
fn run(setup: &Setup, steps: &[Step]) {
    let mut trace = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_steps(setup, steps, &mut trace)
    }));
    if let Err(payload) = result {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!("steps as they ran:\n  {}\n{msg}", trace.join("\n  "));
    }
}

fn run_steps(setup: &Setup, steps: &[Step], trace: &mut Vec<String>) {
    let elsewhere: BTreeMap<UserName, u64> = users().zip(setup.elsewhere.iter().copied()).collect();
    trace.push(format!(
        "create by {} rule {:?}, {:?}, other groups {elsewhere:?}",
        user(setup.owner),
        setup.rule,
        setup.limits
    ));
    let mut h =
        Harness::new(user(setup.owner), setup.rule, setup.limits, elsewhere, START, GroupId(1));
    let mut refused_since_deleted = 0;
    for step in steps {
        if h.group.is_deleted() && refused_since_deleted > 0 {
            let Some(owner) = users()
                .find(|u| h.model.elsewhere.get(u).copied().unwrap_or(0) < setup.limits.groups)
            else {
                return;
            };
            let id = GroupId(h.group.id().0 + 1);
            trace.push(format!("+{} create again by {owner}", h.now - START));
            h = Harness::new(owner, setup.rule, setup.limits, h.model.elsewhere.clone(), h.now, id);
            refused_since_deleted = 0;
        }
        match step {
            Step::Apply { dt, actor, op } => {
                h.advance(*dt);
                let was_deleted = h.group.is_deleted();
                let (actor, op) = (actor.resolve(&h.model), op.build(&h.model));
                trace.push(format!("+{} {actor} {op:?}", h.now - START));
                let got = h.apply(actor, op);
                if let Some(last) = trace.last_mut() {
                    last.push_str(&format!(" -> {got:?}"));
                }
                refused_since_deleted += usize::from(was_deleted);
            }
            Step::Expire { dt } => {
                h.advance(*dt);
                trace.push(format!("+{} expire", h.now - START));
                h.expire();
            }
            Step::Elsewhere { user: u, groups } => {
                trace.push(format!("{} is now in {groups} other groups", user(*u)));
                h.model.elsewhere.insert(user(*u), *groups);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn machine_agrees_with_the_model(
        setup in setup(),
        steps in proptest::collection::vec(step(), 0..=60),
    ) {
        run(&setup, &steps);
    }
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

fn u(name: &str) -> UserName {
    name.parse().unwrap()
}

fn join() -> Op {
    Op::Join { reason: None }
}

#[test]
fn transfer_leaves_the_former_owner_an_admin_who_may_leave() {
    let mut h = Harness::simple("ann", JoinRule::Open);
    h.apply(u("bob"), join()).unwrap();
    h.apply(u("cat"), join()).unwrap();
    assert_eq!(h.apply(u("ann"), Op::Leave), Err(Denial::OwnerMustTransfer));
    assert_eq!(h.apply(u("ann"), Op::Offer { user: u("ann") }), Err(Denial::NoChange));
    h.apply(u("ann"), Op::Offer { user: u("bob") }).unwrap();
    assert_eq!(h.apply(u("ann"), Op::Offer { user: u("bob") }), Err(Denial::NoChange));
    // A new offer replaces the old one.
    h.apply(u("ann"), Op::Offer { user: u("cat") }).unwrap();
    assert_eq!(h.apply(u("bob"), Op::TakeOwnership), Err(Denial::NoSuchOffer));
    h.apply(u("ann"), Op::Offer { user: u("bob") }).unwrap();
    let events = h.apply(u("bob"), Op::TakeOwnership).unwrap();
    assert_eq!(
        events,
        vec![GroupEvent::OwnershipTransferred { user: u("bob"), previous: u("ann") }]
    );
    assert_eq!(h.group.owner(), u("bob"));
    assert_eq!(h.group.role_of(&u("ann")), Some(Role::Admin));
    assert_eq!(h.group.offer(), None);
    h.apply(u("ann"), Op::Leave).unwrap();
    assert_eq!(h.group.role_of(&u("ann")), None);
}

#[test]
fn leaving_or_being_kicked_cancels_an_offer() {
    let mut h = Harness::simple("ann", JoinRule::Open);
    h.apply(u("bob"), join()).unwrap();
    h.apply(u("ann"), Op::Offer { user: u("bob") }).unwrap();
    h.apply(u("bob"), Op::Leave).unwrap();
    assert_eq!(h.group.offer(), None);
    h.apply(u("bob"), join()).unwrap();
    assert_eq!(h.apply(u("bob"), Op::TakeOwnership), Err(Denial::NoSuchOffer));
    h.apply(u("ann"), Op::Offer { user: u("bob") }).unwrap();
    h.apply(u("ann"), Op::Kick { user: u("bob"), ban: false }).unwrap();
    assert_eq!(h.group.offer(), None);
    assert_eq!(h.apply(u("ann"), Op::CancelOffer), Err(Denial::NoSuchOffer));
}

#[test]
fn kicked_user_may_ask_again_but_banned_may_not() {
    let mut h = Harness::simple("ann", JoinRule::Approval);
    h.apply(u("bob"), join()).unwrap();
    h.apply(u("ann"), Op::Approve { user: u("bob") }).unwrap();
    h.apply(u("cat"), join()).unwrap();
    h.apply(u("ann"), Op::Approve { user: u("cat") }).unwrap();
    h.apply(u("ann"), Op::Kick { user: u("bob"), ban: false }).unwrap();
    h.apply(u("bob"), join()).unwrap();
    assert_eq!(h.group.requests(h.now).map(|(u, _)| u).collect::<Vec<_>>(), vec![u("bob")]);
    let events = h.apply(u("ann"), Op::Kick { user: u("cat"), ban: true }).unwrap();
    assert_eq!(events, vec![GroupEvent::Banned { user: u("cat"), by: u("ann") }]);
    assert_eq!(h.apply(u("cat"), join()), Err(Denial::Banned));
    assert_eq!(h.apply(u("ann"), Op::Invite { user: u("cat") }), Err(Denial::Banned));
    h.apply(u("ann"), Op::SetRule { rule: JoinRule::Open }).unwrap();
    assert_eq!(h.apply(u("cat"), join()), Err(Denial::Banned));
    h.apply(u("ann"), Op::Unban { user: u("cat") }).unwrap();
    assert_eq!(h.apply(u("ann"), Op::Unban { user: u("cat") }), Err(Denial::NotBanned));
    h.apply(u("cat"), join()).unwrap();
    assert_eq!(h.group.role_of(&u("cat")), Some(Role::Member));
}

#[test]
fn nobody_acts_on_equal_or_higher_rank() {
    let mut h = Harness::simple("ann", JoinRule::Open);
    for name in ["bob", "cat", "dan"] {
        h.apply(u(name), join()).unwrap();
    }
    h.apply(u("ann"), Op::Promote { user: u("bob") }).unwrap();
    h.apply(u("ann"), Op::Promote { user: u("cat") }).unwrap();
    assert_eq!(
        h.apply(u("bob"), Op::Kick { user: u("cat"), ban: false }),
        Err(Denial::NotPermitted)
    );
    assert_eq!(
        h.apply(u("bob"), Op::Kick { user: u("ann"), ban: false }),
        Err(Denial::NotPermitted)
    );
    assert_eq!(
        h.apply(u("bob"), Op::Kick { user: u("bob"), ban: false }),
        Err(Denial::NotPermitted)
    );
    assert_eq!(
        h.apply(u("ann"), Op::Kick { user: u("ann"), ban: true }),
        Err(Denial::NotPermitted)
    );
    assert_eq!(
        h.apply(u("dan"), Op::Kick { user: u("dan"), ban: false }),
        Err(Denial::NotPermitted)
    );
    assert_eq!(h.apply(u("bob"), Op::Promote { user: u("dan") }), Err(Denial::NotPermitted));
    assert_eq!(h.apply(u("ann"), Op::Demote { user: u("ann") }), Err(Denial::NotPermitted));
    h.apply(u("bob"), Op::Kick { user: u("dan"), ban: false }).unwrap();
    h.apply(u("ann"), Op::Kick { user: u("cat"), ban: false }).unwrap();
}

#[test]
fn invite_admits_a_requester_at_once() {
    let mut h = Harness::simple("ann", JoinRule::Approval);
    h.apply(u("bob"), join()).unwrap();
    let events = h.apply(u("ann"), Op::Invite { user: u("bob") }).unwrap();
    assert_eq!(
        events,
        vec![
            GroupEvent::RequestApproved { user: u("bob"), by: u("ann") },
            GroupEvent::Joined { user: u("bob"), by: u("ann") },
        ]
    );
    assert_eq!(h.group.invites(h.now).count(), 0);
    assert_eq!(h.group.requests(h.now).count(), 0);
}

#[test]
fn join_with_an_invite_accepts_it_whatever_the_rule() {
    let mut h = Harness::simple("ann", JoinRule::Invite);
    assert_eq!(h.apply(u("bob"), join()), Err(Denial::InviteOnly));
    h.apply(u("ann"), Op::Invite { user: u("bob") }).unwrap();
    let events = h.apply(u("bob"), join()).unwrap();
    assert_eq!(events, vec![GroupEvent::Joined { user: u("bob"), by: u("bob") }]);
    // Under approval too: an invite-holder's JOIN is no request.
    h.apply(u("ann"), Op::SetRule { rule: JoinRule::Approval }).unwrap();
    h.apply(u("ann"), Op::Invite { user: u("cat") }).unwrap();
    let events = h.apply(u("cat"), join()).unwrap();
    assert_eq!(events, vec![GroupEvent::Joined { user: u("cat"), by: u("cat") }]);
}

#[test]
fn expired_request_cannot_be_approved() {
    let mut h = Harness::simple("ann", JoinRule::Approval);
    h.apply(u("bob"), join()).unwrap();
    h.advance(EXPIRY - 1);
    assert_eq!(h.group.requests(h.now).count(), 1);
    h.advance(1);
    // Exactly `expiry` ms later the request is gone.
    assert_eq!(h.group.requests(h.now).count(), 0);
    assert_eq!(h.apply(u("ann"), Op::Approve { user: u("bob") }), Err(Denial::NoSuchRequest));
    assert_eq!(h.apply(u("ann"), Op::Reject { user: u("bob") }), Err(Denial::NoSuchRequest));
    assert_eq!(h.apply(u("bob"), Op::Leave), Err(Denial::NotMember));
    // ... and the user may ask again.
    h.apply(u("bob"), join()).unwrap();
    h.expire();
    h.apply(u("ann"), Op::Approve { user: u("bob") }).unwrap();
}

#[test]
fn expired_invite_cannot_be_accepted() {
    let mut h = Harness::simple("ann", JoinRule::Invite);
    h.apply(u("ann"), Op::Invite { user: u("bob") }).unwrap();
    h.advance(EXPIRY);
    assert_eq!(h.apply(u("bob"), Op::Accept), Err(Denial::NoSuchInvite));
    assert_eq!(h.apply(u("bob"), join()), Err(Denial::InviteOnly));
    h.expire();
    h.apply(u("ann"), Op::Invite { user: u("bob") }).unwrap();
    h.apply(u("bob"), Op::Accept).unwrap();
}

#[test]
fn leave_withdraws_a_request() {
    let mut h = Harness::simple("ann", JoinRule::Approval);
    h.apply(u("bob"), Op::Join { reason: Some(Text::new("hi").unwrap()) }).unwrap();
    assert_eq!(h.apply(u("bob"), join()), Err(Denial::AlreadyPending));
    let events = h.apply(u("bob"), Op::Leave).unwrap();
    assert_eq!(events, vec![GroupEvent::RequestWithdrawn { user: u("bob") }]);
    assert_eq!(h.apply(u("ann"), Op::Approve { user: u("bob") }), Err(Denial::NoSuchRequest));
    assert_eq!(h.apply(u("bob"), Op::Leave), Err(Denial::NotMember));
}

#[test]
fn limits_are_enforced() {
    let limits = GroupRules { members: 2, pending: 1, invites: 1, groups: 2, expiry: EXPIRY };
    let elsewhere = BTreeMap::from([(u("dan"), 1), (u("eve"), 2)]);
    let mut h = Harness::new(u("ann"), JoinRule::Approval, limits, elsewhere, START, GroupId(1));
    // eve is at the limit elsewhere; dan's request here counts.
    assert_eq!(h.apply(u("eve"), join()), Err(Denial::TooManyGroups));
    h.apply(u("dan"), join()).unwrap();
    assert_eq!(h.apply(u("bob"), join()), Err(Denial::TooManyPending));
    // Approving dan needs no further room in his groups: the request already counted.
    h.apply(u("ann"), Op::Approve { user: u("dan") }).unwrap();
    h.apply(u("ann"), Op::Kick { user: u("dan"), ban: false }).unwrap();
    // An invite does not count, so accepting one checks the limit.
    h.apply(u("ann"), Op::Invite { user: u("eve") }).unwrap();
    assert_eq!(h.apply(u("ann"), Op::Invite { user: u("bob") }), Err(Denial::TooManyInvites));
    assert_eq!(h.apply(u("eve"), Op::Accept), Err(Denial::TooManyGroups));
    h.model.elsewhere.insert(u("eve"), 1);
    h.apply(u("eve"), Op::Accept).unwrap();
    // Two members: full.
    h.apply(u("ann"), Op::SetRule { rule: JoinRule::Open }).unwrap();
    assert_eq!(h.apply(u("bob"), join()), Err(Denial::GroupFull));
}

#[test]
fn last_member_leaving_deletes_the_group() {
    let mut h = Harness::simple("ann", JoinRule::Open);
    h.apply(u("bob"), join()).unwrap();
    h.apply(u("bob"), Op::Leave).unwrap();
    h.apply(u("ann"), Op::Leave).unwrap();
    assert!(h.group.is_deleted());
    for op in [join(), Op::Leave, Op::Delete, Op::Accept, Op::Approve { user: u("bob") }] {
        assert_eq!(h.apply(u("ann"), op.clone()), Err(Denial::NoSuchGroup));
        assert_eq!(h.apply(u("bob"), op), Err(Denial::NoSuchGroup));
    }
}

#[test]
fn only_the_owner_deletes() {
    let mut h = Harness::simple("ann", JoinRule::Open);
    h.apply(u("bob"), join()).unwrap();
    h.apply(u("ann"), Op::Promote { user: u("bob") }).unwrap();
    assert_eq!(h.apply(u("bob"), Op::Delete), Err(Denial::NotPermitted));
    assert_eq!(h.apply(u("cat"), Op::Delete), Err(Denial::NotMember));
    let events = h.apply(u("ann"), Op::Delete).unwrap();
    assert_eq!(events, vec![GroupEvent::Deleted { by: u("ann") }]);
    assert!(h.group.is_deleted());
    assert_eq!(h.apply(u("bob"), Op::Leave), Err(Denial::NoSuchGroup));
}

#[test]
fn create_checks_the_creators_groups() {
    let limits = GroupRules { members: 5, pending: 2, invites: 2, groups: 2, expiry: EXPIRY };
    let at_limit = |_: &UserName| 2;
    let ctx = Ctx { now: START, rules: &limits, groups_of: &at_limit };
    let made = Group::create(GroupId(1), group_name(), u("ann"), JoinRule::Open, &ctx);
    assert_eq!(made.err(), Some(Denial::TooManyGroups));
}

/// Where several rules are broken at once, Appendix D's branches decide: a live
/// request is checked before the rule's limits, the group limit applies only to an
/// admission, and KICK checks the target's membership before anyone's rank.
#[test]
fn overlapping_denials_follow_the_transition_table() {
    let limits = GroupRules { members: 2, pending: 5, invites: 1, groups: 2, expiry: EXPIRY };
    let elsewhere = BTreeMap::from([(u("bob"), 1), (u("dan"), 2)]);
    let mut h = Harness::new(u("ann"), JoinRule::Approval, limits, elsewhere, START, GroupId(1));
    h.apply(u("bob"), join()).unwrap();
    h.apply(u("ann"), Op::SetRule { rule: JoinRule::Open }).unwrap();
    h.apply(u("cat"), join()).unwrap();
    // Full, and bob at his groups limit with his request here: still ALREADY_PENDING
    // (possible_denials lists GROUP_FULL and TOO_MANY_GROUPS first, but they belong to
    // the branches after the request check).
    assert_eq!(h.model.groups_of(&u("bob")), 2);
    assert_eq!(h.apply(u("bob"), join()), Err(Denial::AlreadyPending));
    // Full: a request is still recorded (it admits nobody), an invite too.
    h.apply(u("ann"), Op::SetRule { rule: JoinRule::Approval }).unwrap();
    h.apply(u("eve"), join()).unwrap();
    h.apply(u("ann"), Op::Invite { user: u("dan") }).unwrap();
    assert_eq!(h.apply(u("ann"), Op::Invite { user: u("bob") }), Err(Denial::GroupFull));
    // Holding an invite in a full group, at the groups limit: GROUP_FULL first.
    assert_eq!(h.apply(u("dan"), join()), Err(Denial::GroupFull));
    assert_eq!(h.apply(u("dan"), Op::Accept), Err(Denial::GroupFull));
    // Invite-only, full, at the groups limit, no invite: INVITE_ONLY.
    h.apply(u("ann"), Op::SetRule { rule: JoinRule::Invite }).unwrap();
    h.model.elsewhere.insert(u("eve"), 2);
    h.apply(u("eve"), Op::Leave).unwrap();
    assert_eq!(h.apply(u("eve"), join()), Err(Denial::InviteOnly));
    // A plain member kicking a non-member: NOT_MEMBER (u) comes before the rank check.
    assert_eq!(h.apply(u("cat"), Op::Kick { user: u("eve"), ban: false }), Err(Denial::NotMember));
    assert_eq!(
        h.apply(u("cat"), Op::Kick { user: u("ann"), ban: false }),
        Err(Denial::NotPermitted)
    );
    // The owner promoting themselves: NO_CHANGE (not a plain member), not NOT_PERMITTED.
    assert_eq!(h.apply(u("ann"), Op::Promote { user: u("ann") }), Err(Denial::NoChange));
}
