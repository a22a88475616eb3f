//! Shared nom parsers for the tokens every frame is made of, and the parse error
//! that carries the wire error code.
//!
//! Every function parses one ABNF rule of SPEC.md, named in its doc comment.
//! Validation failures are `nom::Err::Failure`: once a field is recognised as
//! invalid there is nothing to backtrack to, and the reply names the field's code.

use std::borrow::Cow;

use bytes::Bytes;
use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Parser};

use crate::error::{ErrorCode, ValidationError};
use crate::types::{
    Address, Conversation, FileId, GroupName, IdemKey, Sha256, Software, Tag, TokenSecret, UserName,
};

/// A parse failure: the error code for the reply and a human explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PError {
    pub(crate) code: ErrorCode,
    pub(crate) detail: Cow<'static, str>,
}

impl PError {
    pub(crate) fn new(code: ErrorCode, detail: impl Into<Cow<'static, str>>) -> Self {
        PError { code, detail: detail.into() }
    }

    pub(crate) fn syntax(detail: &'static str) -> Self {
        PError::new(ErrorCode::Syntax, detail)
    }

    fn invalid(code: ErrorCode, e: ValidationError) -> nom::Err<Self> {
        nom::Err::Failure(PError::new(code, e.to_string()))
    }
}

impl<I> ParseError<I> for PError {
    fn from_error_kind(_: I, _: ErrorKind) -> Self {
        PError::syntax("malformed arguments")
    }

    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

impl From<nom::Err<PError>> for PError {
    fn from(e: nom::Err<PError>) -> Self {
        match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => e,
            nom::Err::Incomplete(_) => PError::syntax("truncated arguments"),
        }
    }
}

/// The result of a parser over line bytes.
pub(crate) type PResult<'a, O> = IResult<&'a [u8], O, PError>;

/// Runs `parser` over the whole of `input`: trailing bytes are a syntax error.
pub(crate) fn complete<'a, O>(
    input: &'a [u8],
    mut parser: impl Parser<&'a [u8], Output = O, Error = PError>,
) -> Result<O, PError> {
    match parser.parse(input) {
        Ok(([], out)) => Ok(out),
        Ok((_, _)) => Err(PError::syntax("unexpected extra arguments")),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
        // Complete parsers never ask for more input; a line is always whole.
        Err(nom::Err::Incomplete(_)) => Err(PError::syntax("truncated arguments")),
    }
}

/// Wraps a rule so that it must be preceded by one space: `SP rule`.
pub(crate) fn arg<'a, O>(
    rule: impl Parser<&'a [u8], Output = O, Error = PError>,
) -> impl Parser<&'a [u8], Output = O, Error = PError> {
    nom::sequence::preceded(sp, rule)
}

/// `SP = %x20`
pub(crate) fn sp(i: &[u8]) -> PResult<'_, ()> {
    // Hand-written rather than `tag(" ")`: it runs several times per frame, and the
    // generic combinator costs ten times as many instructions for one byte.
    match i.split_first() {
        Some((b' ', rest)) => Ok((rest, ())),
        // The line ended where the command needs another argument.
        None => Err(nom::Err::Error(PError::syntax("missing arguments"))),
        Some(_) => Err(nom::Err::Error(PError::syntax("expected a space"))),
    }
}

/// `token = 1*(%x21-7E)`: everything up to the next space. The field's own rule
/// then validates its alphabet, so a bad byte gets that field's error code.
pub(crate) fn token(i: &[u8]) -> PResult<'_, &[u8]> {
    let end = i.iter().position(|&b| b == b' ').unwrap_or(i.len());
    if end == 0 {
        return Err(nom::Err::Error(PError::syntax("expected an argument")));
    }
    let (token, rest) = i.split_at(end);
    Ok((rest, token))
}

/// Parses a token with a validating constructor, failing with `code`.
fn validated<'a, T>(
    i: &'a [u8],
    code: ErrorCode,
    build: impl FnOnce(&[u8]) -> Result<T, ValidationError>,
) -> PResult<'a, T> {
    let (rest, raw) = token(i)?;
    build(raw).map(|v| (rest, v)).map_err(|e| PError::invalid(code, e))
}

/// `number = "0" / %x31-39 *19DIGIT` — a decimal u64 without leading zeros.
pub(crate) fn number(i: &[u8]) -> PResult<'_, u64> {
    // One pass: accumulate while checking for overflow, then check the shape.
    let mut value: u64 = 0;
    let mut len = 0;
    let mut overflow = false;
    for &b in i {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        match value.checked_mul(10).and_then(|v| v.checked_add(u64::from(digit))) {
            Some(v) => value = v,
            None => overflow = true,
        }
        len += 1;
    }
    match (len, i.first()) {
        (0, _) => Err(nom::Err::Error(PError::syntax("expected a number"))),
        (n, Some(b'0')) if n > 1 => {
            Err(nom::Err::Failure(PError::syntax("number with a leading zero")))
        }
        _ if overflow => Err(nom::Err::Failure(PError::syntax("number out of range"))),
        (n, _) => Ok((&i[n..], value)),
    }
}

/// Parses canonical decimal digits (no sign, no leading zero) into a u64.
pub(crate) fn parse_number(digits: &[u8]) -> Option<u64> {
    const MAX_DIGITS: usize = 20;
    let n = digits.len();
    if n == 0 || n > MAX_DIGITS || (n > 1 && digits[0] == b'0') {
        return None;
    }
    // The first `n % 8` digits one at a time, then eight at a time: a 13-digit time
    // stamp is five steps and one word instead of thirteen dependent steps.
    let (head, words) = digits.split_at(n % 8);
    let mut value = 0u64;
    let mut all_digits = true;
    for &d in head {
        let digit = d.wrapping_sub(b'0');
        all_digits &= digit < 10;
        value = value * 10 + u64::from(digit);
    }
    for word in words.chunks_exact(8) {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        all_digits &= are_eight_digits(word);
        // Only a 20th digit can overflow.
        value = value.checked_mul(100_000_000)?.checked_add(eight_digits(word))?;
    }
    all_digits.then_some(value)
}

/// Whether all eight bytes of `word` are ASCII digits.
fn are_eight_digits(word: u64) -> bool {
    const HIGH_NIBBLES: u64 = u64::from_ne_bytes([0xf0; 8]);
    const THREES: u64 = u64::from_ne_bytes([0x30; 8]);
    const SIXES: u64 = u64::from_ne_bytes([0x06; 8]);
    // 0x30..=0x39 are the bytes whose high nibble is 3 and stays 3 when 6 is added
    // (no byte that passes the first test can carry into the next).
    (word & HIGH_NIBBLES) == THREES && (word.wrapping_add(SIXES) & HIGH_NIBBLES) == THREES
}

/// The value of eight ASCII digits, the first in the lowest byte of `word`.
fn eight_digits(word: u64) -> u64 {
    const THREES: u64 = u64::from_ne_bytes([0x30; 8]);
    const BYTE_PAIRS: u64 = 0x0000_00ff_0000_00ff;
    let v = word.wrapping_sub(THREES);
    // Each even byte now holds a two-digit value: its digit × 10 plus the next one.
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    // Two-digit values at bytes 0, 2, 4, 6 weighted 10^6, 10^4, 10^2, 1, summed into
    // the high half.
    let hi = (v & BYTE_PAIRS).wrapping_mul(100 + (1_000_000 << 32));
    let lo = ((v >> 16) & BYTE_PAIRS).wrapping_mul(1 + (10_000 << 32));
    hi.wrapping_add(lo) >> 32
}

/// A `number` that must fit in a u32 and be at least `min`.
pub(crate) fn number_u32(min: u32) -> impl Fn(&[u8]) -> PResult<'_, u32> {
    move |i| {
        let (rest, n) = number(i)?;
        match u32::try_from(n) {
            Ok(v) if v >= min => Ok((rest, v)),
            _ => Err(nom::Err::Failure(PError::syntax("number out of range"))),
        }
    }
}

/// `tag = 1*32(ALPHA / DIGIT / "_" / "." / "-")`
pub(crate) fn tag(i: &[u8]) -> PResult<'_, Tag> {
    validated(i, ErrorCode::BadTag, Tag::from_bytes)
}

/// `user-name = name`
pub(crate) fn user_name(i: &[u8]) -> PResult<'_, UserName> {
    validated(i, ErrorCode::BadName, UserName::from_bytes)
}

/// `group-name = name`
pub(crate) fn group_name(i: &[u8]) -> PResult<'_, GroupName> {
    validated(i, ErrorCode::BadName, GroupName::from_bytes)
}

/// `conv = "#" group-name / "@" user-name`
pub(crate) fn conv(i: &[u8]) -> PResult<'_, Conversation> {
    match i.first() {
        Some(b'#') => group_name(&i[1..]).map(|(r, g)| (r, Conversation::Group(g))),
        Some(b'@') => user_name(&i[1..]).map(|(r, u)| (r, Conversation::Direct(u))),
        _ => Err(nom::Err::Failure(PError::syntax("expected a conversation: #group or @user"))),
    }
}

/// `group-conv = "#" group-name` — a conversation that must be a group's.
pub(crate) fn group_conv(i: &[u8]) -> PResult<'_, GroupName> {
    match conv(i)? {
        (rest, Conversation::Group(g)) => Ok((rest, g)),
        (_, Conversation::Direct(_)) => {
            Err(nom::Err::Failure(PError::syntax("expected a group conversation: #group")))
        }
    }
}

/// `idem-key = 1*64(ALPHA / DIGIT / "_" / "." / "-" / ":")`
pub(crate) fn idem_key(i: &[u8]) -> PResult<'_, IdemKey> {
    validated(i, ErrorCode::Syntax, IdemKey::from_bytes)
}

/// `file-id = 1*64(ALPHA / DIGIT / "_" / "-")`
pub(crate) fn file_id(i: &[u8]) -> PResult<'_, FileId> {
    validated(i, ErrorCode::Syntax, FileId::from_bytes)
}

/// `software = 1*64(ALPHA / DIGIT / "_" / "." / "-" / "/" / "+")`
pub(crate) fn software(i: &[u8]) -> PResult<'_, Software> {
    validated(i, ErrorCode::Syntax, Software::from_bytes)
}

/// `sha256 = 64(DIGIT / %x61-66)`
pub(crate) fn sha256(i: &[u8]) -> PResult<'_, Sha256> {
    validated(i, ErrorCode::Syntax, Sha256::from_hex)
}

/// `address = 1*45(DIGIT / %x61-66 / "." / ":")`
pub(crate) fn address(i: &[u8]) -> PResult<'_, Address> {
    validated(i, ErrorCode::Syntax, Address::from_bytes)
}

/// `secret = 64(DIGIT / %x61-66)`
pub(crate) fn secret(i: &[u8]) -> PResult<'_, TokenSecret> {
    validated(i, ErrorCode::Syntax, TokenSecret::from_hex)
}

/// Parses one keyword of a keyword enum (`join-rule`, `role`, …).
pub(crate) fn keyword<T>(from_wire: fn(&[u8]) -> Option<T>) -> impl Fn(&[u8]) -> PResult<'_, T> {
    move |i| {
        let (rest, raw) = token(i)?;
        match from_wire(raw) {
            Some(v) => Ok((rest, v)),
            None => Err(nom::Err::Failure(PError::syntax("unknown keyword"))),
        }
    }
}

/// The payload a command requires.
pub(crate) fn required(payload: Option<Bytes>) -> Result<Bytes, PError> {
    payload.ok_or_else(|| PError::syntax("this command needs a payload"))
}

/// Fails if a command that takes no payload got one.
pub(crate) fn none(payload: &Option<Bytes>) -> Result<(), PError> {
    match payload {
        Some(_) => Err(PError::syntax("this command takes no payload")),
        None => Ok(()),
    }
}

/// Validates a payload with a constructor, failing with `code`.
pub(crate) fn payload_as<T>(
    payload: Bytes,
    code: ErrorCode,
    build: impl FnOnce(Bytes) -> Result<T, ValidationError>,
) -> Result<T, PError> {
    build(payload).map_err(|e| PError::new(code, e.to_string()))
}

/// Reads the tag at the start of a line, if it has a valid one (for error replies).
pub(crate) fn sniff_tag(line: &[u8]) -> Option<Tag> {
    let end = memchr::memchr(b' ', line).unwrap_or(line.len());
    Tag::from_bytes(line.get(..end)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `parse_number` must return: the standard parser's value for canonical
    /// digits, and nothing for anything else.
    fn reference(digits: &[u8]) -> Option<u64> {
        let s = std::str::from_utf8(digits).ok()?;
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s.len() == 1 || !s.starts_with('0'));
        if canonical { s.parse().ok() } else { None }
    }

    proptest! {
        #[test]
        fn parse_number_agrees_with_the_standard_parser(
            digits in prop_oneof![
                "[0-9]{0,22}",
                "[1-9][0-9]{18,19}",
                "1844674407370955161[0-9]",
                "[0-9+ a-]{0,6}",
                // Bytes next to the digits, in the words read eight at a time.
                "[1-9][0-9/:?@]{7,19}",
            ]
        ) {
            prop_assert_eq!(parse_number(digits.as_bytes()), reference(digits.as_bytes()));
        }
    }

    #[test]
    fn parse_number_edges() {
        assert_eq!(parse_number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_number(b"18446744073709551616"), None);
        assert_eq!(parse_number(b"99999999999999999999"), None);
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b"00"), None);
        assert_eq!(parse_number(b"1234567890123456789x"), None);
    }
}
