//! Free-form values: message text, file names, passwords (all carried in
//! payloads) and the short human-readable notes on error lines.

use std::fmt;

use bytes::Bytes;

use crate::ValidationError;
use crate::error::ForbiddenChar;

/// The longest [`Text`] the protocol allows, whatever a server advertises.
pub const TEXT_MAX: usize = 65_536;

/// Checks UTF-8 text for the characters that must never reach a terminal or a log
/// line: every control character (C0, DEL, C1) except TAB. CR, LF and NUL are
/// among them, so text can never break a line or a C string.
fn check_text(what: &'static str, bytes: &[u8], max: usize) -> Result<(), ValidationError> {
    if bytes.is_empty() {
        return Err(ValidationError::Empty { what });
    }
    if bytes.len() > max {
        return Err(ValidationError::TooLong { what, max });
    }
    // Fast path: printable ASCII and TAB is valid text, and most chat text is just
    // that. The fold has no early exit so that it vectorises.
    let printable =
        bytes.iter().fold(true, |ok, &b| ok & ((b.wrapping_sub(0x20) < 0x5f) | (b == b'\t')));
    if printable {
        return Ok(());
    }
    let s = std::str::from_utf8(bytes).map_err(|_| ValidationError::NotUtf8 { what })?;
    match s.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(ValidationError::Forbidden { what, found: ForbiddenChar::Char(c) }),
        None => Ok(()),
    }
}

/// The accessors and formatting shared by the validated UTF-8 payload types.
macro_rules! payload_text {
    ($name:ident, $what:literal) => {
        impl $name {
            /// Validates and copies a string.
            pub fn new(s: &str) -> Result<Self, ValidationError> {
                Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
            }

            #[doc = concat!("The ", $what, ".")]
            pub fn as_str(&self) -> &str {
                // Validated UTF-8 on construction, so the fallback is never taken.
                std::str::from_utf8(&self.0).unwrap_or_default()
            }

            /// The UTF-8 bytes, exactly as on the wire.
            pub fn as_bytes(&self) -> &Bytes {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Message text: 1–65,536 bytes of UTF-8 without control characters (TAB excepted).
///
/// Travels as a payload, so it may hold any printable character, spaces included.
/// It is a cheap-to-clone view into the received bytes: decoding copies nothing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Bytes);

impl Text {
    /// The maximum length in bytes.
    pub const MAX_LEN: usize = TEXT_MAX;

    /// Validates bytes (typically a payload) as text without copying them.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, ValidationError> {
        check_text("text", &bytes, TEXT_MAX)?;
        Ok(Text(bytes))
    }

    /// Whether `bytes` are valid text, as [`Text::from_bytes`] checks it.
    #[inline]
    pub(crate) fn is_valid(bytes: &[u8]) -> bool {
        check_text("text", bytes, TEXT_MAX).is_ok()
    }

    /// Takes the payload as text if it is valid text, and leaves it in place if not.
    #[inline]
    pub(crate) fn take_valid(payload: &mut Option<Bytes>) -> Option<Self> {
        match payload {
            Some(b) if Text::is_valid(b) => payload.take().map(Text),
            _ => None,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: text is never empty. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

payload_text!(Text, "text");

/// A file's display name: text (as [`Text`]) of at most 255 bytes, with no path
/// separator (`/`, `\`), no invisible or bidi format character, and not `.` or `..`.
///
/// It is a label only: a server never builds a path from it, and a client that saves
/// a download under it cannot be steered out of the directory it chose.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(Bytes);

impl FileName {
    /// The maximum length in bytes.
    pub const MAX_LEN: usize = 255;

    /// Whether a file name may hold `c` (beside the rules for all text): not a path
    /// separator, and not an invisible or direction-changing format character. A
    /// client can use it to make a name from a local file name.
    pub fn allows(c: char) -> bool {
        c != '/' && c != '\\' && !is_format_char(c)
    }

    /// Validates bytes (typically a payload) as a file name without copying them.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, ValidationError> {
        let what = "file name";
        check_text(what, &bytes, Self::MAX_LEN)?;
        if let Some(&b) = bytes.iter().find(|&&b| b == b'/' || b == b'\\') {
            return Err(ValidationError::Forbidden { what, found: ForbiddenChar::Byte(b) });
        }
        // Invisible and direction-changing format characters could disguise a name
        // ("txt.exe" shown as "exe.txt"): none may appear in a file name.
        let text = std::str::from_utf8(&bytes).unwrap_or_default();
        if let Some(c) = text.chars().find(|&c| !Self::allows(c)) {
            return Err(ValidationError::Forbidden { what, found: ForbiddenChar::Char(c) });
        }
        if &bytes[..] == b"." || &bytes[..] == b".." {
            return Err(ValidationError::Reserved { what });
        }
        Ok(FileName(bytes))
    }
}

payload_text!(FileName, "name");

/// The name of a file offered for sharing (FILE-OFFER): a [`FileName`] that does
/// not begin with `.`.
///
/// ```abnf
/// offer-name = file-name   ; and not beginning with "."
/// ```
///
/// Saved under its name, a file that began with a dot would be hidden from a
/// directory listing, or be a program's start-up file (`.bashrc`, `.profile`): so a
/// server refuses such a name (`BAD_FILE_NAME`). Names in FILE events stay
/// [`FileName`]s: an earlier server may have stored one that begins with a dot, and
/// a client keeps reading its history. A client saves a download only under
/// [`crate::disk_name::disk_name`] of its name, whichever it is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferName(FileName);

impl OfferName {
    /// The maximum length in bytes, as for any file name.
    pub const MAX_LEN: usize = FileName::MAX_LEN;

    /// Validates bytes (typically a payload) as an offered file name, without
    /// copying them.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, ValidationError> {
        if bytes.first() == Some(&b'.') {
            return Err(ValidationError::LeadingDot { what: "offered file name" });
        }
        FileName::from_bytes(bytes).map(OfferName)
    }

    /// Validates and copies a string.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The name, as a FILE event will carry it.
    pub fn as_file_name(&self) -> &FileName {
        &self.0
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The UTF-8 bytes, exactly as on the wire.
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }
}

impl From<OfferName> for FileName {
    fn from(name: OfferName) -> FileName {
        name.0
    }
}

impl fmt::Debug for OfferName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfferName({:?})", self.as_str())
    }
}

impl fmt::Display for OfferName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unicode format characters a file name may not hold: zero-width characters, bidi
/// embeddings, overrides and isolates, word joiners and the byte order mark.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A password: 1–1,024 arbitrary bytes. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Bytes);

impl Password {
    /// The maximum length in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Validates the length of a password.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, ValidationError> {
        let what = "password";
        if bytes.is_empty() {
            return Err(ValidationError::Empty { what });
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(ValidationError::TooLong { what, max: Self::MAX_LEN });
        }
        Ok(Password(bytes))
    }

    /// Builds a password from a string.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A short human-readable note on an error line: 1–256 bytes of printable ASCII
/// and spaces, without `{` and `}` (so it can never look like a payload marker).
///
/// ```abnf
/// note = 1*256(%x20-7A / "|" / "~")
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Note(String);

impl Note {
    /// The maximum length in bytes.
    pub const MAX_LEN: usize = 256;

    /// Validates a note.
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        let what = "note";
        if s.is_empty() {
            return Err(ValidationError::Empty { what });
        }
        if s.len() > Self::MAX_LEN {
            return Err(ValidationError::TooLong { what, max: Self::MAX_LEN });
        }
        if let Some(b) = s.bytes().find(|&b| !is_note_byte(b)) {
            return Err(ValidationError::Forbidden { what, found: ForbiddenChar::Byte(b) });
        }
        Ok(Note(s.to_owned()))
    }

    /// Builds a note from arbitrary text, replacing what a note cannot hold with `?`
    /// and cutting it to length; `None` if nothing is left.
    pub fn lossy(s: &str) -> Option<Self> {
        let cleaned: String = s
            .chars()
            .map(|c| if c.is_ascii() && is_note_byte(c as u8) { c } else { '?' })
            .take(Self::MAX_LEN)
            .collect();
        Note::new(&cleaned).ok()
    }

    /// The note.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_note_byte(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) && b != b'{' && b != b'}'
}

impl fmt::Debug for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Note({:?})", self.0)
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
