//! Ctrl-C during a one-shot `upload` cancels it on the server (FILE-CANCEL, the
//! `file-cancel` feature), and the library's `upload_until` does the same for its
//! caller. The server here is a stand-in on 127.0.0.1 that holds its answers to
//! the chunks until the cancel comes, so the upload is surely unfinished when the
//! signal does; the real server's side of FILE-CANCEL is tested in
//! `baatkaro-server`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use baatkaro_client::{Client, ClientError};
use baatkaro_proto::{
    Command, DoneVerb, Encode, ErrorCode, Failure, Feature, Features, FileId, Limits, OfferStatus,
    OkReply, RequestDecoder, ServerFrame, Software,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc as chan;

const WAIT: Duration = Duration::from_secs(20);

/// What the stand-in saw of an upload.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Chunk,
    Cancel(FileId),
}

/// A server that speaks just enough for an upload: it offers `files` and
/// `file-cancel`, logs anyone in, wants every file, holds nothing, and keeps its
/// answers to chunks until a FILE-CANCEL, which it answers after them (chunks after
/// it are refused). Reports chunks and cancels.
async fn stand_in() -> (SocketAddr, chan::UnboundedReceiver<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = chan::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut decoder = RequestDecoder::new(1 << 24);
                let mut buf = vec![0u8; 1 << 16];
                let mut held = Vec::new();
                let mut cancelled = false;
                loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    decoder.push(&buf[..n]);
                    while let Some(Ok(req)) = decoder.next_frame() {
                        let mut out = Vec::new();
                        let reply = match req.command {
                            Command::Hello { .. } => OkReply::Hello {
                                version: 1,
                                server: Software::new("stand-in/1").unwrap(),
                                features: Features::new(vec![
                                    Feature::new("files").unwrap(),
                                    Feature::new("file-cancel").unwrap(),
                                ])
                                .unwrap(),
                                limits: Box::new(Limits::default()),
                            },
                            Command::Login { user, .. } => OkReply::Login { user },
                            Command::FileOffer { .. } => OkReply::FileOffer {
                                file: FileId::new("fStandIn").unwrap(),
                                status: OfferStatus::Need,
                            },
                            Command::FileStatus { file } => {
                                OkReply::FileStatus { file, size: 0, received: 0 }
                            }
                            Command::FileChunk { file, .. } if !cancelled => {
                                let _ = tx.send(Seen::Chunk);
                                held.push((req.tag, file));
                                continue;
                            }
                            Command::FileChunk { .. } => {
                                let failure = Failure::new(ErrorCode::NoSuchFile);
                                let frame = ServerFrame::Err { tag: req.tag, failure };
                                let _ = stream.write_all(&frame.to_bytes()).await;
                                continue;
                            }
                            Command::FileCancel { file } => {
                                let _ = tx.send(Seen::Cancel(file));
                                cancelled = true;
                                for (tag, file) in held.drain(..) {
                                    let reply = OkReply::FileChunk { file, received: 0 };
                                    out.extend_from_slice(
                                        &ServerFrame::Ok { tag, reply }.to_bytes(),
                                    );
                                }
                                OkReply::Done { verb: DoneVerb::FileCancel }
                            }
                            other => panic!("the stand-in does not know {other:?}"),
                        };
                        out.extend_from_slice(&ServerFrame::Ok { tag: req.tag, reply }.to_bytes());
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn seen(rx: &mut chan::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("in time").expect("the stand-in runs")
}

fn big_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("big.bin");
    std::fs::write(&path, vec![42u8; 4 << 20]).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_one_shot_upload_cancels_it_on_the_server() {
    let (addr, mut rx) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let path = big_file(dir.path());
    let mut child = Process::new(env!("CARGO_BIN_EXE_baatkaro"))
        .args(["--server", &addr.to_string(), "--user", "alice", "--config-dir"])
        .arg(dir.path().join("config"))
        .args(["upload", "rust"])
        .arg(&path)
        .env("BAATKARO_PASSWORD", "pw-alice")
        .env_remove("BAATKARO_USER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // It says how to cancel once the server wants the content; its chunks go out.
    let said = lines.recv_timeout(WAIT).expect("the client says it is uploading");
    assert!(said.contains("fStandIn") && said.contains("Ctrl-C cancels"), "{said}");
    assert_eq!(seen(&mut rx).await, Seen::Chunk);

    let pid = child.id().to_string();
    assert!(Process::new("kill").args(["-INT", &pid]).status().unwrap().success());
    loop {
        match seen(&mut rx).await {
            Seen::Chunk => {} // sent before the signal came
            Seen::Cancel(file) => break assert_eq!(file.as_str(), "fStandIn"),
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130), "ended as by SIGINT, having cancelled");
    let rest: Vec<String> = lines.iter().collect();
    assert!(rest.iter().any(|l| l.contains("upload cancelled")), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_cancels_an_upload_when_told() {
    let (addr, mut rx) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let path = big_file(dir.path());
    let client = Client::connect(&addr.to_string()).await.unwrap();
    client
        .login("alice".parse().unwrap(), baatkaro_proto::Password::new("pw").unwrap())
        .await
        .unwrap();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let mut progress = |p: baatkaro_client::transfer::UploadProgress| {
        if let baatkaro_client::transfer::UploadProgress::Started(_) = p
            && let Some(tx) = started_tx.take()
        {
            let _ = tx.send(());
        }
    };
    // Cancelled once the upload started and its first chunk reached the server.
    let cancel = async {
        let _ = started.await;
        assert_eq!(seen(&mut rx).await, Seen::Chunk);
    };
    let name = baatkaro_proto::OfferName::new("big.bin").unwrap();
    let to = "#rust".parse().unwrap();
    let result = client.upload_until(to, &path, name, &mut progress, cancel).await;
    assert!(matches!(result, Err(ClientError::Cancelled)), "{result:?}");
    loop {
        match seen(&mut rx).await {
            Seen::Chunk => {}
            Seen::Cancel(file) => break assert_eq!(file.as_str(), "fStandIn"),
        }
    }
}
