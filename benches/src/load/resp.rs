//! A small RESP3 reader for what the Redis target receives: replies (`+OK`, `:n`,
//! `-ERR …`, HELLO's map) and pushes (`>3 message channel payload`,
//! `>3 subscribe channel n`). Frames are read borrowed from the caller's buffer:
//! a pub/sub message, the frame every delivery is, is matched on its fixed head and
//! allocates nothing. Everything is bounded by [`Limits`], and input that is not
//! whole yet is reported as such ([`next_frame`] returns `Ok(None)`), so the
//! caller can read more and try again.

/// How large what is read may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest bulk string, in bytes.
    pub blob: usize,
    /// The longest line (simple string, error, number), in bytes.
    pub line: usize,
    /// The most elements of one aggregate (array, map, set, push).
    pub items: usize,
    /// How deeply aggregates may nest.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { blob: 1 << 20, line: 4096, items: 1024, depth: 8 }
    }
}

/// Why input is not RESP3 this reader takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not RESP3.
    Malformed(&'static str),
    /// Beyond a limit of [`Limits`].
    TooLarge(&'static str),
    /// RESP3 that this reader does not take (streamed strings).
    Unsupported(u8),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Malformed(what) => write!(f, "malformed RESP: {what}"),
            Error::TooLarge(what) => write!(f, "RESP {what} over the limit"),
            Error::Unsupported(b) => write!(f, "unsupported RESP type {:?}", char::from(*b)),
        }
    }
}

/// One value, borrowed from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `+…`
    Simple(&'a [u8]),
    /// `-…` or `!n` (a bulk error).
    Error(&'a [u8]),
    /// `:n`
    Integer(i64),
    /// `$n`, or `=n` (verbatim, with its `txt:` kind left on).
    Blob(&'a [u8]),
    /// `_`, or RESP2's `$-1` and `*-1`.
    Null,
    /// `#t` or `#f`.
    Boolean(bool),
    /// `,…` (a double) or `(…` (a big number), as written.
    Number(&'a [u8]),
    /// `*n` or `~n` (a set).
    Array(Vec<Value<'a>>),
    /// `%n`: key, value pairs.
    Map(Vec<(Value<'a>, Value<'a>)>),
    /// `>n`: a push that is not a pub/sub message.
    Push(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    /// The bytes of a string (simple or bulk), if it is one.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Simple(b) | Value::Blob(b) => Some(b),
            _ => None,
        }
    }
}

/// One frame: a pub/sub message, or any other value.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<'a> {
    /// `>3 message channel payload`: a delivery.
    Message {
        /// The channel it was published to.
        channel: &'a [u8],
        /// What was published.
        payload: &'a [u8],
    },
    /// Anything else: a reply, or another push.
    Other(Value<'a>),
}

/// The head every pub/sub message starts with, as Redis writes it.
const MESSAGE_HEAD: &[u8] = b">3\r\n$7\r\nmessage\r\n";

/// The first frame of `buf` and how many bytes it took; `Ok(None)` if `buf` holds
/// only the start of one.
pub fn next_frame<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(Frame<'a>, usize)>, Error> {
    // Fast path: a message as Redis writes it, two bulk strings after a fixed head.
    // Anything else there (another spelling, or an error) is left to the general
    // reader below.
    if buf.starts_with(MESSAGE_HEAD) {
        let mut r = Reader { buf, pos: MESSAGE_HEAD.len(), limits };
        if let Ok(fields) = r.blob().and_then(|c| Ok(c.zip(r.blob()?))) {
            return Ok(
                fields.map(|(channel, payload)| (Frame::Message { channel, payload }, r.pos))
            );
        }
    }
    let mut r = Reader { buf, pos: 0, limits };
    let Some(value) = r.value(0)? else { return Ok(None) };
    // The same message spelt otherwise (a type byte other than `$`) is still one.
    let frame = match value {
        Value::Push(items) => match items.as_slice() {
            [kind, channel, payload] if kind.bytes() == Some(b"message") => {
                match (channel.bytes(), payload.bytes()) {
                    (Some(channel), Some(payload)) => Frame::Message { channel, payload },
                    _ => Frame::Other(Value::Push(items)),
                }
            }
            _ => Frame::Other(Value::Push(items)),
        },
        v => Frame::Other(v),
    };
    Ok(Some((frame, r.pos)))
}

/// Reads values from `buf` at `pos`. Every method returns `Ok(None)` when the
/// input ends before the value does.
struct Reader<'a, 'l> {
    buf: &'a [u8],
    pos: usize,
    limits: &'l Limits,
}

impl<'a> Reader<'a, '_> {
    /// The rest of the line at `pos` (without its CRLF), moving past it.
    fn line(&mut self) -> Result<Option<&'a [u8]>, Error> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(self.limits.line + 2)];
        match window.windows(2).position(|w| w == b"\r\n") {
            Some(end) => {
                self.pos += end + 2;
                Ok(Some(&rest[..end]))
            }
            None if window.len() > self.limits.line + 1 => Err(Error::TooLarge("line")),
            None => Ok(None),
        }
    }

    /// A decimal integer line.
    fn integer(&mut self) -> Result<Option<i64>, Error> {
        let Some(line) = self.line()? else { return Ok(None) };
        parse_integer(line).map(Some)
    }

    /// A length line: a count from 0, or -1 (RESP2's null) as `None` inside.
    fn length(&mut self, max: usize, what: &'static str) -> Result<Option<Option<usize>>, Error> {
        let Some(n) = self.integer()? else { return Ok(None) };
        match n {
            -1 => Ok(Some(None)),
            n if n < 0 => Err(Error::Malformed("negative length")),
            n if n as u64 > max as u64 => Err(Error::TooLarge(what)),
            n => Ok(Some(Some(n as usize))),
        }
    }

    /// `n` bytes and their CRLF.
    fn bytes(&mut self, n: usize) -> Result<Option<&'a [u8]>, Error> {
        let rest = &self.buf[self.pos..];
        if rest.len() < n + 2 {
            return Ok(None);
        }
        if &rest[n..n + 2] != b"\r\n" {
            return Err(Error::Malformed("bulk string without its CRLF"));
        }
        self.pos += n + 2;
        Ok(Some(&rest[..n]))
    }

    /// A bulk string (`$n`), type byte included.
    fn blob(&mut self) -> Result<Option<&'a [u8]>, Error> {
        match self.buf.get(self.pos) {
            None => return Ok(None),
            Some(b'$') => self.pos += 1,
            Some(_) => return Err(Error::Malformed("expected a bulk string")),
        }
        match self.length(self.limits.blob, "bulk string")? {
            None => Ok(None),
            Some(None) => Err(Error::Malformed("null where a string was expected")),
            Some(Some(n)) => self.bytes(n),
        }
    }

    /// `n` values, or the input ends first.
    fn values(&mut self, n: usize, depth: usize) -> Result<Option<Vec<Value<'a>>>, Error> {
        // Never reserve more than the input could hold (three bytes a value at least).
        let mut items = Vec::with_capacity(n.min((self.buf.len() - self.pos) / 3));
        for _ in 0..n {
            let Some(v) = self.value(depth + 1)? else { return Ok(None) };
            items.push(v);
        }
        Ok(Some(items))
    }

    /// Any value, nested at `depth`.
    fn value(&mut self, depth: usize) -> Result<Option<Value<'a>>, Error> {
        if depth > self.limits.depth {
            return Err(Error::TooLarge("nesting"));
        }
        let Some(&kind) = self.buf.get(self.pos) else { return Ok(None) };
        self.pos += 1;
        let items = self.limits.items;
        let value = match kind {
            b'+' => self.line()?.map(Value::Simple),
            b'-' => self.line()?.map(Value::Error),
            b':' => self.integer()?.map(Value::Integer),
            b',' | b'(' => self.line()?.map(Value::Number),
            b'_' => match self.line()? {
                None => None,
                Some(b"") => Some(Value::Null),
                Some(_) => return Err(Error::Malformed("null with a body")),
            },
            b'#' => match self.line()? {
                None => None,
                Some(b"t") => Some(Value::Boolean(true)),
                Some(b"f") => Some(Value::Boolean(false)),
                Some(_) => return Err(Error::Malformed("boolean other than t or f")),
            },
            b'$' | b'=' | b'!' => {
                if self.buf.get(self.pos) == Some(&b'?') {
                    return Err(Error::Unsupported(kind));
                }
                match self.length(self.limits.blob, "bulk string")? {
                    None => None,
                    Some(None) if kind == b'$' => Some(Value::Null),
                    Some(None) => return Err(Error::Malformed("negative length")),
                    Some(Some(n)) => self.bytes(n)?.map(|b| match kind {
                        b'!' => Value::Error(b),
                        _ => Value::Blob(b),
                    }),
                }
            }
            b'*' | b'~' | b'>' => match self.length(items, "aggregate")? {
                None => None,
                Some(None) if kind == b'*' => Some(Value::Null),
                Some(None) => return Err(Error::Malformed("negative length")),
                Some(Some(n)) => self.values(n, depth)?.map(|v| match kind {
                    b'>' => Value::Push(v),
                    _ => Value::Array(v),
                }),
            },
            b'%' | b'|' => match self.length(items, "map")? {
                None => None,
                Some(None) => return Err(Error::Malformed("negative length")),
                Some(Some(n)) => match self.values(2 * n, depth)? {
                    None => None,
                    // An attribute describes the value after it: skip to that.
                    Some(_) if kind == b'|' => return self.value(depth + 1),
                    Some(v) => {
                        let mut v = v.into_iter();
                        Some(Value::Map(
                            std::iter::from_fn(|| Some((v.next()?, v.next()?))).collect(),
                        ))
                    }
                },
            },
            _ => return Err(Error::Malformed("unknown type byte")),
        };
        Ok(value)
    }
}

/// A decimal integer as RESP writes it: an optional `-`, then 1 to 19 digits.
fn parse_integer(line: &[u8]) -> Result<i64, Error> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::Malformed("not an integer"));
    }
    let mut n: i64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(d - b'0')))
            .ok_or(Error::Malformed("integer out of range"))?;
    }
    Ok(if negative { -n } else { n })
}

/// A command as RESP's array of bulk strings, appended to `out`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(mut buf: &[u8]) -> Vec<Frame<'_>> {
        let mut frames = Vec::new();
        while let Some((f, n)) = next_frame(buf, &Limits::default()).unwrap() {
            frames.push(f);
            buf = &buf[n..];
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        frames
    }

    /// What Redis 7.0 sent for `HELLO 3`, `SUBSCRIBE c1`, `PUBLISH c1 hello`, `PING`.
    const SESSION: &[u8] =
        b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
        $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
        $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n\
        >3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n\
        >3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$5\r\nhello\r\n:1\r\n+PONG\r\n";

    #[test]
    fn reads_a_session_as_redis_writes_it() {
        let frames = all(SESSION);
        assert_eq!(frames.len(), 5);
        let Frame::Other(Value::Map(hello)) = &frames[0] else { panic!("{:?}", frames[0]) };
        assert_eq!(hello.len(), 7);
        assert!(hello.contains(&(Value::Blob(b"proto"), Value::Integer(3))));
        assert!(hello.contains(&(Value::Blob(b"modules"), Value::Array(vec![]))));
        assert_eq!(
            frames[1],
            Frame::Other(Value::Push(vec![
                Value::Blob(b"subscribe"),
                Value::Blob(b"c1"),
                Value::Integer(1)
            ]))
        );
        assert_eq!(frames[2], Frame::Message { channel: b"c1", payload: b"hello" });
        // The PUBLISH's reply comes after the message it delivered to its sender.
        assert_eq!(frames[3], Frame::Other(Value::Integer(1)));
        assert_eq!(frames[4], Frame::Other(Value::Simple(b"PONG")));
    }

    #[test]
    fn every_split_of_the_input_reads_the_same_frames() {
        let whole = all(SESSION);
        // Fed as it would arrive over TCP: every prefix is either whole frames or
        // says it needs more, never an error or a different frame.
        for cut in 0..SESSION.len() {
            let (mut frames, mut taken) = (Vec::new(), 0);
            while let Some((f, n)) = next_frame(&SESSION[taken..cut], &Limits::default()).unwrap() {
                frames.push(f);
                taken += n;
            }
            // The rest arrives.
            while let Some((f, n)) = next_frame(&SESSION[taken..], &Limits::default()).unwrap() {
                frames.push(f);
                taken += n;
            }
            assert_eq!((frames, taken), (whole.clone(), SESSION.len()), "cut at {cut}");
        }
    }

    #[test]
    fn partial_input_asks_for_more() {
        for partial in [
            &b""[..],
            b">",
            b">3\r\n$7\r\nmess",
            b">3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$5\r\nhel",
            b">3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$5\r\nhello\r",
            b":12",
            b"-ERR unknown",
            b"%2\r\n$1\r\na\r\n",
            b"$-",
        ] {
            assert_eq!(next_frame(partial, &Limits::default()), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn error_replies_are_values() {
        let (f, n) =
            next_frame(b"-ERR wrong number\r\n:1\r\n", &Limits::default()).unwrap().unwrap();
        assert_eq!((f, n), (Frame::Other(Value::Error(b"ERR wrong number")), 19));
        let (f, _) = next_frame(b"!9\r\nSYNTAX no\r\n", &Limits::default()).unwrap().unwrap();
        assert_eq!(f, Frame::Other(Value::Error(b"SYNTAX no")));
    }

    #[test]
    fn other_types_and_attributes() {
        let f = all(b"_\r\n#t\r\n,1.5\r\n(123456789012345678901\r\n$-1\r\n*-1\r\n~1\r\n:-7\r\n=7\r\ntxt:abc\r\n");
        assert_eq!(
            f,
            [
                Value::Null,
                Value::Boolean(true),
                Value::Number(b"1.5"),
                Value::Number(b"123456789012345678901"),
                Value::Null,
                Value::Null,
                Value::Array(vec![Value::Integer(-7)]),
                Value::Blob(b"txt:abc"),
            ]
            .map(Frame::Other)
        );
        // An attribute is skipped: the value after it is the frame.
        assert_eq!(all(b"|1\r\n+ttl\r\n:3\r\n+OK\r\n"), [Frame::Other(Value::Simple(b"OK"))]);
        // A message spelt with simple strings is still a message.
        assert_eq!(
            all(b">3\r\n+message\r\n+c\r\n$1\r\np\r\n"),
            [Frame::Message { channel: b"c", payload: b"p" }]
        );
        assert_eq!(
            all(b">3\r\n$7\r\nmessage\r\n+c\r\n$1\r\np\r\n"),
            [Frame::Message { channel: b"c", payload: b"p" }]
        );
        assert!(matches!(all(b">3\r\n$7\r\nmessage\r\n:1\r\n$1\r\np\r\n")[..], [Frame::Other(_)]));
    }

    #[test]
    fn oversize_and_malformed_input_is_refused() {
        let small = Limits { blob: 8, line: 16, items: 4, depth: 2 };
        let refused = |buf: &[u8]| next_frame(buf, &small).unwrap_err();
        assert_eq!(refused(b"$9\r\n"), Error::TooLarge("bulk string"));
        assert_eq!(refused(b">3\r\n$7\r\nmessage\r\n$9\r\n"), Error::TooLarge("bulk string"));
        assert_eq!(refused(b"*5\r\n"), Error::TooLarge("aggregate"));
        assert_eq!(refused(b"%5\r\n"), Error::TooLarge("map"));
        assert_eq!(refused(b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"), Error::TooLarge("nesting"));
        // A line that never ends is refused once it passes the limit, not read on.
        assert_eq!(refused(b"+0123456789abcdefgh"), Error::TooLarge("line"));
        assert_eq!(next_frame(b"+0123456789abcdef", &small), Ok(None));
        assert_eq!(refused(b"$3\r\nabcd\r\n"), Error::Malformed("bulk string without its CRLF"));
        assert_eq!(refused(b":12a\r\n"), Error::Malformed("not an integer"));
        let wide = |buf: &[u8]| next_frame(buf, &Limits::default()).unwrap_err();
        assert_eq!(wide(b":99999999999999999999\r\n"), Error::Malformed("not an integer"));
        assert_eq!(wide(b":9999999999999999999\r\n"), Error::Malformed("integer out of range"));
        assert_eq!(
            next_frame(b":-9223372036854775807\r\n", &Limits::default()),
            Ok(Some((Frame::Other(Value::Integer(-i64::MAX)), 23)))
        );
        assert_eq!(refused(b"$-2\r\n"), Error::Malformed("negative length"));
        assert_eq!(refused(b"?\r\n"), Error::Malformed("unknown type byte"));
        assert_eq!(refused(b"$?\r\n"), Error::Unsupported(b'$'));
        assert_eq!(refused(b"#x\r\n"), Error::Malformed("boolean other than t or f"));
    }

    #[test]
    fn hostile_input_is_refused_or_read_never_panics() {
        // A fixed-seed xorshift: the same inputs every run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        // Bytes that mean something to the reader, so that the input gets deep.
        const ALPHABET: &[u8] = b"+-:$*%~>|_#,(=!\r\n0123456789-?tf";
        let small = Limits { blob: 64, line: 32, items: 8, depth: 3 };
        let mut mutated = 0;
        for round in 0..20_000 {
            let mut input = SESSION.to_vec();
            if round % 2 == 0 {
                for _ in 0..1 + next(4) {
                    let at = next(input.len());
                    input[at] = ALPHABET[next(ALPHABET.len())];
                }
                input.truncate(next(input.len() + 1));
            } else {
                input = (0..next(48)).map(|_| ALPHABET[next(ALPHABET.len())]).collect();
            }
            for limits in [Limits::default(), small] {
                let mut rest = &input[..];
                // Bounded: each frame read takes at least its type byte.
                while let Ok(Some((_, n))) = next_frame(rest, &limits) {
                    assert!(n > 0 && n <= rest.len(), "{input:?}");
                    rest = &rest[n..];
                }
            }
            mutated += usize::from(input != SESSION);
        }
        assert!(mutated > 19_000, "{mutated}");
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"HELLO", b"3"]);
        assert_eq!(out, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    }
}
