//! The load generator `baatkaro-load` (`src/bin/load.rs`), in parts: a run's
//! shape and the shared runner ([`run`]), one member's send-and-read loop
//! ([`member`]) and the open loop's clock ([`pacer`]), the checks of what it receives ([`check`]), a BaatKaro member's
//! receive side, which matches expected messages in place ([`frames`]), the report
//! ([`report`]), the server process seen from /proc ([`process`]), and the two
//! targets it can measure: BaatKaro ([`baatkaro`]) and Redis pub/sub ([`redis`],
//! read with the small RESP3 reader [`resp`]).

pub mod baatkaro;
pub mod check;
pub mod frames;
pub mod member;
pub mod pacer;
pub mod process;
pub mod redis;
pub mod report;
pub mod resp;
pub mod run;
