//! Parsing of server frames.

use bytes::Bytes;
use nom::Parser;
use nom::combinator::opt;

use super::{DoneVerb, Item, ListVerb, OkReply, ServerFrame};
use crate::codec::Decode;
use crate::error::{DecodeError, ErrorCode};
use crate::event::decode::failure;
use crate::event::decode::join_request;
use crate::event::{event, stored_event};
use crate::hot;
use crate::limits::{LIMIT_VALUE_MAX, Limits};
use crate::parse::{
    PError, PResult, address, arg, complete, conv, file_id, group_name, keyword, none, number,
    parse_number, payload_as, required, secret, software, tag, token, user_name,
};
use crate::types::{
    Feature, Features, InviteOutcome, JoinOutcome, JoinRule, Membership, OfferStatus, Presence,
    Role, Text,
};

impl Decode for ServerFrame {
    /// `server-frame = tag SP ("OK" SP ok-reply / "ERR" SP failure / item) / "*" SP event`
    fn decode_frame(line: &[u8], payload: Option<Bytes>) -> Result<Self, DecodeError> {
        Self::decode_padded(line, line.len(), payload)
    }

    fn decode_padded(buf: &[u8], len: usize, payload: Option<Bytes>) -> Result<Self, DecodeError> {
        let mut payload = payload;
        if let Some(fields) = hot::msg_event(buf, len, &mut payload) {
            return Ok(hot::msg_frame(fields));
        }
        ServerFrame::decode_general(&buf[..len.min(buf.len())], payload)
    }
}

impl ServerFrame {
    /// The rule-by-rule parser, which decides every frame the fast path declines.
    pub(crate) fn decode_general(line: &[u8], payload: Option<Bytes>) -> Result<Self, DecodeError> {
        if let Some(rest) = line.strip_prefix(b"*") {
            return event(rest, payload)
                .map(ServerFrame::Event)
                .map_err(|e| DecodeError::new(None, e.code, e.detail));
        }
        let (rest, tag) = tag(line)
            .map_err(|_| DecodeError::new(None, ErrorCode::BadTag, "missing or invalid tag"))?;
        tagged(rest, payload)
            .map(|f| match f {
                Tagged::Ok(reply) => ServerFrame::Ok { tag, reply },
                Tagged::Err(failure) => ServerFrame::Err { tag, failure },
                Tagged::Item(item) => ServerFrame::Item { tag, item },
            })
            .map_err(|e| DecodeError::new(Some(tag), e.code, e.detail))
    }
}

enum Tagged {
    Ok(OkReply),
    Err(crate::event::Failure),
    Item(Item),
}

fn tagged(i: &[u8], p: Option<Bytes>) -> Result<Tagged, PError> {
    let (args, word) = arg(token).parse(i)?;
    match word {
        b"OK" => ok_reply(args, p).map(Tagged::Ok),
        b"ERR" => {
            none(&p)?;
            complete(args, arg(failure)).map(Tagged::Err)
        }
        _ => item(word, args, p).map(Tagged::Item),
    }
}

/// `ok-reply = hello-ok / register-ok / login-ok / join-ok / invite-ok / send-ok /
///  history-ok / list-ok / offer-ok / chunk-ok / status-ok / commit-ok / get-ok / done-verb`
fn ok_reply(i: &[u8], p: Option<Bytes>) -> Result<OkReply, PError> {
    none(&p)?;
    let (args, verb) = arg(token).parse(i)?;
    if let Some(verb) = ListVerb::from_wire(verb) {
        // list-ok = list-verb SP count
        let count = complete(args, arg(number))?;
        return Ok(OkReply::Listed { verb, count });
    }
    if let Some(verb) = DoneVerb::from_wire(verb) {
        complete(args, |i| Ok((i, ())))?;
        return Ok(OkReply::Done { verb });
    }
    Ok(match verb {
        b"HELLO" => hello(args)?,
        // register-ok = "REGISTER" SP user-name
        b"REGISTER" => OkReply::Register { user: complete(args, arg(user_name))? },
        // login-ok = "LOGIN" SP user-name
        b"LOGIN" => OkReply::Login { user: complete(args, arg(user_name))? },
        // join-ok = "JOIN" SP group-name SP join-outcome
        b"JOIN" => {
            let (group, outcome) =
                complete(args, (arg(group_name), arg(keyword(JoinOutcome::from_wire))))?;
            OkReply::Join { group, outcome }
        }
        // invite-ok = "INVITE" SP group-name SP user-name SP invite-outcome
        b"INVITE" => {
            let (group, user, outcome) = complete(
                args,
                (arg(group_name), arg(user_name), arg(keyword(InviteOutcome::from_wire))),
            )?;
            OkReply::Invite { group, user, outcome }
        }
        // send-ok = "SEND" SP conv SP seq SP millis
        b"SEND" => {
            let (conv, seq, time) = complete(args, (arg(conv), arg(number), arg(number)))?;
            OkReply::Send { conv, seq, time }
        }
        // history-ok = "HISTORY" SP conv SP seq SP seq
        b"HISTORY" => {
            let (conv, latest, oldest) = complete(args, (arg(conv), arg(number), arg(number)))?;
            OkReply::History { conv, latest, oldest }
        }
        // offer-ok = "FILE-OFFER" SP file-id SP offer-status
        b"FILE-OFFER" => {
            let (file, status) = complete(args, (arg(file_id), arg(offer_status)))?;
            OkReply::FileOffer { file, status }
        }
        // chunk-ok = "FILE-CHUNK" SP file-id SP number
        b"FILE-CHUNK" => {
            let (file, received) = complete(args, (arg(file_id), arg(number)))?;
            OkReply::FileChunk { file, received }
        }
        // status-ok = "FILE-STATUS" SP file-id SP size SP number
        b"FILE-STATUS" => {
            let (file, size, received) = complete(args, (arg(file_id), arg(number), arg(number)))?;
            OkReply::FileStatus { file, size, received }
        }
        // commit-ok = "FILE-COMMIT" SP file-id SP conv SP seq
        b"FILE-COMMIT" => {
            let (file, conv, seq) = complete(args, (arg(file_id), arg(conv), arg(number)))?;
            OkReply::FileCommit { file, conv, seq }
        }
        // get-ok = "FILE-GET" SP file-id SP number SP number
        b"FILE-GET" => {
            let (file, offset, length) = complete(args, (arg(file_id), arg(number), arg(number)))?;
            OkReply::FileGet { file, offset, length }
        }
        // auth-ok = "AUTH" SP user-name
        b"AUTH" => OkReply::Auth { user: complete(args, arg(user_name))? },
        // read-ok = "READ" SP conv SP seq
        b"READ" => {
            let (conv, seq) = complete(args, (arg(conv), arg(number)))?;
            OkReply::Read { conv, seq }
        }
        // token-ok = "TOKEN" SP token-id SP secret
        b"TOKEN" => {
            let (token, secret) = complete(args, (arg(number), arg(secret)))?;
            OkReply::Token { token, secret }
        }
        _ => return Err(PError::syntax("unknown reply")),
    })
}

/// `hello-ok = "HELLO" SP version SP software [SP "features=" features]
///  1*(SP hello-key "=" limit-value)`
///
/// Every limit key of version 1's first edition must be present; a key added since
/// may be missing and then takes its stated value ([`Limits::absent`]); unknown keys
/// are ignored (SPEC.md section 10), so that servers and clients of different ages
/// understand each other. Every value is at most [`LIMIT_VALUE_MAX`], except that the
/// keys of the first edition take any `number`, as older servers may send one.
fn hello(args: &[u8]) -> Result<OkReply, PError> {
    let (rest, (version, server)) = (arg(number), arg(software)).parse(args)?;
    let version = u16::try_from(version)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| PError::syntax("version out of range"))?;
    let mut features = Features::default();
    let mut limits = Limits::default();
    let mut seen = 0u64;
    let mut rest = rest;
    while !rest.is_empty() {
        let (r, pair) = arg(token).parse(rest)?;
        rest = r;
        let eq = memchr::memchr(b'=', pair).ok_or_else(|| PError::syntax("expected key=value"))?;
        let (key, value) = (&pair[..eq], &pair[eq + 1..]);
        // ext-key = 1*24(LOWER / DIGIT / "-"): unknown keys are skipped, but must
        // still look like keys.
        if key.is_empty()
            || key.len() > 24
            || !key.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            return Err(PError::syntax("malformed HELLO key"));
        }
        if key == b"features" {
            if !features.as_slice().is_empty() {
                return Err(PError::syntax("features listed twice"));
            }
            let list = value
                .split(|b| *b == b',')
                .map(Feature::from_bytes)
                .collect::<Result<Vec<_>, _>>()
                .and_then(Features::new)
                .map_err(|e| PError::new(ErrorCode::Syntax, e.to_string()))?;
            features = list;
            continue;
        }
        let index = Limits::KEYS.iter().position(|k| k.as_bytes() == key);
        // Keys of the first edition took any `number`, which older servers may still
        // send; every other value is a `limit-value`.
        let first_edition = index.is_some_and(|i| Limits::absent(Limits::KEYS[i]).is_none());
        let n = parse_number(value)
            .filter(|n| first_edition || *n <= LIMIT_VALUE_MAX)
            .ok_or_else(|| PError::syntax("limit value is not a number of at most 14 digits"))?;
        let Some(index) = index else {
            continue;
        };
        if seen & (1 << index) != 0 {
            return Err(PError::syntax("a limit is listed twice"));
        }
        seen |= 1 << index;
        limits.set(key, n);
    }
    for (index, key) in Limits::KEYS.iter().enumerate() {
        if seen & (1 << index) != 0 {
            continue;
        }
        match Limits::absent(key) {
            Some(value) => {
                limits.set(key.as_bytes(), value);
            }
            None => return Err(PError::syntax("HELLO reply must list every limit exactly once")),
        }
    }
    Ok(OkReply::Hello { version, server, features, limits: Box::new(limits) })
}

/// `"offer" SP user-name`: the end of a GROUP item whose ownership is offered.
fn offer(i: &[u8]) -> PResult<'_, crate::types::UserName> {
    let (rest, ()) = keyword(|b| (b == b"offer").then_some(()))(i)?;
    arg(user_name).parse(rest)
}

/// `offer-status = "need" / "done" SP seq`
fn offer_status(i: &[u8]) -> PResult<'_, OfferStatus> {
    let (rest, word) = token(i)?;
    match word {
        b"need" => Ok((rest, OfferStatus::Need)),
        b"done" => arg(number).map(OfferStatus::Done).parse(rest),
        _ => Err(nom::Err::Failure(PError::syntax("expected 'need' or 'done SEQ'"))),
    }
}

/// `item = stored-event / request-item / group-item / member-item / online-item /
///  have-item / chunk-item`
fn item(verb: &[u8], args: &[u8], p: Option<Bytes>) -> Result<Item, PError> {
    let mut p = p;
    if let Some(stored) = stored_event(verb, args, &mut p) {
        return stored.map(Item::Stored);
    }
    match verb {
        // request-item = "REQUEST" SP group-name SP user-name SP millis [payload-marker]
        b"REQUEST" => join_request(args, p).map(|(group, user, time, reason)| Item::Request {
            group,
            user,
            time,
            reason,
        }),
        // group-item = "GROUP" SP group-name SP membership SP join-rule SP count SP seq
        //              [SP "offer" SP user-name]
        b"GROUP" => {
            none(&p)?;
            let ((group, membership, rule, members, latest), offer) = complete(
                args,
                (
                    (
                        arg(group_name),
                        arg(keyword(Membership::from_wire)),
                        arg(keyword(JoinRule::from_wire)),
                        arg(number),
                        arg(number),
                    ),
                    opt(arg(offer)),
                ),
            )?;
            Ok(match offer {
                None => Item::Group { group, membership, rule, members, latest },
                Some(offer) => {
                    Item::GroupOffered { group, membership, rule, members, latest, offer }
                }
            })
        }
        // conv-item = "CONV" SP conv SP seq [SP seq SP count]
        b"CONV" => {
            none(&p)?;
            let ((conv, latest), marker) =
                complete(args, ((arg(conv), arg(number)), opt((arg(number), arg(number)))))?;
            Ok(match marker {
                None => Item::Conversation { conv, latest },
                Some((read, unread)) => Item::ConversationMarked { conv, latest, read, unread },
            })
        }
        // ban-item = "BAN" SP group-name SP user-name SP user-name
        b"BAN" => {
            none(&p)?;
            let (group, user, by) =
                complete(args, (arg(group_name), arg(user_name), arg(user_name)))?;
            Ok(Item::Ban { group, user, by })
        }
        // member-item = "MEMBER" SP group-name SP user-name SP role SP presence
        b"MEMBER" => {
            none(&p)?;
            let (group, user, role, presence) = complete(
                args,
                (
                    arg(group_name),
                    arg(user_name),
                    arg(keyword(Role::from_wire)),
                    arg(keyword(Presence::from_wire)),
                ),
            )?;
            Ok(Item::Member { group, user, role, presence })
        }
        // online-item = "ONLINE" SP user-name
        b"ONLINE" => {
            none(&p)?;
            Ok(Item::Online { user: complete(args, arg(user_name))? })
        }
        // have-item = "HAVE" SP file-id SP number SP number
        b"HAVE" => {
            none(&p)?;
            let (file, offset, length) = complete(args, (arg(file_id), arg(number), arg(number)))?;
            Ok(Item::Have { file, offset, length })
        }
        // chunk-item = "CHUNK" SP file-id SP number payload-marker
        b"CHUNK" => {
            let (file, offset) = complete(args, (arg(file_id), arg(number)))?;
            Ok(Item::Chunk { file, offset, data: required(p)? })
        }
        // token-item = "TOKEN" SP token-id SP millis SP millis SP millis SP address
        //              payload-marker
        b"TOKEN" => {
            let (token, created, used, expires, address) =
                complete(args, (arg(number), arg(number), arg(number), arg(number), arg(address)))?;
            let label = payload_as(required(p)?, ErrorCode::BadText, Text::from_bytes)?;
            Ok(Item::Token { token, created, used, expires, address, label })
        }
        _ => Err(PError::new(ErrorCode::UnknownCommand, "unknown reply item")),
    }
}
