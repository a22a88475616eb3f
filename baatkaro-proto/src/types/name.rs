//! Identifiers that travel as single tokens on a line: names, tags, keys, ids.

use super::atom::{atom, check_ascii};
use super::charset;
use crate::ValidationError;

fn check_name(what: &'static str, bytes: &[u8]) -> Result<(), ValidationError> {
    check_ascii(what, bytes, 32, charset::NAME)?;
    // Names start with a letter so they can never look like a number, a tag such as `*`,
    // or a relative path.
    match bytes.first() {
        Some(b) if b.is_ascii_lowercase() => Ok(()),
        _ => Err(ValidationError::BadStart { what }),
    }
}

/// Whether the first `len` bytes of `window` are certainly a valid name: a fixed
/// 32 bytes compared at once (the table lookups of [`check_name`] go a byte at a
/// time). False when `window` is shorter than a name can be.
#[inline]
fn is_name_prefix(window: &[u8], len: usize) -> bool {
    let Some(window) = window.get(..32).and_then(|w| <&[u8; 32]>::try_from(w).ok()) else {
        return false;
    };
    // Byte-sized positions, so that "past the end" is one byte compare per lane.
    const AT: [u8; 32] = {
        let mut at = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            at[i] = i as u8;
            i += 1;
        }
        at
    };
    let end = len.min(32) as u8;
    let mut ok = (1..=32).contains(&len) && window[0].is_ascii_lowercase();
    for (&b, &at) in window.iter().zip(&AT) {
        let allowed = (b.wrapping_sub(b'a') < 26)
            | (b.wrapping_sub(b'0') < 10)
            | (b == b'_')
            | (b == b'.')
            | (b == b'-');
        ok &= allowed | (at >= end);
    }
    ok
}

atom!(
    /// A user name: 1–32 bytes of `a-z 0-9 _ . -`, starting with a letter.
    ///
    /// ```abnf
    /// user-name = name
    /// name      = LOWER *31(LOWER / DIGIT / "_" / "." / "-")
    /// ```
    ///
    /// Only lowercase is allowed, so two names that look alike on screen are equal
    /// byte for byte (no case folding anywhere in the protocol).
    UserName, max = 32, check = |b| check_name("user name", b), fast = is_name_prefix
);

atom!(
    /// A group name, with the same alphabet as a [`UserName`].
    ///
    /// ```abnf
    /// group-name = name
    /// ```
    GroupName, max = 32, check = |b| check_name("group name", b), fast = is_name_prefix
);

atom!(
    /// A client-chosen request tag, echoed on every reply line to that request.
    ///
    /// ```abnf
    /// tag = 1*32(ALPHA / DIGIT / "_" / "." / "-")
    /// ```
    Tag, max = 32, check = |b| check_ascii("tag", b, 32, charset::TAG)
);

atom!(
    /// A client-chosen idempotency key for a send.
    ///
    /// ```abnf
    /// idem-key = 1*64(ALPHA / DIGIT / "_" / "." / "-" / ":")
    /// ```
    IdemKey, max = 64, check = |b| check_ascii("idempotency key", b, 64, charset::KEY)
);

atom!(
    /// A server-assigned file id.
    ///
    /// ```abnf
    /// file-id = 1*64(ALPHA / DIGIT / "_" / "-")
    /// ```
    FileId, max = 64, check = |b| check_ascii("file id", b, 64, charset::FILE_ID)
);

atom!(
    /// A software name and version, e.g. `baatkaro-server/0.1.0`.
    ///
    /// ```abnf
    /// software = 1*64(ALPHA / DIGIT / "_" / "." / "-" / "/" / "+")
    /// ```
    Software, max = 64, check = |b| check_ascii("software name", b, 64, charset::SOFTWARE)
);

atom!(
    /// The name of an optional protocol feature advertised in the handshake.
    ///
    /// ```abnf
    /// feature = 1*24(LOWER / DIGIT / "-")
    /// ```
    Feature, max = 24, check = |b| check_ascii("feature", b, 24, charset::FEATURE)
);

atom!(
    /// A network address as written in text: an IPv4 address (`192.0.2.7`) or an
    /// IPv6 one in lower-case hex (`2001:db8::7`, `::ffff:192.0.2.7`).
    ///
    /// ```abnf
    /// address = 1*45(DIGIT / %x61-66 / "." / ":")
    /// ```
    Address, max = 45, check = |b| check_ascii("address", b, 45, charset::ADDRESS)
);

impl From<std::net::IpAddr> for Address {
    fn from(ip: std::net::IpAddr) -> Self {
        // Rust writes IPv4 as digits and dots and IPv6 as lower-case hex, colons and
        // (for a mapped address) digits and dots, never longer than 45 bytes.
        Address::new(&ip.to_string())
            .unwrap_or_else(|_| unreachable!("an IP address is written in the address alphabet"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The window check says exactly what the rule says, for every length and
        /// whatever follows the name in the window.
        #[test]
        fn the_window_check_agrees_with_the_rule(
            window in proptest::collection::vec(
                prop_oneof![8 => proptest::sample::select(b"az09_.-".to_vec()), 1 => any::<u8>()],
                32..40,
            ),
            len in 0usize..36,
        ) {
            let len = len.min(window.len());
            let rule = check_name("name", &window[..len]).is_ok();
            prop_assert_eq!(is_name_prefix(&window, len), rule);
        }
    }

    #[test]
    fn a_short_window_is_left_to_the_rule() {
        assert!(!is_name_prefix(b"alice", 5));
        assert!(UserName::from_prefix(b"alice", 5).is_ok());
    }
}
