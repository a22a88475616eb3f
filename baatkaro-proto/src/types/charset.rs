//! The alphabets of the line tokens, as bit classes in one lookup table, so that
//! validating a token costs one load and one test per byte.

/// `a-z 0-9 _ . -` (names).
pub(crate) const NAME: u8 = 1 << 0;
/// `A-Z a-z 0-9 _ . -` (tags).
pub(crate) const TAG: u8 = 1 << 1;
/// `A-Z a-z 0-9 _ . - :` (idempotency keys).
pub(crate) const KEY: u8 = 1 << 2;
/// `A-Z a-z 0-9 _ -` (file ids).
pub(crate) const FILE_ID: u8 = 1 << 3;
/// `A-Z a-z 0-9 _ . - / +` (software names).
pub(crate) const SOFTWARE: u8 = 1 << 4;
/// `a-z 0-9 -` (feature names).
pub(crate) const FEATURE: u8 = 1 << 5;
/// `0-9 a-f . :` (network addresses, as IPv4 and IPv6 write them).
pub(crate) const ADDRESS: u8 = 1 << 6;

static CLASSES: [u8; 256] = build();

const fn build() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let lower = b.is_ascii_lowercase();
        let alnum = b.is_ascii_alphanumeric();
        let digit = b.is_ascii_digit();
        let mut class = 0;
        if lower || digit || matches!(b, b'_' | b'.' | b'-') {
            class |= NAME;
        }
        if alnum || matches!(b, b'_' | b'.' | b'-') {
            class |= TAG;
        }
        if alnum || matches!(b, b'_' | b'.' | b'-' | b':') {
            class |= KEY;
        }
        if alnum || matches!(b, b'_' | b'-') {
            class |= FILE_ID;
        }
        if alnum || matches!(b, b'_' | b'.' | b'-' | b'/' | b'+') {
            class |= SOFTWARE;
        }
        if lower || digit || b == b'-' {
            class |= FEATURE;
        }
        if digit || matches!(b, b'a'..=b'f' | b'.' | b':') {
            class |= ADDRESS;
        }
        table[i] = class;
        i += 1;
    }
    table
}

/// Whether `b` is in `class`.
pub(crate) fn is(b: u8, class: u8) -> bool {
    CLASSES[usize::from(b)] & class != 0
}

/// Whether every byte of `bytes` is in `class` (no early exit, so it vectorises).
pub(crate) fn all_in(bytes: &[u8], class: u8) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & is(b, class))
}
