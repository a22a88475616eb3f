//! Writing events and stored events.

use bytes::BytesMut;

use super::{Event, Failure, StoredEvent};
use crate::types::{GroupName, UserName};
use crate::wire::Put;

/// Writes a stored event after whatever prefix (`*` or a tag) is already in `out`.
pub(crate) fn put_stored(out: &mut BytesMut, e: &StoredEvent) {
    match e {
        StoredEvent::Message { conv, seq, time, from, text } => {
            out.word(b"MSG").conv(conv).num(*seq).num(*time).word(from.as_bytes());
            out.end_with_payload(text.as_bytes());
        }
        StoredEvent::File { conv, seq, time, from, file, size, sha256, name } => {
            out.word(b"FILE").conv(conv).num(*seq).num(*time).word(from.as_bytes());
            out.word(file.as_bytes()).num(*size).word(&sha256.to_hex());
            out.end_with_payload(name.as_bytes());
        }
        StoredEvent::Joined { group, seq, time, user, by } => {
            two_users(out, b"JOINED", group, *seq, *time, user, by);
        }
        StoredEvent::Left { group, seq, time, user } => {
            header(out, b"LEFT", group, *seq, *time).word(user.as_bytes()).end();
        }
        StoredEvent::Kicked { group, seq, time, user, by } => {
            two_users(out, b"KICKED", group, *seq, *time, user, by);
        }
        StoredEvent::Banned { group, seq, time, user, by } => {
            two_users(out, b"BANNED", group, *seq, *time, user, by);
        }
        StoredEvent::RoleChanged { group, seq, time, user, role, by } => {
            header(out, b"ROLE", group, *seq, *time)
                .word(user.as_bytes())
                .word(role.as_str().as_bytes())
                .word(by.as_bytes())
                .end();
        }
        StoredEvent::OwnershipOffered { group, seq, time, user, by } => {
            two_users(out, b"OFFERED", group, *seq, *time, user, by);
        }
        StoredEvent::OwnershipTransferred { group, seq, time, user, previous } => {
            two_users(out, b"OWNER", group, *seq, *time, user, previous);
        }
        StoredEvent::RuleChanged { group, seq, time, rule, by } => {
            header(out, b"RULE", group, *seq, *time)
                .word(rule.as_str().as_bytes())
                .word(by.as_bytes())
                .end();
        }
    }
}

/// ` VERB #group seq millis`
fn header<'a>(
    out: &'a mut BytesMut,
    verb: &[u8],
    group: &GroupName,
    seq: u64,
    time: u64,
) -> &'a mut BytesMut {
    out.word(verb).raw(b" #").raw(group.as_bytes()).num(seq).num(time)
}

fn two_users(
    out: &mut BytesMut,
    verb: &[u8],
    group: &GroupName,
    seq: u64,
    time: u64,
    user: &UserName,
    other: &UserName,
) {
    header(out, verb, group, seq, time).word(user.as_bytes()).word(other.as_bytes()).end();
}

/// Writes ` code [retry=n] [:note]`.
pub(crate) fn put_failure(out: &mut BytesMut, f: &Failure) {
    out.word(f.code.as_str().as_bytes());
    if let Some(ms) = f.retry_after {
        out.word(b"retry=");
        out.raw(itoa::Buffer::new().format(ms).as_bytes());
    }
    if let Some(note) = &f.note {
        out.word(b":").raw(note.as_str().as_bytes());
    }
}

/// Writes a whole event frame: `* ...` CRLF [payload].
pub(crate) fn put_event(out: &mut BytesMut, e: &Event) {
    out.raw(b"*");
    match e {
        Event::Stored(s) => put_stored(out, s),
        Event::JoinRequested { group, user, time, reason } => {
            out.word(b"REQUESTED").word(group.as_bytes()).word(user.as_bytes()).num(*time);
            match reason {
                Some(r) => out.end_with_payload(r.as_bytes()),
                None => out.end(),
            }
        }
        Event::Invited { group, by, time } => {
            out.word(b"INVITED").word(group.as_bytes()).word(by.as_bytes()).num(*time).end();
        }
        Event::RequestApproved { group, by } => {
            out.word(b"APPROVED").word(group.as_bytes()).word(by.as_bytes()).end();
        }
        Event::RequestRejected { group, by } => {
            out.word(b"REJECTED").word(group.as_bytes()).word(by.as_bytes()).end();
        }
        Event::GroupDeleted { group, by } => {
            out.word(b"DELETED").word(group.as_bytes()).word(by.as_bytes()).end();
        }
        Event::Presence { user, presence } => {
            out.word(b"PRESENCE").word(user.as_bytes()).word(presence.as_str().as_bytes()).end();
        }
        Event::ReadMarker { conv, seq } => {
            out.word(b"READ").conv(conv).num(*seq).end();
        }
        Event::Error(f) => {
            out.word(b"ERR");
            put_failure(out, f);
            out.end();
        }
        Event::Bye(f) => {
            out.word(b"BYE");
            put_failure(out, f);
            out.end();
        }
    }
}
