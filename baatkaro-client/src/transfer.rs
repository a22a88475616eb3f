//! Uploads and downloads over a [`Client`]: resumable, verified, and never holding
//! a whole file in memory.
//!
//! An upload offers the file (name, size, SHA-256), asks the server which ranges it
//! holds already, sends only the rest (several chunks in flight), and commits. Run
//! again after an interruption, the same offer finds the same unfinished upload. A
//! download writes to `NAME.part` beside the file it makes, continues from its
//! length when run again, checks the SHA-256, and only then moves the file into
//! place: under a free name (`NAME (1).EXT`) if another file has its name, never
//! replacing one unless asked to ([`IfExists`]). A name from the network is made
//! safe first ([`SharedFile::disk_name`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::file_io::LocalFile;
use baatkaro_proto::disk_name;
use baatkaro_proto::{
    Command, Conversation, FileId, FileName, Item, OfferName, OfferStatus, OkReply, Seq, Sha256,
    StoredEvent,
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
#[non_exhaustive]
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

    /// The name to save the file under: its shared name made safe for a disk (no
    /// leading dot, separators, control or invisible characters, device names, or
    /// more than 255 bytes; see [`baatkaro_proto::disk_name`]).
    pub fn disk_name(&self) -> String {
        disk_name::disk_name(self.name.as_str())
    }
}

/// What a download does when a file already has the name it is to be saved under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IfExists {
    /// Keep that file, and save under the first free name of `NAME (1).EXT` to
    /// `NAME (999).EXT` (an error if none is free).
    #[default]
    PickFreeName,
    /// Replace that file, in one step: a reader of the name sees the old content or
    /// the new, never a part.
    Overwrite,
}

/// Where a download was saved.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Saved {
    /// The file it was saved as.
    pub path: PathBuf,
    /// The name it was to be saved as: the same as `path` unless a file had that
    /// name already and [`IfExists::PickFreeName`] chose another.
    pub wanted: PathBuf,
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Io(e)
}

/// How much of a file one read takes while hashing it.
const HASH_PIECE: u64 = 4 << 20;

/// The SHA-256 of a file's content, read in pieces while another thread hashes.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, Sha256)> {
    let size = std::fs::metadata(path)?.len();
    let hasher = hash_prefix(LocalFile::open_read(path)?, size)?;
    Ok((size, Sha256(hasher.finalize().into())))
}

/// A SHA-256 fed the first `len` bytes of a file, read in pieces: a second thread
/// reads the next piece while this one hashes, so that with a core to spare the hash
/// runs at the speed of SHA-256 alone. (Through the page cache: direct reads
/// measured slower and more variable here, BENCHMARKS.md.)
fn hash_prefix(f: LocalFile, len: u64) -> std::io::Result<sha2::Sha256> {
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
/// left out, and without leading dots (an offered name may not begin with one).
pub fn name_for(path: &Path) -> Result<OfferName, ClientError> {
    let raw = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String = raw.chars().filter(|c| FileName::allows(*c) && !c.is_control()).collect();
    let clean = clean.trim_start_matches('.');
    Ok(OfferName::new(if clean.is_empty() { "file" } else { clean })?)
}

/// What an upload tells its caller as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
        name: OfferName,
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
        name: OfferName,
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
        let name = FileName::from(name);
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
            return Err(ClientError::Refused(failure));
        }
        self.ok(Command::FileCancel { file }).await.map(|_| ())
    }

    /// Sends what the server lacks of an upload, then commits it: the FILE event's
    /// sequence number and conversation. Once `stop` is set (or a chunk failed) it
    /// starts no more chunks, lets those under way finish — the server judges a
    /// cancel after the chunks before it, so their answers say what it holds — and
    /// commits nothing ([`ClientError::Cancelled`], or the chunk's error).
    ///
    /// A commit answered `UPLOAD_INCOMPLETE` (bytes the server said it held were lost
    /// in a crash, SPEC.md 6.7) is followed by the same once more, unless `stop` is
    /// set: what FILE-STATUS now says is missing is sent again, then committed.
    /// `progress` then goes back to what the server holds.
    async fn send_upload(
        &self,
        file: FileId,
        path: &Path,
        size: u64,
        progress: &mut dyn FnMut(UploadProgress),
        stop: &AtomicBool,
    ) -> Result<(Seq, Conversation), ClientError> {
        let mut again = true;
        loop {
            self.send_missing(file, path, size, progress, stop).await?;
            match self.commit_file(file).await {
                Ok((conv, seq)) => return Ok((seq, conv)),
                Err(ClientError::Refused(f))
                    if f.code == baatkaro_proto::ErrorCode::UploadIncomplete && again =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return Err(ClientError::Cancelled);
                    }
                    again = false;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the ranges FILE-STATUS says the server lacks of an upload of `size`
    /// bytes, as [`Client::send_upload`] says; [`ClientError::Cancelled`] once
    /// `stop` is set.
    async fn send_missing(
        &self,
        file: FileId,
        path: &Path,
        size: u64,
        progress: &mut dyn FnMut(UploadProgress),
        stop: &AtomicBool,
    ) -> Result<(), ClientError> {
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
        let f = std::sync::Arc::new(LocalFile::open_read(path).map_err(io)?);
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
        Ok(())
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
        Err(ClientError::Refused(baatkaro_proto::Failure::new(
            baatkaro_proto::ErrorCode::NoSuchFile,
        )))
    }

    /// Downloads a file and saves it at `dest`: a file path, or an existing
    /// directory to save into under the file's [`SharedFile::disk_name`]. Returns
    /// where it was saved.
    ///
    /// The content goes to `NAME.part` beside the file first (continuing one that
    /// an interrupted run left), its SHA-256 is checked, and only then is it moved
    /// to its name: in one step, and without replacing a file that has that name
    /// meanwhile unless `if_exists` says [`IfExists::Overwrite`]; with
    /// [`IfExists::PickFreeName`] it takes the first free name of `NAME (1).EXT`, …
    /// A `.part` that is a symbolic link, a FIFO or another file's hard link is
    /// refused, never followed, and two downloads into one name do not share one.
    pub async fn download(
        &self,
        file: &SharedFile,
        dest: &Path,
        if_exists: IfExists,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Saved, ClientError> {
        let wanted = save_path(file, dest).map_err(io)?;
        let part = part_path(&wanted);
        let out = open_part(&part).map_err(io)?;
        let mut have = out.file().metadata().map_err(io)?.len();
        if have > file.size {
            out.file().set_len(0).map_err(io)?;
            have = 0;
        }
        // The bytes kept from an earlier run are hashed first; the rest is hashed as it
        // arrives, in order, so nothing is read back at the end.
        // Off the async threads, as the upload's hash is; through a second view of
        // the file already open, not its name, which someone may have replaced.
        let kept = LocalFile::from_plain(out.file().try_clone().map_err(io)?);
        let mut hasher = tokio::task::spawn_blocking(move || hash_prefix(kept, have))
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
            // Start afresh next time: these bytes are not the file. (Only the part
            // written here is removed, never a file put in its place.)
            let removed = is_same_file(out.file(), &part).unwrap_or(false)
                && std::fs::remove_file(&part).is_ok();
            let what = if removed { "it was removed" } else { "remove it before trying again" };
            return Err(ClientError::Protocol(format!(
                "the download does not match its SHA-256 ({size} bytes); {what}: {}",
                part.display()
            )));
        }
        tokio::task::spawn_blocking(move || {
            // The part is moved by its name: it must still name the file written.
            if !is_same_file(out.file(), &part)? {
                let what = format!("{} was replaced during the download", part.display());
                return Err(std::io::Error::other(what));
            }
            let path = place(&part, &wanted, if_exists)?;
            // Held, with its lock, until the part has its name.
            drop(out);
            Ok(Saved { path, wanted })
        })
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?
        .map_err(io)
    }
}

/// The path a download of `file` to `dest` is to be saved as: `dest` itself, or,
/// when `dest` is a directory, the file's [`SharedFile::disk_name`] inside it.
fn save_path(file: &SharedFile, dest: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if dest.is_dir() {
        return Ok(dest.join(file.disk_name()));
    }
    // `dir/` or `dir/..` name a directory, which is missing.
    if dest.file_name().is_none() || dest.as_os_str().as_bytes().ends_with(b"/") {
        let what = format!("{}: no such directory", dest.display());
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, what));
    }
    Ok(dest.to_path_buf())
}

/// Opens (or creates) the unfinished download at `part`, refusing what an attacker
/// with write access to the directory could have put there instead of a file of
/// ours: a symbolic link (not followed), a FIFO or device, a hard link to another
/// file; and a part that another download is writing (it holds the lock).
fn open_part(part: &Path) -> std::io::Result<LocalFile> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::MetadataExt;
    let out = LocalFile::open_write_no_follow(part).map_err(|e| {
        let why = if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            "a symbolic link, which a download does not follow".to_string()
        } else {
            e.to_string()
        };
        Error::new(e.kind(), format!("{}: {why}", part.display()))
    })?;
    let meta = out.file().metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        let what =
            format!("{}: not a file of its own; remove it, or save elsewhere", part.display());
        return Err(Error::new(ErrorKind::InvalidInput, what));
    }
    match out.file().try_lock() {
        Ok(()) => Ok(out),
        Err(std::fs::TryLockError::WouldBlock) => {
            let what = format!("{}: another download is writing it", part.display());
            Err(Error::new(ErrorKind::ResourceBusy, what))
        }
        // A file system without locks (some network ones): the download goes on
        // without the guard against a second one into the same name.
        Err(std::fs::TryLockError::Error(_)) => Ok(out),
    }
}

/// Whether `path` names `file` (the same device and inode), without following a
/// link at `path`.
fn is_same_file(file: &std::fs::File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (file.metadata()?, std::fs::symlink_metadata(path)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// Gives the finished download at `part` its name: `wanted`, replacing a file of
/// that name for [`IfExists::Overwrite`]; else the first of `wanted`, `wanted (1)`,
/// … (from [`disk_name::candidates`]) that no file has, taken in one step that
/// fails rather than replace a file that appeared meanwhile.
fn place(part: &Path, wanted: &Path, if_exists: IfExists) -> std::io::Result<PathBuf> {
    use std::io::{Error, ErrorKind};
    if if_exists == IfExists::Overwrite {
        // rename(2) replaces a link at `wanted` itself, never what it points to.
        std::fs::rename(part, wanted)?;
        return Ok(wanted.to_path_buf());
    }
    let name = wanted.file_name().unwrap_or_default().to_string_lossy();
    for (n, candidate) in disk_name::candidates(&name).enumerate() {
        // The name as asked exactly, even if it is not UTF-8; the others from it.
        let to = if n == 0 { wanted.to_path_buf() } else { wanted.with_file_name(candidate) };
        match rename_no_replace(part, &to) {
            Ok(()) => return Ok(to),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    let last = disk_name::numbered(&name, disk_name::MAX_NUMBER);
    let what = format!(
        "{} and every name up to {last:?} are taken; the download stays in {}: save elsewhere, or replace the file (--force)",
        wanted.display(),
        part.display()
    );
    Err(Error::new(ErrorKind::AlreadyExists, what))
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then), atomically:
/// with `renameat2(RENAME_NOREPLACE)`, or where the file system lacks it, by a hard
/// link (which fails if `to` exists) and removing `from`.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        use rustix::io::Errno;
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // The file system (or an older kernel) does not offer it: link instead.
            Err(Errno::INVAL | Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    link_no_replace(from, to)
}

/// Renames `from` to `to` unless `to` exists, on any file system with hard links:
/// link(2) fails with `EEXIST` rather than replace, and then `from` goes.
fn link_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

/// Waits for a chunk's write to the file.
async fn finish_write(
    write: tokio::task::JoinHandle<std::io::Result<()>>,
) -> Result<(), ClientError> {
    write.await.map_err(|e| ClientError::Protocol(e.to_string()))?.map_err(io)
}

/// The suffix of an unfinished download's name.
const PART: &str = ".part";

/// Where an unfinished download of `dest` is kept: beside it, its name with `.part`
/// added (its name cut first if the two would pass a file system's 255 bytes).
pub fn part_path(dest: &Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name = dest.file_name().unwrap_or_default().as_bytes();
    let mut end = name.len().min(disk_name::MAX_LEN - PART.len());
    // On a character boundary if the name is UTF-8 (at most 3 steps back).
    if let Ok(s) = std::str::from_utf8(name) {
        while !s.is_char_boundary(end) {
            end -= 1;
        }
    }
    let mut part = name[..end].to_vec();
    part.extend_from_slice(PART.as_bytes());
    dest.with_file_name(std::ffi::OsString::from_vec(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, data: &[u8]) {
        std::fs::write(path, data).expect("write");
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).expect("read")
    }

    #[test]
    fn a_finished_download_takes_the_first_free_name_and_replaces_only_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (part, wanted) = (dir.path().join("n.pdf.part"), dir.path().join("n.pdf"));
        write(&part, b"new");
        assert_eq!(place(&part, &wanted, IfExists::PickFreeName).expect("place"), wanted);
        write(&part, b"newer");
        write(&dir.path().join("n (1).pdf"), b"taken");
        let got = place(&part, &wanted, IfExists::PickFreeName).expect("place");
        assert_eq!(got, dir.path().join("n (2).pdf"));
        assert_eq!((read(&wanted), read(&got)), (b"new".to_vec(), b"newer".to_vec()));
        assert_eq!(read(&dir.path().join("n (1).pdf")), b"taken");
        assert!(!part.exists());
        write(&part, b"newest");
        assert_eq!(place(&part, &wanted, IfExists::Overwrite).expect("place"), wanted);
        assert_eq!(read(&wanted), b"newest");
    }

    #[test]
    fn when_every_name_is_taken_the_download_stays_in_its_part() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (part, wanted) = (dir.path().join("a.part"), dir.path().join("a"));
        for name in disk_name::candidates("a") {
            write(&dir.path().join(name), b"taken");
        }
        write(&part, b"mine");
        let err = place(&part, &wanted, IfExists::PickFreeName).expect_err("no free name");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(
            err.to_string().contains("a (999)") && err.to_string().contains("--force"),
            "{err}"
        );
        assert_eq!(read(&part), b"mine");
    }

    #[test]
    fn the_link_fallback_never_replaces_either() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        write(&from, b"new");
        write(&to, b"old");
        let err = link_no_replace(&from, &to).expect_err("exists");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!((read(&from), read(&to)), (b"new".to_vec(), b"old".to_vec()));
        std::fs::remove_file(&to).expect("remove");
        link_no_replace(&from, &to).expect("link");
        assert!(!from.exists());
        assert_eq!(read(&to), b"new");
    }

    #[test]
    fn a_part_that_is_not_a_file_of_its_own_or_is_in_use_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let other = dir.path().join("other");
        write(&other, b"someone's");
        let linked = dir.path().join("linked.part");
        std::fs::hard_link(&other, &linked).expect("link");
        let err = open_part(&linked).expect_err("a hard link");
        assert!(err.to_string().contains("not a file of its own"), "{err}");
        let symlinked = dir.path().join("symlinked.part");
        std::os::unix::fs::symlink(&other, &symlinked).expect("symlink");
        let err = open_part(&symlinked).expect_err("a symlink");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(read(&other), b"someone's");
        let part = dir.path().join("x.part");
        let first = open_part(&part).expect("open");
        let err = open_part(&part).expect_err("in use");
        assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy, "{err}");
        drop(first);
        open_part(&part).expect("free again");
    }

    #[test]
    fn a_part_name_fits_in_255_bytes() {
        let long = format!("{}.pdf", "\u{e9}".repeat(125));
        assert_eq!(long.len(), 254);
        let part = part_path(Path::new("dir").join(&long).as_path());
        let name = part.file_name().expect("name").to_str().expect("UTF-8");
        assert!(name.len() <= disk_name::MAX_LEN && name.ends_with("\u{e9}.part"), "{name}");
        assert_eq!(part_path(Path::new("a/b.txt")), Path::new("a/b.txt.part"));
    }
}
