//! A resumable uploader: shares a file with a group or a user, sending only what
//! the server does not hold yet. Interrupt it and run it again: it goes on from
//! where it stopped, and the server checks the SHA-256 before sharing.
//!
//! ```sh
//! cargo run -p baatkaro-client --example uploader -- 127.0.0.1:7667 alice her-password '#rust' notes.pdf
//! ```

use std::path::PathBuf;

use baatkaro_client::transfer::{UploadProgress, name_for};
use baatkaro_client::{Client, ClientError, Conversation, Password};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, user, password, to, path] = args.as_slice() else {
        eprintln!("usage: uploader SERVER USER PASSWORD CONV FILE");
        std::process::exit(2);
    };
    let to: Conversation = to.parse()?;
    let path = PathBuf::from(path);
    let client = Client::connect(server).await?;
    client.login(user.parse()?, Password::new(password)?).await?;
    let name = name_for(&path)?;
    let mut progress = |p: UploadProgress| match p {
        UploadProgress::Started(file) => eprintln!("uploading as {file}"),
        UploadProgress::Held(held, size) => eprintln!("{held} of {size} bytes on the server"),
        _ => {}
    };
    // Ctrl-C stops the upload; the server keeps what it holds, so a second run
    // resumes (`upload_until` with a cancel would delete it instead).
    let shared =
        client.upload_until(to, &path, name, &mut progress, std::future::pending()).await?;
    println!(
        "shared in {to} as {}: {} ({} bytes, sha256 {})",
        shared.id, shared.name, shared.size, shared.sha256
    );
    Ok(())
}
