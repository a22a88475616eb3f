//! Errors in layers: the wire error registry ([`ErrorCode`]), value validation
//! ([`ValidationError`]) and frame decoding ([`DecodeError`]).
//!
//! [`ErrorCode`] is the single source of SPEC.md's error table: a test reads the
//! table out of the spec and compares it with [`ErrorCode::ALL`] row by row.

use std::fmt;

use crate::types::Tag;

macro_rules! error_codes {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $wire:literal, fatal: $fatal:literal, retry: $retry:literal, $text:literal;
    )*) => {
        /// A stable, machine-readable error code of the wire protocol (SPEC.md, "Error codes").
        ///
        /// The wire name (`NOT_MEMBER`) never changes once published; the human text may.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of SPEC.md's table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The name on the wire, e.g. `NOT_MEMBER`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)* }
            }

            /// Parses a wire name; `None` for a name this version does not know.
            pub fn from_wire(name: &[u8]) -> Option<ErrorCode> {
                match name { $(n if n == $wire.as_bytes() => Some(ErrorCode::$variant),)* _ => None }
            }

            /// Whether the server closes the connection after sending this error.
            pub const fn is_fatal(self) -> bool {
                match self { $(ErrorCode::$variant => $fatal,)* }
            }

            /// Whether a reply with this code may carry a `retry=` hint.
            pub const fn has_retry(self) -> bool {
                match self { $(ErrorCode::$variant => $retry,)* }
            }

            /// The default human-readable text, as in SPEC.md's table.
            pub const fn text(self) -> &'static str {
                match self { $(ErrorCode::$variant => $text,)* }
            }
        }
    };
}

error_codes! {
    /// A line, CRLF included, is longer than the line limit.
    LineTooLong = "LINE_TOO_LONG", fatal: false, retry: false, "line longer than the line limit";
    /// A line ended in a bare LF, or held a CR that did not end it.
    BadLineEnd = "BAD_LINE_END", fatal: false, retry: false, "line not terminated by CRLF";
    /// A declared payload is longer than the payload limit.
    PayloadTooLarge = "PAYLOAD_TOO_LARGE", fatal: false, retry: false, "declared payload longer than the payload limit";
    /// The bytes after a payload were not CRLF: the stream cannot be resynchronised.
    BadPayloadEnd = "BAD_PAYLOAD_END", fatal: true, retry: false, "payload not followed by CRLF";
    /// The line does not start with a valid tag.
    BadTag = "BAD_TAG", fatal: false, retry: false, "missing or invalid tag";
    /// The verb is not one this server knows.
    UnknownCommand = "UNKNOWN_COMMAND", fatal: false, retry: false, "unknown command";
    /// The arguments or payload do not match the command's grammar.
    Syntax = "SYNTAX", fatal: false, retry: false, "malformed arguments";
    /// A user or group name is not valid.
    BadName = "BAD_NAME", fatal: false, retry: false, "invalid user or group name";
    /// A text is empty, longer than the protocol's 65,536 bytes, not valid UTF-8, or
    /// holds a forbidden character.
    BadText = "BAD_TEXT", fatal: false, retry: false, "text empty, over 65536 bytes, not UTF-8 or with a forbidden character";
    /// A file name is not acceptable as a display name.
    BadFileName = "BAD_FILE_NAME", fatal: false, retry: false, "invalid file name";
    /// None of the client's protocol versions is supported.
    UnsupportedVersion = "UNSUPPORTED_VERSION", fatal: true, retry: false, "no common protocol version";
    /// A command was sent before HELLO.
    HelloRequired = "HELLO_REQUIRED", fatal: false, retry: false, "send HELLO first";
    /// The command is not allowed in the session's current state.
    WrongState = "WRONG_STATE", fatal: false, retry: false, "command not allowed in this state";
    /// The command needs a logged-in session.
    AuthRequired = "AUTH_REQUIRED", fatal: false, retry: false, "log in first";
    /// Unknown user or wrong password (deliberately the same code).
    AuthFailed = "AUTH_FAILED", fatal: false, retry: false, "unknown user or wrong password";
    /// REGISTER for a name that is taken.
    UserExists = "USER_EXISTS", fatal: false, retry: false, "user name already taken";
    /// The server does not accept new accounts.
    RegistrationClosed = "REGISTRATION_CLOSED", fatal: false, retry: false, "registration is closed";
    /// The client is over a rate budget.
    RateLimited = "RATE_LIMITED", fatal: false, retry: true, "rate limit exceeded";
    /// No such user exists.
    NoSuchUser = "NO_SUCH_USER", fatal: false, retry: false, "no such user";
    /// No such group exists.
    NoSuchGroup = "NO_SUCH_GROUP", fatal: false, retry: false, "no such group";
    /// CREATE for a group name that is taken.
    GroupExists = "GROUP_EXISTS", fatal: false, retry: false, "group already exists";
    /// The acting or target user is not a member of the group.
    NotMember = "NOT_MEMBER", fatal: false, retry: false, "acting or target user not a member of the group";
    /// The user is a member already.
    AlreadyMember = "ALREADY_MEMBER", fatal: false, retry: false, "already a member of the group";
    /// The user has a pending request or invite already.
    AlreadyPending = "ALREADY_PENDING", fatal: false, retry: false, "a request or invite is pending already";
    /// There is no pending join request to act on.
    NoSuchRequest = "NO_SUCH_REQUEST", fatal: false, retry: false, "no such pending request";
    /// There is no pending invite to act on.
    NoSuchInvite = "NO_SUCH_INVITE", fatal: false, retry: false, "no such pending invite";
    /// There is no pending ownership offer to act on.
    NoSuchOffer = "NO_SUCH_OFFER", fatal: false, retry: false, "no such ownership offer";
    /// The user is banned from the group.
    Banned = "BANNED", fatal: false, retry: false, "banned from the group";
    /// UNBAN for a user who is not banned.
    NotBanned = "NOT_BANNED", fatal: false, retry: false, "user is not banned";
    /// The group admits by invitation only.
    InviteOnly = "INVITE_ONLY", fatal: false, retry: false, "group is invite-only";
    /// The acting user's rank does not allow the operation.
    NotPermitted = "NOT_PERMITTED", fatal: false, retry: false, "not permitted";
    /// The owner must hand ownership over before leaving.
    OwnerMustTransfer = "OWNER_MUST_TRANSFER", fatal: false, retry: false, "owner must transfer ownership first";
    /// The operation would not change anything (e.g. promoting an admin).
    NoChange = "NO_CHANGE", fatal: false, retry: false, "nothing to change";
    /// The group is at its member limit.
    GroupFull = "GROUP_FULL", fatal: false, retry: false, "group is full";
    /// The group is at its pending-request limit.
    TooManyPending = "TOO_MANY_PENDING", fatal: false, retry: false, "too many pending requests";
    /// The group is at its pending-invite limit.
    TooManyInvites = "TOO_MANY_INVITES", fatal: false, retry: false, "too many pending invites";
    /// The user is at the groups-per-user limit.
    TooManyGroups = "TOO_MANY_GROUPS", fatal: false, retry: false, "too many groups";
    /// A message text or reason is longer than its limit.
    TextTooLong = "TEXT_TOO_LONG", fatal: false, retry: false, "text longer than its limit";
    /// An idempotency key was reused for a different send.
    KeyConflict = "KEY_CONFLICT", fatal: false, retry: false, "idempotency key reused for a different send";
    /// A FILE-CHUNK or FILE-GET range lies outside the file.
    BadRange = "BAD_RANGE", fatal: false, retry: false, "file range out of bounds";
    /// The offered file is larger than the file size limit.
    FileTooLarge = "FILE_TOO_LARGE", fatal: false, retry: false, "file larger than the file size limit";
    /// The upload would exceed the user's storage quota.
    QuotaExceeded = "QUOTA_EXCEEDED", fatal: false, retry: false, "storage quota exceeded";
    /// The user has the maximum number of uploads in progress.
    TooManyUploads = "TOO_MANY_UPLOADS", fatal: false, retry: true, "too many concurrent uploads";
    /// No such file, or not visible to this user.
    NoSuchFile = "NO_SUCH_FILE", fatal: false, retry: false, "no such file";
    /// The uploaded content does not match the offered SHA-256.
    HashMismatch = "HASH_MISMATCH", fatal: false, retry: false, "content does not match the offered hash";
    /// FILE-COMMIT before every byte was uploaded.
    UploadIncomplete = "UPLOAD_INCOMPLETE", fatal: false, retry: false, "upload incomplete";
    /// The server's storage is full.
    StorageFull = "STORAGE_FULL", fatal: false, retry: true, "server storage full";
    /// The server found its store damaged and takes no more writes until an operator
    /// repairs it; reads of what is intact may still work.
    StoreDamaged = "STORE_DAMAGED", fatal: false, retry: true, "server store damaged; it takes no writes";
    /// REVOKE of a token the user does not hold.
    NoSuchToken = "NO_SUCH_TOKEN", fatal: false, retry: false, "no such token";
    /// A new password shorter than the server's `password` limit.
    PasswordTooShort = "PASSWORD_TOO_SHORT", fatal: false, retry: false, "password shorter than the server allows";
    /// The credentials are right, but the operator locked the account.
    AccountLocked = "ACCOUNT_LOCKED", fatal: false, retry: false, "account locked by the operator";
    /// An unexpected server-side failure; nothing was stored.
    Internal = "INTERNAL", fatal: false, retry: true, "internal server error";
    /// The server is shutting down.
    ShuttingDown = "SHUTTING_DOWN", fatal: true, retry: true, "server shutting down";
    /// The client did not read its frames fast enough.
    SlowConsumer = "SLOW_CONSUMER", fatal: true, retry: false, "client too slow to read";
    /// Nothing was received for longer than the idle limit.
    IdleTimeout = "IDLE_TIMEOUT", fatal: true, retry: false, "idle for too long";
    /// The connection did not log in within the `login` limit.
    LoginTimeout = "LOGIN_TIMEOUT", fatal: true, retry: false, "not logged in in time";
    /// The server is at its connection limit.
    TooManyConnections = "TOO_MANY_CONNECTIONS", fatal: true, retry: true, "too many connections";
    /// What the session logged in with no longer holds: its token was revoked, or
    /// the account's password changed or the account was deleted elsewhere.
    Revoked = "REVOKED", fatal: true, retry: false, "session credentials revoked";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a value was refused by a validated type's constructor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The value is empty but must not be.
    #[error("{what} must not be empty")]
    Empty {
        /// What kind of value, e.g. "user name".
        what: &'static str,
    },
    /// The value is longer than its maximum.
    #[error("{what} is longer than {max} bytes")]
    TooLong {
        /// What kind of value.
        what: &'static str,
        /// The maximum length in bytes.
        max: usize,
    },
    /// The value holds a byte or character outside its alphabet.
    #[error("{what} must not contain {found}")]
    Forbidden {
        /// What kind of value.
        what: &'static str,
        /// A description of the offending byte or character.
        found: ForbiddenChar,
    },
    /// The value must start with a lowercase ASCII letter.
    #[error("{what} must start with a lowercase letter a-z")]
    BadStart {
        /// What kind of value.
        what: &'static str,
    },
    /// The value is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    NotUtf8 {
        /// What kind of value.
        what: &'static str,
    },
    /// The value begins with `.` where it may not (a file name offered for sharing).
    #[error("{what} must not begin with '.'")]
    LeadingDot {
        /// What kind of value.
        what: &'static str,
    },
    /// The value is reserved (e.g. the file names `.` and `..`).
    #[error("{what} is reserved")]
    Reserved {
        /// What kind of value.
        what: &'static str,
    },
    /// A number is out of its allowed range.
    #[error("{what} is out of range")]
    OutOfRange {
        /// What kind of value.
        what: &'static str,
    },
}

/// The offending character or byte in a [`ValidationError::Forbidden`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForbiddenChar {
    /// A character of UTF-8 text (its code point).
    Char(char),
    /// A byte of an ASCII token (which may be part of a multi-byte character).
    Byte(u8),
}

impl fmt::Display for ForbiddenChar {
    // Always ASCII, so the message can travel as an error note.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Braces are left out too: a note may not hold them (SPEC.md, section 3).
        let quotable = |c: char| c.is_ascii_graphic() && c != '{' && c != '}';
        match *self {
            ForbiddenChar::Char(c) if quotable(c) => write!(f, "'{c}' (U+{:04X})", u32::from(c)),
            ForbiddenChar::Char(c) => write!(f, "U+{:04X}", u32::from(c)),
            ForbiddenChar::Byte(b) if quotable(char::from(b)) => {
                write!(f, "'{}' (byte 0x{b:02X})", char::from(b))
            }
            ForbiddenChar::Byte(b) => write!(f, "byte 0x{b:02X}"),
        }
    }
}

/// A frame that could not be decoded, with everything the error reply needs.
///
/// Unless [`DecodeError::is_fatal`], the decoder has already resynchronised: the
/// bad frame is consumed and the next call returns the next frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct DecodeError {
    /// The request's tag when it could be read; the reply is untagged (`*`) otherwise.
    pub tag: Option<Tag>,
    /// The wire error code for the reply.
    pub code: ErrorCode,
    /// A human-readable explanation (ASCII, suitable for the reply's note).
    pub detail: String,
}

impl DecodeError {
    pub(crate) fn new(tag: Option<Tag>, code: ErrorCode, detail: impl Into<String>) -> Self {
        DecodeError { tag, code, detail: detail.into() }
    }

    /// Whether the stream is unusable after this error (the connection must close).
    pub fn is_fatal(&self) -> bool {
        self.code.is_fatal()
    }
}
