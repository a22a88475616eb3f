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
    UserName, max = 32, check = |b| check_name("user name", b)
);

atom!(
    /// A group name, with the same alphabet as a [`UserName`].
    ///
    /// ```abnf
    /// group-name = name
    /// ```
    GroupName, max = 32, check = |b| check_name("group name", b)
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
