//! How events and list items are shown: a plain line for people and pipes, or one
//! JSON object for scripts (`--json`). Text from other people is printed as text;
//! the protocol guarantees it holds no control characters.

use std::sync::OnceLock;

use baatkaro_proto::{Event, Item, Millis, StoredEvent};
use serde_json::{Value, json};

/// The local time zone's offset from UTC, read once at start.
static OFFSET: OnceLock<time::UtcOffset> = OnceLock::new();

/// Reads the local time zone's offset, for [`clock`]. Call it before any thread is
/// started: the offset can only be read soundly while the process has one thread
/// (else, and where the system does not say, times are shown in UTC).
pub(crate) fn set_local_offset() {
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let _ = OFFSET.set(offset);
}

/// `HH:MM`, in local time, of a server time (milliseconds since 1970, UTC).
pub(crate) fn clock(millis: Millis) -> String {
    let offset = OFFSET.get().copied().unwrap_or(time::UtcOffset::UTC);
    let secs = i64::try_from(millis / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!("{:02}:{:02}", t.hour(), t.minute())
        }
        Err(_) => "--:--".to_string(),
    }
}

/// `HH:MM` now, for notices of the client's own.
pub(crate) fn now() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    clock(millis)
}

/// The local time `wait` from now, to the second (`09:14:05`): when a retry comes.
pub(crate) fn clock_in(wait: std::time::Duration) -> String {
    let at = std::time::SystemTime::now() + wait;
    let offset = OFFSET.get().copied().unwrap_or(time::UtcOffset::UTC);
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
        }
        Err(_) => "--:--:--".to_string(),
    }
}

/// `n` and the noun, in the singular for one: `1 member`, `3 members`.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// A size in words: `512 bytes`, `1 byte`, `2.0 MB`.
pub(crate) fn bytes(n: u64) -> String {
    const KB: u64 = 1000;
    match n {
        0..KB => count(n, "byte"),
        KB..1_000_000 => format!("{}.{} kB", n / KB, n % KB / 100),
        1_000_000..1_000_000_000 => format!("{}.{} MB", n / 1_000_000, n % 1_000_000 / 100_000),
        _ => format!("{}.{} GB", n / 1_000_000_000, n % 1_000_000_000 / 100_000_000),
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) of a server time, for times further away than a day.
pub(crate) fn date_time(millis: Millis) -> String {
    let secs = i64::try_from(millis / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        // Past the year 9999: said as it is.
        Err(_) => format!("{millis} ms"),
    }
}

/// A stored event as a line: time, conversation, what happened.
pub(crate) fn stored_line(e: &StoredEvent) -> String {
    let what = match e {
        StoredEvent::Message { from, text, .. } => format!("{from}: {text}"),
        StoredEvent::File { from, file, size, name, .. } => {
            format!("{from} shared {name} ({}, id {file})", bytes(*size))
        }
        StoredEvent::Joined { user, by, .. } if user == by => format!("{user} joined"),
        StoredEvent::Joined { user, by, .. } => format!("{user} joined (admitted by {by})"),
        StoredEvent::Left { user, .. } => format!("{user} left"),
        StoredEvent::Kicked { user, by, .. } => format!("{user} was kicked by {by}"),
        StoredEvent::Banned { user, by, .. } => format!("{user} was banned by {by}"),
        StoredEvent::RoleChanged { user, role, by, .. } => {
            format!("{user} is now {role} (by {by})")
        }
        StoredEvent::OwnershipOffered { user, by, .. } => {
            format!("{by} offered ownership to {user}")
        }
        StoredEvent::OwnershipTransferred { user, previous, .. } => {
            format!("{user} is the owner now (was {previous})")
        }
        StoredEvent::RuleChanged { rule, by, .. } => {
            format!("the join rule is now {rule} (by {by})")
        }
    };
    format!("{} {} {what}", clock(e.time()), e.conv())
}

/// A stored event as JSON.
pub(crate) fn stored_json(e: &StoredEvent) -> Value {
    let mut v = json!({ "conv": e.conv().to_string(), "seq": e.seq(), "time": e.time() });
    let fields = match e {
        StoredEvent::Message { from, text, .. } => {
            json!({ "event": "MSG", "from": from.as_str(), "text": text.as_str() })
        }
        StoredEvent::File { from, file, size, sha256, name, .. } => json!({
            "event": "FILE", "from": from.as_str(), "id": file.as_str(), "size": size,
            "sha256": sha256.to_string(), "name": name.as_str()
        }),
        StoredEvent::Joined { user, by, .. } => {
            json!({ "event": "JOINED", "user": user.as_str(), "by": by.as_str() })
        }
        StoredEvent::Left { user, .. } => json!({ "event": "LEFT", "user": user.as_str() }),
        StoredEvent::Kicked { user, by, .. } => {
            json!({ "event": "KICKED", "user": user.as_str(), "by": by.as_str() })
        }
        StoredEvent::Banned { user, by, .. } => {
            json!({ "event": "BANNED", "user": user.as_str(), "by": by.as_str() })
        }
        StoredEvent::RoleChanged { user, role, by, .. } => {
            json!({ "event": "ROLE", "user": user.as_str(), "role": role.as_str(), "by": by.as_str() })
        }
        StoredEvent::OwnershipOffered { user, by, .. } => {
            json!({ "event": "OFFERED", "user": user.as_str(), "by": by.as_str() })
        }
        StoredEvent::OwnershipTransferred { user, previous, .. } => {
            json!({ "event": "OWNER", "user": user.as_str(), "previous": previous.as_str() })
        }
        StoredEvent::RuleChanged { rule, by, .. } => {
            json!({ "event": "RULE", "rule": rule.as_str(), "by": by.as_str() })
        }
    };
    merge(&mut v, fields);
    v
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// Any event as a line.
pub(crate) fn event_line(e: &Event) -> String {
    match e {
        Event::Stored(s) => stored_line(s),
        Event::JoinRequested { group, user, reason, .. } => match reason {
            Some(r) => format!("{user} asks to join {group}: {r}"),
            None => format!("{user} asks to join {group}"),
        },
        Event::Invited { group, by, .. } => format!("{by} invited you to {group}"),
        Event::RequestApproved { group, by } => {
            format!("{by} approved your request to join {group}")
        }
        Event::RequestRejected { group, by } => {
            format!("{by} rejected your request to join {group}")
        }
        Event::GroupDeleted { group, by } => format!("{by} deleted {group}"),
        Event::Presence { user, presence } => format!("{user} is {presence}"),
        Event::ReadMarker { conv, seq } => format!("{conv} read up to {seq}"),
        Event::Error(f) => format!("server error: {}", f.code),
        Event::Bye(f) => format!("the server closed the connection: {}", f.code),
    }
}

/// Any event as JSON.
pub(crate) fn event_json(e: &Event) -> Value {
    match e {
        Event::Stored(s) => stored_json(s),
        Event::JoinRequested { group, user, time, reason } => json!({
            "event": "REQUESTED", "group": group.as_str(), "user": user.as_str(), "time": time,
            "reason": reason.as_ref().map(|r| r.as_str())
        }),
        Event::Invited { group, by, time } => {
            json!({ "event": "INVITED", "group": group.as_str(), "by": by.as_str(), "time": time })
        }
        Event::RequestApproved { group, by } => {
            json!({ "event": "APPROVED", "group": group.as_str(), "by": by.as_str() })
        }
        Event::RequestRejected { group, by } => {
            json!({ "event": "REJECTED", "group": group.as_str(), "by": by.as_str() })
        }
        Event::GroupDeleted { group, by } => {
            json!({ "event": "DELETED", "group": group.as_str(), "by": by.as_str() })
        }
        Event::Presence { user, presence } => {
            json!({ "event": "PRESENCE", "user": user.as_str(), "presence": presence.as_str() })
        }
        Event::ReadMarker { conv, seq } => {
            json!({ "event": "READ", "conv": conv.to_string(), "seq": seq })
        }
        Event::Error(f) => json!({ "event": "ERR", "code": f.code.as_str() }),
        Event::Bye(f) => json!({ "event": "BYE", "code": f.code.as_str() }),
    }
}

/// A list item as a line.
pub(crate) fn item_line(i: &Item) -> String {
    match i {
        Item::Stored(e) => stored_line(e),
        Item::Request { user, time, reason, .. } => match reason {
            Some(r) => format!("{user} {} {r}", clock(*time)),
            None => format!("{user} {}", clock(*time)),
        },
        Item::Group { group, membership, rule, members, latest } => {
            format!("{group} {membership} {rule} {}, latest {latest}", count(*members, "member"))
        }
        Item::Conversation { conv, latest } => format!("{conv} {latest}"),
        Item::ConversationMarked { conv, latest, read, unread } => {
            format!("{conv} {latest}, read {read}, {unread} unread")
        }
        Item::GroupOffered { group, membership, rule, members, latest, offer } => format!(
            "{group} {membership} {rule} {}, latest {latest}, offered to {offer}",
            count(*members, "member")
        ),
        Item::Ban { user, by, .. } => format!("{user} banned by {by}"),
        Item::Member { user, role, presence, .. } => format!("{user} {role} {presence}"),
        Item::Online { user } => user.to_string(),
        Item::Have { offset, length, .. } => format!("{offset} {length}"),
        Item::Chunk { offset, data, .. } => {
            format!("{offset} {}", count(data.len() as u64, "byte"))
        }
        Item::Token { token, used, expires, address, label, .. } => format!(
            "{token} {label} used {} from {address}, expires {}",
            date_time(*used),
            date_time(*expires)
        ),
    }
}

/// A list item as JSON.
pub(crate) fn item_json(i: &Item) -> Value {
    match i {
        Item::Stored(e) => stored_json(e),
        Item::Request { group, user, time, reason } => json!({
            "group": group.as_str(), "user": user.as_str(), "time": time,
            "reason": reason.as_ref().map(|r| r.as_str())
        }),
        Item::Group { group, membership, rule, members, latest } => json!({
            "group": group.as_str(), "membership": membership.as_str(), "rule": rule.as_str(),
            "members": members, "latest": latest
        }),
        Item::Conversation { conv, latest } => {
            json!({ "conv": conv.to_string(), "latest": latest })
        }
        Item::ConversationMarked { conv, latest, read, unread } => json!({
            "conv": conv.to_string(), "latest": latest, "read": read, "unread": unread
        }),
        Item::GroupOffered { group, membership, rule, members, latest, offer } => json!({
            "group": group.as_str(), "membership": membership.as_str(), "rule": rule.as_str(),
            "members": members, "latest": latest, "offer": offer.as_str()
        }),
        Item::Ban { group, user, by } => {
            json!({ "group": group.as_str(), "user": user.as_str(), "by": by.as_str() })
        }
        Item::Member { group, user, role, presence } => json!({
            "group": group.as_str(), "user": user.as_str(), "role": role.as_str(), "presence": presence.as_str()
        }),
        Item::Online { user } => json!({ "user": user.as_str() }),
        Item::Have { file, offset, length } => {
            json!({ "id": file.as_str(), "offset": offset, "length": length })
        }
        Item::Chunk { file, offset, data } => {
            json!({ "id": file.as_str(), "offset": offset, "length": data.len() })
        }
        Item::Token { token, created, used, expires, address, label } => json!({
            "token": token, "label": label.as_str(), "created": created, "used": used,
            "expires": expires, "address": address.as_str()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sizes_in_words() {
        assert_eq!(count(1, "member"), "1 member");
        assert_eq!(count(3, "member"), "3 members");
        assert_eq!(count(0, "member"), "0 members");
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(999), "999 bytes");
        assert_eq!(bytes(2_000_000), "2.0 MB");
        assert_eq!(bytes(1_536), "1.5 kB");
    }

    #[test]
    fn a_token_as_a_line_and_as_json() {
        let t = Item::Token {
            token: 3,
            created: 1_764_072_000_000,
            used: 1_764_158_400_000,
            expires: 1_771_934_400_000,
            address: "192.0.2.7".parse().unwrap(),
            label: baatkaro_proto::Text::new("laptop").unwrap(),
        };
        assert_eq!(
            item_line(&t),
            "3 laptop used 2025-11-26 12:00 from 192.0.2.7, expires 2026-02-24 12:00"
        );
        assert_eq!(item_json(&t)["expires"], 1_771_934_400_000u64);
    }

    #[test]
    fn a_message_as_a_line_and_as_json() {
        let e = StoredEvent::Message {
            conv: "#rust".parse().unwrap(),
            seq: 41,
            time: 3_723_000,
            from: "bob".parse().unwrap(),
            text: baatkaro_proto::Text::new("good morning").unwrap(),
        };
        assert_eq!(stored_line(&e), "01:02 #rust bob: good morning");
        assert_eq!(
            stored_json(&e),
            json!({"conv": "#rust", "seq": 41, "time": 3_723_000, "event": "MSG", "from": "bob", "text": "good morning"})
        );
    }
}
