//! How a client reaches a server, and when secrets may cross the wire (SPEC.md
//! section 11.7): the address forms `baatkaro://` and `baatkaros://`, the rule that
//! plain text is for loopback only unless someone insists, and the certificate
//! fingerprints clients pin.
//!
//! Pure: parsing and deciding only. Resolving names, connecting and hashing
//! certificates are the caller's.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The port a server listens on, and an address without one means.
pub const DEFAULT_PORT: u16 = 7667;

/// The scheme of a plain-text address: `baatkaro://host:port`.
pub const SCHEME_PLAIN: &str = "baatkaro";

/// The scheme of a TLS address: `baatkaros://host:port`.
pub const SCHEME_TLS: &str = "baatkaros";

/// Longest host name an address may hold (the DNS limit).
pub const HOST_MAX: usize = 253;

/// Where a server is and whether to speak TLS to it.
///
/// Written `baatkaros://host:port` for TLS and `baatkaro://host:port`, or plain
/// `host:port`, for plain text. The port defaults to [`DEFAULT_PORT`]; an IPv6
/// address is written in brackets (`baatkaros://[2001:db8::1]:7667`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// The host: an IP address or a DNS name (lower-cased).
    pub host: Host,
    /// The TCP port.
    pub port: u16,
    /// Whether the connection is wrapped in TLS.
    pub tls: bool,
}

/// The host part of an [`Address`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal IP address.
    Ip(IpAddr),
    /// A DNS name, lower-cased: labels of 1 to 63 letters, digits and `-` (not
    /// first or last), joined by `.`, at most [`HOST_MAX`] in all, the last
    /// label not all digits.
    Name(String),
}

/// Why an address was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A scheme other than `baatkaro` and `baatkaros`.
    #[error("unknown scheme {0:?}: use baatkaros://host:port for TLS or baatkaro://host:port")]
    Scheme(String),
    /// No host, or one with characters a host cannot have.
    #[error("bad host {0:?}")]
    Host(String),
    /// A port that is not a number from 1 to 65535.
    #[error("bad port {0:?}")]
    Port(String),
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tls, rest) = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(SCHEME_TLS) => (true, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(SCHEME_PLAIN) => (false, rest),
            Some((scheme, _)) => return Err(AddressError::Scheme(scheme.to_string())),
            None => (false, s),
        };
        // A trailing slash is what people paste; anything after it is not ours.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (ip, after) =
                inner.split_once(']').ok_or_else(|| AddressError::Host(rest.to_string()))?;
            let ip: std::net::Ipv6Addr =
                ip.parse().map_err(|_| AddressError::Host(ip.to_string()))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| AddressError::Port(p.to_string()))?),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            (parse_host(host)?, port)
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(AddressError::Port(p.to_string())),
            },
        };
        Ok(Address { host, port, tls })
    }
}

fn parse_host(host: &str) -> Result<Host, AddressError> {
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    // The last label is never all digits (RFC 3696 2): `127.1` or `0x7f.0.0.1`
    // would reach a resolver that reads them as IPv4 addresses, under a name
    // that pins apart from `127.0.0.1`.
    let numeric_end =
        host.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    let valid = !host.is_empty()
        && host.len() <= HOST_MAX
        && !numeric_end
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(Host::Name(host.to_ascii_lowercase()))
    } else {
        Err(AddressError::Host(host.to_string()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl Address {
    /// `host:port`, the form clients key their pinned fingerprints by.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Address {
    /// The canonical form, scheme included: `baatkaros://example.org:7667`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { SCHEME_TLS } else { SCHEME_PLAIN };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Whether an address is the machine's own: 127.0.0.0/8, `::1`, or either of
/// them written as an IPv4-mapped IPv6 address.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The rule of SPEC.md section 11.7, for both ends: plain text — passwords,
/// tokens and messages readable by anyone on the path — is allowed to or from a
/// loopback address, and elsewhere only when the operator or user insisted
/// (`--insecure-plaintext`). A server applies it to the address it listens on,
/// a client to the address it connected to before it sends a secret.
pub fn plaintext_allowed(ip: IpAddr, insisted: bool) -> bool {
    insisted || is_loopback(ip)
}

/// The SHA-256 of a certificate's DER encoding: what a client pins a server by.
///
/// Written `sha256:` and 64 lower-case hex digits. Parsing also takes upper case,
/// no prefix, and the colon-separated pairs `openssl x509 -fingerprint -sha256`
/// prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

/// A fingerprint that is not 32 bytes of hex.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is sha256: and 64 hex digits (colons allowed)")]
pub struct FingerprintError;

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let hex = match s.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("sha256:") => &s[7..],
            _ => s,
        };
        let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(FingerprintError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(FingerprintError)?;
            let lo = hex_value(pair[1]).ok_or(FingerprintError)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Fingerprint(out))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn schemes_choose_tls_and_the_port_defaults() {
        let a = addr("baatkaros://Chat.Example.org");
        assert_eq!(
            a,
            Address { host: Host::Name("chat.example.org".into()), port: 7667, tls: true }
        );
        assert_eq!(a.to_string(), "baatkaros://chat.example.org:7667");
        assert!(!addr("127.0.0.1:9000").tls);
        assert!(!addr("baatkaro://localhost:9000/").tls);
        let v6 = addr("BAATKAROS://[::1]:7000");
        assert_eq!(v6.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(v6.host_port(), "[::1]:7000");
        assert_eq!(addr("[::1]").port, DEFAULT_PORT);
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "https://example.org",
            "baatkaros://",
            "baatkaros://host:0",
            "baatkaros://host:65536",
            "baatkaros://host:+1",
            "host:port",
            "a b:1",
            "user@host:1",
            "host/path:1",
            "[::1",
            "[::1]7667",
            "[nope]:1",
            "-bad-.org",
            "a..b",
            "127.1",
            "0x7f.0.0.1",
            "1.2.3.4.5",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad} was accepted");
        }
        assert!(format!("{}.org", "a".repeat(250)).parse::<Address>().is_err());
    }

    #[test]
    fn plain_text_is_for_loopback_unless_insisted() {
        for ip in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(plaintext_allowed(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["10.0.0.1", "0.0.0.0", "::", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1"] {
            assert!(!plaintext_allowed(ip.parse().unwrap(), false), "{ip}");
            assert!(plaintext_allowed(ip.parse().unwrap(), true), "{ip}");
        }
    }

    #[test]
    fn fingerprints_round_trip_and_take_openssl_form() {
        let fp = Fingerprint(std::array::from_fn(|i| i as u8 * 7));
        let text = fp.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 71);
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp));
        let openssl: String = fp.0.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        assert_eq!(openssl.parse::<Fingerprint>(), Ok(fp));
        assert!("sha256:00".parse::<Fingerprint>().is_err());
        assert!(format!("sha256:{}", "g".repeat(64)).parse::<Fingerprint>().is_err());
    }
}
