//! How a group's log entries are stored: one short line of space-separated tokens
//! per [`GroupEvent`]; a join request's reason, the only free-form field, comes last
//! and runs to the end of the entry.
//!
//! ```text
//! created alice approval        joined bob alice          left bob
//! kicked bob alice              banned bob alice          unbanned bob alice
//! role bob admin alice          offered bob alice         cancelled alice
//! owner bob alice               rule open alice           requested bob 1764 [REASON]
//! withdrawn bob                 approved bob alice        rejected bob alice
//! invited bob alice 1764        declined bob              expired 1764
//! deleted alice
//! ```

use baatkaro_proto::group::GroupEvent;
use baatkaro_proto::{JoinRule, Role, Text, UserName};
use bytes::Bytes;

use super::StoreError;

/// The stored form of an event.
pub(super) fn encode(event: &GroupEvent) -> Vec<u8> {
    let line = match event {
        GroupEvent::Created { owner, rule } => format!("created {owner} {rule}"),
        GroupEvent::Joined { user, by } => format!("joined {user} {by}"),
        GroupEvent::Left { user } => format!("left {user}"),
        GroupEvent::Kicked { user, by } => format!("kicked {user} {by}"),
        GroupEvent::Banned { user, by } => format!("banned {user} {by}"),
        GroupEvent::Unbanned { user, by } => format!("unbanned {user} {by}"),
        GroupEvent::RoleChanged { user, role, by } => format!("role {user} {role} {by}"),
        GroupEvent::OwnershipOffered { user, by } => format!("offered {user} {by}"),
        GroupEvent::OfferCancelled { by } => format!("cancelled {by}"),
        GroupEvent::OwnershipTransferred { user, previous } => format!("owner {user} {previous}"),
        GroupEvent::RuleChanged { rule, by } => format!("rule {rule} {by}"),
        GroupEvent::JoinRequested { user, at, reason } => {
            let mut line = format!("requested {user} {at}").into_bytes();
            if let Some(reason) = reason {
                line.push(b' ');
                line.extend_from_slice(reason.as_bytes());
            }
            return line;
        }
        GroupEvent::RequestWithdrawn { user } => format!("withdrawn {user}"),
        GroupEvent::RequestApproved { user, by } => format!("approved {user} {by}"),
        GroupEvent::RequestRejected { user, by } => format!("rejected {user} {by}"),
        GroupEvent::Invited { user, by, at } => format!("invited {user} {by} {at}"),
        GroupEvent::InviteDeclined { user } => format!("declined {user}"),
        GroupEvent::Expired { now } => format!("expired {now}"),
        GroupEvent::Deleted { by } => format!("deleted {by}"),
    };
    line.into_bytes()
}

/// Reads a stored event back.
pub(super) fn decode(bytes: &[u8]) -> Result<GroupEvent, StoreError> {
    // Named, never quoted: the bytes may be those of a damaged file.
    let corrupt = || StoreError::Corrupt("a stored group log entry does not decode".into());
    // A reason is the only field that may hold spaces, and it comes last.
    if let Some(rest) = bytes.strip_prefix(b"requested ") {
        let mut parts = rest.splitn(3, |&b| b == b' ');
        let (user, at) = (parts.next().ok_or_else(corrupt)?, parts.next().ok_or_else(corrupt)?);
        let reason = parts
            .next()
            .map(|r| Text::from_bytes(Bytes::copy_from_slice(r)))
            .transpose()
            .map_err(|_| corrupt())?;
        let user = UserName::from_bytes(user).map_err(|_| corrupt())?;
        let at = std::str::from_utf8(at).ok().and_then(|s| s.parse().ok()).ok_or_else(corrupt)?;
        return Ok(GroupEvent::JoinRequested { user, at, reason });
    }
    let head = std::str::from_utf8(bytes).map_err(|_| corrupt())?;
    let f: Vec<&str> = head.split(' ').collect();
    let user = |i: usize| f.get(i).and_then(|s| s.parse::<UserName>().ok()).ok_or_else(corrupt);
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).ok_or_else(corrupt);
    let rule = |i: usize| f.get(i).and_then(|s| s.parse::<JoinRule>().ok()).ok_or_else(corrupt);
    let arity = |n: usize| if f.len() == n { Ok(()) } else { Err(corrupt()) };
    let event = match f.first().copied() {
        Some("created") => GroupEvent::Created { owner: user(1)?, rule: rule(2)? },
        Some("joined") => GroupEvent::Joined { user: user(1)?, by: user(2)? },
        Some("left") => GroupEvent::Left { user: user(1)? },
        Some("kicked") => GroupEvent::Kicked { user: user(1)?, by: user(2)? },
        Some("banned") => GroupEvent::Banned { user: user(1)?, by: user(2)? },
        Some("unbanned") => GroupEvent::Unbanned { user: user(1)?, by: user(2)? },
        Some("role") => {
            let role = f.get(2).and_then(|s| s.parse::<Role>().ok()).ok_or_else(corrupt)?;
            GroupEvent::RoleChanged { user: user(1)?, role, by: user(3)? }
        }
        Some("offered") => GroupEvent::OwnershipOffered { user: user(1)?, by: user(2)? },
        Some("cancelled") => GroupEvent::OfferCancelled { by: user(1)? },
        Some("owner") => GroupEvent::OwnershipTransferred { user: user(1)?, previous: user(2)? },
        Some("rule") => GroupEvent::RuleChanged { rule: rule(1)?, by: user(2)? },
        Some("withdrawn") => GroupEvent::RequestWithdrawn { user: user(1)? },
        Some("approved") => GroupEvent::RequestApproved { user: user(1)?, by: user(2)? },
        Some("rejected") => GroupEvent::RequestRejected { user: user(1)?, by: user(2)? },
        Some("invited") => GroupEvent::Invited { user: user(1)?, by: user(2)?, at: num(3)? },
        Some("declined") => GroupEvent::InviteDeclined { user: user(1)? },
        Some("expired") => GroupEvent::Expired { now: num(1)? },
        Some("deleted") => GroupEvent::Deleted { by: user(1)? },
        _ => return Err(corrupt()),
    };
    // Every field was read by position; a longer line is not one this server wrote.
    arity(match event {
        GroupEvent::Left { .. }
        | GroupEvent::OfferCancelled { .. }
        | GroupEvent::RequestWithdrawn { .. }
        | GroupEvent::InviteDeclined { .. }
        | GroupEvent::Expired { .. }
        | GroupEvent::Deleted { .. } => 2,
        GroupEvent::RoleChanged { .. } | GroupEvent::Invited { .. } => 4,
        _ => 3,
    })?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserName {
        s.parse().unwrap()
    }

    #[test]
    fn every_event_round_trips() {
        let (a, b) = (u("alice"), u("bob"));
        let events = [
            GroupEvent::Created { owner: a, rule: JoinRule::Approval },
            GroupEvent::Joined { user: b, by: a },
            GroupEvent::Left { user: b },
            GroupEvent::Kicked { user: b, by: a },
            GroupEvent::Banned { user: b, by: a },
            GroupEvent::Unbanned { user: b, by: a },
            GroupEvent::RoleChanged { user: b, role: Role::Admin, by: a },
            GroupEvent::OwnershipOffered { user: b, by: a },
            GroupEvent::OfferCancelled { by: a },
            GroupEvent::OwnershipTransferred { user: b, previous: a },
            GroupEvent::RuleChanged { rule: JoinRule::Open, by: a },
            GroupEvent::JoinRequested { user: b, at: 17, reason: None },
            GroupEvent::JoinRequested {
                user: b,
                at: 17,
                reason: Some(Text::new("I write Rust: for a bank").unwrap()),
            },
            GroupEvent::RequestWithdrawn { user: b },
            GroupEvent::RequestApproved { user: b, by: a },
            GroupEvent::RequestRejected { user: b, by: a },
            GroupEvent::Invited { user: b, by: a, at: 99 },
            GroupEvent::InviteDeclined { user: b },
            GroupEvent::Expired { now: 1234 },
            GroupEvent::Deleted { by: a },
        ];
        for e in events {
            assert_eq!(
                decode(&encode(&e)).unwrap(),
                e,
                "{:?}",
                String::from_utf8_lossy(&encode(&e))
            );
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for bad in [
            &b""[..],
            b"joined",
            b"joined bob",
            b"joined Bob alice",
            b"left bob x",
            b"\xff",
            b"requested bob x",
            b"role bob king alice",
        ] {
            assert!(matches!(decode(bad), Err(StoreError::Corrupt(_))), "{bad:?}");
        }
    }
}
