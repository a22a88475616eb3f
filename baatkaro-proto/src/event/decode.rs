//! Parsing of events and stored events.

use bytes::Bytes;
use nom::Parser;
use nom::combinator::opt;

use super::{Event, Failure, StoredEvent};
use crate::error::ErrorCode;
use crate::parse::{
    PError, PResult, arg, complete, conv, file_id, group_conv, group_name, keyword, none, number,
    payload_as, required, sha256, token, user_name,
};
use crate::types::{FileName, JoinRule, Note, Presence, Role, Text};

/// Parses the arguments of a stored event named `verb`; `None` if `verb` names none.
///
/// `stored-event = msg-event / file-event / joined-event / left-event / kicked-event /
///  banned-event / role-event / offered-event / owner-event / rule-event`
///
/// Takes the payload out of `p` only when `verb` names a stored event, so the caller
/// can go on with it otherwise (no reference-count traffic on the hot path).
pub(crate) fn stored_event(
    verb: &[u8],
    args: &[u8],
    p: &mut Option<Bytes>,
) -> Option<Result<StoredEvent, PError>> {
    if !matches!(
        verb,
        b"MSG"
            | b"FILE"
            | b"JOINED"
            | b"LEFT"
            | b"KICKED"
            | b"BANNED"
            | b"ROLE"
            | b"OFFERED"
            | b"OWNER"
            | b"RULE"
    ) {
        return None;
    }
    let p = p.take();
    let result = match verb {
        // msg-event = "MSG" SP conv SP seq SP millis SP user-name payload-marker
        b"MSG" => (|| {
            let (conv, seq, time, from) =
                complete(args, (arg(conv), arg(number), arg(number), arg(user_name)))?;
            let text = payload_as(required(p)?, ErrorCode::BadText, Text::from_bytes)?;
            Ok(StoredEvent::Message { conv, seq, time, from, text })
        })(),
        // file-event = "FILE" SP conv SP seq SP millis SP user-name SP file-id SP size
        //              SP sha256 payload-marker
        b"FILE" => (|| {
            let ((conv, seq, time, from), (file, size, sha256)) = complete(
                args,
                (
                    (arg(conv), arg(number), arg(number), arg(user_name)),
                    (arg(file_id), arg(number), arg(sha256)),
                ),
            )?;
            let name = payload_as(required(p)?, ErrorCode::BadFileName, FileName::from_bytes)?;
            Ok(StoredEvent::File { conv, seq, time, from, file, size, sha256, name })
        })(),
        // joined-event = "JOINED" SP group-conv SP seq SP millis SP user-name SP user-name
        b"JOINED" => two_users(args, &p, |group, seq, time, user, by| StoredEvent::Joined {
            group,
            seq,
            time,
            user,
            by,
        }),
        // left-event = "LEFT" SP group-conv SP seq SP millis SP user-name
        b"LEFT" => (|| {
            none(&p)?;
            let (group, seq, time, user) =
                complete(args, (arg(group_conv), arg(number), arg(number), arg(user_name)))?;
            Ok(StoredEvent::Left { group, seq, time, user })
        })(),
        // kicked-event = "KICKED" SP group-conv SP seq SP millis SP user-name SP user-name
        b"KICKED" => two_users(args, &p, |group, seq, time, user, by| StoredEvent::Kicked {
            group,
            seq,
            time,
            user,
            by,
        }),
        // banned-event = "BANNED" SP group-conv SP seq SP millis SP user-name SP user-name
        b"BANNED" => two_users(args, &p, |group, seq, time, user, by| StoredEvent::Banned {
            group,
            seq,
            time,
            user,
            by,
        }),
        // role-event = "ROLE" SP group-conv SP seq SP millis SP user-name SP role SP user-name
        b"ROLE" => (|| {
            none(&p)?;
            let (group, seq, time, user, role, by) = complete(
                args,
                (
                    arg(group_conv),
                    arg(number),
                    arg(number),
                    arg(user_name),
                    arg(keyword(Role::from_wire)),
                    arg(user_name),
                ),
            )?;
            Ok(StoredEvent::RoleChanged { group, seq, time, user, role, by })
        })(),
        // offered-event = "OFFERED" SP group-conv SP seq SP millis SP user-name SP user-name
        b"OFFERED" => two_users(args, &p, |group, seq, time, user, by| {
            StoredEvent::OwnershipOffered { group, seq, time, user, by }
        }),
        // owner-event = "OWNER" SP group-conv SP seq SP millis SP user-name SP user-name
        b"OWNER" => two_users(args, &p, |group, seq, time, user, previous| {
            StoredEvent::OwnershipTransferred { group, seq, time, user, previous }
        }),
        // rule-event = "RULE" SP group-conv SP seq SP millis SP join-rule SP user-name
        b"RULE" => (|| {
            none(&p)?;
            let (group, seq, time, rule, by) = complete(
                args,
                (
                    arg(group_conv),
                    arg(number),
                    arg(number),
                    arg(keyword(JoinRule::from_wire)),
                    arg(user_name),
                ),
            )?;
            Ok(StoredEvent::RuleChanged { group, seq, time, rule, by })
        })(),
        _ => return None,
    };
    Some(result)
}

/// The shape shared by JOINED, KICKED, BANNED, OFFERED and OWNER:
/// `SP group-conv SP seq SP millis SP user-name SP user-name`, no payload.
fn two_users(
    args: &[u8],
    p: &Option<Bytes>,
    build: impl FnOnce(
        crate::types::GroupName,
        u64,
        u64,
        crate::types::UserName,
        crate::types::UserName,
    ) -> StoredEvent,
) -> Result<StoredEvent, PError> {
    none(p)?;
    let (group, seq, time, user, other) = complete(
        args,
        (arg(group_conv), arg(number), arg(number), arg(user_name), arg(user_name)),
    )?;
    Ok(build(group, seq, time, user, other))
}

/// `event = "*" SP (stored-event / requested-event / invited-event / approved-event /
///  rejected-event / deleted-event / presence-event / err-event / bye-event)`,
/// given the line after `"*"`.
pub(crate) fn event(i: &[u8], p: Option<Bytes>) -> Result<Event, PError> {
    let (args, verb) = arg(token).parse(i)?;
    let mut p = p;
    if let Some(stored) = stored_event(verb, args, &mut p) {
        return stored.map(Event::Stored);
    }
    match verb {
        // requested-event = "REQUESTED" SP group-name SP user-name SP millis [payload-marker]
        b"REQUESTED" => join_request(args, p)
            .map(|(group, user, time, reason)| Event::JoinRequested { group, user, time, reason }),
        // invited-event = "INVITED" SP group-name SP user-name SP millis
        b"INVITED" => {
            none(&p)?;
            let (group, by, time) = complete(args, (arg(group_name), arg(user_name), arg(number)))?;
            Ok(Event::Invited { group, by, time })
        }
        // approved-event = "APPROVED" SP group-name SP user-name
        b"APPROVED" => group_by(args, &p).map(|(group, by)| Event::RequestApproved { group, by }),
        // rejected-event = "REJECTED" SP group-name SP user-name
        b"REJECTED" => group_by(args, &p).map(|(group, by)| Event::RequestRejected { group, by }),
        // deleted-event = "DELETED" SP group-name SP user-name
        b"DELETED" => group_by(args, &p).map(|(group, by)| Event::GroupDeleted { group, by }),
        // presence-event = "PRESENCE" SP user-name SP presence
        b"PRESENCE" => {
            none(&p)?;
            let (user, presence) =
                complete(args, (arg(user_name), arg(keyword(Presence::from_wire))))?;
            Ok(Event::Presence { user, presence })
        }
        // read-event = "READ" SP conv SP seq
        b"READ" => {
            none(&p)?;
            let (conv, seq) = complete(args, (arg(conv), arg(number)))?;
            Ok(Event::ReadMarker { conv, seq })
        }
        // err-event = "ERR" SP failure
        b"ERR" => {
            none(&p)?;
            complete(args, arg(failure)).map(Event::Error)
        }
        // bye-event = "BYE" SP failure
        b"BYE" => {
            none(&p)?;
            complete(args, arg(failure)).map(Event::Bye)
        }
        _ => Err(PError::new(ErrorCode::UnknownCommand, "unknown event")),
    }
}

/// `SP group-name SP user-name SP millis [payload-marker]` with an optional reason:
/// the shape of a join request, as event (REQUESTED) and as list item (REQUEST).
pub(crate) fn join_request(
    args: &[u8],
    p: Option<Bytes>,
) -> Result<(crate::types::GroupName, crate::types::UserName, u64, Option<Text>), PError> {
    let (group, user, time) = complete(args, (arg(group_name), arg(user_name), arg(number)))?;
    let reason = p.map(|b| payload_as(b, ErrorCode::BadText, Text::from_bytes)).transpose()?;
    Ok((group, user, time, reason))
}

/// `SP group-name SP user-name`, no payload.
fn group_by(
    args: &[u8],
    p: &Option<Bytes>,
) -> Result<(crate::types::GroupName, crate::types::UserName), PError> {
    none(p)?;
    complete(args, (arg(group_name), arg(user_name)))
}

/// `failure = error-code [SP "retry=" number] [SP ":" note]`
pub(crate) fn failure(i: &[u8]) -> PResult<'_, Failure> {
    let (rest, raw) = token(i)?;
    let code = ErrorCode::from_wire(raw)
        .ok_or_else(|| nom::Err::Failure(PError::syntax("unknown error code")))?;
    let (rest, retry_after) = opt(arg(retry)).parse(rest)?;
    let (rest, note) = opt(arg(note)).parse(rest)?;
    Ok((rest, Failure { code, retry_after, note }))
}

/// `"retry=" number`
fn retry(i: &[u8]) -> PResult<'_, u64> {
    let (rest, _) = nom::bytes::complete::tag(&b"retry="[..]).parse(i)?;
    number(rest)
}

/// `":" note`, the note running to the end of the line.
fn note(i: &[u8]) -> PResult<'_, Note> {
    let (rest, _) = nom::bytes::complete::tag(&b":"[..]).parse(i)?;
    let text = std::str::from_utf8(rest)
        .map_err(|_| nom::Err::Failure(PError::syntax("note is not ASCII")))?;
    let note = Note::new(text)
        .map_err(|e| nom::Err::Failure(PError::new(ErrorCode::Syntax, e.to_string())))?;
    Ok((&rest[rest.len()..], note))
}
