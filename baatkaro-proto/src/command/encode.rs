//! Writing client frames.

use bytes::{Bytes, BytesMut};

use super::{Command, Request};
use crate::codec::Encode;
use crate::types::HistoryRange;
use crate::wire::Put;

impl Request {
    /// Appends the frame to `head`, except that a FILE-CHUNK's payload and the CRLF
    /// after it are left out and returned, for the caller to write after `head`
    /// (then `b"\r\n"`) without copying the chunk. Any other frame is appended
    /// whole, and `None` returned.
    pub fn encode_head(&self, head: &mut BytesMut) -> Option<Bytes> {
        match &self.command {
            Command::FileChunk { file, offset, data } => {
                head.raw(self.tag.as_bytes()).word(self.command.verb().as_str().as_bytes());
                head.word(file.as_bytes()).num(*offset).end_with_marker(data.len());
                Some(data.clone())
            }
            _ => {
                self.encode(head);
                None
            }
        }
    }
}

impl Encode for Request {
    fn encode(&self, out: &mut BytesMut) {
        out.raw(self.tag.as_bytes()).word(self.command.verb().as_str().as_bytes());
        match &self.command {
            Command::Hello { versions, client } => {
                out.raw(b" ");
                for (i, v) in versions.as_slice().iter().enumerate() {
                    if i > 0 {
                        out.raw(b",");
                    }
                    out.raw(itoa::Buffer::new().format(*v).as_bytes());
                }
                if let Some(c) = client {
                    out.word(c.as_bytes());
                }
                out.end();
            }
            Command::Register { user, password } | Command::Login { user, password } => {
                out.word(user.as_bytes()).end_with_payload(password.expose());
            }
            Command::Ping | Command::Groups | Command::Conversations | Command::Tokens => out.end(),
            Command::ConversationsWithMarkers => out.word(b"read").end(),
            Command::GroupsWithOffers => out.word(b"offers").end(),
            Command::Read { conv, seq } => out.conv(conv).num(*seq).end(),
            Command::Logout { revoke } => {
                if *revoke {
                    out.word(b"revoke");
                }
                out.end();
            }
            Command::Create { group, rule } => {
                out.word(group.as_bytes());
                if let Some(rule) = rule {
                    out.word(rule.as_str().as_bytes());
                }
                out.end();
            }
            Command::Join { group, reason } => {
                out.word(group.as_bytes());
                match reason {
                    Some(r) => out.end_with_payload(r.as_bytes()),
                    None => out.end(),
                }
            }
            Command::Requests { group }
            | Command::Accept { group }
            | Command::Decline { group }
            | Command::Leave { group }
            | Command::TransferAccept { group }
            | Command::TransferCancel { group }
            | Command::Delete { group }
            | Command::Bans { group }
            | Command::Members { group } => out.word(group.as_bytes()).end(),
            Command::Approve { group, user }
            | Command::Reject { group, user }
            | Command::Invite { group, user }
            | Command::Unban { group, user }
            | Command::Promote { group, user }
            | Command::Demote { group, user }
            | Command::Transfer { group, user } => {
                out.word(group.as_bytes()).word(user.as_bytes()).end();
            }
            Command::Kick { group, user, ban } => {
                out.word(group.as_bytes()).word(user.as_bytes());
                if *ban {
                    out.word(b"ban");
                }
                out.end();
            }
            Command::Rule { group, rule } => {
                out.word(group.as_bytes()).word(rule.as_str().as_bytes()).end();
            }
            Command::Online { group } => {
                if let Some(g) = group {
                    out.word(g.as_bytes());
                }
                out.end();
            }
            Command::Send { to, key, text } => {
                out.conv(to).word(key.as_bytes()).end_with_payload(text.as_bytes());
            }
            Command::History { conv, range, limit } => {
                out.conv(conv);
                match range {
                    HistoryRange::After(seq) => out.word(b"after").num(*seq),
                    HistoryRange::Last => out.word(b"last"),
                };
                out.num(u64::from(*limit)).end();
            }
            Command::FileOffer { to, size, sha256, name } => {
                out.conv(to).num(*size).word(&sha256.to_hex()).end_with_payload(name.as_bytes());
            }
            Command::FileChunk { file, offset, data } => {
                out.word(file.as_bytes()).num(*offset).end_with_payload(data);
            }
            Command::FileStatus { file }
            | Command::FileCommit { file }
            | Command::FileCancel { file } => {
                out.word(file.as_bytes()).end();
            }
            Command::Files { conv } => out.conv(conv).end(),
            Command::FileGet { file, offset, length } => {
                out.word(file.as_bytes()).num(*offset).num(*length).end();
            }
            Command::Auth { user, token, secret } => {
                out.word(user.as_bytes()).num(*token).word(&secret.to_hex()).end();
            }
            Command::Token { label } => out.end_with_payload(label.as_bytes()),
            Command::Revoke { token } => out.num(*token).end(),
            Command::Password { old, new } => {
                let payload = [old.expose(), new.expose()].concat();
                out.num(old.expose().len() as u64).end_with_payload(&payload);
            }
            Command::DeleteAccount { password } => out.end_with_payload(password.expose()),
        }
    }
}
