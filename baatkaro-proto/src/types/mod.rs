//! Validated value types. Each can only be built valid, so a frame built from them
//! always encodes to something the decoder accepts.

pub(crate) mod atom;
mod charset;
mod keyword;
mod misc;
mod name;
mod text;

pub(crate) use keyword::keyword_enum;
pub use keyword::{InviteOutcome, JoinOutcome, JoinRule, Membership, Presence, Role};
pub use misc::{
    Conversation, Features, HistoryRange, Millis, OfferStatus, Seq, Sha256, TokenId, TokenSecret,
    Versions,
};
pub use name::{Address, Feature, FileId, GroupName, IdemKey, Software, Tag, UserName};
pub use text::{FileName, Note, OfferName, Password, TEXT_MAX, Text};
