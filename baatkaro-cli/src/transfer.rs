//! Uploads and downloads over a [`Client`]: resumable, verified, and never holding
//! a whole file in memory.
//!
//! An upload offers the file (name, size, SHA-256), asks the server which ranges it
//! holds already, sends only the rest (several chunks in flight), and commits. Run
//! again after an interruption, the same offer finds the same unfinished upload. A
//! download writes to `PATH.part`, continues from its length when run again, checks
//! the SHA-256, and only then renames the file into place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use baatkaro_direct_io::ContentFile;
use baatkaro_proto::{
    Command, Conversation, FileId, FileName, Item, OfferStatus, OkReply, Seq, Sha256, StoredEvent,
};
use bytes::Bytes;
use futures::StreamExt;
use sha2::Digest;

use crate::{Client, ClientError};

/// How much one FILE-GET of a download asks for (whole chunks, at least one).
const PIECE: u64 = 4 << 20;

/// Bytes of an upload in flight at once (whole chunks, 2 to 64). More only
/// adds memory to go round: 4 MiB beat 8 and 16 MiB (BENCHMARKS.md, issue 6).
const UPLOAD_WINDOW: u64 = 4 << 20;

/// Download pieces ([`PIECE`] bytes each) asked for at once.
const DOWNLOAD_WINDOW: usize = 4;

/// A shared file, as FILES and FILE events describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    /// Its id.
    pub id: FileId,
    /// Where it was shared.
    pub conv: Conversation,
    /// Its FILE event's sequence number.
    pub seq: Seq,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its content.
    pub sha256: Sha256,
    /// Its display name.
    pub name: FileName,
}

impl SharedFile {
    /// The file a FILE event describes.
    pub fn of(e: &StoredEvent) -> Option<SharedFile> {
        match e {
            StoredEvent::File { conv, seq, file, size, sha256, name, .. } => Some(SharedFile {
                id: *file,
                conv: *conv,
                seq: *seq,
                size: *size,
                sha256: *sha256,
                name: name.clone(),
            }),
            _ => None,
        }
    }
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Io(e)
}

/// How much of a file one read takes while hashing it.
const HASH_PIECE: u64 = 4 << 20;

/// The SHA-256 of a file's content, read in pieces (see [`hash_prefix`]).
pub fn hash_file(path: &Path) -> std::io::Result<(u64, Sha256)> {
    let size = std::fs::metadata(path)?.len();
    let hasher = hash_prefix(path, size)?;
    Ok((size, Sha256(hasher.finalize().into())))
}

/// A SHA-256 fed the first `len` bytes of a file, read in pieces: a second thread
/// reads the next piece while this one hashes, so that with a core to spare the hash
/// runs at the speed of SHA-256 alone. (Through the page cache: direct reads
/// measured slower and more variable here, BENCHMARKS.md.)
fn hash_prefix(path: &Path, len: u64) -> std::io::Result<sha2::Sha256> {
    let f = ContentFile::open_read(path, false)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Bytes>>(2);
    let reader = std::thread::Builder::new().name("hash-read".into()).spawn(move || {
        for (offset, len) in baatkaro_proto::transfer::chunks(0, len, HASH_PIECE) {
            let piece = f.read_at(offset, len as usize);
            let failed = piece.is_err();
            if tx.send(piece).is_err() || failed {
                return;
            }
        }
    })?;
    let mut hasher = sha2::Sha256::new();
    let mut hashed = 0;
    for piece in rx {
        let piece = piece?;
        hashed += piece.len() as u64;
        hasher.update(&piece);
    }
    reader.join().map_err(|_| std::io::Error::other("the reading thread panicked"))?;
    if hashed != len {
        return Err(std::io::Error::other("the file changed size while it was hashed"));
    }
    Ok(hasher)
}

/// A display name for a local file: its file name, with what a name may not hold
/// left out.
pub fn name_for(path: &Path) -> Result<FileName, ClientError> {
    let raw = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String = raw.chars().filter(|c| FileName::allows(*c) && !c.is_control()).collect();
    Ok(FileName::new(if clean.is_empty() { "file" } else { &clean })?)
}

/// What an upload tells its caller as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadProgress {
    /// The server wants the content: this is the unfinished upload's id (a
    /// cancel from now on frees what the server holds of it).
    Started(FileId),
    /// The server holds this many bytes of that many.
    Held(u64, u64),
}

impl Client {
    /// Uploads a file to a conversation, resuming an unfinished upload of the same
    /// content. `progress` is told the bytes the server holds after each chunk.
    pub async fn upload(
        &self,
        to: Conversation,
        path: &Path,
        name: FileName,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<SharedFile, ClientError> {
        let mut told = |p: UploadProgress| {
            if let UploadProgress::Held(done, total) = p {
                progress(done, total);
            }
        };
        self.upload_until(to, path, name, &mut told, std::future::pending()).await
    }

    /// [`Client::upload`] that gives up when `cancel` completes first: an upload
    /// the server had started is cancelled (FILE-CANCEL, where the server offers
    /// `file-cancel`), and the result is [`ClientError::Cancelled`]. A file the
    /// server shared before the cancel reached it stays shared, and is the result.
    ///
    /// Nothing is dropped half-sent: from the cancel on no chunk starts, the
    /// chunks under way finish (the server judges the cancel after them, SPEC.md
    /// 6.7), and the cancel goes out at once.
    pub async fn upload_until(
        &self,
        to: Conversation,
        path: &Path,
        name: FileName,
        progress: &mut dyn FnMut(UploadProgress),
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<SharedFile, ClientError> {
        let mut cancel = std::pin::pin!(cancel);
        let owned = path.to_path_buf();
        let hashing = tokio::task::spawn_blocking(move || hash_file(&owned));
        let (size, sha256) = tokio::select! {
            hashed = hashing => hashed
                .map_err(|e| ClientError::Protocol(e.to_string()))?
                .map_err(io)?,
            () = &mut cancel => return Err(ClientError::Cancelled),
        };
        let offer = Command::FileOffer { to, size, sha256, name: name.clone() };
        let (_, reply) = self.ok(offer).await?;
        let OkReply::FileOffer { file, status } = reply else {
            return Err(ClientError::Protocol(format!("FILE-OFFER answered with {reply:?}")));
        };
        if let OfferStatus::Done(seq) = status {
            progress(UploadProgress::Held(size, size));
            return Ok(SharedFile { id: file, conv: to, seq, size, sha256, name });
        }
        progress(UploadProgress::Started(file));
        let stop = AtomicBool::new(false);
        let sending = self.send_upload(file, path, size, &mut *progress, &stop);
        let mut sending = std::pin::pin!(sending);
        tokio::select! {
            sent = &mut sending => {
                let (seq, conv) = sent?;
                return Ok(SharedFile { id: file, conv, seq, size, sha256, name });
            }
            () = &mut cancel => {}
        }
        stop.store(true, Ordering::Relaxed);
        let (cancelled, sent) = tokio::join!(self.cancel_upload(file), sending);
        match (cancelled, sent) {
            // Its commit came first: shared, too late to cancel.
            (_, Ok((seq, conv))) => Ok(SharedFile { id: file, conv, seq, size, sha256, name }),
            (Err(e), _) => Err(e),
            (Ok(()), _) => Err(ClientError::Cancelled),
        }
    }

    /// Gives up an unfinished upload: the server deletes what it holds of it
    /// (FILE-CANCEL; `UNKNOWN_COMMAND` from a server without `file-cancel`).
    pub async fn cancel_upload(&self, file: FileId) -> Result<(), ClientError> {
        if !self.server().features.contains("file-cancel") {
            let failure = baatkaro_proto::Failure::new(baatkaro_proto::ErrorCode::UnknownCommand);
            return Err(ClientError::Failed(failure));
        }
        self.ok(Command::FileCancel { file }).await.map(|_| ())
    }

    /// Sends what the server lacks of an upload, then commits it: the FILE event's
    /// sequence number and conversation. Once `stop` is set (or a chunk failed) it
    /// starts no more chunks, lets those under way finish — a request dropped while
    /// it is written would leave half a frame on the connection — and commits
    /// nothing ([`ClientError::Cancelled`], or the chunk's error).
    async fn send_upload(
        &self,
        file: FileId,
        path: &Path,
        size: u64,
        progress: &mut dyn FnMut(UploadProgress),
        stop: &AtomicBool,
    ) -> Result<(Seq, Conversation), ClientError> {
        let (items, _) = self.ok(Command::FileStatus { file }).await?;
        let mut held = baatkaro_proto::transfer::Ranges::new();
        for item in items {
            if let Item::Have { offset, length, .. } = item {
                held.insert(offset, length);
            }
        }
        progress(UploadProgress::Held(held.held(), size));
        let chunk = self.server().limits.chunk.max(1);
        let pieces: Vec<(u64, u64)> = held
            .missing(size)
            .into_iter()
            .flat_map(|(o, l)| baatkaro_proto::transfer::chunks(o, l, chunk))
            .collect();
        // Through the page cache: a chunk read directly waits for the device while
        // the chunk before it is sent (measured slower, BENCHMARKS.md), and a file
        // still cached costs only a copy.
        let f = std::sync::Arc::new(ContentFile::open_read(path, false).map_err(io)?);
        let sends = futures::stream::iter(pieces).map(|(offset, len)| {
            let f = f.clone();
            async move {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let data = tokio::task::spawn_blocking(move || f.read_at(offset, len as usize))
                    .await
                    .map_err(|e| ClientError::Protocol(e.to_string()))?
                    .map_err(io)?;
                let cmd = Command::FileChunk { file, offset, data };
                match self.ok(cmd).await? {
                    (_, OkReply::FileChunk { received, .. }) => Ok(Some(received)),
                    (_, other) => {
                        Err(ClientError::Protocol(format!("FILE-CHUNK answered with {other:?}")))
                    }
                }
            }
        });
        // Whatever chunk size a server advertises, 2 to 64 chunks.
        let window = usize::try_from(UPLOAD_WINDOW / chunk).unwrap_or(64).clamp(2, 64);
        let mut sends = sends.buffered(window);
        let mut failed = None;
        while let Some(sent) = sends.next().await {
            match sent {
                Ok(Some(received)) => progress(UploadProgress::Held(received, size)),
                Ok(None) => {}
                // Chunks that crossed a cancel are refused; that is no failure.
                Err(_) if stop.load(Ordering::Relaxed) && failed.is_none() => {}
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if stop.load(Ordering::Relaxed) {
            return Err(ClientError::Cancelled);
        }
        match self.ok(Command::FileCommit { file }).await?.1 {
            OkReply::FileCommit { seq, conv, .. } => Ok((seq, conv)),
            other => Err(ClientError::Protocol(format!("FILE-COMMIT answered with {other:?}"))),
        }
    }

    /// The files shared in a conversation, oldest first.
    pub async fn files(&self, conv: Conversation) -> Result<Vec<SharedFile>, ClientError> {
        let (items, _) = self.ok(Command::Files { conv }).await?;
        Ok(items
            .iter()
            .filter_map(|i| match i {
                Item::Stored(e) => SharedFile::of(e),
                _ => None,
            })
            .collect())
    }

    /// Finds a file by id among the conversations this user reads.
    pub async fn find_file(&self, id: FileId) -> Result<SharedFile, ClientError> {
        let (convs, _) = self.ok(Command::Conversations).await?;
        for item in convs {
            let Item::Conversation { conv, .. } = item else { continue };
            if let Some(f) = self.files(conv).await?.into_iter().find(|f| f.id == id) {
                return Ok(f);
            }
        }
        Err(ClientError::Failed(baatkaro_proto::Failure::new(
            baatkaro_proto::ErrorCode::NoSuchFile,
        )))
    }

    /// Downloads a file to `dest`, continuing a `dest.part` left by an interrupted
    /// run, and checks its SHA-256 before renaming it into place.
    pub async fn download(
        &self,
        file: &SharedFile,
        dest: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), ClientError> {
        let part = part_path(dest);
        // Direct I/O where the file system allows it: the content is hashed as it
        // arrives and not read again, so caching it would only cost memory.
        let out = ContentFile::open_write(&part, true).map_err(io)?;
        let mut have = out.file().metadata().map_err(io)?.len();
        if have > file.size {
            out.file().set_len(0).map_err(io)?;
            have = 0;
        }
        // The bytes kept from an earlier run are hashed first; the rest is hashed as it
        // arrives, in order, so nothing is read back at the end.
        // Off the async threads, as the upload's hash is.
        let kept = part.clone();
        let mut hasher = tokio::task::spawn_blocking(move || hash_prefix(&kept, have))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .map_err(io)?;
        progress(have, file.size);
        // Pieces of whole chunks, about PIECE bytes each: a bounded amount in memory.
        let chunk = self.server().limits.chunk.max(1);
        let piece = chunk.saturating_mul((PIECE / chunk).max(1));
        let pieces: Vec<(u64, u64)> =
            baatkaro_proto::transfer::chunks(have, file.size - have, piece).collect();
        let id = file.id;
        let gets = futures::stream::iter(pieces).map(|(offset, length)| async move {
            let (items, _) = self.ok(Command::FileGet { file: id, offset, length }).await?;
            Ok::<_, ClientError>(items)
        });
        let mut gets = gets.buffered(DOWNLOAD_WINDOW);
        let out = std::sync::Arc::new(out);
        // One write at a time, overlapping the hashing of the next chunk: the file
        // stays a contiguous prefix of the content (what a later run resumes from),
        // and the hashing no longer waits for the disk.
        let mut writing: Option<(tokio::task::JoinHandle<std::io::Result<()>>, u64)> = None;
        let mut next = have;
        while let Some(items) = gets.next().await {
            for item in items? {
                let Item::Chunk { offset, data, .. } = item else { continue };
                if offset != next {
                    return Err(ClientError::Protocol(format!(
                        "chunk at {offset}, expected {next}"
                    )));
                }
                hasher.update(&data);
                next = offset + data.len() as u64;
                if let Some((write, end)) = writing.take() {
                    finish_write(write).await?;
                    have = end;
                    progress(have, file.size);
                }
                let o = out.clone();
                let write = tokio::task::spawn_blocking(move || o.write_at(&data, offset));
                writing = Some((write, next));
            }
        }
        if let Some((write, end)) = writing.take() {
            finish_write(write).await?;
            have = end;
            progress(have, file.size);
        }
        // No fsync: a download that a crash cuts short is fetched again (its hash
        // says so), and waiting for the disk here would halve the download's speed.
        let (size, sha) = (have, Sha256(hasher.finalize().into()));
        if size != file.size || sha != file.sha256 {
            // Start afresh next time: these bytes are not the file.
            let _ = std::fs::remove_file(&part);
            return Err(ClientError::Protocol(format!(
                "the download does not match its SHA-256 ({size} bytes); it was removed"
            )));
        }
        std::fs::rename(&part, dest).map_err(io)?;
        Ok(())
    }
}

/// Waits for a chunk's write to the file.
async fn finish_write(
    write: tokio::task::JoinHandle<std::io::Result<()>>,
) -> Result<(), ClientError> {
    write.await.map_err(|e| ClientError::Protocol(e.to_string()))?.map_err(io)
}

/// Where an unfinished download of `dest` is kept.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}
