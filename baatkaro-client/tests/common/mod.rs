//! A server started in-process on 127.0.0.1, stopped and started again on the same
//! port and data directory, for the client's integration tests. Every wait is
//! bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use baatkaro_client::{Client, ClientEvent, Events, Password};
use baatkaro_server::config::{Config, HashCost};
use baatkaro_server::server::Server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any one wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), baatkaro_server::server::ServeError>>>,
}

/// A test configuration: cheap hashes and passwords of any length.
fn config(dir: &Path, listen: SocketAddr) -> Config {
    let mut c = Config::new(dir.to_path_buf());
    c.listen = listen;
    c.hash_cost = HashCost::TEST_ONLY;
    c.logins_per_minute = 100_000;
    c.max_per_address = 10_000;
    c.limits.password = 1;
    c
}

impl TestServer {
    /// Starts a server on `listen` (port 0: any free port) keeping its data in `dir`.
    pub async fn start(dir: &Path, listen: SocketAddr) -> TestServer {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::open(config(dir, addr)).await.expect("server starts");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        TestServer { addr, stop: Some(stop), task: Some(task) }
    }

    /// Shuts down gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops in time")
                .unwrap()
                .expect("the server stopped as asked");
        }
    }
}

pub fn password(name: &str) -> Password {
    Password::new(&format!("pw-{name}")).unwrap()
}

/// Connects and registers `name`.
pub async fn register(addr: SocketAddr, name: &str) -> Client {
    let c = Client::connect(&addr.to_string()).await.unwrap();
    c.register(name.parse().unwrap(), password(name)).await.unwrap();
    c
}

/// The next event, within [`WAIT`].
pub async fn next(events: &mut Events) -> ClientEvent {
    tokio::time::timeout(WAIT, events.next()).await.expect("an event in time").expect("open")
}
