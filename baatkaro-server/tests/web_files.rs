//! Downloads over HTTP (SPEC.md section 12.4): a file shared over the protocol is
//! fetched from the web listener with a session token in the cookie or a Bearer
//! header, whole, in ranges or as a HEAD; readers only, tokens as AUTH checks them,
//! within the same budget of token logins per address, on the names the listener
//! answers to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, SocketAddr};

use baatkaro_proto::web::download::{HttpToken, TOKEN_COOKIE};
use baatkaro_proto::{
    Command, FileId, JoinRule, OfferName, OfferStatus, OkReply, Sha256, Text, TokenSecret,
};
use bytes::Bytes;
use common::{
    Client, HttpResponse, TestServer, config, conv, http, http_from, password, spec_http_example,
    user,
};
use sha2::Digest;

fn sha(data: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(data).into())
}

/// Deterministic bytes that are not all alike.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8).collect()
}

/// `c` shares `data` in `to` under `name` over the protocol: offer, chunks, commit.
async fn share(c: &mut Client, to: &str, data: &[u8], name: &str) -> FileId {
    let offer = Command::FileOffer {
        to: conv(to),
        size: data.len() as u64,
        sha256: sha(data),
        name: OfferName::new(name).unwrap(),
    };
    let OkReply::FileOffer { file, status } = c.ok(offer).await.1 else { panic!("an offer") };
    assert_eq!(status, OfferStatus::Need);
    for (i, piece) in data.chunks(256 * 1024).enumerate() {
        let data = Bytes::copy_from_slice(piece);
        c.ok(Command::FileChunk { file, offset: (i * 256 * 1024) as u64, data }).await;
    }
    c.ok(Command::FileCommit { file }).await;
    file
}

/// A new session token of `c`'s user, as an HTTP request carries it.
async fn token(c: &mut Client) -> HttpToken {
    let label = Text::new("browser").unwrap();
    let OkReply::Token { token, secret } = c.ok(Command::Token { label }).await.1 else {
        panic!("a token")
    };
    HttpToken { user: user(&c.name), token, secret }
}

/// How a request carries its token.
enum Carry<'a> {
    Cookie(&'a HttpToken),
    Bearer(&'a HttpToken),
    Raw(&'a str),
    Nothing,
}

/// `METHOD /files/<file>` with the token carried as said and these extra header
/// lines, from `from` if given.
async fn fetch(
    web: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    file: &str,
    carry: Carry<'_>,
    extra: &str,
) -> HttpResponse {
    let auth = match carry {
        Carry::Cookie(t) => format!("\r\nCookie: theme=dark; {TOKEN_COOKIE}={}", t.encode()),
        Carry::Bearer(t) => format!("\r\nAuthorization: Bearer {}", t.encode()),
        Carry::Raw(line) => format!("\r\n{line}"),
        Carry::Nothing => String::new(),
    };
    let head = format!("{method} /files/{file} HTTP/1.1\r\nHost: {web}{auth}{extra}");
    http_from(web, from, &head).await
}

async fn get(web: SocketAddr, file: FileId, carry: Carry<'_>, extra: &str) -> HttpResponse {
    fetch(web, None, "GET", file.as_str(), carry, extra).await
}

/// A server with a web listener where alice owns the open group rust, bob is a
/// member and carol is not; alice shares `data` in it as `name`.
async fn room(
    data: &[u8],
    name: &str,
) -> (TestServer, SocketAddr, tempfile::TempDir, [Client; 3], FileId) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_web(config(dir.path())).await;
    let web = server.web.unwrap();
    let mut alice = Client::register(server.addr, "alice").await;
    alice.ok(Command::Create { group: "rust".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    let mut bob = Client::register(server.addr, "bob").await;
    bob.ok(Command::Join { group: "rust".parse().unwrap(), reason: None }).await;
    let carol = Client::register(server.addr, "carol").await;
    let file = share(&mut alice, "#rust", data, name).await;
    (server, web, dir, [alice, bob, carol], file)
}

/// The headers every successful download carries.
fn assert_download_headers(r: &HttpResponse, data: &[u8]) {
    let etag = format!("\"{}\"", sha(data));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_downloads_whole_with_the_cookie_or_a_bearer_token() {
    // Several read chunks, and a name that needs making safe and encoding.
    let data = content(300_000);
    let (server, web, _dir, [_alice, mut bob, _carol], file) = room(&data, "-my notes é.pdf").await;
    let t = token(&mut bob).await;
    for carry in [Carry::Cookie(&t), Carry::Bearer(&t)] {
        let r = get(web, file, carry, "").await;
        assert_eq!(r.status, 200);
        assert!(r.body == data, "the download is byte-identical");
        assert_eq!(sha(&r.body), sha(&data));
        assert_download_headers(&r, &data);
        assert_eq!(r.header("content-length"), Some("300000"));
        assert_eq!(r.header("content-range"), None);
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename*=UTF-8''_my%20notes%20%C3%A9.pdf")
        );
    }
    // HEAD: the same headers, no body.
    let r = fetch(web, None, "HEAD", file.as_str(), Carry::Cookie(&t), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_download_headers(&r, &data);
    assert!(r.body.is_empty());
    // Only GET and HEAD.
    let r =
        fetch(web, None, "POST", file.as_str(), Carry::Cookie(&t), "\r\nContent-Length: 0").await;
    assert_eq!(r.status, 405);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_as_asked_and_past_the_end_refused() {
    let data = content(200_000);
    let (server, web, _dir, [mut alice, ..], file) = room(&data, "data.bin").await;
    let t = token(&mut alice).await;
    let size = data.len();
    let part = |r: &HttpResponse, first: usize, last: usize| {
        assert_eq!(r.status, 206);
        assert!(r.body[..] == data[first..=last], "bytes {first}-{last}");
        let range = format!("bytes {first}-{last}/{size}");
        assert_eq!(r.header("content-range"), Some(range.as_str()));
        let length = (last - first + 1).to_string();
        assert_eq!(r.header("content-length"), Some(length.as_str()));
        assert_download_headers(r, &data);
    };
    part(&get(web, file, Carry::Cookie(&t), "\r\nRange: bytes=0-9").await, 0, 9);
    part(&get(web, file, Carry::Cookie(&t), "\r\nRange: bytes=70000-").await, 70_000, size - 1);
    part(&get(web, file, Carry::Cookie(&t), "\r\nRange: bytes=-5").await, size - 5, size - 1);
    part(
        &get(web, file, Carry::Cookie(&t), "\r\nRange: bytes=199990-999999").await,
        199_990,
        size - 1,
    );
    for past in ["bytes=200000-", "bytes=999999-1000000", "bytes=-0"] {
        let r = get(web, file, Carry::Cookie(&t), &format!("\r\nRange: {past}")).await;
        assert_eq!(r.status, 416, "{past}");
        assert_eq!(r.header("content-range"), Some("bytes */200000"), "{past}");
    }
    // Several ranges: the whole file.
    let r = get(web, file, Carry::Cookie(&t), "\r\nRange: bytes=0-1,5-6").await;
    assert_eq!((r.status, r.body.len()), (200, size));
    // If-Range: the range only while the entity tag is still the file's.
    let etag = format!("\"{}\"", sha(&data));
    let same = format!("\r\nRange: bytes=10-19\r\nIf-Range: {etag}");
    part(&get(web, file, Carry::Cookie(&t), &same).await, 10, 19);
    let other = format!("\r\nRange: bytes=10-19\r\nIf-Range: \"{}\"", sha(b"other"));
    let r = get(web, file, Carry::Cookie(&t), &other).await;
    assert_eq!((r.status, r.body.len()), (200, size));
    assert!(r.body == data);
    // A HEAD ignores Range.
    let r =
        fetch(web, None, "HEAD", file.as_str(), Carry::Cookie(&t), "\r\nRange: bytes=0-9").await;
    assert_eq!((r.status, r.header("content-length")), (200, Some("200000")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_not_read_a_file_is_told_it_does_not_exist() {
    let data = content(1000);
    let (server, web, _dir, [mut alice, _bob, mut carol], file) = room(&data, "a.txt").await;
    let outsider = token(&mut carol).await;
    let not_there = get(web, "fNothing".parse().unwrap(), Carry::Cookie(&outsider), "").await;
    let not_hers = get(web, file, Carry::Cookie(&outsider), "").await;
    assert_eq!((not_there.status, not_hers.status), (404, 404));
    assert_eq!(not_there.body, not_hers.body, "the two refusals say the same");
    assert_eq!(not_hers.header("cache-control"), Some("private, no-store"));
    // A file shared privately with carol: hers to read now, not bob's.
    let private = share(&mut alice, "@carol", b"for carol", "p.txt").await;
    assert_eq!(get(web, private, Carry::Bearer(&outsider), "").await.body, b"for carol");
    let mut bob = Client::login(server.addr, "bob").await;
    let bobs = token(&mut bob).await;
    assert_eq!(get(web, private, Carry::Bearer(&bobs), "").await.status, 404);
    assert_eq!(get(web, file, Carry::Bearer(&bobs), "").await.status, 200);
    // Who leaves the group can no longer read its files.
    bob.ok(Command::Leave { group: "rust".parse().unwrap() }).await;
    assert_eq!(get(web, file, Carry::Bearer(&bobs), "").await.status, 404);
    // A path that names no file at all.
    let r = fetch(web, None, "GET", "a/b", Carry::Bearer(&bobs), "").await;
    assert_eq!(r.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_working_token_a_download_is_unauthorized() {
    let data = content(1000);
    let (server, web, _dir, [mut alice, ..], file) = room(&data, "a.txt").await;
    let good = token(&mut alice).await;
    let mut wrong = good.clone();
    wrong.secret.0[0] ^= 1;
    let unknown = HttpToken { token: good.token + 100, ..good.clone() };
    let stranger = HttpToken { user: user("carol"), ..good.clone() };
    let garbage = format!("Cookie: {TOKEN_COOKIE}=nonsense");
    let cases = [
        ("no token", Carry::Nothing),
        ("garbage cookie", Carry::Raw(&garbage)),
        ("garbage bearer", Carry::Raw("Authorization: Bearer nonsense")),
        ("another scheme", Carry::Raw("Authorization: Basic YWxpY2U6cHc=")),
        ("wrong secret", Carry::Cookie(&wrong)),
        ("unknown token", Carry::Bearer(&unknown)),
        ("another user's name", Carry::Bearer(&stranger)),
    ];
    for (what, carry) in cases {
        let r = get(web, file, carry, "").await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"baatkaro\""), "{what}");
        assert_eq!(r.header("etag"), None, "{what}: nothing of the file");
        assert_eq!(r.header("cache-control"), Some("private, no-store"), "{what}");
    }
    assert_eq!(get(web, file, Carry::Cookie(&good), "").await.status, 200);
    // Revoked: refused at once.
    alice.ok(Command::Revoke { token: good.token }).await;
    assert_eq!(get(web, file, Carry::Cookie(&good), "").await.status, 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_is_not_this_machine_s_gets_no_file() {
    let data = content(1000);
    let (server, web, _dir, [mut alice, ..], file) = room(&data, "a.txt").await;
    let t = token(&mut alice).await;
    let head = format!(
        "GET /files/{file} HTTP/1.1\r\nHost: evil.example:{}\r\nAuthorization: Bearer {}",
        web.port(),
        t.encode()
    );
    let r = http(web, &head).await;
    assert_eq!(r.status, 421);
    assert!(!r.body.windows(4).any(|w| w == &data[..4]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_tokens_over_http_spends_the_address_s_budget_of_token_logins() {
    let dir = tempfile::tempdir().unwrap();
    // One token login a second per address, sixty at once (SPEC.md 4.7).
    let mut cfg = config(dir.path());
    cfg.logins_per_minute = 1;
    let server = TestServer::start_web(cfg).await;
    let web = server.web.unwrap();
    // Registered from an address of its own: one password attempt a minute each.
    let mut alice = Client::connect_from(server.addr, [127, 0, 0, 2].into()).await;
    alice.hello().await;
    let register = Command::Register { user: user("alice"), password: password("alice") };
    alice.ok(register).await;
    alice.name = "alice".into();
    alice.ok(Command::Create { group: "rust".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    let data = content(1000);
    let file = share(&mut alice, "#rust", &data, "a.txt").await;
    let good = token(&mut alice).await;
    let guesser: IpAddr = [127, 0, 0, 3].into();
    let mut guess = good.clone();
    // The burst, then one a second: a few more than the burst end in 429 however
    // slowly they go.
    let mut unauthorized = 0;
    let limited = loop {
        assert!(unauthorized < 120, "no 429 after {unauthorized} bad tokens");
        guess.secret = TokenSecret([unauthorized as u8; 32]);
        let r = fetch(web, Some(guesser), "GET", file.as_str(), Carry::Bearer(&guess), "").await;
        match r.status {
            401 => unauthorized += 1,
            429 => break r,
            other => panic!("a guess answered {other}"),
        }
    };
    assert!(unauthorized >= 60, "the burst is sixty: {unauthorized}");
    assert_eq!(limited.header("retry-after"), Some("1"));
    // Another address has its own budget.
    let r = fetch(web, Some([127, 0, 0, 4].into()), "GET", file.as_str(), Carry::Bearer(&good), "")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body == data);
    server.stop().await;
}

/// SPEC.md 12.4's example: the request, sent with this server's address, the id of
/// the file shared and the token made, gets the response head and body shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_s_example_download_is_answered_as_shown() {
    let (request, response) = spec_http_example("### 12.4 Downloads over HTTP");
    let (head, body) = response.trim_end().split_once("\n\n").unwrap();
    let (server, web, _dir, [mut alice, ..], file) = room(b"hello,moon", "notes.txt").await;
    let t = token(&mut alice).await;
    assert_eq!(t.token, 1, "the example's token is the server's first");
    let example_token = request.split(&format!("{TOKEN_COOKIE}=")).nth(1).unwrap();
    let example_token = example_token.lines().next().unwrap();
    let request = request
        .replace("127.0.0.1:7668", &web.to_string())
        .replace("f7Qx2", file.as_str())
        .replace(example_token, &t.encode());
    let got = http(web, &request.replace('\n', "\r\n")).await;
    let mut want = head.lines();
    let status: u16 = want.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(got.status, status);
    for line in want {
        let (name, value) = line.split_once(": ").unwrap();
        assert_eq!(got.header(name), Some(value), "{line}");
    }
    assert_eq!(got.body, body.as_bytes());
    server.stop().await;
}
