//! A server started in-process on 127.0.0.1 port 0, and a small client built on
//! the proto crate's codec, for the integration tests. Every wait is bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use baatkaro_proto::client::{Answer as Answered, ClientSession};
use baatkaro_proto::{
    Command, Conversation, Event, Failure, HistoryRange, IdemKey, Item, OkReply, Password,
    ServerFrame, ServerFrameDecoder, StoredEvent, Tag, Text, UserName, Versions,
};
use baatkaro_server::config::{Config, HashCost};
use baatkaro_server::server::{Listeners, Server};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub mod process;

/// How long any one wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The kernel's TCP socket buffer sizes for one direction, from `net.ipv4.tcp_wmem`
/// (send) or `net.ipv4.tcp_rmem` (receive): what a socket starts with and the most
/// that autotuning may grow it to, in bytes; zeros where /proc does not say (not Linux).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpBufferSizes {
    pub default: usize,
    pub max: usize,
}

/// Reads `/proc/sys/net/ipv4/{name}` ("min default max"), `name` being `tcp_wmem` or
/// `tcp_rmem`.
pub fn tcp_buffer_sizes(name: &str) -> TcpBufferSizes {
    let line = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap_or_default();
    let v: Vec<usize> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    match v[..] {
        [_, default, max] => TcpBufferSizes { default, max },
        _ => TcpBufferSizes::default(),
    }
}

/// How many bytes a sender must push to a peer that never reads to be sure that the
/// server finds it a slow consumer, whatever this machine's settings: twice what the
/// server's `queue` for it, the server's kernel send buffer for its socket (which may
/// autotune up to `tcp_wmem`'s maximum) and the peer's kernel receive buffer (a
/// buffer never read stays at `tcp_rmem`'s default) can hold together, and at least
/// 8 MiB. A fixed 8 MiB was not enough: a send buffer of 8 MiB or more (a common
/// `tcp_wmem` maximum on tuned servers) swallowed it all and the peer was never
/// dropped.
pub fn bytes_past_a_reader_that_never_reads(queue: u64) -> usize {
    let held = usize::try_from(queue).unwrap()
        + tcp_buffer_sizes("tcp_wmem").max
        + tcp_buffer_sizes("tcp_rmem").default;
    (2 * held).max(8 * 1024 * 1024)
}

/// A test configuration: cheap hashes, generous login budgets, and passwords of any
/// length (the tests' are `pw-NAME`).
pub fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir.to_path_buf());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.hash_cost = HashCost::TEST_ONLY;
    c.logins_per_minute = 100_000;
    c.max_per_address = 10_000;
    c.limits.password = 1;
    c
}

/// Where a test client connects: the protocol's TCP listener, or the web
/// listener's WebSocket endpoint (SPEC.md section 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Ws(SocketAddr),
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint::Tcp(addr)
    }
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The web listener, when started with [`TestServer::start_web`].
    pub web: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), baatkaro_server::server::ServeError>>>,
}

impl TestServer {
    /// Starts a server with this configuration (no web listener).
    pub async fn start(cfg: Config) -> TestServer {
        Self::start_with(cfg, false).await
    }

    /// Starts a server with this configuration and a web listener on 127.0.0.1.
    pub async fn start_web(cfg: Config) -> TestServer {
        Self::start_with(cfg, true).await
    }

    /// The WebSocket endpoint if `ws`, else the TCP one.
    pub fn endpoint(&self, ws: bool) -> Endpoint {
        if ws { self.ws() } else { Endpoint::Tcp(self.addr) }
    }

    /// The WebSocket endpoint of a server started with [`TestServer::start_web`].
    pub fn ws(&self) -> Endpoint {
        Endpoint::Ws(self.web.expect("started with a web listener"))
    }

    /// Starts a server with this configuration that paces its commits, told by
    /// `idle` when the runtime it runs on goes idle: `idle` must be what
    /// `RuntimeIdle::install` returned for the runtime the test runs on.
    pub async fn start_paced(
        cfg: Config,
        idle: std::sync::Arc<baatkaro_server::pace::RuntimeIdle>,
    ) -> TestServer {
        Self::start_server(cfg, false, Some(idle)).await
    }

    async fn start_with(cfg: Config, web: bool) -> TestServer {
        Self::start_server(cfg, web, None).await
    }

    async fn start_server(
        cfg: Config,
        web: bool,
        idle: Option<std::sync::Arc<baatkaro_server::pace::RuntimeIdle>>,
    ) -> TestServer {
        // BAATKARO_TEST_LOG=debug shows the server's log while debugging a test.
        if let Ok(filter) = std::env::var("BAATKARO_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let web = match web {
            true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        let web_addr = web.as_ref().map(|l| l.local_addr().unwrap());
        let mut server = Server::open(cfg).await.expect("server starts");
        if let Some(idle) = idle {
            server = server.paced(idle);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(Listeners { tcp: listener, web }, async move {
            let _ = stopped.await;
        }));
        TestServer { addr, web: web_addr, stop: Some(stop), task: Some(task) }
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

/// Every file under `dir` with its bytes, to tell whether anything was written.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// Fails, naming them, if files under a directory were added, removed or changed
/// between two [`files_under`].
pub fn assert_same_files(
    before: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    after: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
) {
    let changed: Vec<_> =
        before.keys().chain(after.keys()).filter(|p| before.get(*p) != after.get(*p)).collect();
    assert!(changed.is_empty(), "written: {changed:?}");
}

pub fn user(s: &str) -> UserName {
    s.parse().unwrap()
}

pub fn text(s: &str) -> Text {
    Text::new(s).unwrap()
}

pub fn conv(s: &str) -> Conversation {
    s.parse().unwrap()
}

/// A connection speaking the protocol: requests are tagged and answers routed by
/// the client session of the proto crate (the one `baatkaro-client` drives), and
/// [`Client::frame`] shows a test the raw frames when it wants them.
pub struct Client {
    stream: Link,
    decoder: ServerFrameDecoder,
    session: ClientSession,
    /// Answers that came while another one was awaited.
    answered: HashMap<Tag, Answered>,
    /// Untagged events received while waiting for replies.
    pub events: VecDeque<Event>,
    pub name: String,
}

/// A reply: its items and its final result.
pub type Answer = (Vec<Item>, Result<OkReply, Failure>);

impl Client {
    /// Connects without saying anything.
    pub async fn connect(to: impl Into<Endpoint>) -> Client {
        let stream = Link::connect(to.into()).await;
        Client {
            stream,
            decoder: ServerFrameDecoder::new(1 << 24),
            session: ClientSession::new(),
            answered: HashMap::new(),
            events: VecDeque::new(),
            name: String::new(),
        }
    }

    /// Speaks over a connection the test made itself (a small receive buffer, TLS).
    pub fn over(stream: Link) -> Client {
        Client {
            stream,
            decoder: ServerFrameDecoder::new(1 << 24),
            session: ClientSession::new(),
            answered: HashMap::new(),
            events: VecDeque::new(),
            name: String::new(),
        }
    }

    /// Connects from the local address `from` (any of 127.0.0.0/8 is loopback on
    /// Linux) without saying anything: how a test shows the server many addresses.
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        Client {
            stream: Link::Tcp(stream),
            decoder: ServerFrameDecoder::new(1 << 24),
            session: ClientSession::new(),
            answered: HashMap::new(),
            events: VecDeque::new(),
            name: format!("from {from}"),
        }
    }

    /// Connects, says HELLO and registers `name` with password `pw-NAME`.
    pub async fn register(addr: impl Into<Endpoint>, name: &str) -> Client {
        let mut c = Client::connect(addr).await;
        c.hello().await;
        let r = c.call(Command::Register { user: user(name), password: password(name) }).await;
        assert_eq!(r.1, Ok(OkReply::Register { user: user(name) }), "register {name}");
        c.name = name.into();
        c
    }

    /// Connects, says HELLO and logs `name` in with password `pw-NAME`.
    pub async fn login(addr: impl Into<Endpoint>, name: &str) -> Client {
        let mut c = Client::connect(addr).await;
        c.hello().await;
        let r = c.call(Command::Login { user: user(name), password: password(name) }).await;
        assert_eq!(r.1, Ok(OkReply::Login { user: user(name) }), "login {name}");
        c.name = name.into();
        c
    }

    pub async fn hello(&mut self) -> OkReply {
        let versions = Versions::new(vec![1]).unwrap();
        let (_, r) = self.call(Command::Hello { versions, client: None }).await;
        r.expect("HELLO succeeds")
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends a request and returns its tag.
    pub async fn send(&mut self, command: Command) -> Tag {
        let tag = self.session.request(command);
        let mut bytes = Vec::new();
        while let Some(part) = self.session.poll_transmit() {
            bytes.extend_from_slice(&part);
        }
        self.send_raw(&bytes).await;
        tag
    }

    /// Sends `n` copies of `body` to the group `#group`, `batch` at a time, reading
    /// each batch's replies and its own copies of the messages before the next (so
    /// that it never becomes a slow reader itself); the stored sequence numbers, in
    /// the order of the replies.
    pub async fn send_batches(
        &mut self,
        group: &str,
        body: &str,
        n: usize,
        batch: usize,
    ) -> Vec<u64> {
        let mut seqs = Vec::with_capacity(n);
        for b in 0..n / batch {
            for i in 0..batch {
                let key = format!("big-{b}-{i}").parse().unwrap();
                self.send(Command::Send { to: conv(group), key, text: text(body) }).await;
            }
            let (mut replies, mut own) = (0, 0);
            while replies < batch || own < batch {
                match self.frame().await.expect("the sender stays connected") {
                    ServerFrame::Ok { reply: OkReply::Send { seq, .. }, .. } => {
                        seqs.push(seq);
                        replies += 1;
                    }
                    ServerFrame::Event(Event::Stored(StoredEvent::Message { .. })) => own += 1,
                    ServerFrame::Event(_) => {}
                    other => panic!("the sender: {other:?}"),
                }
            }
        }
        seqs
    }

    /// The bytes of these requests as one write, and their tags, without sending
    /// them: a test that writes a burst on one task and reads on another.
    pub fn encode_all(
        &mut self,
        commands: impl IntoIterator<Item = Command>,
    ) -> (Vec<Tag>, Vec<u8>) {
        let tags = commands.into_iter().map(|c| self.session.request(c)).collect();
        let mut bytes = Vec::new();
        while let Some(part) = self.session.poll_transmit() {
            bytes.extend_from_slice(&part);
        }
        (tags, bytes)
    }

    /// The TCP connection and what was read of it not yet decoded: a test that
    /// writes and reads at once takes it over.
    pub fn into_tcp(self) -> (TcpStream, ServerFrameDecoder) {
        match self.stream {
            Link::Tcp(stream) => (stream, self.decoder),
            Link::Ws(_) | Link::Tls(_) => panic!("{}: not a TCP connection", self.name),
        }
    }

    /// Sends a request and waits for its answer.
    pub async fn call(&mut self, command: Command) -> Answer {
        let tag = self.send(command).await;
        self.answer(tag).await
    }

    /// Sends a request that must succeed: its items and reply.
    pub async fn ok(&mut self, command: Command) -> (Vec<Item>, OkReply) {
        let what = format!("{command:?}");
        match self.call(command).await {
            (items, Ok(reply)) => (items, reply),
            (_, Err(f)) => panic!("{} {what}: {f:?}", self.name),
        }
    }

    /// Sends a request that must fail with `code`.
    pub async fn err(&mut self, command: Command, code: baatkaro_proto::ErrorCode) {
        let what = format!("{command:?}");
        let a = self.call(command).await;
        match a.1 {
            Err(f) => assert_eq!(f.code, code, "{} {what}", self.name),
            Ok(r) => panic!("{} {what}: expected {code:?}, got {r:?}", self.name),
        }
    }

    /// Waits for the final reply with `tag`, keeping events (and other requests'
    /// answers) aside.
    pub async fn answer(&mut self, tag: Tag) -> Answer {
        let mut raw = Vec::new();
        loop {
            if let Some(answer) = self.answered.remove(&tag) {
                return (answer.items, answer.result);
            }
            let frame = self
                .frame()
                .await
                .unwrap_or_else(|| panic!("{}: closed awaiting {tag}", self.name));
            // A request the test wrote raw is answered here; the session routes the
            // rest.
            if !self.session.is_pending(tag) {
                match frame {
                    ServerFrame::Item { tag: t, item } if t == tag => raw.push(item),
                    ServerFrame::Ok { tag: t, reply } if t == tag => return (raw, Ok(reply)),
                    ServerFrame::Err { tag: t, failure } if t == tag => return (raw, Err(failure)),
                    ServerFrame::Event(e) => self.events.push_back(e),
                    other => panic!("{}: unexpected frame awaiting {tag}: {other:?}", self.name),
                }
                continue;
            }
            if let ServerFrame::Item { tag: t, .. }
            | ServerFrame::Ok { tag: t, .. }
            | ServerFrame::Err { tag: t, .. } = &frame
            {
                assert!(
                    self.session.is_pending(*t),
                    "{}: a frame for no request: {frame:?}",
                    self.name
                );
            }
            self.session.handle_frame(frame);
            while let Some((t, answer)) = self.session.poll_answer() {
                self.answered.insert(t, answer);
            }
            while let Some(event) = self.session.poll_event() {
                self.events.push_back(event);
            }
        }
    }

    /// The next frame, or `None` once the server closed the connection.
    pub async fn frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some(f) = self.decoder.next_frame() {
                return Some(f.expect("the server sends valid frames"));
            }
            let chunk = tokio::time::timeout(WAIT, self.stream.read())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.name))?;
            self.decoder.push(&chunk);
        }
    }

    /// The next untagged event.
    pub async fn event(&mut self) -> Event {
        if let Some(e) = self.events.pop_front() {
            return e;
        }
        match self.frame().await {
            Some(ServerFrame::Event(e)) => e,
            None => panic!("{}: closed awaiting an event", self.name),
            Some(other) => panic!("{}: unexpected frame awaiting an event: {other:?}", self.name),
        }
    }

    /// The next stored event (skipping presence and other transient events).
    pub async fn stored(&mut self) -> StoredEvent {
        loop {
            if let Event::Stored(e) = self.event().await {
                return e;
            }
        }
    }

    /// Sends a message and returns its sequence number.
    pub async fn say(&mut self, to: &str, key: &str, body: &str) -> u64 {
        let key: IdemKey = key.parse().unwrap();
        match self.call(Command::Send { to: conv(to), key, text: text(body) }).await.1 {
            Ok(OkReply::Send { seq, .. }) => seq,
            other => panic!("{} SEND {to}: {other:?}", self.name),
        }
    }

    /// HISTORY of a conversation after `seq`: the events and (latest, oldest).
    pub async fn history(
        &mut self,
        c: &str,
        after: u64,
        limit: u32,
    ) -> (Vec<StoredEvent>, u64, u64) {
        let (items, r) = self
            .ok(Command::History { conv: conv(c), range: HistoryRange::After(after), limit })
            .await;
        let OkReply::History { latest, oldest, .. } = r else { panic!("{r:?}") };
        let events = items
            .into_iter()
            .map(|i| match i {
                Item::Stored(e) => e,
                other => panic!("not a stored event: {other:?}"),
            })
            .collect();
        (events, latest, oldest)
    }

    /// Reads until the server closes, returning the frames seen.
    pub async fn until_closed(&mut self) -> Vec<ServerFrame> {
        let mut frames = Vec::new();
        while let Some(f) = self.frame().await {
            frames.push(f);
        }
        frames
    }
}

pub fn password(name: &str) -> Password {
    Password::new(&format!("pw-{name}")).unwrap()
}

/// The message text of a stored event, if it is a message.
pub fn body(e: &StoredEvent) -> Option<&str> {
    match e {
        StoredEvent::Message { text, .. } => Some(text.as_str()),
        _ => None,
    }
}

/// A test client's connection: TCP, or a WebSocket whose binary messages carry the
/// frames.
pub enum Link {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Link {
    /// Connects; over WebSocket, with the binding's subprotocol and no Origin (as
    /// a program that is not a browser does).
    pub async fn connect(to: Endpoint) -> Link {
        match to {
            Endpoint::Tcp(addr) => Link::Tcp(TcpStream::connect(addr).await.unwrap()),
            Endpoint::Ws(addr) => Link::Ws(Box::new(ws_connect(addr, None).await.unwrap())),
        }
    }

    /// Writes `bytes`: over WebSocket, as one binary message.
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Link::Tcp(s) => s.write_all(bytes).await,
            Link::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Link::Ws(ws) => ws
                .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await
                .map_err(std::io::Error::other),
        }
    }

    /// The next bytes received, or `None` once the server closed.
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        match self {
            Link::Tcp(s) => {
                let mut buf = vec![0u8; 64 * 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                buf.truncate(n);
                (n > 0).then_some(buf)
            }
            Link::Tls(s) => {
                let mut buf = vec![0u8; 64 * 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                buf.truncate(n);
                (n > 0).then_some(buf)
            }
            Link::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Binary(b)) => return Some(b.to_vec()),
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(other) => assert!(!other.is_text(), "the server sent text: {other:?}"),
                }
            },
        }
    }
}

/// An HTTP response: status, headers (names lower-cased), body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The first HTTP example of SPEC.md's section headed `heading`, split at its first
/// empty line: the request, then the response.
pub fn spec_http_example(heading: &str) -> (&'static str, &'static str) {
    let spec = include_str!("../../../SPEC.md");
    let section = &spec[spec.find(heading).expect("the section")..];
    let block = section.split("```http\n").nth(1).unwrap().split("```").next().unwrap();
    block.split_once("\n\n").unwrap()
}

/// Sends one raw HTTP/1.1 request (`Connection: close` is added) and reads the
/// whole response.
pub async fn http(addr: SocketAddr, head: &str) -> HttpResponse {
    http_from(addr, None, head).await
}

/// [`http`] from the local address `from`, if given (any of 127.0.0.0/8 is
/// loopback on Linux): how a test shows the server several clients.
pub async fn http_from(
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
    head: &str,
) -> HttpResponse {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(from) = from {
        socket.bind(SocketAddr::new(from, 0)).unwrap();
    }
    let mut s = socket.connect(addr).await.unwrap();
    let request = format!("{}\r\nConnection: close\r\n\r\n", head.trim_end());
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    HttpResponse { status, headers, body: raw[split + 4..].to_vec() }
}

/// Opens a WebSocket to the web listener at `addr` asking for the binding's
/// subprotocol, with this `Origin` header if any.
pub async fn ws_connect(
    addr: SocketAddr,
    origin: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    ws_over(tcp, addr, origin).await
}

/// [`ws_connect`] over a TCP connection to `addr` the test made itself.
pub async fn ws_over(
    tcp: TcpStream,
    addr: SocketAddr,
    origin: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", baatkaro_proto::web::SUBPROTOCOL.parse().unwrap());
    if let Some(origin) = origin {
        headers.insert("Origin", origin.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::client_async(request, tcp).await?;
    Ok(ws)
}

/// A TLS client over `tcp` that takes any certificate (signatures are still
/// checked): for a test server's self-signed one.
pub async fn tls_over(tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::IpAddress(tcp.peer_addr().unwrap().ip().into());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(name, tcp).await.unwrap()
}

/// Takes any certificate, checking the handshake's signatures with `.0`.
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
