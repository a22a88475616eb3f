//! The WebSocket binding (SPEC.md section 12): the subprotocol name, how large a
//! message may be, and which pages may open a session (the defence against
//! cross-site WebSocket hijacking and DNS rebinding); and downloads over HTTP
//! ([`download`], section 12.4).
//!
//! Pure: deciding only. The HTTP server, the WebSocket framing and the socket are
//! the caller's.

pub mod download;

use crate::limits::Limits;
use crate::session::PIECE;

/// The WebSocket subprotocol of version 1, which a client asks for in
/// `Sec-WebSocket-Protocol` and the server confirms.
pub const SUBPROTOCOL: &str = "baatkaro.v1";

/// The path of the WebSocket endpoint on a server's web listener.
pub const WEBSOCKET_PATH: &str = "/ws";

/// The port a server's web listener uses unless told otherwise.
pub const DEFAULT_WEB_PORT: u16 = 7668;

/// The largest WebSocket message either side may send, in bytes: one piece of
/// coalesced frames (about [`PIECE`]) plus the largest single frame, a line and a
/// payload of the advertised `payload` limit. Whole frames only ever share a
/// message, so no message needs to be larger; a larger one is refused (SPEC.md
/// 12.2), which keeps what the WebSocket layer buffers per connection as bounded
/// as what the frame decoder holds.
#[must_use]
pub fn message_max(limits: &Limits) -> u64 {
    (PIECE as u64).saturating_add(limits.line).saturating_add(limits.payload)
}

/// The origins a web listener trusts, and whether it is reached on loopback only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Origins the operator names as the public address of the web client (for
    /// instance `https://chat.example.org`), normalised by [`normalise_origin`].
    pub trusted: Vec<String>,
    /// The listener is bound to a loopback address: requests must then name a
    /// loopback host (or a trusted origin's host), else a page on another site
    /// whose name resolves to 127.0.0.1 (DNS rebinding) could reach the server.
    pub loopback: bool,
}

/// Why a request was refused by the [`OriginPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefusal {
    /// The request has no `Host` header, or one that is not `host[:port]`.
    #[error("the request names no valid Host")]
    NoHost,
    /// The `Host` is not a loopback name on a loopback listener, nor a trusted
    /// origin's host.
    #[error("the Host is not one this server answers to")]
    Host,
    /// The `Origin` is neither this server's own (same scheme, host and port as the
    /// request) nor a trusted one.
    #[error("the page's origin is not this server's nor a trusted one")]
    Origin,
}

impl OriginPolicy {
    /// A policy trusting `origins` (each normalised; an unparsable one is an
    /// error naming it) on a listener that is or is not on loopback.
    pub fn new<I, S>(origins: I, loopback: bool) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let trusted = origins
            .into_iter()
            .map(|o| {
                let o = o.as_ref();
                normalise_origin(o).ok_or_else(|| {
                    format!("{o:?} is not an origin (scheme://host[:port], http or https)")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(OriginPolicy { trusted, loopback })
    }

    /// Whether a request with this `Host` header may be answered at all.
    pub fn check_host(&self, host: Option<&str>) -> Result<(), OriginRefusal> {
        let host = host.and_then(normalise_authority).ok_or(OriginRefusal::NoHost)?;
        if !self.loopback {
            return Ok(());
        }
        let name = host_name(&host);
        let trusted_host = self.trusted.iter().any(|o| {
            o.split_once("://").is_some_and(|(_, authority)| host_name(authority) == name)
        });
        if is_loopback_name(name) || trusted_host { Ok(()) } else { Err(OriginRefusal::Host) }
    }

    /// Whether a WebSocket upgrade with these headers may open a session, on a
    /// listener speaking TLS or not. A request without `Origin` does not come from
    /// a browser page (browsers always send it on a WebSocket upgrade) and is
    /// judged by its `Host` alone, like any other client.
    pub fn check_upgrade(
        &self,
        host: Option<&str>,
        origin: Option<&str>,
        tls: bool,
    ) -> Result<(), OriginRefusal> {
        self.check_host(host)?;
        let Some(origin) = origin else { return Ok(()) };
        let origin = normalise_origin(origin).ok_or(OriginRefusal::Origin)?;
        if self.trusted.contains(&origin) {
            return Ok(());
        }
        // Same-origin: the page was served by this listener, under the name the
        // browser used for this request.
        let scheme = if tls { "https" } else { "http" };
        let own = host.and_then(normalise_authority).map(|h| format!("{scheme}://{h}"));
        let own = own.and_then(|o| normalise_origin(&o));
        if own.as_deref() == Some(origin.as_str()) { Ok(()) } else { Err(OriginRefusal::Origin) }
    }
}

/// An origin in the form browsers send it, lower-cased, with the scheme's
/// default port left out: `https://chat.example.org`, `http://127.0.0.1:7668`.
/// `None` for anything else (`null`, a path, another scheme).
#[must_use]
pub fn normalise_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let authority = normalise_authority(rest)?;
    let authority = match authority.rsplit_once(':') {
        Some((name, port)) if port == default && !name.ends_with(':') => name.to_string(),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

/// `host[:port]` lower-cased, or `None` when it is not one: a DNS name or an IPv4
/// address, or an IPv6 address in brackets; a port of digits.
fn normalise_authority(authority: &str) -> Option<String> {
    let authority = authority.trim().to_ascii_lowercase();
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        (&authority[..v6.len() + 2], after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority.as_str(), None),
        }
    };
    let name_ok = name.starts_with('[')
        || (!name.is_empty()
            && name.len() <= crate::transport::HOST_MAX
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    (name_ok && port_ok).then_some(authority)
}

/// The host name of a normalised `host[:port]`.
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_once(']').map_or(authority, |(h, _)| &authority[..h.len() + 1]);
    }
    authority.split_once(':').map_or(authority, |(h, _)| h)
}

/// Whether a host name always means this machine.
fn is_loopback_name(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "[::1]"
        || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// How many octets at the start of `out` make whole frames and fit in one message
/// of at most `max` octets: the longest run of whole frames that fits, or the
/// first frame alone when even it is longer (which cannot happen within the
/// limits: `max` is [`message_max`]). `out` is what a session hands its socket —
/// whole frames, each a line ending in CRLF and, if the line ends in a payload
/// marker `{n}`, n octets and CRLF. Used to cut a long run of output (replies
/// held back behind a slow request, released at once) into messages that each
/// hold whole frames (SPEC.md 12.2). A trailing part frame counts as a frame.
#[must_use]
pub fn whole_frames_within(out: &[u8], max: usize) -> usize {
    let mut at = 0;
    while at < out.len() {
        let end = next_frame_end(&out[at..]) + at;
        if at > 0 && end > max {
            break;
        }
        at = end;
        if at >= max {
            break;
        }
    }
    at
}

/// The length of the first frame of `out` (all of it if it is not whole).
fn next_frame_end(out: &[u8]) -> usize {
    let Some(lf) = out.iter().position(|&b| b == b'\n') else { return out.len() };
    let line = &out[..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let payload = line
        .strip_suffix(b"}")
        .and_then(|l| l.iter().rposition(|&b| b == b'{').map(|open| &l[open + 1..]))
        .filter(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<usize>().ok());
    let end = match payload {
        Some(n) => (lf + 1).saturating_add(n).saturating_add(2),
        None => lf + 1,
    };
    end.min(out.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str], loopback: bool) -> OriginPolicy {
        OriginPolicy::new(trusted, loopback).unwrap()
    }

    #[test]
    fn origins_are_normalised_and_garbage_refused() {
        assert_eq!(
            normalise_origin("HTTPS://Chat.Example.org:443/").unwrap(),
            "https://chat.example.org"
        );
        assert_eq!(normalise_origin("http://127.0.0.1:7668").unwrap(), "http://127.0.0.1:7668");
        assert_eq!(normalise_origin("http://[::1]:80").unwrap(), "http://[::1]");
        for bad in [
            "null",
            "file://x",
            "https://",
            "https://a b",
            "https://x:99999",
            "x.org",
            "https://x/path",
        ] {
            assert_eq!(normalise_origin(bad), None, "{bad}");
        }
        assert!(OriginPolicy::new(["ftp://x"], false).is_err());
    }

    #[test]
    fn the_page_s_own_origin_may_open_a_session() {
        let p = policy(&[], true);
        assert_eq!(
            p.check_upgrade(Some("127.0.0.1:7668"), Some("http://127.0.0.1:7668"), false),
            Ok(())
        );
        assert_eq!(
            p.check_upgrade(Some("localhost:7668"), Some("http://localhost:7668"), false),
            Ok(())
        );
        // The scheme is part of the origin.
        assert_eq!(
            p.check_upgrade(Some("localhost:7668"), Some("https://localhost:7668"), false),
            Err(OriginRefusal::Origin)
        );
        assert_eq!(
            p.check_upgrade(Some("localhost:7668"), Some("https://localhost:7668"), true),
            Ok(())
        );
    }

    #[test]
    fn another_site_may_not() {
        let p = policy(&[], true);
        assert_eq!(
            p.check_upgrade(Some("127.0.0.1:7668"), Some("https://evil.example"), false),
            Err(OriginRefusal::Origin)
        );
        assert_eq!(
            p.check_upgrade(Some("127.0.0.1:7668"), Some("http://127.0.0.1:9999"), false),
            Err(OriginRefusal::Origin)
        );
        assert_eq!(
            p.check_upgrade(Some("127.0.0.1:7668"), Some("null"), false),
            Err(OriginRefusal::Origin)
        );
    }

    #[test]
    fn a_rebound_name_is_refused_on_loopback() {
        // evil.example resolves to 127.0.0.1: its page is same-origin with itself,
        // but the Host names no loopback host.
        let p = policy(&[], true);
        assert_eq!(
            p.check_upgrade(Some("evil.example:7668"), Some("http://evil.example:7668"), false),
            Err(OriginRefusal::Host)
        );
        assert_eq!(p.check_host(Some("evil.example:7668")), Err(OriginRefusal::Host));
        assert_eq!(p.check_host(None), Err(OriginRefusal::NoHost));
        assert_eq!(p.check_host(Some("a b")), Err(OriginRefusal::NoHost));
        // Off loopback, the operator's own names are whatever they are.
        assert_eq!(policy(&[], false).check_host(Some("chat.example.org")), Ok(()));
    }

    #[test]
    fn trusted_origins_and_their_hosts_are_let_through() {
        let p = policy(&["https://chat.example.org"], true);
        assert_eq!(p.check_host(Some("chat.example.org")), Ok(()));
        assert_eq!(
            p.check_upgrade(Some("127.0.0.1:7668"), Some("https://chat.example.org"), false),
            Ok(())
        );
        assert_eq!(
            p.check_upgrade(Some("127.0.0.1:7668"), Some("https://other.example.org"), false),
            Err(OriginRefusal::Origin)
        );
    }

    #[test]
    fn a_client_that_is_not_a_browser_is_judged_by_host_alone() {
        let p = policy(&[], true);
        assert_eq!(p.check_upgrade(Some("127.0.0.1:7668"), None, false), Ok(()));
        assert_eq!(p.check_upgrade(Some("evil.example"), None, false), Err(OriginRefusal::Host));
    }

    #[test]
    fn output_is_cut_between_frames_only() {
        let out = b"a1 OK PING\r\n* MSG #g 1 5 bob {5}\r\nhe}\r\n\r\nb2 OK PING\r\n";
        let first = b"a1 OK PING\r\n".len();
        let second = first + b"* MSG #g 1 5 bob {5}\r\nhe}\r\n\r\n".len();
        // Everything fits.
        assert_eq!(whole_frames_within(out, 1000), out.len());
        // Cut before the frame that would not fit, never inside it (its payload
        // holds a CRLF and a brace).
        for max in first..second {
            assert_eq!(whole_frames_within(out, max), first, "max {max}");
        }
        assert_eq!(whole_frames_within(out, second), second);
        // A first frame longer than the limit still goes whole.
        assert_eq!(whole_frames_within(out, 3), first);
        assert_eq!(whole_frames_within(b"", 10), 0);
        assert_eq!(whole_frames_within(b"partial", 3), 7);
    }

    #[test]
    fn a_message_holds_a_piece_and_the_largest_frame() {
        let limits = Limits::default();
        assert_eq!(message_max(&limits), 64 * 1024 + 1024 + 1024 * 1024);
    }
}
