//! Errors a person can act on: the rule a bad name broke, who may do what was
//! refused, the limit a message went over, and input shown short.
//!
//! The rules themselves live in baatkaro-proto; nothing here restates them. The
//! alphabet of a name is read off the validator by asking it about every byte, and
//! who may do a group operation by asking the group machine about each role, so
//! that the words follow when a rule changes.

use baatkaro_proto::group::{Ctx, Denial, Group, GroupEvent, GroupId, GroupRules, Op};
use baatkaro_proto::{Command, GroupName, JoinRule, Limits, Role, UserName, ValidationError};

/// The most characters of a user's input an error message repeats.
const SHOWN: usize = 40;

/// `input` as an error message repeats it: whole when short, else its first
/// characters and its length, so that a pasted page is not printed back.
pub(crate) fn shorten(input: &str) -> String {
    shorten_to(input, SHOWN)
}

/// `text` cut after `max` characters, with its length said when it was cut.
pub(crate) fn shorten_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
    }
}

/// What a name may hold, in words: read off `valid` (a name's validator) by asking
/// it which bytes may start a name and which may follow, and how long a name may be.
fn name_rule(valid: impl Fn(&str) -> bool, max: usize) -> String {
    let follows = |b: u8| valid(&format!("a{}", char::from(b)));
    let starts = |b: u8| valid(&char::from(b).to_string());
    let all =
        |range: std::ops::RangeInclusive<u8>, ok: &dyn Fn(u8) -> bool| range.into_iter().all(ok);
    let mut parts = Vec::new();
    let mut covered = Vec::new();
    for (range, words) in [
        (b'a'..=b'z', "lowercase letters"),
        (b'A'..=b'Z', "capital letters"),
        (b'0'..=b'9', "digits"),
    ] {
        if all(range.clone(), &follows) {
            parts.push(words.to_string());
            covered.extend(range);
        }
    }
    let others: Vec<String> = (0x21..0x7f)
        .filter(|b| !covered.contains(b) && follows(*b))
        .map(|b| char::from(b).to_string())
        .collect();
    if !others.is_empty() {
        parts.push(others.join(" "));
    }
    let mut rule = format!("{} only", parts.join(", "));
    if all(b'a'..=b'z', &starts) && !(b'0'..=b'9').any(starts) {
        rule.push_str(", starting with a letter");
    }
    rule.push_str(&format!(", at most {max}"));
    rule
}

/// The rule of user and group names, in words ("lowercase letters, digits, - . _
/// only, starting with a letter, at most 32").
pub(crate) fn user_name_rule() -> String {
    name_rule(|s| UserName::new(s).is_ok(), UserName::MAX_LEN)
}

/// The rule of group names, in words.
pub(crate) fn group_name_rule() -> String {
    name_rule(|s| GroupName::new(s).is_ok(), GroupName::MAX_LEN)
}

/// Why `input` is not a `what`: the validator's reason and the rule.
pub(crate) fn bad_name(what: &str, input: &str, e: &ValidationError, rule: &str) -> String {
    format!("{} is not a {what} ({e}): {rule}", shorten(input))
}

/// A group where every role is present, to ask the group machine who may do what:
/// `owner`; admins `admin` and `admin2`; members `member` and `target`; the requester
/// `requester`, the banned `banned`, and an ownership offer to `target`.
fn sample_group(rules: &GroupRules) -> Option<Group> {
    let u = |s: &str| UserName::new(s).ok();
    let (owner, admin, admin2) = (u("owner")?, u("admin")?, u("admin2")?);
    let (member, target, requester, banned) =
        (u("member")?, u("target")?, u("requester")?, u("banned")?);
    let joined = |user| GroupEvent::Joined { user, by: owner };
    let promoted = |user| GroupEvent::RoleChanged { user, role: Role::Admin, by: owner };
    let events = [
        GroupEvent::Created { owner, rule: JoinRule::Approval },
        joined(admin),
        promoted(admin),
        joined(admin2),
        promoted(admin2),
        joined(member),
        joined(target),
        joined(banned),
        GroupEvent::Banned { user: banned, by: owner },
        GroupEvent::JoinRequested { user: requester, at: 0, reason: None },
        GroupEvent::OwnershipOffered { user: target, by: owner },
    ];
    Group::replay(GroupId(1), GroupName::new("sample").ok()?, rules.expiry, &events)
}

/// The operation of the group machine a command asks for, on the sample group's
/// users (only the commands the machine may refuse with `NOT_PERMITTED`).
fn sample_op(command: &Command) -> Option<Op> {
    let u = |s: &str| UserName::new(s).ok();
    Some(match command {
        Command::Approve { .. } => Op::Approve { user: u("requester")? },
        Command::Reject { .. } => Op::Reject { user: u("requester")? },
        Command::Invite { .. } => Op::Invite { user: u("newcomer")? },
        Command::Kick { ban, .. } => Op::Kick { user: u("target")?, ban: *ban },
        Command::Unban { .. } => Op::Unban { user: u("banned")? },
        Command::Promote { .. } => Op::Promote { user: u("target")? },
        Command::Demote { .. } => Op::Demote { user: u("admin2")? },
        Command::Transfer { .. } => Op::Offer { user: u("member")? },
        Command::TransferCancel { .. } => Op::CancelOffer,
        Command::Rule { .. } => Op::SetRule { rule: JoinRule::Open },
        Command::Delete { .. } => Op::Delete,
        _ => return None,
    })
}

/// Who may do what `command` asks (`doing`, in words), as the group machine decides
/// it: "only the owner may …", "only the owner and admins may …", with the rank rule
/// when acting on someone of equal rank is refused too (KICK).
pub(crate) fn who_may(command: &Command, doing: &str) -> Option<String> {
    let rules = GroupRules::from_limits(&Limits::default());
    let groups_of = |_: &UserName| 0;
    let ctx = Ctx { now: 0, rules: &rules, groups_of: &groups_of };
    let group = sample_group(&rules)?;
    let op = sample_op(command)?;
    let refused = |actor: &str, op: Op| {
        let actor = UserName::new(actor).ok();
        actor.is_some_and(|a| group.clone().apply(a, op, &ctx) == Err(Denial::NotPermitted))
    };
    let mut who = if refused("admin", op.clone()) {
        "only the owner may".to_string()
    } else if refused("member", op.clone()) {
        "only the owner and admins may".to_string()
    } else {
        return None;
    };
    who.push_str(&format!(" {doing}"));
    // An admin acting on another admin: refused when rank counts.
    let on_admin = match op {
        Op::Kick { ban, .. } => UserName::new("admin2").ok().map(|user| Op::Kick { user, ban }),
        _ => None,
    };
    if on_admin.is_some_and(|op| refused("admin", op)) {
        who.push_str(", and only someone of lower rank");
    }
    Some(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_shown_short_with_its_length() {
        assert_eq!(shorten("hello"), "hello");
        let page = "x".repeat(100_000);
        let shown = shorten(&page);
        assert!(shown.len() < 80 && shown.ends_with("… (100000 bytes)"), "{shown}");
        // Cut on a character boundary.
        assert!(shorten(&"न".repeat(50)).starts_with(&"न".repeat(40)));
    }

    #[test]
    fn the_name_rule_is_read_off_the_validator() {
        assert_eq!(
            user_name_rule(),
            "lowercase letters, digits, - . _ only, starting with a letter, at most 32"
        );
        assert_eq!(group_name_rule(), user_name_rule());
        // A different validator gives different words: nothing is fixed here.
        let rule = name_rule(|s| s.len() <= 8 && s.bytes().all(|b| b.is_ascii_alphanumeric()), 8);
        assert_eq!(rule, "lowercase letters, capital letters, digits only, at most 8");
    }

    #[test]
    fn who_may_is_what_the_group_machine_says() {
        let g: GroupName = "rust".parse().unwrap();
        let user: UserName = "bob".parse().unwrap();
        let say = |c: Command| who_may(&c, "do it");
        assert_eq!(
            say(Command::Kick { group: g, user, ban: false }).as_deref(),
            Some("only the owner and admins may do it, and only someone of lower rank")
        );
        assert_eq!(
            say(Command::Promote { group: g, user }).as_deref(),
            Some("only the owner may do it")
        );
        assert_eq!(
            say(Command::Rule { group: g, rule: JoinRule::Open }).as_deref(),
            Some("only the owner and admins may do it")
        );
        assert_eq!(say(Command::Delete { group: g }).as_deref(), Some("only the owner may do it"));
        assert_eq!(
            say(Command::Unban { group: g, user }).as_deref(),
            Some("only the owner and admins may do it")
        );
        assert_eq!(say(Command::Leave { group: g }), None);
    }
}
