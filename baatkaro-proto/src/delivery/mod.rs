//! The delivery rules that are not about groups: idempotent sends (SPEC.md section
//! 5.2) and the send budget (`rate` and `burst`, Appendix B).
//!
//! Both are pure: time is a parameter, and a server keeps one of each per user.

mod budget;
mod keys;

pub use budget::RateBudget;
pub use keys::{
    DigestSeed, KeyCheck, KeyDigest, SendKeys, SentKey, fingerprint, fingerprint_fnv,
    fingerprint_serial,
};
