//! Downloads over HTTP (SPEC.md section 12.4): where a shared file is on the web
//! listener, how a request carries its session token (a cookie, or an
//! `Authorization: Bearer` header), which bytes a `Range` asks for, and the headers
//! that name and tag the file.
//!
//! Pure: deciding only. Who may read the file is the server's rule, the same as
//! FILE-GET's; the HTTP server, the hub and the disk are the caller's.

use std::fmt;

use crate::disk_name::disk_name;
use crate::error::ErrorCode;
use crate::types::{FileId, Sha256, TokenId, TokenSecret, UserName};

/// The path under which the web listener serves shared files: `/files/<file-id>`.
pub const FILES_PREFIX: &str = "/files/";

/// The cookie that carries a session token to `/files/`. The web client sets it
/// itself (`Path=/files; SameSite=Strict`), so that a page of another site cannot
/// make the browser send it.
pub const TOKEN_COOKIE: &str = "baatkaro-token";

/// A session token as an HTTP request carries it: the three fields of AUTH
/// (section 4.7) joined by dots, which none of them holds but a user name, whose
/// dots are told apart by reading from the right.
///
/// ```abnf
/// http-token = user-name "." token-id "." secret
/// ```
///
/// Its `Debug` shows nothing of the secret; [`HttpToken::encode`] writes it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpToken {
    /// The account the token belongs to.
    pub user: UserName,
    /// The token's number.
    pub token: TokenId,
    /// The token's secret.
    pub secret: TokenSecret,
}

impl HttpToken {
    /// Reads an `http-token`; `None` for anything else (a token id must be a
    /// `number`: digits without a leading zero).
    pub fn parse(s: &str) -> Option<HttpToken> {
        let mut fields = s.rsplitn(3, '.');
        let secret = TokenSecret::from_hex(fields.next()?.as_bytes()).ok()?;
        let id = fields.next()?;
        let number = !id.is_empty()
            && id.len() <= 20
            && id.bytes().all(|b| b.is_ascii_digit())
            && (id == "0" || !id.starts_with('0'));
        let token = if number { id.parse().ok()? } else { return None };
        let user = UserName::new(fields.next()?).ok()?;
        Some(HttpToken { user, token, secret })
    }

    /// The `http-token` text, secret included: what the web client puts in its
    /// cookie or after `Bearer`.
    pub fn encode(&self) -> String {
        let secret = self.secret.to_hex();
        // Hex digits: always UTF-8.
        let secret = std::str::from_utf8(&secret).unwrap_or_default();
        format!("{}.{}.{secret}", self.user, self.token)
    }
}

/// Why a request carries no usable token (answered `401` either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoToken {
    /// Neither a `Bearer` authorization nor the token cookie.
    #[error("no session token: send it in the {TOKEN_COOKIE} cookie or as a Bearer token")]
    Missing,
    /// The token given is not an `http-token`.
    #[error("the session token is not user.number.secret")]
    Malformed,
}

/// The file a download path names: `/files/` then a `file-id`, nothing after it.
pub fn file_of_path(path: &str) -> Option<FileId> {
    FileId::new(path.strip_prefix(FILES_PREFIX)?).ok()
}

/// The session token a request carries. An `Authorization` header of the `Bearer`
/// scheme (any case) comes first; without one, the first [`TOKEN_COOKIE`] among the
/// `Cookie` headers (the browser sends the one of the longest path first). An
/// `Authorization` of another scheme is not this server's and is passed over.
pub fn request_token<'a>(
    authorization: Option<&str>,
    cookies: impl IntoIterator<Item = &'a str>,
) -> Result<HttpToken, NoToken> {
    let bearer = authorization.and_then(|a| {
        let (scheme, rest) = a.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let given = bearer.or_else(|| {
        cookies.into_iter().flat_map(|c| c.split(';')).find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name.trim() == TOKEN_COOKIE).then(|| value.trim().trim_matches('"'))
        })
    });
    HttpToken::parse(given.ok_or(NoToken::Missing)?).ok_or(NoToken::Malformed)
}

/// The entity tag of a file: its SHA-256 in lower-case hex, quoted. Strong: the
/// server checked the content against it when the file was uploaded.
pub fn etag(sha256: &Sha256) -> String {
    format!("\"{sha256}\"")
}

/// What a download sends of a file of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole file: `200 OK`.
    Whole,
    /// The bytes `first` to `last`, both included: `206 Partial Content`.
    Part {
        /// The first byte sent.
        first: u64,
        /// The last byte sent.
        last: u64,
    },
    /// None of the file: `416 Range Not Satisfiable`.
    Unsatisfiable,
}

impl RangeAnswer {
    /// The offset and length of the bytes sent, of a file of `size` bytes (none for
    /// [`RangeAnswer::Unsatisfiable`]).
    pub fn span(self, size: u64) -> (u64, u64) {
        match self {
            RangeAnswer::Whole => (0, size),
            RangeAnswer::Part { first, last } => (first, last - first + 1),
            RangeAnswer::Unsatisfiable => (0, 0),
        }
    }

    /// The `Content-Range` of the answer: `bytes first-last/size` for a part,
    /// `bytes */size` when unsatisfiable, none for the whole file.
    pub fn content_range(self, size: u64) -> Option<String> {
        match self {
            RangeAnswer::Whole => None,
            RangeAnswer::Part { first, last } => Some(format!("bytes {first}-{last}/{size}")),
            RangeAnswer::Unsatisfiable => Some(format!("bytes */{size}")),
        }
    }
}

/// What a GET with these `Range` and `If-Range` headers gets of a file of `size`
/// bytes whose entity tag is `etag` (RFC 9110 section 14).
///
/// One range of bytes (`a-b`, `a-`, `-n`) is served as asked, its end cut to the
/// file's; one that starts past the end (or a suffix of no bytes, or any range of
/// an empty file) is unsatisfiable. Several ranges are answered with the whole
/// file, as a server may; so is a `Range` that does not parse or names another
/// unit (it is ignored), and one whose `If-Range` is not exactly this entity tag
/// (a date, a weak tag or another tag: the client's copy may be of other content).
pub fn answer_range(
    range: Option<&str>,
    if_range: Option<&str>,
    etag: &str,
    size: u64,
) -> RangeAnswer {
    let Some(range) = range else { return RangeAnswer::Whole };
    if if_range.is_some_and(|v| v.trim() != etag) {
        return RangeAnswer::Whole;
    }
    let Some((unit, set)) = range.split_once('=') else { return RangeAnswer::Whole };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Whole;
    }
    // A list may hold empty elements, which count for nothing (RFC 9110 5.6.1).
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else { return RangeAnswer::Whole };
    let Some((first, last)) = spec.split_once('-') else { return RangeAnswer::Whole };
    match (digits(first), digits(last)) {
        // `-n`: the last n bytes.
        (None, Some(n)) if first.is_empty() => match n.min(size) {
            0 => RangeAnswer::Unsatisfiable,
            n => RangeAnswer::Part { first: size - n, last: size - 1 },
        },
        // `a-`, `a-b`.
        (Some(a), b) if b.is_some() || last.is_empty() => {
            if b.is_some_and(|b| b < a) {
                // Not a valid range: the header is ignored.
                return RangeAnswer::Whole;
            }
            if a >= size {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Part { first: a, last: b.map_or(size - 1, |b| b.min(size - 1)) }
        }
        _ => RangeAnswer::Whole,
    }
}

/// A run of decimal digits as a number, past `u64::MAX` taken as `u64::MAX` (a
/// position that large is past the end of any file); `None` if it is not one.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// The `Content-Disposition` of a download: an attachment, named (RFC 6266,
/// RFC 8187) by the shared name made safe as a client would before saving it
/// ([`disk_name`], SPEC.md 11.6), so that the browser's own download manager
/// saves it under a harmless name.
pub fn content_disposition(name: &str) -> String {
    format!("attachment; filename*=UTF-8''{}", ExtValue(&disk_name(name)))
}

/// Text percent-encoded as an RFC 8187 `value-chars`: every octet of its UTF-8
/// but an `attr-char` as `%XX`.
struct ExtValue<'a>(&'a str);

impl fmt::Display for ExtValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.bytes() {
            let attr_char = b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
            if attr_char {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// The HTTP status a refused download is answered with, by the error code the
/// check gave (the same as AUTH's and FILE-GET's): `401` for a token refused
/// (`AUTH_FAILED`), `403` for a locked account, `404` for a file that does not
/// exist or that the user may not read (`NO_SUCH_FILE`, which does not say which),
/// `429` past the budget of token logins (`RATE_LIMITED`), `503` while the server
/// stops (`SHUTTING_DOWN`), and `500` for anything else.
pub fn refusal_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::AuthFailed => 401,
        ErrorCode::AccountLocked => 403,
        ErrorCode::NoSuchFile => 404,
        ErrorCode::RateLimited => 429,
        ErrorCode::ShuttingDown => 503,
        _ => 500,
    }
}

/// The `Retry-After` of a refusal that says to wait `retry_ms` milliseconds: whole
/// seconds, rounded up, at least one (the header has no finer unit, and a client
/// that came back sooner would be refused again).
pub fn retry_after_secs(retry_ms: u64) -> u64 {
    retry_ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f14e45fceea167a5a36dedd4bea2543c9f0a7e4e1b1d8a2f6d3c5b4a7e8f901";

    fn token(user: &str, id: TokenId) -> HttpToken {
        HttpToken {
            user: UserName::new(user).unwrap(),
            token: id,
            secret: TokenSecret::from_hex(SECRET.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn a_token_is_user_number_and_secret_read_from_the_right() {
        let t = HttpToken::parse(&format!("alice.1.{SECRET}")).unwrap();
        assert_eq!(t, token("alice", 1));
        assert_eq!(t.encode(), format!("alice.1.{SECRET}"));
        // A user name may hold dots and digits of its own.
        let t = token("bob.2", 30);
        assert_eq!(HttpToken::parse(&t.encode()), Some(t));
        for bad in [
            String::new(),
            format!("alice.{SECRET}"),
            format!("alice.01.{SECRET}"),
            format!("alice.x.{SECRET}"),
            format!("alice..{SECRET}"),
            format!("Alice.1.{SECRET}"),
            format!(".1.{SECRET}"),
            format!("alice.1.{}", SECRET.to_uppercase()),
            format!("alice.1.{SECRET}0"),
            format!("alice.99999999999999999999.{SECRET}"),
        ] {
            assert_eq!(HttpToken::parse(&bad), None, "{bad}");
        }
        assert!(!format!("{:?}", token("alice", 1)).contains(SECRET), "Debug hides the secret");
    }

    #[test]
    fn bearer_comes_before_the_cookie_and_other_schemes_are_passed_over() {
        let (a, b) = (token("alice", 1).encode(), token("bob", 2).encode());
        let cookie = format!("theme=dark; {TOKEN_COOKIE}={b}; x=y");
        let bearer = format!("Bearer {a}");
        assert_eq!(request_token(Some(&bearer), [cookie.as_str()]), Ok(token("alice", 1)));
        assert_eq!(request_token(None, [cookie.as_str()]), Ok(token("bob", 2)));
        assert_eq!(request_token(Some("Basic YTpi"), [cookie.as_str()]), Ok(token("bob", 2)));
        assert_eq!(request_token(Some(&format!("bearer  {a} ")), []), Ok(token("alice", 1)));
        // The first cookie of the name counts, quoted or not.
        let two = format!("{TOKEN_COOKIE}=\"{a}\"; {TOKEN_COOKIE}={b}");
        assert_eq!(request_token(None, [two.as_str()]), Ok(token("alice", 1)));
        assert_eq!(request_token(None, ["theme=dark"]), Err(NoToken::Missing));
        assert_eq!(request_token(Some("Basic YTpi"), []), Err(NoToken::Missing));
        assert_eq!(request_token(Some("Bearer nonsense"), []), Err(NoToken::Malformed));
        let garbage = format!("{TOKEN_COOKIE}=nonsense");
        assert_eq!(request_token(None, [garbage.as_str()]), Err(NoToken::Malformed));
    }

    #[test]
    fn a_download_path_names_one_file() {
        assert_eq!(file_of_path("/files/f7Qx2"), Some(FileId::new("f7Qx2").unwrap()));
        for bad in ["/files/", "/files", "/files/a/b", "/files/..", "/files/a%20b", "/f7Qx2"] {
            assert_eq!(file_of_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn single_ranges_are_served_and_cut_to_the_file() {
        let tag = "\"t\"";
        let at = |r: &str| answer_range(Some(r), None, tag, 10);
        assert_eq!(at("bytes=0-3"), RangeAnswer::Part { first: 0, last: 3 });
        assert_eq!(at("bytes=6-"), RangeAnswer::Part { first: 6, last: 9 });
        assert_eq!(at("bytes=6-100"), RangeAnswer::Part { first: 6, last: 9 });
        assert_eq!(at("bytes=-4"), RangeAnswer::Part { first: 6, last: 9 });
        assert_eq!(at("bytes=-400"), RangeAnswer::Part { first: 0, last: 9 });
        assert_eq!(at("BYTES = 2-2 ,"), RangeAnswer::Part { first: 2, last: 2 });
        assert_eq!(at("bytes=9-99999999999999999999999"), RangeAnswer::Part { first: 9, last: 9 });
        assert_eq!(RangeAnswer::Part { first: 6, last: 9 }.span(10), (6, 4));
        assert_eq!(
            RangeAnswer::Part { first: 6, last: 9 }.content_range(10).as_deref(),
            Some("bytes 6-9/10")
        );
        assert_eq!(RangeAnswer::Whole.span(10), (0, 10));
        assert_eq!(RangeAnswer::Whole.content_range(10), None);
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        let at = |r: &str, size| answer_range(Some(r), None, "\"t\"", size);
        for r in ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=99999999999999999999999-"] {
            assert_eq!(at(r, 10), RangeAnswer::Unsatisfiable, "{r}");
        }
        assert_eq!(at("bytes=0-", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(at("bytes=-5", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(RangeAnswer::Unsatisfiable.content_range(10).as_deref(), Some("bytes */10"));
    }

    #[test]
    fn other_ranges_are_answered_with_the_whole_file() {
        let at = |r: &str| answer_range(Some(r), None, "\"t\"", 10);
        for r in [
            "bytes=0-1,3-4",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=--3",
            "bytes=-",
            "bytes=",
            "bytes=1",
            "items=0-1",
            "0-1",
            "bytes=+1-2",
        ] {
            assert_eq!(at(r), RangeAnswer::Whole, "{r}");
        }
        assert_eq!(answer_range(None, None, "\"t\"", 10), RangeAnswer::Whole);
    }

    #[test]
    fn if_range_must_be_this_entity_tag() {
        let tag = "\"abc\"";
        let at = |v| answer_range(Some("bytes=1-2"), Some(v), tag, 10);
        assert_eq!(at("\"abc\""), RangeAnswer::Part { first: 1, last: 2 });
        assert_eq!(at(" \"abc\" "), RangeAnswer::Part { first: 1, last: 2 });
        for other in ["\"abd\"", "W/\"abc\"", "Wed, 21 Oct 2015 07:28:00 GMT", "abc"] {
            assert_eq!(at(other), RangeAnswer::Whole, "{other}");
        }
        // If-Range without Range changes nothing.
        assert_eq!(answer_range(None, Some("\"x\""), tag, 10), RangeAnswer::Whole);
    }

    #[test]
    fn the_file_is_named_safely_and_encoded() {
        assert_eq!(content_disposition("notes.txt"), "attachment; filename*=UTF-8''notes.txt");
        assert_eq!(
            content_disposition("a b;\"c\".pdf"),
            "attachment; filename*=UTF-8''a%20b%3B_c_.pdf"
        );
        assert_eq!(
            content_disposition("résumé.pdf"),
            "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
        // Made safe as a client saving it would: no hidden file, no option, no device.
        assert_eq!(content_disposition(".bashrc"), "attachment; filename*=UTF-8''bashrc");
        assert_eq!(content_disposition("-rf"), "attachment; filename*=UTF-8''_rf");
        assert_eq!(content_disposition("CON.txt"), "attachment; filename*=UTF-8''_CON.txt");
        // Percent and apostrophe end the value's syntax: encoded.
        assert_eq!(content_disposition("100%'s"), "attachment; filename*=UTF-8''100%25%27s");
    }

    #[test]
    fn the_entity_tag_is_the_quoted_hash() {
        let sha = Sha256([0xab; 32]);
        assert_eq!(etag(&sha), format!("\"{}\"", "ab".repeat(32)));
    }

    #[test]
    fn refusals_map_onto_statuses() {
        assert_eq!(refusal_status(ErrorCode::AuthFailed), 401);
        assert_eq!(refusal_status(ErrorCode::AccountLocked), 403);
        assert_eq!(refusal_status(ErrorCode::NoSuchFile), 404);
        assert_eq!(refusal_status(ErrorCode::RateLimited), 429);
        assert_eq!(refusal_status(ErrorCode::ShuttingDown), 503);
        assert_eq!(refusal_status(ErrorCode::Internal), 500);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1_000), 1);
        assert_eq!(retry_after_secs(1_001), 2);
    }
}
