//! Why the group machine refused an operation. Each denial is exactly one wire
//! error code, and a denied operation leaves the group exactly as it was.

use crate::error::ErrorCode;

macro_rules! denials {
    ($( $(#[$doc:meta])* $variant:ident => $code:ident, )*) => {
        /// A refused group operation.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
        pub enum Denial {
            $( $(#[$doc])* #[error("{}", ErrorCode::$code.text())] $variant, )*
        }

        impl Denial {
            /// Every denial.
            pub const ALL: &'static [Denial] = &[$(Denial::$variant),*];

            /// The wire error code of this denial (one code per denial, and back).
            pub const fn code(self) -> ErrorCode {
                match self { $(Denial::$variant => ErrorCode::$code,)* }
            }
        }
    };
}

denials! {
    /// The group does not exist (or was deleted).
    NoSuchGroup => NoSuchGroup,
    /// The acting or target user is not a member.
    NotMember => NotMember,
    /// The user is a member already.
    AlreadyMember => AlreadyMember,
    /// The user has a live request or invite already.
    AlreadyPending => AlreadyPending,
    /// There is no live join request to act on.
    NoSuchRequest => NoSuchRequest,
    /// There is no live invite to act on.
    NoSuchInvite => NoSuchInvite,
    /// There is no ownership offer to act on.
    NoSuchOffer => NoSuchOffer,
    /// The user is banned.
    Banned => Banned,
    /// The user is not banned.
    NotBanned => NotBanned,
    /// The group admits by invitation only.
    InviteOnly => InviteOnly,
    /// The actor's rank does not allow this, or the target's rank protects them.
    NotPermitted => NotPermitted,
    /// The owner must hand ownership over before leaving.
    OwnerMustTransfer => OwnerMustTransfer,
    /// The operation would change nothing.
    NoChange => NoChange,
    /// The group is at its member limit.
    GroupFull => GroupFull,
    /// The group is at its pending-request limit.
    TooManyPending => TooManyPending,
    /// The group is at its pending-invite limit.
    TooManyInvites => TooManyInvites,
    /// The joining user is at the groups-per-user limit.
    TooManyGroups => TooManyGroups,
}

impl From<Denial> for ErrorCode {
    fn from(d: Denial) -> Self {
        d.code()
    }
}
