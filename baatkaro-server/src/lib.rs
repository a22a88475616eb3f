//! The reference BaatKaro server: SPEC.md over TCP, on top of `baatkaro-proto`.
//!
//! The proto crate holds every rule (the codec, the session machine, the group
//! machine, the delivery rules) and `baatkaro-hub` the state they apply to; this
//! crate adds sockets, persistence and scheduling:
//!
//! - `conn`: per connection, one task that owns its session and its stream;
//! - `hub`: the one task that drives the sans-IO core of `baatkaro-hub` (the state
//!   and every request applied to it) and carries out what it asks: deliveries,
//!   commits, password hashes, disk work;
//! - [`store`]: the narrow storage trait, the embedded SQLite engine and the
//!   thread that commits batches (group commit);
//! - [`server`]: start, accept (with TLS from [`tls`]), and the graceful shutdown;
//! - `web`: the web listener, serving the embedded web client over HTTP and
//!   sessions over WebSocket (SPEC.md section 12) through the same `conn` task.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use baatkaro_server::{config::Config, server::Server};
//!
//! let config = Config::new("/tmp/baatkaro-data".into());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = Server::open(config).await?;
//! server.run(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
mod conn;
mod direct;
mod disk;
mod hub;
mod outgoing;
pub mod pace;
pub mod rlimit;
mod running_hash;
pub mod server;
pub mod space;
pub mod store;
pub mod tls;
mod web;
