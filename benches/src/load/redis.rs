//! The Redis target: Debian's `redis-server` (started here, or running), measured
//! in the same shape as BaatKaro. A group is a channel; each member is one RESP3
//! connection that SUBSCRIBEs to its channel and PUBLISHes into it (RESP3 allows
//! commands in the subscribed state), a PUBLISH's integer reply being its
//! acknowledgement. With `--private` each pair of members is a channel of two: as
//! in BaatKaro's private conversations, both members receive every message of the
//! pair, their own included. Redis numbers nothing, so each message carries
//! its sender's place and its number among the sender's messages, and every member
//! checks that each sender's arrive in order without a gap.

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::check::{STAMP_DIGITS, Tally, eight_digits, write_stamp};
use super::member::{Member, STALL, Wire};
use super::process::{Owned, fail};
use super::resp::{self, Frame, Limits, Value};
use super::run::Options;

/// Where a payload holds the sender's place: eight digits after the time stamp.
const SENDER: std::ops::Range<usize> = STAMP_DIGITS..STAMP_DIGITS + 8;
/// Where a payload holds the message's number among its sender's: eight digits.
const NUMBER: std::ops::Range<usize> = SENDER.end..SENDER.end + 8;
/// The shortest payload: the stamp, the sender's place and the number.
pub const PAYLOAD_MIN: usize = NUMBER.end;
/// Places and numbers are eight digits.
const EIGHT_DIGITS: usize = 100_000_000;

/// Starts `redis-server` from the PATH on a free loopback port, storing nothing
/// (`--save '' --appendonly no`), in a temporary directory, pinned to core 0 if
/// asked; returns it and its address.
pub fn start_server(pin: bool) -> Result<(Owned, String), String> {
    // Redis cannot listen on port 0 and say which port it got: [`start`] takes a
    // free port from the kernel and hands it over. Another process may take it
    // meanwhile, so a start that fails is tried again on another port.
    let mut why = String::new();
    for _ in 0..5 {
        match start(pin) {
            Ok(started) => return Ok(started),
            Err(e) => why = e,
        }
    }
    Err(why)
}

/// Starts `redis-server` as [`start_server`] does, once.
fn start(pin: bool) -> Result<(Owned, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = crate::pinned("redis-server".as_ref(), pin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no", "--daemonize", "no", "--logfile", ""])
        // A subscriber may fall as far behind as a BaatKaro connection may
        // (`--limit-queue`) before it is cut off.
        .args(["--client-output-buffer-limit", "pubsub 67108864 0 0"])
        .arg("--dir")
        .arg(dir.path());
    let (child, _) = crate::spawn_until(cmd, true, "Ready to accept connections")
        .map_err(|e| format!("{e} (apt-get install redis-server)"))?;
    Ok((Owned::new(child, dir), format!("127.0.0.1:{port}")))
}

/// How a Redis member speaks: PUBLISHes written from a prepared head, messages
/// read borrowed from the read buffer.
pub struct Redis {
    buf: BytesMut,
    limits: Limits,
    /// `PUBLISH channel` and the payload's length, as RESP: all but the payload.
    head: Vec<u8>,
    /// The payload: stamp, sender place, number, then filler.
    body: Vec<u8>,
    /// The channel this member subscribes and publishes to.
    channel: Box<[u8]>,
    /// How many subscribers each PUBLISH must reach.
    receivers: i64,
}

impl Redis {
    /// A member at `place` that subscribes and publishes to `channel`, whose
    /// PUBLISHes must each reach `receivers` subscribers.
    fn new(channel: &str, place: usize, size: usize, receivers: i64) -> Self {
        // `baatkaro-load` refuses a smaller size; the floor keeps the indexing below
        // in bounds whatever the caller.
        let mut body = vec![b'x'; size.max(PAYLOAD_MIN)];
        write_stamp(&mut body[SENDER], place as u64);
        let mut head = Vec::new();
        resp::command(&mut head, &[b"PUBLISH", channel.as_bytes(), &body]);
        // Everything before the payload: the payload and its CRLF are written anew
        // for each message.
        head.truncate(head.len() - body.len() - 2);
        Redis {
            buf: BytesMut::new(),
            limits: Limits { blob: body.len().max(1 << 20), ..Limits::default() },
            head,
            body,
            channel: channel.as_bytes().into(),
            receivers,
        }
    }

    /// The first whole frame in the buffer, taken out (setup only: it allocates).
    fn frame(&mut self) -> Result<Option<String>, String> {
        let taken = match resp::next_frame(&self.buf, &self.limits) {
            Ok(Some((frame, n))) => (setup_reply(&frame), n),
            Ok(None) => return self.within_bounds().map(|()| None),
            Err(e) => return Err(e.to_string()),
        };
        self.buf.advance(taken.1);
        taken.0.map(Some)
    }

    /// An error if the buffer, which holds at most the start of one frame when this
    /// is asked, is larger than any frame this target takes: a frame within
    /// [`Limits`] may still nest aggregates of large strings without end.
    fn within_bounds(&self) -> Result<(), String> {
        let most = self.limits.blob + self.limits.line * 4;
        match self.buf.len() {
            n if n > most => Err(format!("a frame over {n} bytes")),
            _ => Ok(()),
        }
    }
}

/// What a frame during setup says: `hello` for HELLO's reply in RESP3,
/// `subscribed` for the confirmation of a SUBSCRIBE; an error for anything else.
fn setup_reply(frame: &Frame<'_>) -> Result<String, String> {
    match frame {
        Frame::Other(Value::Map(fields)) => {
            let proto = fields.iter().find(|(k, _)| k.bytes() == Some(b"proto"));
            match proto {
                Some((_, Value::Integer(3))) => Ok("hello".into()),
                _ => Err("the server does not speak RESP3 (HELLO 3)".into()),
            }
        }
        Frame::Other(Value::Push(items))
            if items.first().and_then(Value::bytes) == Some(b"subscribe") =>
        {
            Ok("subscribed".into())
        }
        Frame::Other(Value::Error(e)) => Err(String::from_utf8_lossy(e).into_owned()),
        other => Err(format!("unexpected during setup: {other:?}")),
    }
}

impl Wire for Redis {
    fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    fn send(&mut self, k: usize, micros: u64, out: &mut BytesMut) {
        write_stamp(&mut self.body[..STAMP_DIGITS], micros);
        write_stamp(&mut self.body[NUMBER], k as u64);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b"\r\n");
    }

    fn take(
        &mut self,
        now: u64,
        tally: &mut Tally,
        latencies: &mut Histogram<u64>,
    ) -> Result<usize, String> {
        let Redis { buf, limits, channel, receivers, .. } = self;
        let (mut pos, mut acked) = (0, 0);
        let outcome = loop {
            let (frame, n) = match resp::next_frame(&buf[pos..], limits) {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(acked),
                Err(e) => break Err(e.to_string()),
            };
            pos += n;
            match frame {
                Frame::Message { channel: c, payload } => {
                    let sender = payload.get(SENDER).and_then(eight_digits);
                    let number = payload.get(NUMBER).and_then(eight_digits);
                    match (sender, number) {
                        (Some(sender), Some(k)) if c == &**channel => {
                            let sender = sender as usize;
                            tally.in_sender_order(sender, k);
                            tally.delivered_at(Some(sender), payload, now, latencies);
                        }
                        // Not one of this run's messages, or not on this channel.
                        _ => _ = tally.delivered(None),
                    }
                }
                Frame::Other(Value::Integer(n)) if n == *receivers => acked += 1,
                Frame::Other(Value::Integer(n)) => {
                    break Err(format!("a PUBLISH reached {n} subscribers, not {receivers}"));
                }
                Frame::Other(Value::Error(e)) => break Err(String::from_utf8_lossy(e).into()),
                Frame::Other(other) => break Err(format!("unexpected {other:?}")),
            }
        };
        buf.advance(pos);
        // A frame that is not whole yet may not grow the buffer without bound.
        self.within_bounds()?;
        outcome
    }
}

/// Sets up every member against the Redis server at `addr`: each says `HELLO 3`
/// and subscribes to its channel, and all have subscribed before any publishes.
pub async fn members(addr: &str, a: &Options) -> Vec<Member<Redis>> {
    if a.members >= EIGHT_DIGITS || a.messages >= EIGHT_DIGITS {
        fail("the Redis target numbers members and messages with eight digits");
    }
    let run = format!("{:x}", std::process::id());
    let mut conns = Vec::new();
    for g in 0..a.groups {
        for i in 0..a.members {
            let name = format!("r{run}-{g}-{i}");
            // A pair is two neighbours, 2k and 2k + 1, with a channel of its own that
            // both subscribe to: each receives both members' messages, as a BaatKaro
            // member receives every message of its private conversation (the same
            // deliveries per message, so the same `deliveries_per_sec`).
            let (channel, expected, receivers) = if a.private {
                let pair = i & !1;
                (format!("load{run}-{g}-p{pair}"), pair..pair + 2, 2)
            } else {
                (format!("load{run}-{g}"), 0..a.members, a.members as i64)
            };
            let mut stream =
                TcpStream::connect(addr).await.unwrap_or_else(|e| fail(&format!("{addr}: {e}")));
            let _ = stream.set_nodelay(true);
            let mut hello = Vec::new();
            resp::command(&mut hello, &[b"HELLO", b"3"]);
            resp::command(&mut hello, &[b"SUBSCRIBE", channel.as_bytes()]);
            if stream.write_all(&hello).await.is_err() {
                fail("setup write failed");
            }
            let mut wire = Redis::new(&channel, i, a.size, receivers);
            let mut said = Vec::new();
            // Bounded: two replies are awaited, each read brings bytes, ends or
            // times out, and the buffer is bounded.
            while said.len() < 2 {
                match wire.frame() {
                    Ok(Some(what)) => said.push(what),
                    Ok(None) => {
                        let read = tokio::time::timeout(STALL, stream.read_buf(&mut wire.buf));
                        match read.await {
                            Ok(Ok(n)) if n > 0 => {}
                            Ok(_) => fail("the server closed a connection during setup"),
                            Err(_) => fail(&format!("{name}: no reply for {}s", STALL.as_secs())),
                        }
                    }
                    Err(e) => fail(&format!("{name}: {e}")),
                }
            }
            if said != ["hello", "subscribed"] {
                fail(&format!("{name}: setup said {said:?}"));
            }
            let tally = Tally::new(a.members, expected, Some(i), a.messages);
            conns.push(Member { name, stream, wire, tally });
        }
    }
    conns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_is_the_head_then_the_payload() {
        let mut w = Redis::new("d", 7, 40, 2);
        let mut out = BytesMut::new();
        w.send(3, 12, &mut out);
        let mut cmd = Vec::new();
        let payload = b"0000000000000012\
            00000007\
            00000003\
            xxxxxxxx";
        resp::command(&mut cmd, &[b"PUBLISH", b"d", payload]);
        assert_eq!(&out[..], &cmd[..]);
    }

    #[test]
    fn take_checks_messages_and_acknowledgements() {
        let mut w = Redis::new("c", 0, 32, 2);
        let mut out = BytesMut::new();
        for k in 0..3 {
            w.send(k, 5, &mut out);
        }
        // What the server would deliver: messages 0, 2 and 1 of sender 0 (place 0
        // is this member, so no latency), a PUBLISH acknowledged by 2 subscribers,
        // and one message cut in two.
        let message = |k: u64| {
            let mut p = *b"00000000000000050000000000000000";
            write_stamp(&mut p[NUMBER], k);
            let mut m = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$32\r\n".to_vec();
            m.extend_from_slice(&p);
            m.extend_from_slice(b"\r\n");
            m
        };
        let mut input = [message(0), message(2), b":2\r\n".to_vec(), message(1)].concat();
        let tail = input.split_off(input.len() - 10);
        let mut tally = Tally::new(1, 0..1, Some(0), 3);
        let mut hist = Histogram::new(3).unwrap();
        w.buf.extend_from_slice(&input);
        assert_eq!(w.take(10, &mut tally, &mut hist), Ok(1));
        assert_eq!(tally.seen().delivered, 2);
        w.buf.extend_from_slice(&tail);
        assert_eq!(w.take(10, &mut tally, &mut hist), Ok(0));
        assert!(w.buf.is_empty());
        let seen = tally.finish().unwrap();
        assert_eq!((seen.delivered, seen.lost, seen.reordered, seen.duplicated), (3, 0, 1, 1));
        assert_eq!(hist.len(), 0, "a member's own messages have no latency here");
        // A PUBLISH that reached too few subscribers, and an error, end the run.
        w.buf.extend_from_slice(b":1\r\n");
        assert!(w.take(10, &mut Tally::new(1, 0..1, None, 1), &mut hist).is_err());
        w.buf.clear();
        w.buf.extend_from_slice(b"-ERR no\r\n");
        assert_eq!(w.take(10, &mut Tally::new(1, 0..1, None, 1), &mut hist), Err("ERR no".into()));
    }

    #[test]
    fn a_frame_that_never_ends_is_refused_in_setup_and_in_the_run() {
        // Every part within the limits, but a thousand of them in one array.
        let mut w = Redis::new("c", 0, 32, 2);
        w.limits = Limits { blob: 8, line: 16, items: 1024, depth: 2 };
        w.buf.extend_from_slice(b"*1000\r\n");
        for _ in 0..10 {
            w.buf.extend_from_slice(b"$8\r\nabcdefgh\r\n");
        }
        assert_eq!(w.frame(), Err(format!("a frame over {} bytes", w.buf.len())));
        let mut hist = Histogram::new(3).unwrap();
        assert!(w.take(10, &mut Tally::new(1, 0..1, None, 1), &mut hist).is_err());
        // Under the bound it is a frame not whole yet.
        w.buf.truncate(60);
        assert_eq!(w.frame(), Ok(None));
    }

    #[test]
    fn setup_replies_are_recognised() {
        let hello = Frame::Other(Value::Map(vec![(Value::Blob(b"proto"), Value::Integer(3))]));
        assert_eq!(setup_reply(&hello), Ok("hello".into()));
        let resp2 = Frame::Other(Value::Map(vec![(Value::Blob(b"proto"), Value::Integer(2))]));
        assert!(setup_reply(&resp2).is_err());
        let err = Frame::Other(Value::Error(b"NOPROTO sorry"));
        assert_eq!(setup_reply(&err), Err("NOPROTO sorry".into()));
    }
}
