//! Parsing of client frames. One function per grammar rule; the rule is in its doc.

use bytes::Bytes;
use nom::Parser;
use nom::combinator::opt;

use super::{Command, Request, Verb};
use crate::codec::Decode;
use crate::error::{DecodeError, ErrorCode};
use crate::hot;
use crate::parse::{
    PError, PResult, arg, complete, conv, file_id, group_name, idem_key, keyword, none, number,
    number_u32, payload_as, required, secret, sha256, software, tag, token, user_name,
};
use crate::types::{HistoryRange, JoinRule, OfferName, Password, Text, Versions};

impl Decode for Request {
    /// `request = tag SP verb args [payload-marker]`
    fn decode_frame(line: &[u8], payload: Option<Bytes>) -> Result<Self, DecodeError> {
        Self::decode_padded(line, line.len(), payload)
    }

    fn decode_padded(buf: &[u8], len: usize, payload: Option<Bytes>) -> Result<Self, DecodeError> {
        let mut payload = payload;
        if let Some(fields) = hot::send(buf, len, &mut payload) {
            return Ok(hot::send_request(fields));
        }
        Request::decode_general(&buf[..len.min(buf.len())], payload)
    }
}

impl Request {
    /// The rule-by-rule parser, which decides every frame the fast path declines.
    pub(crate) fn decode_general(line: &[u8], payload: Option<Bytes>) -> Result<Self, DecodeError> {
        let (rest, tag) = match tag(line) {
            Ok(ok) => ok,
            Err(_) => {
                return Err(DecodeError::new(None, ErrorCode::BadTag, "missing or invalid tag"));
            }
        };
        command(rest, payload)
            .map(|command| Request { tag, command })
            .map_err(|e| DecodeError::new(Some(tag), e.code, e.detail))
    }
}

/// `command = verb args` where `verb = 1*(ALPHA / "-")` selects the arguments' rule.
fn command(i: &[u8], payload: Option<Bytes>) -> Result<Command, PError> {
    let (args, raw_verb) =
        arg(token).parse(i).map_err(|_| PError::new(ErrorCode::UnknownCommand, "missing verb"))?;
    let verb = Verb::from_wire(raw_verb)
        .ok_or_else(|| PError::new(ErrorCode::UnknownCommand, "unknown command"))?;
    let p = payload;
    Ok(match verb {
        Verb::Hello => {
            none(&p)?;
            let (versions, client) = complete(args, (arg(versions), opt(arg(software))))?;
            Command::Hello { versions, client }
        }
        Verb::Register => {
            let user = complete(args, arg(user_name))?;
            Command::Register { user, password: password(p)? }
        }
        Verb::Login => {
            let user = complete(args, arg(user_name))?;
            Command::Login { user, password: password(p)? }
        }
        Verb::Logout => {
            none(&p)?;
            let revoke = complete(args, opt(arg(revoke_flag)))?;
            Command::Logout { revoke: revoke.is_some() }
        }
        Verb::Ping => bare(args, &p, Command::Ping)?,
        Verb::Create => {
            none(&p)?;
            let (group, rule) = complete(args, (arg(group_name), opt(arg(join_rule))))?;
            Command::Create { group, rule }
        }
        Verb::Join => {
            let group = complete(args, arg(group_name))?;
            let reason =
                p.map(|b| payload_as(b, ErrorCode::BadText, Text::from_bytes)).transpose()?;
            Command::Join { group, reason }
        }
        Verb::Requests => Command::Requests { group: group_only(args, &p)? },
        Verb::Approve => group_user(args, &p, |group, user| Command::Approve { group, user })?,
        Verb::Reject => group_user(args, &p, |group, user| Command::Reject { group, user })?,
        Verb::Invite => group_user(args, &p, |group, user| Command::Invite { group, user })?,
        Verb::Accept => Command::Accept { group: group_only(args, &p)? },
        Verb::Decline => Command::Decline { group: group_only(args, &p)? },
        Verb::Leave => Command::Leave { group: group_only(args, &p)? },
        Verb::Kick => {
            none(&p)?;
            let (group, user, ban) =
                complete(args, (arg(group_name), arg(user_name), opt(arg(ban_flag))))?;
            Command::Kick { group, user, ban: ban.is_some() }
        }
        Verb::Unban => group_user(args, &p, |group, user| Command::Unban { group, user })?,
        Verb::Promote => group_user(args, &p, |group, user| Command::Promote { group, user })?,
        Verb::Demote => group_user(args, &p, |group, user| Command::Demote { group, user })?,
        Verb::Transfer => group_user(args, &p, |group, user| Command::Transfer { group, user })?,
        Verb::TransferAccept => Command::TransferAccept { group: group_only(args, &p)? },
        Verb::TransferCancel => Command::TransferCancel { group: group_only(args, &p)? },
        Verb::Rule => {
            none(&p)?;
            let (group, rule) = complete(args, (arg(group_name), arg(join_rule)))?;
            Command::Rule { group, rule }
        }
        Verb::Delete => Command::Delete { group: group_only(args, &p)? },
        Verb::Groups => {
            none(&p)?;
            match complete(args, opt(arg(offers_flag)))? {
                Some(()) => Command::GroupsWithOffers,
                None => Command::Groups,
            }
        }
        Verb::Conversations => {
            none(&p)?;
            match complete(args, opt(arg(read_flag)))? {
                Some(()) => Command::ConversationsWithMarkers,
                None => Command::Conversations,
            }
        }
        Verb::Members => Command::Members { group: group_only(args, &p)? },
        Verb::Online => {
            none(&p)?;
            Command::Online { group: complete(args, opt(arg(group_name)))? }
        }
        Verb::Send => {
            let (to, key) = complete(args, (arg(conv), arg(idem_key)))?;
            let text = payload_as(required(p)?, ErrorCode::BadText, Text::from_bytes)?;
            Command::Send { to, key, text }
        }
        Verb::History => {
            none(&p)?;
            let (conv, range, limit) =
                complete(args, (arg(conv), arg(history_range), arg(number_u32(1))))?;
            Command::History { conv, range, limit }
        }
        Verb::FileOffer => {
            let (to, size, sha256) = complete(args, (arg(conv), arg(number), arg(sha256)))?;
            let name = payload_as(required(p)?, ErrorCode::BadFileName, OfferName::from_bytes)?;
            Command::FileOffer { to, size, sha256, name }
        }
        Verb::FileChunk => {
            let (file, offset) = complete(args, (arg(file_id), arg(number)))?;
            Command::FileChunk { file, offset, data: required(p)? }
        }
        Verb::FileStatus => {
            none(&p)?;
            Command::FileStatus { file: complete(args, arg(file_id))? }
        }
        Verb::FileCommit => {
            none(&p)?;
            Command::FileCommit { file: complete(args, arg(file_id))? }
        }
        Verb::FileCancel => {
            none(&p)?;
            Command::FileCancel { file: complete(args, arg(file_id))? }
        }
        Verb::Files => {
            none(&p)?;
            Command::Files { conv: complete(args, arg(conv))? }
        }
        Verb::FileGet => {
            none(&p)?;
            let (file, offset, length) = complete(args, (arg(file_id), arg(number), arg(number)))?;
            Command::FileGet { file, offset, length }
        }
        Verb::Auth => {
            none(&p)?;
            let (user, token, secret) = complete(args, (arg(user_name), arg(number), arg(secret)))?;
            Command::Auth { user, token, secret }
        }
        Verb::Token => {
            complete(args, |i| Ok((i, ())))?;
            Command::Token {
                label: payload_as(required(p)?, ErrorCode::BadText, Text::from_bytes)?,
            }
        }
        Verb::Tokens => bare(args, &p, Command::Tokens)?,
        Verb::Revoke => {
            none(&p)?;
            Command::Revoke { token: complete(args, arg(number))? }
        }
        Verb::Password => {
            let old_len = complete(args, arg(number))?;
            let (old, new) = old_and_new(required(p)?, old_len)?;
            Command::Password { old, new }
        }
        Verb::DeleteAccount => {
            complete(args, |i| Ok((i, ())))?;
            Command::DeleteAccount { password: password(p)? }
        }
        // read = "READ" SP conv SP seq
        Verb::Read => {
            none(&p)?;
            let (conv, seq) = complete(args, (arg(conv), arg(number)))?;
            Command::Read { conv, seq }
        }
        // bans = "BANS" SP group-name
        Verb::Bans => Command::Bans { group: group_only(args, &p)? },
    })
}

/// PASSWORD's payload: the old password (`old_len` octets), then the new one; each
/// `password = 1*1024OCTET`.
fn old_and_new(payload: Bytes, old_len: u64) -> Result<(Password, Password), PError> {
    let at = usize::try_from(old_len)
        .ok()
        .filter(|at| (1..payload.len()).contains(at))
        .ok_or_else(|| PError::syntax("the old password's length must leave a new password"))?;
    let old = payload_as(payload.slice(..at), ErrorCode::Syntax, Password::from_bytes)?;
    let new = payload_as(payload.slice(at..), ErrorCode::Syntax, Password::from_bytes)?;
    Ok((old, new))
}

/// A command with no arguments and no payload.
fn bare(args: &[u8], p: &Option<Bytes>, command: Command) -> Result<Command, PError> {
    none(p)?;
    complete(args, |i| Ok((i, ())))?;
    Ok(command)
}

/// `args = SP group-name`, no payload.
fn group_only(args: &[u8], p: &Option<Bytes>) -> Result<crate::types::GroupName, PError> {
    none(p)?;
    complete(args, arg(group_name))
}

/// `args = SP group-name SP user-name`, no payload.
fn group_user(
    args: &[u8],
    p: &Option<Bytes>,
    build: impl FnOnce(crate::types::GroupName, crate::types::UserName) -> Command,
) -> Result<Command, PError> {
    none(p)?;
    let (group, user) = complete(args, (arg(group_name), arg(user_name)))?;
    Ok(build(group, user))
}

/// `password = 1*1024OCTET`, carried as the payload.
fn password(p: Option<Bytes>) -> Result<Password, PError> {
    payload_as(required(p)?, ErrorCode::Syntax, Password::from_bytes)
}

/// `versions = version *15("," version)`
fn versions(i: &[u8]) -> PResult<'_, Versions> {
    let (rest, list) = nom::multi::separated_list1(nom::bytes::complete::tag(&b","[..]), |i| {
        let (r, n) = number(i)?;
        u16::try_from(n)
            .map(|v| (r, v))
            .map_err(|_| nom::Err::Failure(PError::syntax("version out of range")))
    })
    .parse(i)?;
    Versions::new(list)
        .map(|v| (rest, v))
        .map_err(|e| nom::Err::Failure(PError::new(ErrorCode::Syntax, e.to_string())))
}

/// `join-rule = "approval" / "open" / "invite"`
pub(crate) fn join_rule(i: &[u8]) -> PResult<'_, JoinRule> {
    keyword(JoinRule::from_wire)(i)
}

/// `"revoke"`, LOGOUT's one option.
fn revoke_flag(i: &[u8]) -> PResult<'_, ()> {
    keyword(|b| (b == b"revoke").then_some(()))(i)
}

/// `"read"`, the option of CONVERSATIONS that asks for read markers.
fn read_flag(i: &[u8]) -> PResult<'_, ()> {
    keyword(|b| (b == b"read").then_some(()))(i)
}

/// `"offers"`, the option of GROUPS that asks for pending ownership offers.
fn offers_flag(i: &[u8]) -> PResult<'_, ()> {
    keyword(|b| (b == b"offers").then_some(()))(i)
}

/// `ban-flag = "ban"`
fn ban_flag(i: &[u8]) -> PResult<'_, ()> {
    keyword(|b| (b == b"ban").then_some(()))(i)
}

/// `history-range = "after" SP seq / "last"`
fn history_range(i: &[u8]) -> PResult<'_, HistoryRange> {
    let (rest, word) = token(i)?;
    match word {
        b"after" => arg(number).map(HistoryRange::After).parse(rest),
        b"last" => Ok((rest, HistoryRange::Last)),
        _ => Err(nom::Err::Failure(PError::syntax("expected 'after SEQ' or 'last'"))),
    }
}
