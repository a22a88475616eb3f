//! An upload whose bytes the server lost (SPEC.md 6.7: after a crash a server may
//! hold fewer bytes than it said): `Client::upload` sends them again and the file
//! is shared, intact.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_client::proto::{Conversation, OfferName, OfferStatus, Sha256};
use baatkaro_client::{IfExists, JoinRule};
use common::{TestServer, WAIT, register};
use sha2::Digest;

/// alice uploads every byte of a file and the server says it holds them all; then
/// the upload's bytes vanish from the server's disk (as a crash during an earlier
/// commit of it leaves them). `Client::upload` of the same file resumes that
/// upload, sends nothing (all is held, FILE-STATUS says), and its commit is answered
/// UPLOAD_INCOMPLETE; it asks FILE-STATUS again, which now says nothing is held,
/// sends the whole file and commits. The download is the file. Fails if the client
/// gives up at the first UPLOAD_INCOMPLETE, or the server takes its commit without
/// the bytes, or does not say they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_bytes_the_server_lost_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let alice = register(server.addr, "alice").await;
    alice.create("notes".parse().unwrap(), Some(JoinRule::Open)).await.unwrap();
    let to: Conversation = "#notes".parse().unwrap();
    let data: Vec<u8> =
        (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("notes.bin");
    std::fs::write(&path, &data).unwrap();
    let sha = Sha256(sha2::Sha256::digest(&data).into());
    let name = OfferName::new("notes.bin").unwrap();

    let offer = alice.offer_file(to, data.len() as u64, sha, name.clone()).await.unwrap();
    assert_eq!(offer.status, OfferStatus::Need);
    let held = alice.file_chunk(offer.file, 0, bytes::Bytes::from(data.clone())).await.unwrap();
    assert_eq!(held, data.len() as u64);
    let partial = dir.path().join("partial").join(offer.file.as_str());
    std::fs::remove_file(&partial).expect("the upload's bytes are in partial/");

    let mut progress = |_, _| {};
    let upload = alice.upload(to, &path, name, &mut progress);
    let shared = tokio::time::timeout(WAIT, upload).await.expect("in time").expect("shared");
    assert_eq!(shared.id, offer.file, "the same upload, resumed");
    let state = alice.files(to).await.unwrap();
    assert_eq!(state.len(), 1, "shared once: {state:?}");
    let dest = files.path().join("down");
    std::fs::create_dir(&dest).unwrap();
    let saved =
        alice.download(&shared, &dest, IfExists::PickFreeName, &mut |_, _| {}).await.unwrap();
    assert!(std::fs::read(saved.path).unwrap() == data, "the download is the file");
    drop(alice);
    server.stop().await;
}
