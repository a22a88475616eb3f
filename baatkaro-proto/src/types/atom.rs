//! Short ASCII identifiers stored inline (no heap allocation), and the macro that
//! builds a validated newtype around one.
//!
//! Names, tags and keys appear in every frame; keeping them inline makes decoding
//! a frame allocation-free apart from its payload.

/// Up to `N` ASCII bytes stored inline. Bytes past `len` are always zero, so the
/// derived comparisons and hash see only the value.
///
/// Aligned to 16 bytes, with the bytes first, so that every copy of a value moves
/// whole aligned 16-byte lanes: a copy whose loads straddle the stores that wrote the
/// value cannot be forwarded from the store buffer and stalls, which profiling showed
/// to dominate decoding when the layout was packed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C, align(16))]
pub(crate) struct Inline<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> Inline<N> {
    /// Copies `bytes`, which the caller has validated to be ASCII and at most `N` long.
    pub(crate) fn copy_from(bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(N)];
        let mut buf = [0u8; N];
        // Each 16-byte lane is assembled in a register and stored whole. Copying the
        // few bytes of a name with narrow stores would make every later 16-byte load
        // of this value (each move of a frame) stall on store forwarding, which
        // profiling showed to be the most expensive step of decoding a frame.
        let mut lanes = buf.chunks_exact_mut(16);
        for (lane, src) in (&mut lanes).zip(bytes.chunks(16)) {
            let mut value = 0u128;
            for (k, &b) in src.iter().enumerate() {
                value |= u128::from(b) << (8 * k);
            }
            lane.copy_from_slice(&value.to_le_bytes());
        }
        let tail = lanes.into_remainder();
        let done = N - tail.len();
        for (dst, src) in tail.iter_mut().zip(bytes.iter().skip(done)) {
            *dst = *src;
        }
        // N is at most 255 for every use (checked by the `atom!` macro's const assertion).
        Inline { len: bytes.len() as u8, buf }
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
