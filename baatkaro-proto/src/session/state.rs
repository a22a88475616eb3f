//! The session's states and which commands each allows (SPEC.md section 4.1).

use crate::command::Verb;
use crate::error::ErrorCode;
use crate::types::UserName;

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Connected; HELLO (and PING) only.
    Greeting,
    /// HELLO done; REGISTER, LOGIN, AUTH, PING, LOGOUT.
    Authenticating,
    /// Logged in as this user; everything but HELLO, REGISTER, LOGIN and AUTH.
    LoggedIn(UserName),
    /// Over; nothing more is read or sent.
    Closed,
}

impl SessionState {
    /// The error for `verb` in this state, or `None` if it is allowed.
    pub fn refusal(self, verb: Verb) -> Option<ErrorCode> {
        match (self, verb) {
            (SessionState::Closed, _) => Some(ErrorCode::WrongState),
            (_, Verb::Ping) => None,
            (SessionState::Greeting, Verb::Hello) => None,
            (SessionState::Greeting, _) => Some(ErrorCode::HelloRequired),
            (_, Verb::Hello) => Some(ErrorCode::WrongState),
            (
                SessionState::Authenticating,
                Verb::Register | Verb::Login | Verb::Auth | Verb::Logout,
            ) => None,
            (SessionState::Authenticating, _) => Some(ErrorCode::AuthRequired),
            (SessionState::LoggedIn(_), Verb::Register | Verb::Login | Verb::Auth) => {
                Some(ErrorCode::WrongState)
            }
            (SessionState::LoggedIn(_), _) => None,
        }
    }
}
