//! The rules of a server's storage that clients can see (SPEC.md 6.7 and 8): the
//! room an upload may take on the server's disk, and what a server whose store was
//! found damaged still serves.

use crate::command::{Command, Verb};
use crate::error::ErrorCode;

/// How long a client is asked to wait before it tries a write again on a server
/// whose store is damaged (`STORE_DAMAGED retry=`): the damage lasts until an
/// operator repairs it, so a minute is soon enough.
pub const DAMAGED_RETRY_MS: u64 = 60_000;

/// How long an uploader is asked to wait before it sends a chunk again that was
/// refused for want of room (`STORAGE_FULL retry=`): room comes back when someone
/// frees it, not by itself.
pub const FULL_RETRY_MS: u64 = 60_000;

/// Whether a chunk of `len` bytes may be written to a disk with `free` bytes left
/// when uploads must leave `reserve` bytes free (SPEC.md 6.7, `STORAGE_FULL`): the
/// last part of the disk is kept for messages, so that files filling it never stop
/// chat. Counted as if every byte of the chunk took new room (a range sent again
/// takes none, but a server cannot tell cheaply).
pub fn chunk_fits(free: u64, reserve: u64, len: u64) -> Result<(), ErrorCode> {
    if free.saturating_sub(len) >= reserve && free >= len {
        Ok(())
    } else {
        Err(ErrorCode::StorageFull)
    }
}

/// Whether a server whose store was found damaged still serves this command
/// (SPEC.md 8, `STORE_DAMAGED`): as [`served_while_damaged`] says of its verb,
/// except that `LOGOUT revoke`, which forgets a token, is a write.
pub fn command_served_while_damaged(command: &Command) -> bool {
    !matches!(command, Command::Logout { revoke: true }) && served_while_damaged(command.verb())
}

/// Whether a server whose store was found damaged still serves commands of this
/// verb (SPEC.md 8, `STORE_DAMAGED`): it writes nothing more to the damaged store,
/// so it serves only what reads (AUTH and LOGIN among them, recording nothing of
/// the login), and refuses the rest with `STORE_DAMAGED`.
pub fn served_while_damaged(verb: Verb) -> bool {
    match verb {
        Verb::Hello
        | Verb::Login
        | Verb::Logout
        | Verb::Ping
        | Verb::Groups
        | Verb::Conversations
        | Verb::Members
        | Verb::Online
        | Verb::Requests
        | Verb::History
        | Verb::Files
        | Verb::FileGet
        | Verb::FileStatus
        | Verb::Auth
        | Verb::Bans
        | Verb::Tokens => true,
        Verb::Register
        | Verb::Create
        | Verb::Join
        | Verb::Approve
        | Verb::Reject
        | Verb::Invite
        | Verb::Accept
        | Verb::Decline
        | Verb::Leave
        | Verb::Kick
        | Verb::Unban
        | Verb::Promote
        | Verb::Demote
        | Verb::Transfer
        | Verb::TransferAccept
        | Verb::TransferCancel
        | Verb::Rule
        | Verb::Delete
        | Verb::Send
        | Verb::FileOffer
        | Verb::FileChunk
        | Verb::FileCommit
        | Verb::FileCancel
        | Verb::Token
        | Verb::Revoke
        | Verb::Password
        | Verb::DeleteAccount
        | Verb::Read => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_leave_the_reserve_free() {
        assert_eq!(chunk_fits(100, 10, 90), Ok(()));
        assert_eq!(chunk_fits(100, 10, 91), Err(ErrorCode::StorageFull));
        assert_eq!(chunk_fits(100, 0, 100), Ok(()));
        assert_eq!(chunk_fits(100, 0, 101), Err(ErrorCode::StorageFull));
        assert_eq!(chunk_fits(5, 10, 0), Err(ErrorCode::StorageFull), "inside the reserve already");
    }

    #[test]
    fn a_damaged_store_serves_reads_and_refuses_writes() {
        for verb in
            [Verb::History, Verb::Groups, Verb::FileGet, Verb::Login, Verb::Ping, Verb::Bans]
        {
            assert!(served_while_damaged(verb), "{verb}");
        }
        for verb in [
            Verb::Send,
            Verb::Register,
            Verb::Create,
            Verb::FileChunk,
            Verb::FileCancel,
            Verb::Read,
        ] {
            assert!(!served_while_damaged(verb), "{verb}");
        }
        assert!(command_served_while_damaged(&Command::Logout { revoke: false }));
        assert!(
            !command_served_while_damaged(&Command::Logout { revoke: true }),
            "forgets a token"
        );
    }
}
