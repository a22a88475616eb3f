//! Short ASCII identifiers stored inline (no heap allocation), and the macro that
//! builds a validated newtype around one.
//!
//! Names, tags and keys appear in every frame; keeping them inline makes decoding
//! a frame allocation-free apart from its payload.

/// Up to `N` ASCII bytes stored inline. Bytes past `len` are always zero, so the
/// derived comparisons and hash see only the value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Inline<const N: usize> {
    len: u8,
    buf: [u8; N],
}

impl<const N: usize> Inline<N> {
    /// Copies `bytes`, which the caller has validated to be ASCII and at most `N` long.
    pub(crate) fn copy_from(bytes: &[u8]) -> Self {
        let mut buf = [0u8; N];
        // A zip loop rather than `copy_from_slice`: for the few bytes of a name it
        // beats a call into memcpy.
        for (dst, src) in buf.iter_mut().zip(bytes) {
            *dst = *src;
        }
        // N is at most 255 for every use (checked by the `atom!` macro's const assertion).
        Inline { len: bytes.len().min(N) as u8, buf }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Validated ASCII on construction, so this never takes the fallback.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// Checks `bytes` against a length range and an alphabet (a class of
/// [`charset`](super::charset)).
pub(crate) fn check_ascii(
    what: &'static str,
    bytes: &[u8],
    max: usize,
    class: u8,
) -> Result<(), crate::ValidationError> {
    use super::charset;
    use crate::error::{ForbiddenChar, ValidationError};
    if bytes.is_empty() {
        return Err(ValidationError::Empty { what });
    }
    if bytes.len() > max {
        return Err(ValidationError::TooLong { what, max });
    }
    if charset::all_in(bytes, class) {
        return Ok(());
    }
    let bad = bytes.iter().copied().find(|&b| !charset::is(b, class)).unwrap_or_default();
    Err(ValidationError::Forbidden { what, found: ForbiddenChar::Byte(bad) })
}

/// Defines a validated inline identifier type.
///
/// `$check` is `fn(&[u8]) -> Result<(), ValidationError>`.
macro_rules! atom {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, check = $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($crate::types::atom::Inline<$max>);

        const _: () = assert!($max <= 255);

        impl $name {
            /// The maximum length in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates and builds the value from bytes.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, $crate::ValidationError> {
                let check: fn(&[u8]) -> Result<(), $crate::ValidationError> = $check;
                check(bytes)?;
                Ok($name($crate::types::atom::Inline::copy_from(bytes)))
            }

            /// Validates and builds the value from a string.
            pub fn new(s: &str) -> Result<Self, $crate::ValidationError> {
                Self::from_bytes(s.as_bytes())
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The value as bytes, exactly as on the wire.
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::ValidationError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}
pub(crate) use atom;
