//! The BaatKaro target: the release server (started here, or running), members
//! that register and join their group (or pair off), SENDs through
//! `baatkaro-proto`'s codec, and deliveries checked in the conversation's sequence
//! order.

use std::fmt::Write as _;
use std::sync::Arc;

use baatkaro_proto::{
    Command, Conversation, Encode, Event, IdemKey, JoinRule, OkReply, Password, Peeked, Request,
    ServerFrame, StoredEvent, Tag, Text, UserName, Versions,
};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::check::{STAMP_DIGITS, Tally, stamp_of, write_stamp};
use super::frames::{Reader, Seen};
use super::member::{Member, STALL, Wire};
use super::process::{Owned, fail, rss_of};
use super::run::Options;

/// Starts the release server that sits next to this binary (port 0, a temporary
/// data directory, the test-only password hash, budgets raised), pinned to core 0
/// if asked; returns it and its address.
pub fn start_server(pin: bool) -> (Owned, String) {
    let bin = std::env::current_exe().unwrap_or_default().with_file_name("baatkaro-server");
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let data = dir.path().join("data");
    let mut args: Vec<&std::ffi::OsStr> = [
        "--insecure-test-hash",
        "--log",
        "warn,baatkaro_server::server=info",
        "--logins-per-minute",
        "1000000",
        "--max-per-address",
        "100000",
        "--max-connections",
        "100000",
        "--limit-rate",
        "1000000",
        "--limit-burst",
        "1000000",
        "--limit-queue",
        "67108864",
        "--data-dir",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    args.push(data.as_os_str());
    let (child, addr) = crate::spawn_server(&bin, &args, pin).unwrap_or_else(|e| fail(&e));
    (Owned::new(child, dir), addr)
}

fn req(tag: &str, command: Command) -> Vec<u8> {
    let tag = Tag::new(tag).unwrap_or_else(|_| fail("bad tag"));
    Request { tag, command }.to_bytes().to_vec()
}

/// HELLO, then REGISTER as `user` (tagged `h` and `r`): how every connection starts.
fn hello_and_register(user: UserName) -> Vec<u8> {
    let versions = Versions::new(vec![1]).unwrap_or_else(|_| fail("v"));
    let mut bytes = req("h", Command::Hello { versions, client: None });
    let password = Password::new("load-password").unwrap_or_else(|_| fail("pw"));
    bytes.extend(req("r", Command::Register { user, password }));
    bytes
}

/// Reads until the final reply with `tag`; fails on an error reply, or if nothing
/// arrives for [`STALL`]. Frames after it in the same read are read too (set-up
/// sends nothing else that needs an answer).
async fn until_reply(s: &mut TcpStream, r: &mut Reader, tag: &str) {
    loop {
        let mut replied = false;
        let seen = r.drain(
            b"",
            |_, _| None,
            |seen| match seen {
                Seen::Frame(Ok(Peeked::Frame(ServerFrame::Ok { tag: t, .. })))
                    if t.as_str() == tag =>
                {
                    replied = true;
                    Ok(())
                }
                Seen::Frame(Ok(Peeked::Frame(ServerFrame::Err { tag: t, failure })))
                    if t.as_str() == tag =>
                {
                    Err(format!("{tag}: {}", failure.code))
                }
                Seen::Frame(Err(e)) => Err(format!("bad frame: {e}")),
                _ => Ok(()),
            },
        );
        if let Err(why) = seen {
            fail(&why);
        }
        if replied {
            return;
        }
        let into = r.buffer();
        into.reserve(64 * 1024);
        match tokio::time::timeout(STALL, s.read_buf(into)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => fail("the server closed a connection during setup"),
            Err(_) => fail(&format!("{tag}: no reply for {}s", STALL.as_secs())),
        }
    }
}

/// The members of a group slot, by their place: all of them share one list.
struct Senders {
    names: Arc<[UserName]>,
}

impl Senders {
    /// The place of `name` among `names`, whose names end in `-{place}`: the digits
    /// at its end, then one comparison of two inline names. A hash table of names
    /// cost the generator 7 % of its time.
    fn index_of(&self, bytes: &[u8]) -> Option<usize> {
        let dash = bytes.iter().rposition(|&b| b == b'-')?;
        let i = bytes[dash + 1..].iter().try_fold(0usize, |acc, &d| {
            d.is_ascii_digit().then(|| acc.saturating_mul(10).saturating_add(usize::from(d - b'0')))
        })?;
        (self.names.get(i)?.as_bytes() == bytes).then_some(i)
    }
}

/// How a BaatKaro member speaks: SENDs with idempotency keys; MSG events matched
/// in its own receive buffer against what it sent ([`frames`](super::frames)).
pub struct BaatKaro {
    reader: Reader,
    name: String,
    conv: Conversation,
    /// `conv` as deliveries name it (`#group`, or `@peer` in a pair).
    conv_bytes: Vec<u8>,
    tag: Tag,
    senders: Senders,
    /// Each text is this one with its time stamp written over the start.
    body: Vec<u8>,
    key: String,
}

impl BaatKaro {
    /// Whether `text` is a text this run sends: a time stamp, then the body.
    fn is_ours(body: &[u8], text: &[u8]) -> bool {
        text.len() == body.len()
            && text[STAMP_DIGITS..] == body[STAMP_DIGITS..]
            && stamp_of(text).is_some()
    }
}

impl Wire for BaatKaro {
    fn buffer(&mut self) -> &mut BytesMut {
        self.reader.buffer()
    }

    fn send(&mut self, k: usize, micros: u64, out: &mut BytesMut) {
        write_stamp(&mut self.body[..STAMP_DIGITS], micros);
        let text = Text::from_bytes(Bytes::copy_from_slice(&self.body))
            .unwrap_or_else(|_| fail("bad text"));
        self.key.clear();
        let _ = write!(self.key, "{}-{k}", self.name);
        let key = IdemKey::new(&self.key).unwrap_or_else(|_| fail("bad key"));
        Request { tag: self.tag, command: Command::Send { to: self.conv, key, text } }.encode(out);
    }

    fn take(
        &mut self,
        now: u64,
        tally: &mut Tally,
        latencies: &mut Histogram<u64>,
    ) -> Result<usize, String> {
        let BaatKaro { reader, senders, body, conv_bytes, .. } = self;
        let mut acked = 0;
        // A message from a member with the text sent is matched in place; anything
        // else (replies, and a message the matcher does not take, which then
        // counts as a stranger's or fails the run for its text) is decoded.
        let expected = |from: &[u8], text: &[u8]| {
            let sender = senders.index_of(from)?;
            Self::is_ours(body, text).then_some(sender)
        };
        let mut delivered = |seq: u64, sender: Option<usize>, text: &[u8]| {
            if !Self::is_ours(body, text) {
                return Err(format!("a message's text is not one that was sent: {text:?}"));
            }
            tally.in_conversation_order(seq);
            tally.delivered_at(sender, text, now, latencies);
            Ok(())
        };
        reader.drain(conv_bytes, expected, |seen| match seen {
            Seen::Msg { seq, sender, text } => delivered(seq, Some(sender), text),
            Seen::Frame(Ok(Peeked::Msg(m))) => {
                delivered(m.seq(), senders.index_of(m.from_bytes()), m.text_bytes())
            }
            // The decoder reads an unusual spelling of a message whole.
            Seen::Frame(Ok(Peeked::Frame(ServerFrame::Event(Event::Stored(
                StoredEvent::Message { seq, from, text, .. },
            ))))) => delivered(seq, senders.index_of(from.as_bytes()), text.as_bytes()),
            Seen::Frame(Ok(Peeked::Frame(ServerFrame::Ok {
                reply: OkReply::Send { .. }, ..
            }))) => {
                acked += 1;
                Ok(())
            }
            Seen::Frame(Ok(Peeked::Frame(ServerFrame::Err { failure, .. }))) => {
                Err(failure.code.to_string())
            }
            Seen::Frame(Ok(Peeked::Frame(ServerFrame::Event(Event::Bye(f))))) => {
                Err(format!("BYE {}", f.code))
            }
            Seen::Frame(Ok(_)) => Ok(()),
            Seen::Frame(Err(e)) => Err(format!("bad frame: {e}")),
        })?;
        Ok(acked)
    }
}

/// Sets up every member against the server at `addr`: each registers and joins
/// its group (member 0 creates it), or, with `--private`, just registers.
pub async fn members(addr: &str, a: &Options) -> Vec<Member<BaatKaro>> {
    let mut conns = Vec::new();
    let run = format!("{:x}", std::process::id());
    let tag = Tag::new("s").unwrap_or_else(|_| fail("bad tag"));
    for g in 0..a.groups {
        let group: baatkaro_proto::GroupName =
            format!("load{run}-{g}").parse().unwrap_or_else(|_| fail("bad group name"));
        let names: Arc<[UserName]> = (0..a.members)
            .map(|k| format!("l{run}-{g}-{k}").parse().unwrap_or_else(|_| fail("bad name")))
            .collect();
        for i in 0..a.members {
            let name = names[i].to_string();
            let mut s =
                TcpStream::connect(addr).await.unwrap_or_else(|e| fail(&format!("{addr}: {e}")));
            let _ = s.set_nodelay(true);
            let mut reader = Reader::new(1 << 24);
            let mut hello = hello_and_register(names[i]);
            // A pair needs no group: each writes to the other.
            let (conv, last) = if a.private {
                let peer = *names.get(i ^ 1).unwrap_or_else(|| fail("odd member count"));
                (Conversation::Direct(peer), "r")
            } else {
                hello.extend(if i == 0 {
                    req("g", Command::Create { group, rule: Some(JoinRule::Open) })
                } else {
                    req("g", Command::Join { group, reason: None })
                });
                (Conversation::Group(group), "g")
            };
            if s.write_all(&hello).await.is_err() {
                fail("setup write failed");
            }
            until_reply(&mut s, &mut reader, last).await;
            // A pair is two neighbours, 2k and 2k + 1, and both see all of its
            // conversation, their own messages included.
            let expected = if a.private { (i & !1)..(i & !1) + 2 } else { 0..a.members };
            let tally = Tally::new(a.members, expected, Some(i), a.messages);
            let senders = Senders { names: names.clone() };
            let wire = BaatKaro {
                reader,
                name: name.clone(),
                conv,
                conv_bytes: conv.to_string().into_bytes(),
                tag,
                senders,
                body: vec![b'x'; a.size.max(STAMP_DIGITS)],
                key: String::new(),
            };
            conns.push(Member { name, stream: s, wire, tally });
        }
    }
    conns
}

/// Opens `k` logged-in connections that then say nothing, and reports the
/// server's memory per connection.
pub async fn idle_run(addr: &str, k: usize, pid: Option<u32>, json: bool) {
    let rss = || rss_of(pid?);
    let before = rss();
    let run = format!("{:x}", std::process::id());
    let mut conns = Vec::with_capacity(k);
    for i in 0..k {
        let mut s =
            TcpStream::connect(addr).await.unwrap_or_else(|e| fail(&format!("{addr}: {e}")));
        let mut reader = Reader::new(1 << 20);
        let user = format!("i{run}-{i}").parse().unwrap_or_else(|_| fail("bad user name"));
        if s.write_all(&hello_and_register(user)).await.is_err() {
            fail("setup write failed");
        }
        until_reply(&mut s, &mut reader, "r").await;
        conns.push(s);
    }
    let after = rss();
    let per = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) / k as u64),
        _ => None,
    };
    if json {
        println!(
            "{{\"connections\":{k},\"server_rss_bytes\":{},\"rss_per_connection_bytes\":{}}}",
            after.map_or("null".into(), |r| r.to_string()),
            per.map_or("null".into(), |p| p.to_string())
        );
    } else {
        println!("{k} idle logged-in connections");
        if let (Some(a), Some(p)) = (after, per) {
            println!("server RSS {} MiB, {p} bytes per connection", a >> 20);
        }
    }
}
