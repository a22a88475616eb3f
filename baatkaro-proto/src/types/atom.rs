//! Short ASCII identifiers stored inline (no heap allocation), and the macro that
//! builds a validated newtype around one.
//!
//! Names, tags and keys appear in every frame; keeping them inline makes decoding
//! a frame allocation-free apart from its payload.

/// Up to `N` ASCII bytes stored inline, zero-padded. No value holds a zero byte
/// (every alphabet excludes NUL), so the value ends at the first zero and the
/// padding is the only length there is: the derived comparisons see the value,
/// and zero sorts before every byte, so the order is the strings' order. The hash
/// sees the value and its terminating zero only (see its `Hash`).
///
/// Aligned to 16 bytes, and with no field besides the bytes, so that every copy
/// moves whole aligned 16-byte lanes and every lane is written whole when a value
/// is decoded: a 16-byte load of a lane that was written by narrower stores cannot
/// be forwarded from the store buffer and stalls, which profiling showed to be the
/// most expensive step of decoding a frame (a length byte beside the lanes did
/// exactly that).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C, align(16))]
pub(crate) struct Inline<const N: usize> {
    buf: [u8; N],
}

/// One write of the value's bytes and the zero that ends it (none when the value
/// fills all `N`): equal values hash alike, a value is never a prefix of another's
/// bytes (so names side by side in a key cannot be shifted into each other), and a
/// short name is not hashed as all `N` bytes with a length before them, as the
/// derived hash did (two calls into the hasher and 32 to 64 bytes of SipHash for
/// every lookup of a user or a group by name).
impl<const N: usize> std::hash::Hash for Inline<N> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.buf[..(self.len() + 1).min(N)]);
    }
}

impl<const N: usize> Inline<N> {
    /// Copies `bytes`, which the caller has validated to be ASCII and at most `N` long.
    pub(crate) fn copy_from(bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(N)];
        let mut buf = [0u8; N];
        // Each 16-byte lane is assembled from at most two word loads rather than byte
        // by byte. It is still stored as two 8-byte halves, so the first 16-byte move
        // of the value stalls once; `copy_prefix` avoids even that where the decoder
        // can offer it a window.
        let mut lanes = buf.chunks_exact_mut(16);
        for (lane, src) in (&mut lanes).zip(bytes.chunks(16)) {
            lane.copy_from_slice(&lane_of(src).to_le_bytes());
        }
        let tail = lanes.into_remainder();
        let done = N - tail.len();
        for (dst, src) in tail.iter_mut().zip(bytes.iter().skip(done)) {
            *dst = *src;
        }
        Inline { buf }
    }

    /// Copies the first `len` bytes of `window`, which the caller has validated to
    /// be ASCII and at most `N` long.
    ///
    /// When `window` holds at least `N` bytes (and `N` is whole lanes), each lane is
    /// one 16-byte load, masked to `len`, and one 16-byte store: no byte of the value
    /// is written narrowly, so the moves of the frame that follow never stall. The
    /// decoder keeps a line in a buffer with room to spare so that this holds.
    #[inline]
    pub(crate) fn copy_prefix(window: &[u8], len: usize) -> Self {
        if !N.is_multiple_of(16) || window.len() < N || len > N {
            return Self::copy_from(&window[..len.min(window.len())]);
        }
        let mut buf = [0u8; N];
        for (l, lane) in buf.chunks_exact_mut(16).enumerate() {
            let src = &window[l * 16..l * 16 + 16];
            let mask = &LANE_MASKS[len.saturating_sub(l * 16).min(16)];
            // Written as a plain loop over a fixed 16 so that it compiles to one
            // vector AND.
            for i in 0..16 {
                lane[i] = src[i] & mask[i];
            }
        }
        Inline { buf }
    }

    /// The value's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len()]
    }

    /// The length: the offset of the first zero byte, found a word at a time.
    fn len(&self) -> usize {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        let mut words = self.buf.chunks_exact(8);
        let mut at = 0;
        for word in &mut words {
            let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
            // The high bit of each zero byte (exact for the lowest one).
            let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
            if zeros != 0 {
                return at + (zeros.trailing_zeros() / 8) as usize;
            }
            at += 8;
        }
        at + words.remainder().iter().position(|&b| b == 0).unwrap_or(words.remainder().len())
    }

    pub(crate) fn as_str(&self) -> &str {
        // Validated ASCII on construction, so this never takes the fallback.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// `LANE_MASKS[k]`: `k` bytes of 0xff, then zeros.
static LANE_MASKS: [[u8; 16]; 17] = {
    let mut table = [[0u8; 16]; 17];
    let mut k = 0;
    while k <= 16 {
        let mut i = 0;
        while i < k {
            table[k][i] = 0xff;
            i += 1;
        }
        k += 1;
    }
    table
};

/// Up to 16 bytes as a little-endian `u128`, zero above them, read with at most two
/// (overlapping) loads instead of one per byte.
#[inline]
fn lane_of(src: &[u8]) -> u128 {
    let n = src.len();
    // Whole-word loads straight into registers: assembling a word in memory first
    // would be a narrow store followed by a wide load, the stall this type avoids.
    let u32_at = |at: usize| {
        u128::from(u32::from_le_bytes([src[at], src[at + 1], src[at + 2], src[at + 3]]))
    };
    let u64_at = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&src[at..at + 8]);
        u128::from(u64::from_le_bytes(w))
    };
    match n {
        0 => 0,
        1..=3 => {
            let mut v = 0u128;
            for (k, &b) in src.iter().enumerate() {
                v |= u128::from(b) << (8 * k);
            }
            v
        }
        // Two overlapping words cover the lane: the second is shifted to where its
        // bytes belong, and the bytes both hold are the same in each.
        4..=7 => u32_at(0) | (u32_at(n - 4) << (8 * (n - 4))),
        8..=15 => u64_at(0) | (u64_at(n - 8) << (8 * (n - 8))),
        _ => u64_at(0) | (u64_at(8) << 64),
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
///
/// `$fast`, if given, is `fn(&[u8], usize) -> bool`: whether the first `len`
/// bytes of a window are certainly valid, checked without a branch per byte. It
/// may say false for valid bytes (then `$check` decides), never true for invalid
/// ones.
macro_rules! atom {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, check = $check:expr) => {
        $crate::types::atom::atom!($(#[$doc])* $name, max = $max, check = $check, fast = |_, _| false);
    };
    ($(#[$doc:meta])* $name:ident, max = $max:expr, check = $check:expr, fast = $fast:expr) => {
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

            /// Validates and builds the value from the first `len` bytes of
            /// `window` (at most its length), copying whole lanes of `window` when
            /// it is long enough: how the decoder's fast path builds values.
            #[inline]
            #[allow(dead_code, reason = "only the types the fast paths decode use it")]
            pub(crate) fn from_prefix(
                window: &[u8],
                len: usize,
            ) -> Result<Self, $crate::ValidationError> {
                let len = len.min(window.len());
                let fast: fn(&[u8], usize) -> bool = $fast;
                if !fast(window, len) {
                    let check: fn(&[u8]) -> Result<(), $crate::ValidationError> = $check;
                    check(&window[..len])?;
                }
                Ok($name($crate::types::atom::Inline::copy_prefix(window, len)))
            }

            /// Whether the first `len` bytes of `window` are a valid value, by the
            /// same two checks as [`Self::from_prefix`], without building it.
            #[inline]
            #[allow(dead_code, reason = "only the types the borrowed views check use it")]
            pub(crate) fn is_valid_prefix(window: &[u8], len: usize) -> bool {
                let fast: fn(&[u8], usize) -> bool = $fast;
                let check: fn(&[u8]) -> Result<(), $crate::ValidationError> = $check;
                len <= window.len() && (fast(window, len) || check(&window[..len]).is_ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Both constructors keep the value exactly, at every length, whatever the
        /// window holds past it; order and equality are the strings'.
        #[test]
        fn values_keep_their_bytes_and_order(
            a in "[a-z0-9._-]{1,64}",
            b in "[a-z0-9._-]{1,64}",
            junk in proptest::collection::vec(1u8..=255, 64),
        ) {
            let window = [a.as_bytes(), &junk].concat();
            let x = Inline::<64>::copy_prefix(&window, a.len());
            prop_assert_eq!(x.as_bytes(), a.as_bytes());
            prop_assert!(Inline::<64>::copy_from(a.as_bytes()) == x);
            let y = Inline::<64>::copy_from(b.as_bytes());
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
        }

        /// Equal values hash alike however they were built, and two values side by
        /// side hash as the pair they are: moving bytes from the end of the first
        /// to the start of the second changes the hash (fails if the hash is of the
        /// bytes alone, without the zero that ends a value).
        #[test]
        fn hashes_follow_equality_and_pairs_do_not_shift(
            a in "[a-z0-9._-]{2,32}",
            b in "[a-z0-9._-]{1,32}",
            cut in 1usize..32,
        ) {
            use std::hash::BuildHasher;
            // A fixed hasher: the same hash for the same bytes in every run.
            let h = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
            let window = [a.as_bytes(), &[b'x'; 32]].concat();
            let x = Inline::<32>::copy_prefix(&window, a.len());
            prop_assert_eq!(h.hash_one(x), h.hash_one(Inline::<32>::copy_from(a.as_bytes())));
            // The same bytes split elsewhere: ("abc", "d") against ("ab", "cd").
            let cut = cut.min(a.len() - 1);
            let moved = [&a.as_bytes()[cut..], b.as_bytes()].concat();
            if moved.len() <= 32 {
                let pair = (x, Inline::<32>::copy_from(b.as_bytes()));
                let shifted = (
                    Inline::<32>::copy_from(&a.as_bytes()[..cut]),
                    Inline::<32>::copy_from(&moved),
                );
                prop_assert_ne!(h.hash_one(pair), h.hash_one(shifted));
            }
        }

        /// The same for a size that is not whole lanes (feature names).
        #[test]
        fn odd_sizes_work_too(a in "[a-z0-9-]{1,24}") {
            let x = Inline::<24>::copy_prefix(a.as_bytes(), a.len());
            prop_assert_eq!(x.as_bytes(), a.as_bytes());
        }
    }
}
