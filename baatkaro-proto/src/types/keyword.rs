//! Small enums that travel as one lowercase keyword.

macro_rules! keyword_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The keyword on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }

            /// Parses the wire keyword.
            pub fn from_wire(bytes: &[u8]) -> Option<Self> {
                match bytes { $(b if b == $wire.as_bytes() => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_wire(s.as_bytes())
                    .ok_or(crate::ValidationError::OutOfRange { what: stringify!($name) })
            }
        }
    };
}

keyword_enum!(
    /// How a group admits new members.
    ///
    /// ```abnf
    /// join-rule = "approval" / "open" / "invite"
    /// ```
    JoinRule {
        /// A request waits for an owner or admin to approve it (the default).
        Approval = "approval",
        /// A request is a join.
        Open = "open",
        /// Requests are refused; only an invite admits.
        Invite = "invite",
    }
);

keyword_enum!(
    /// A member's rank in a group.
    ///
    /// ```abnf
    /// role = "owner" / "admin" / "member"
    /// ```
    Role {
        /// The one owner.
        Owner = "owner",
        /// An admin.
        Admin = "admin",
        /// A plain member.
        Member = "member",
    }
);

keyword_enum!(
    /// A user's relation to a group, as listed by GROUPS.
    ///
    /// ```abnf
    /// membership = role / "invited" / "requested"
    /// ```
    Membership {
        /// Owner of the group.
        Owner = "owner",
        /// Admin of the group.
        Admin = "admin",
        /// Plain member.
        Member = "member",
        /// Invited, not yet accepted.
        Invited = "invited",
        /// Asked to join, not yet decided.
        Requested = "requested",
    }
);

keyword_enum!(
    /// Whether a user has at least one logged-in connection.
    ///
    /// ```abnf
    /// presence = "online" / "offline"
    /// ```
    Presence {
        /// At least one connection is logged in.
        Online = "online",
        /// No connection is logged in.
        Offline = "offline",
    }
);

keyword_enum!(
    /// What JOIN did.
    ///
    /// ```abnf
    /// join-outcome = "joined" / "pending"
    /// ```
    JoinOutcome {
        /// The user is now a member (open group, or a pending invite was taken).
        Joined = "joined",
        /// The request waits for approval.
        Pending = "pending",
    }
);

keyword_enum!(
    /// What INVITE did.
    ///
    /// ```abnf
    /// invite-outcome = "invited" / "joined"
    /// ```
    InviteOutcome {
        /// The invite waits for the user to accept it.
        Invited = "invited",
        /// The user had asked to join, so the invite admitted them at once.
        Joined = "joined",
    }
);

pub(crate) use keyword_enum;
