//! Writing server frames.

use bytes::BytesMut;

use super::{Item, OkReply, ServerFrame};
use crate::codec::Encode;
use crate::event::encode::{put_event, put_failure, put_stored};
use crate::event::{Event, StoredEvent};
use crate::types::OfferStatus;
use crate::wire::Put;

impl Encode for ServerFrame {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            ServerFrame::Ok { tag, reply } => {
                out.raw(tag.as_bytes()).word(b"OK");
                put_ok(out, reply);
            }
            ServerFrame::Err { tag, failure } => {
                out.raw(tag.as_bytes()).word(b"ERR");
                put_failure(out, failure);
                out.end();
            }
            ServerFrame::Item { tag, item } => {
                out.raw(tag.as_bytes());
                put_item(out, item);
            }
            ServerFrame::Event(e) => put_event(out, e),
        }
    }

    fn size_hint(&self) -> usize {
        // A message's frame is its text and a line of at most about 150 bytes (a
        // conversation, two numbers, a user, the payload's length); other frames
        // are short, or lists that grow as they are written anyway.
        match self {
            ServerFrame::Event(Event::Stored(e)) => EventFrame(e).size_hint(),
            _ => 128,
        }
    }
}

/// The event frame of a stored event, borrowed: the same bytes as
/// `ServerFrame::Event(Event::Stored(event))`, without cloning the event into a
/// frame first (the hub encodes one of these per message it stores).
#[derive(Clone, Copy, Debug)]
pub struct EventFrame<'a>(pub &'a StoredEvent);

impl Encode for EventFrame<'_> {
    fn encode(&self, out: &mut BytesMut) {
        out.raw(b"*");
        put_stored(out, self.0);
    }

    fn size_hint(&self) -> usize {
        match self.0 {
            StoredEvent::Message { text, .. } => 192 + text.len(),
            _ => 128,
        }
    }
}

fn put_ok(out: &mut BytesMut, reply: &OkReply) {
    match reply {
        OkReply::Hello { version, server, features, limits } => {
            out.word(b"HELLO").num(u64::from(*version)).word(server.as_bytes());
            if !features.as_slice().is_empty() {
                out.word(b"features=");
                for (i, f) in features.as_slice().iter().enumerate() {
                    if i > 0 {
                        out.raw(b",");
                    }
                    out.raw(f.as_bytes());
                }
            }
            for (key, value) in limits.entries() {
                out.word(key.as_bytes()).raw(b"=");
                out.raw(itoa::Buffer::new().format(value).as_bytes());
            }
        }
        OkReply::Register { user } => {
            out.word(b"REGISTER").word(user.as_bytes());
        }
        OkReply::Login { user } => {
            out.word(b"LOGIN").word(user.as_bytes());
        }
        OkReply::Join { group, outcome } => {
            out.word(b"JOIN").word(group.as_bytes()).word(outcome.as_str().as_bytes());
        }
        OkReply::Invite { group, user, outcome } => {
            out.word(b"INVITE").word(group.as_bytes()).word(user.as_bytes());
            out.word(outcome.as_str().as_bytes());
        }
        OkReply::Send { conv, seq, time } => {
            out.word(b"SEND").conv(conv).num(*seq).num(*time);
        }
        OkReply::History { conv, latest, oldest } => {
            out.word(b"HISTORY").conv(conv).num(*latest).num(*oldest);
        }
        OkReply::Listed { verb, count } => {
            out.word(verb.as_str().as_bytes()).num(*count);
        }
        OkReply::FileOffer { file, status } => {
            out.word(b"FILE-OFFER").word(file.as_bytes());
            match status {
                OfferStatus::Need => out.word(b"need"),
                OfferStatus::Done(seq) => out.word(b"done").num(*seq),
            };
        }
        OkReply::FileChunk { file, received } => {
            out.word(b"FILE-CHUNK").word(file.as_bytes()).num(*received);
        }
        OkReply::FileStatus { file, size, received } => {
            out.word(b"FILE-STATUS").word(file.as_bytes()).num(*size).num(*received);
        }
        OkReply::FileCommit { file, conv, seq } => {
            out.word(b"FILE-COMMIT").word(file.as_bytes()).conv(conv).num(*seq);
        }
        OkReply::FileGet { file, offset, length } => {
            out.word(b"FILE-GET").word(file.as_bytes()).num(*offset).num(*length);
        }
        OkReply::Auth { user } => {
            out.word(b"AUTH").word(user.as_bytes());
        }
        OkReply::Token { token, secret } => {
            out.word(b"TOKEN").num(*token).word(&secret.to_hex());
        }
        OkReply::Read { conv, seq } => {
            out.word(b"READ").conv(conv).num(*seq);
        }
        OkReply::Done { verb } => {
            out.word(verb.as_str().as_bytes());
        }
    }
    out.end();
}

fn put_item(out: &mut BytesMut, item: &Item) {
    match item {
        Item::Stored(s) => put_stored(out, s),
        Item::Request { group, user, time, reason } => {
            out.word(b"REQUEST").word(group.as_bytes()).word(user.as_bytes()).num(*time);
            match reason {
                Some(r) => out.end_with_payload(r.as_bytes()),
                None => out.end(),
            }
        }
        Item::Group { group, membership, rule, members, latest } => {
            out.word(b"GROUP").word(group.as_bytes()).word(membership.as_str().as_bytes());
            out.word(rule.as_str().as_bytes()).num(*members).num(*latest).end();
        }
        Item::Conversation { conv, latest } => {
            out.word(b"CONV").conv(conv).num(*latest).end();
        }
        Item::ConversationMarked { conv, latest, read, unread } => {
            out.word(b"CONV").conv(conv).num(*latest).num(*read).num(*unread).end();
        }
        Item::GroupOffered { group, membership, rule, members, latest, offer } => {
            out.word(b"GROUP").word(group.as_bytes()).word(membership.as_str().as_bytes());
            out.word(rule.as_str().as_bytes()).num(*members).num(*latest);
            out.word(b"offer").word(offer.as_bytes()).end();
        }
        Item::Ban { group, user, by } => {
            out.word(b"BAN").word(group.as_bytes()).word(user.as_bytes());
            out.word(by.as_bytes()).end();
        }
        Item::Member { group, user, role, presence } => {
            out.word(b"MEMBER").word(group.as_bytes()).word(user.as_bytes());
            out.word(role.as_str().as_bytes()).word(presence.as_str().as_bytes()).end();
        }
        Item::Online { user } => {
            out.word(b"ONLINE").word(user.as_bytes()).end();
        }
        Item::Have { file, offset, length } => {
            out.word(b"HAVE").word(file.as_bytes()).num(*offset).num(*length).end();
        }
        Item::Chunk { file, offset, data } => {
            out.word(b"CHUNK").word(file.as_bytes()).num(*offset).end_with_payload(data);
        }
        Item::Token { token, created, used, expires, address, label } => {
            out.word(b"TOKEN").num(*token).num(*created).num(*used).num(*expires);
            out.word(address.as_bytes()).end_with_payload(label.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Conversation, Text};

    #[test]
    fn a_message_frame_fits_in_what_its_encoder_allocates() {
        // The longest line a message can have: the longest names and numbers.
        let name = "a".repeat(32);
        for text in ["x", &"y".repeat(128), &"z".repeat(crate::TEXT_MAX)] {
            for conv in [format!("#{name}"), format!("@{name}")] {
                let frame = ServerFrame::Event(Event::Stored(StoredEvent::Message {
                    conv: conv.parse::<Conversation>().unwrap(),
                    seq: u64::MAX,
                    time: u64::MAX,
                    from: name.parse().unwrap(),
                    text: Text::new(text).unwrap(),
                }));
                let len = frame.to_bytes().len();
                assert!(len <= frame.size_hint(), "{len} > {}", frame.size_hint());
            }
        }
    }
}
