//! The per-command rules of the product that are not the group machine's or the
//! session's: who may read a conversation, what SEND and FILE-OFFER check and in which
//! order, JOIN's reason limit and INVITE's target, who may list REQUESTS and BANS,
//! where READ moves a read marker and what counts as unread, and the order of every
//! listing (SPEC.md sections 5, 6 and Appendix D).
//!
//! Each rule is a pure function of the facts a server has gathered: a server looks
//! up what a rule needs, asks the rule, and carries out its answer. [`Rules`] holds
//! the limits the rules enforce, configured once.

use std::cmp::Ordering;

use crate::delivery::{KeyCheck, RateBudget};
use crate::error::ErrorCode;
use crate::event::Failure;
use crate::event::StoredEvent;
use crate::limits::Limits;
use crate::types::{FileId, Membership, Millis, Role, Seq, Text, UserName};

/// How many events after a read marker a server looks at to count the unread ones
/// (SPEC.md 6.8): `CONVERSATIONS read` then costs at most this many stored events per
/// conversation, however long the user was away. The count is exact when the
/// conversation's newest event is at most this far past the marker, and a lower
/// bound ("this many or more") otherwise.
pub const UNREAD_WINDOW: u64 = 100;

/// The limits the rules of this module enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    message: u64,
    reason: u64,
    file: u64,
    quota: u64,
    uploads: u64,
    partial: u64,
    rate: u64,
    burst: u64,
}

/// What a reader is to a conversation, as a server found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// The group named does not exist.
    NoGroup,
    /// A group that exists; the reader's role in it, if a member.
    Group(Option<Role>),
    /// A private conversation with a peer, and what the peer is.
    Direct {
        /// The peer's account.
        peer: Peer,
    },
    /// A private conversation known by its two users (a shared file's); whether the
    /// reader is one of them.
    Between {
        /// The reader is one of the two.
        party: bool,
    },
}

/// The other user of a private conversation, as a server found them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// An account.
    Exists,
    /// An account that was deleted (its name stays taken, SPEC.md 4.8).
    Deleted,
    /// No account has this name.
    Unknown,
}

/// Who may read a conversation (SPEC.md 5.1): a group's members, or the two users
/// of a private conversation — whose history stays readable when the other deleted
/// their account. The one rule for HISTORY, FILES and FILE-GET, and the first of
/// [`may_write`]; each command says which code a refusal becomes.
pub fn may_read(reader: Reader) -> Result<(), ErrorCode> {
    match reader {
        Reader::NoGroup => Err(ErrorCode::NoSuchGroup),
        Reader::Group(None) => Err(ErrorCode::NotMember),
        Reader::Group(Some(_)) => Ok(()),
        Reader::Direct { peer: Peer::Unknown } => Err(ErrorCode::NoSuchUser),
        Reader::Direct { peer: Peer::Exists | Peer::Deleted } => Ok(()),
        Reader::Between { party: false } => Err(ErrorCode::NoSuchFile),
        Reader::Between { party: true } => Ok(()),
    }
}

/// Who may add to a conversation (SEND, FILE-OFFER, FILE-COMMIT): its readers, but
/// nobody writes to a deleted account, which is `NO_SUCH_USER` as if it had never
/// been.
pub fn may_write(reader: Reader) -> Result<(), ErrorCode> {
    match reader {
        Reader::Direct { peer: Peer::Deleted } => Err(ErrorCode::NoSuchUser),
        other => may_read(other),
    }
}

/// Who owns a group after its owner deletes their account (SPEC.md 4.8): the first
/// admin by name, else the first member by name; `None` when nobody else is left
/// (the group goes with its last member).
pub fn successor(
    members: impl IntoIterator<Item = (UserName, Role)>,
    leaving: UserName,
) -> Option<UserName> {
    members
        .into_iter()
        .filter(|(user, role)| *user != leaving && *role != Role::Owner)
        .min_by_key(|(user, role)| (*role != Role::Admin, *user))
        .map(|(user, _)| user)
}

/// What a SEND comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Store it with the conversation's next sequence number.
    Store,
    /// The same send again (SPEC.md 5.2): answer with the original number and time,
    /// store and deliver nothing.
    Retry {
        /// The original sequence number.
        seq: Seq,
        /// The original time.
        time: Millis,
    },
}

/// What a FILE-OFFER found out about its uploader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferFacts {
    /// Whether the uploader may read the conversation ([`may_read`]).
    pub reader: Result<(), ErrorCode>,
    /// The declared size.
    pub size: u64,
    /// The uploader's unfinished upload of the same file to the same place, if any.
    pub same_upload: Option<FileId>,
    /// Whether the uploader holds this content already (uploaded it before).
    pub holds: bool,
    /// Bytes the uploader holds or has offered to upload.
    pub used: u64,
    /// The uploader's unfinished uploads.
    pub open_uploads: u64,
}

/// What a FILE-OFFER comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferOutcome {
    /// The same upload offered again (after a reconnect): answer with its id.
    Resume(FileId),
    /// The uploader sent this content before: share it at once (SPEC.md 11.6).
    Share,
    /// A new upload.
    Upload,
}

impl Rules {
    /// The rules of a server with these limits.
    pub fn new(limits: &Limits) -> Self {
        Rules {
            message: limits.message,
            reason: limits.reason,
            file: limits.file,
            quota: limits.quota,
            uploads: limits.uploads,
            partial: limits.partial,
            rate: limits.rate,
            burst: limits.burst,
        }
    }

    /// A SEND (SPEC.md 5.2 and 6.6), its checks in this order: the idempotency key
    /// first (a retry gets its original answer whatever changed since), then who may
    /// read the conversation, the text's length, and last the sender's budget, from
    /// which a send that will be stored takes one.
    pub fn send(
        &self,
        key: KeyCheck,
        reader: Result<(), ErrorCode>,
        text_len: usize,
        budget: &mut RateBudget,
        now: Millis,
    ) -> Result<SendOutcome, Failure> {
        match key {
            KeyCheck::Retry { seq, time } => return Ok(SendOutcome::Retry { seq, time }),
            KeyCheck::Conflict => return Err(Failure::new(ErrorCode::KeyConflict)),
            KeyCheck::New => {}
        }
        reader.map_err(Failure::new)?;
        if text_len as u64 > self.message {
            return Err(Failure::new(ErrorCode::TextTooLong));
        }
        self.take_send(budget, now)?;
        Ok(SendOutcome::Store)
    }

    /// A FILE-OFFER (SPEC.md 6.7), its checks in this order: who may read the
    /// conversation, the file size limit, the same upload offered again, then — unless
    /// the uploader holds the content already — the quota and the number of unfinished
    /// uploads, and last the sender's budget: an offer is a send (`rate`, `burst`),
    /// except when it resumes an upload already counted.
    pub fn file_offer(
        &self,
        facts: OfferFacts,
        budget: &mut RateBudget,
        now: Millis,
    ) -> Result<OfferOutcome, Failure> {
        facts.reader.map_err(Failure::new)?;
        if facts.size > self.file {
            return Err(Failure::new(ErrorCode::FileTooLarge));
        }
        if let Some(file) = facts.same_upload {
            return Ok(OfferOutcome::Resume(file));
        }
        if !facts.holds {
            if facts.used.saturating_add(facts.size) > self.quota {
                return Err(Failure::new(ErrorCode::QuotaExceeded));
            }
            if facts.open_uploads >= self.uploads {
                // Worth retrying once an upload finishes or expires.
                let retry = self.partial.saturating_mul(1000).min(60_000);
                return Err(Failure {
                    retry_after: Some(retry),
                    ..Failure::new(ErrorCode::TooManyUploads)
                });
            }
        }
        self.take_send(budget, now)?;
        Ok(if facts.holds { OfferOutcome::Share } else { OfferOutcome::Upload })
    }

    /// JOIN's own check before the group machine's: a reason no longer than `reason`.
    pub fn join_reason(&self, reason: Option<&Text>) -> Result<(), ErrorCode> {
        match reason {
            Some(text) if text.len() as u64 > self.reason => Err(ErrorCode::TextTooLong),
            _ => Ok(()),
        }
    }

    /// A READ (SPEC.md 6.8), its checks in this order: who may read the conversation
    /// ([`may_read`], the errors of HISTORY), then — only if the marker moves — the
    /// user's send budget, from which a moving READ takes one (each is a write to the
    /// store, and must not come faster than sends). A READ that leaves the marker
    /// where it is costs nothing and writes nothing.
    pub fn read(
        &self,
        reader: Result<(), ErrorCode>,
        marker: Seq,
        asked: Seq,
        latest: Seq,
        budget: &mut RateBudget,
        now: Millis,
    ) -> Result<ReadOutcome, Failure> {
        reader.map_err(Failure::new)?;
        let to = marker_after_read(marker, asked, latest);
        if to == marker {
            return Ok(ReadOutcome::Stays(marker));
        }
        self.take_send(budget, now)?;
        Ok(ReadOutcome::Moves(to))
    }

    /// Takes one send from a user's budget at `now`, or says when to retry.
    fn take_send(&self, budget: &mut RateBudget, now: Millis) -> Result<(), Failure> {
        budget.try_take(now, self.rate, self.burst).map_err(|wait| Failure {
            retry_after: Some(wait),
            ..Failure::new(ErrorCode::RateLimited)
        })
    }
}

/// What a READ comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The marker moves to this sequence number: store it and tell the user's other
    /// sessions.
    Moves(Seq),
    /// The marker stays at this sequence number: nothing to store or tell.
    Stays(Seq),
}

impl ReadOutcome {
    /// Where the marker is after the READ.
    pub fn marker(self) -> Seq {
        match self {
            ReadOutcome::Moves(seq) | ReadOutcome::Stays(seq) => seq,
        }
    }
}

/// Where a read marker is after `READ conv asked` (SPEC.md 6.8): it only moves
/// forward (a lower number leaves it where it is), and never past the newest event
/// `latest` (a higher number is clamped to it, so that events yet to come are never
/// marked read).
pub fn marker_after_read(marker: Seq, asked: Seq, latest: Seq) -> Seq {
    marker.max(asked.min(latest))
}

/// Whether a stored event counts as unread for `reader` once it is past their
/// marker (SPEC.md 6.8): a message or a shared file from another user. The reader's
/// own messages and files, and membership and group changes, do not.
pub fn counts_as_unread(event: &StoredEvent, reader: &UserName) -> bool {
    match event {
        StoredEvent::Message { from, .. } | StoredEvent::File { from, .. } => from != reader,
        _ => false,
    }
}

/// The sequence numbers whose events are counted as unread for a marker at `read` in
/// a conversation whose newest event is `latest`: `(after, upto)`, the events
/// numbered `after + 1` to `upto`, at most [`UNREAD_WINDOW`] of them; `None` when no
/// event follows the marker (nothing is unread and nothing need be read).
pub fn unread_range(read: Seq, latest: Seq) -> Option<(Seq, Seq)> {
    (latest > read).then(|| (read, latest.min(read.saturating_add(UNREAD_WINDOW))))
}

/// INVITE's own check after the group's existence (the group machine cannot know
/// who has an account): the invitee must be a user.
pub fn invite_target(exists: bool) -> Result<(), ErrorCode> {
    if exists { Ok(()) } else { Err(ErrorCode::NoSuchUser) }
}

/// Who may list a group's pending join requests (REQUESTS, SPEC.md 6.2): its owner
/// and admins; a member is refused, and so is anyone else.
pub fn may_list_requests(role: Option<Role>) -> Result<(), ErrorCode> {
    match role {
        None => Err(ErrorCode::NotMember),
        Some(Role::Member) => Err(ErrorCode::NotPermitted),
        Some(Role::Owner | Role::Admin) => Ok(()),
    }
}

/// Who may list a group's bans (BANS, SPEC.md 6.9): who may list its requests
/// ([`may_list_requests`]), its owner and admins, who are the ones who ban and unban.
pub fn may_list_bans(role: Option<Role>) -> Result<(), ErrorCode> {
    may_list_requests(role)
}

/// The order of BANS: by the banned user's name.
pub fn bans_order(a: &UserName, b: &UserName) -> Ordering {
    a.cmp(b)
}

/// The order of GROUPS: owned, administered and joined groups, then invitations, then
/// requests; by name within each.
pub fn groups_order<N: Ord>(a: (Membership, N), b: (Membership, N)) -> Ordering {
    let rank = |m: Membership| Membership::ALL.iter().position(|x| *x == m);
    (rank(a.0), a.1).cmp(&(rank(b.0), b.1))
}

/// The order of MEMBERS: the owner, the admins, the members; by name within each.
pub fn members_order(a: &(UserName, Role), b: &(UserName, Role)) -> Ordering {
    let rank = |r: Role| match r {
        Role::Owner => 0,
        Role::Admin => 1,
        Role::Member => 2,
    };
    (rank(a.1), a.0).cmp(&(rank(b.1), b.0))
}

/// The order of REQUESTS: oldest first, by name among requests of the same moment.
pub fn requests_order(a: &(Millis, UserName), b: &(Millis, UserName)) -> Ordering {
    a.cmp(b)
}

/// The order of ONLINE: by name.
pub fn online_order(a: &UserName, b: &UserName) -> Ordering {
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::new(&Limits { message: 10, reason: 5, rate: 1, burst: 2, ..Limits::default() })
    }

    fn user(s: &str) -> UserName {
        s.parse().unwrap()
    }

    #[test]
    fn send_checks_key_then_reader_then_length_then_budget() {
        let r = rules();
        let mut budget = RateBudget::new(2, 0);
        let retry = KeyCheck::Retry { seq: 4, time: 9 };
        // A retry is answered even by a non-member with a long text and no budget left.
        let mut empty = RateBudget::new(0, 0);
        let code = |r: Result<SendOutcome, Failure>| r.map_err(|f| f.code);
        assert_eq!(
            code(r.send(retry, Err(ErrorCode::NotMember), 99, &mut empty, 0)),
            Ok(SendOutcome::Retry { seq: 4, time: 9 })
        );
        assert_eq!(
            code(r.send(KeyCheck::Conflict, Ok(()), 1, &mut budget, 0)),
            Err(ErrorCode::KeyConflict)
        );
        assert_eq!(
            code(r.send(KeyCheck::New, Err(ErrorCode::NotMember), 99, &mut empty, 0)),
            Err(ErrorCode::NotMember)
        );
        assert_eq!(
            code(r.send(KeyCheck::New, Ok(()), 11, &mut empty, 0)),
            Err(ErrorCode::TextTooLong)
        );
        assert_eq!(code(r.send(KeyCheck::New, Ok(()), 10, &mut budget, 0)), Ok(SendOutcome::Store));
        assert_eq!(code(r.send(KeyCheck::New, Ok(()), 10, &mut budget, 0)), Ok(SendOutcome::Store));
        let limited = r.send(KeyCheck::New, Ok(()), 10, &mut budget, 0).unwrap_err();
        assert_eq!((limited.code, limited.retry_after), (ErrorCode::RateLimited, Some(1000)));
        // A refused send takes nothing from the budget.
        let mut one = RateBudget::new(1, 0);
        let _ = r.send(KeyCheck::New, Ok(()), 11, &mut one, 0);
        assert_eq!(code(r.send(KeyCheck::New, Ok(()), 1, &mut one, 0)), Ok(SendOutcome::Store));
    }

    #[test]
    fn file_offers_check_reader_size_resume_quota_uploads_then_budget() {
        let limits = Limits {
            file: 100,
            quota: 150,
            uploads: 1,
            partial: 30,
            rate: 1,
            burst: 1,
            ..Limits::default()
        };
        let r = Rules::new(&limits);
        let facts = OfferFacts {
            reader: Ok(()),
            size: 100,
            same_upload: None,
            holds: false,
            used: 0,
            open_uploads: 0,
        };
        let offer = |f: OfferFacts, b: &mut RateBudget| r.file_offer(f, b, 0).map_err(|f| f.code);
        let mut budget = RateBudget::new(1, 0);
        let id: FileId = "f1".parse().unwrap();
        assert_eq!(
            offer(
                OfferFacts { reader: Err(ErrorCode::NotMember), size: 101, ..facts },
                &mut budget
            ),
            Err(ErrorCode::NotMember)
        );
        assert_eq!(
            offer(OfferFacts { size: 101, ..facts }, &mut budget),
            Err(ErrorCode::FileTooLarge)
        );
        let over_quota = OfferFacts { used: 51, open_uploads: 1, ..facts };
        assert_eq!(offer(over_quota, &mut budget), Err(ErrorCode::QuotaExceeded));
        let busy = OfferFacts { open_uploads: 1, ..facts };
        let f = r.file_offer(busy, &mut budget, 0).unwrap_err();
        assert_eq!((f.code, f.retry_after), (ErrorCode::TooManyUploads, Some(30_000)));
        // The same upload again resumes without a send; held content skips quota and
        // uploads but is a send.
        let resume = OfferFacts { same_upload: Some(id), open_uploads: 1, used: 999, ..facts };
        let mut empty = RateBudget::new(0, 0);
        assert_eq!(offer(resume, &mut empty), Ok(OfferOutcome::Resume(id)));
        let held = OfferFacts { holds: true, open_uploads: 1, used: 999, ..facts };
        assert_eq!(offer(held, &mut empty), Err(ErrorCode::RateLimited));
        assert_eq!(offer(held, &mut budget), Ok(OfferOutcome::Share));
        let mut budget = RateBudget::new(1, 0);
        assert_eq!(offer(facts, &mut budget), Ok(OfferOutcome::Upload));
        assert_eq!(offer(facts, &mut budget), Err(ErrorCode::RateLimited), "an offer is a send");
    }

    #[test]
    fn join_reasons_are_bounded_and_invitees_must_exist() {
        let r = rules();
        let text = |s: &str| Text::new(s).unwrap();
        assert_eq!(r.join_reason(None), Ok(()));
        assert_eq!(r.join_reason(Some(&text("12345"))), Ok(()));
        assert_eq!(r.join_reason(Some(&text("123456"))), Err(ErrorCode::TextTooLong));
        assert_eq!(invite_target(true), Ok(()));
        assert_eq!(invite_target(false), Err(ErrorCode::NoSuchUser));
    }

    #[test]
    fn only_owners_and_admins_list_requests() {
        assert_eq!(may_list_requests(Some(Role::Owner)), Ok(()));
        assert_eq!(may_list_requests(Some(Role::Admin)), Ok(()));
        assert_eq!(may_list_requests(Some(Role::Member)), Err(ErrorCode::NotPermitted));
        assert_eq!(may_list_requests(None), Err(ErrorCode::NotMember));
    }

    #[test]
    fn only_owners_and_admins_list_bans() {
        assert_eq!(may_list_bans(Some(Role::Owner)), Ok(()));
        assert_eq!(may_list_bans(Some(Role::Admin)), Ok(()));
        assert_eq!(may_list_bans(Some(Role::Member)), Err(ErrorCode::NotPermitted));
        assert_eq!(may_list_bans(None), Err(ErrorCode::NotMember));
    }

    #[test]
    fn read_markers_move_forward_only_and_never_past_the_newest() {
        assert_eq!(marker_after_read(5, 8, 10), 8, "forward");
        assert_eq!(marker_after_read(5, 3, 10), 5, "never back");
        assert_eq!(marker_after_read(5, 5, 10), 5);
        assert_eq!(marker_after_read(5, 99, 10), 10, "clamped to the newest");
        assert_eq!(marker_after_read(0, u64::MAX, 0), 0, "nothing to read yet");
    }

    #[test]
    fn a_read_checks_the_reader_then_spends_budget_only_when_the_marker_moves() {
        let r = rules();
        let code = |r: Result<ReadOutcome, Failure>| r.map_err(|f| f.code);
        let mut budget = RateBudget::new(1, 0);
        assert_eq!(
            code(r.read(Err(ErrorCode::NotMember), 0, 5, 9, &mut budget, 0)),
            Err(ErrorCode::NotMember)
        );
        assert_eq!(code(r.read(Ok(()), 0, 5, 9, &mut budget, 0)), Ok(ReadOutcome::Moves(5)));
        // The budget is spent: a READ that moves is refused, one that stays is not.
        assert_eq!(code(r.read(Ok(()), 5, 6, 9, &mut budget, 0)), Err(ErrorCode::RateLimited));
        assert_eq!(code(r.read(Ok(()), 5, 2, 9, &mut budget, 0)), Ok(ReadOutcome::Stays(5)));
        assert_eq!(code(r.read(Ok(()), 9, 20, 9, &mut budget, 0)), Ok(ReadOutcome::Stays(9)));
        assert_eq!(ReadOutcome::Moves(3).marker(), 3);
    }

    #[test]
    fn only_other_users_messages_and_files_are_unread() {
        let (alice, bob) = (user("alice"), user("bob"));
        let conv = crate::Conversation::Group("rust".parse().unwrap());
        let msg = |from| StoredEvent::Message {
            conv,
            seq: 1,
            time: 0,
            from,
            text: Text::new("hi").unwrap(),
        };
        let file = |from| StoredEvent::File {
            conv,
            seq: 2,
            time: 0,
            from,
            file: "f1".parse().unwrap(),
            size: 1,
            sha256: crate::Sha256::from_hex(&[b'0'; 64]).unwrap(),
            name: crate::FileName::new("a.txt").unwrap(),
        };
        let group = "rust".parse().unwrap();
        let joined = StoredEvent::Joined { group, seq: 3, time: 0, user: bob, by: alice };
        assert!(counts_as_unread(&msg(bob), &alice));
        assert!(counts_as_unread(&file(bob), &alice));
        assert!(!counts_as_unread(&msg(alice), &alice), "my own message");
        assert!(!counts_as_unread(&file(alice), &alice), "my own file");
        assert!(!counts_as_unread(&joined, &alice), "a membership change");
    }

    #[test]
    fn unread_is_counted_over_a_bounded_window_after_the_marker() {
        assert_eq!(unread_range(5, 5), None);
        assert_eq!(unread_range(7, 5), None);
        assert_eq!(unread_range(5, 9), Some((5, 9)));
        assert_eq!(unread_range(0, 1_000_000), Some((0, UNREAD_WINDOW)));
        assert_eq!(unread_range(10, 10 + UNREAD_WINDOW + 1), Some((10, 10 + UNREAD_WINDOW)));
        assert_eq!(unread_range(u64::MAX - 1, u64::MAX), Some((u64::MAX - 1, u64::MAX)));
    }

    #[test]
    fn readers_are_members_and_the_two_users() {
        assert_eq!(may_read(Reader::NoGroup), Err(ErrorCode::NoSuchGroup));
        assert_eq!(may_read(Reader::Group(None)), Err(ErrorCode::NotMember));
        assert_eq!(may_read(Reader::Group(Some(Role::Member))), Ok(()));
        assert_eq!(may_read(Reader::Direct { peer: Peer::Unknown }), Err(ErrorCode::NoSuchUser));
        assert_eq!(may_read(Reader::Direct { peer: Peer::Exists }), Ok(()));
        assert_eq!(may_read(Reader::Direct { peer: Peer::Deleted }), Ok(()), "history stays");
        assert_eq!(may_read(Reader::Between { party: false }), Err(ErrorCode::NoSuchFile));
        assert_eq!(may_read(Reader::Between { party: true }), Ok(()));
    }

    #[test]
    fn nobody_writes_to_a_deleted_account() {
        assert_eq!(may_write(Reader::Direct { peer: Peer::Deleted }), Err(ErrorCode::NoSuchUser));
        assert_eq!(may_write(Reader::Direct { peer: Peer::Exists }), Ok(()));
        assert_eq!(may_write(Reader::Direct { peer: Peer::Unknown }), Err(ErrorCode::NoSuchUser));
        assert_eq!(may_write(Reader::Group(None)), Err(ErrorCode::NotMember));
        assert_eq!(may_write(Reader::Group(Some(Role::Member))), Ok(()));
    }

    #[test]
    fn a_deleted_owners_group_goes_to_the_first_admin_else_the_first_member() {
        let (a, b, c, o) = (user("a"), user("b"), user("c"), user("o"));
        let all = [(o, Role::Owner), (a, Role::Member), (c, Role::Admin), (b, Role::Admin)];
        assert_eq!(successor(all, o), Some(b));
        let plain = [(o, Role::Owner), (c, Role::Member), (a, Role::Member)];
        assert_eq!(successor(plain, o), Some(a));
        assert_eq!(successor([(o, Role::Owner)], o), None);
    }

    #[test]
    fn listings_have_their_orders() {
        let mut groups = [
            (Membership::Requested, "a"),
            (Membership::Member, "b"),
            (Membership::Invited, "c"),
            (Membership::Owner, "z"),
            (Membership::Member, "a"),
        ];
        groups.sort_by(|a, b| groups_order(*a, *b));
        assert_eq!(
            groups,
            [
                (Membership::Owner, "z"),
                (Membership::Member, "a"),
                (Membership::Member, "b"),
                (Membership::Invited, "c"),
                (Membership::Requested, "a"),
            ]
        );
        let mut members = [
            (user("b"), Role::Member),
            (user("c"), Role::Admin),
            (user("z"), Role::Owner),
            (user("a"), Role::Member),
        ];
        members.sort_by(members_order);
        let names: Vec<_> = members.iter().map(|(u, _)| u.as_str().to_owned()).collect();
        assert_eq!(names, ["z", "c", "a", "b"]);
        let mut requests = [(5, user("a")), (3, user("b")), (3, user("a"))];
        requests.sort_by(requests_order);
        assert_eq!(requests, [(3, user("a")), (3, user("b")), (5, user("a"))]);
        let mut online = [user("b"), user("a")];
        online.sort_by(online_order);
        assert_eq!(online, [user("a"), user("b")]);
    }
}
