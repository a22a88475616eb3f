//! File commands (SPEC.md section 6.7): the hub decides, the shell does the disk
//! work and reports back, downloads stream from the reader's connection at the pace
//! its queue drains.

use std::collections::HashMap;

use baatkaro_proto::rules::{OfferFacts, OfferOutcome};
use baatkaro_proto::transfer::{self, Ranges};
use baatkaro_proto::{
    Conversation, DoneVerb, ErrorCode, Failure, FileId, FileName, Item, ListVerb, Millis,
    OfferStatus, OkReply, Sha256, StoredEvent, UserName,
};
use bytes::Bytes;

use super::Hub;
use crate::output::{DiskDone, DiskJob, Download, FileAccess, FileGrant, Output, Req};
use crate::store::{ConvKey, FileRecord, UploadRecord, Write};

/// What a FILE-OFFER announces.
#[derive(Debug)]
pub(crate) struct Offer {
    pub(crate) to: Conversation,
    pub(crate) size: u64,
    pub(crate) sha256: Sha256,
    pub(crate) name: FileName,
}

/// An unfinished upload in memory.
#[derive(Debug)]
pub(crate) struct Upload {
    rec: UploadRecord,
    /// Chunks being written now.
    writing: usize,
    /// A FILE-COMMIT that waits for the chunks being written.
    commit: Option<Req>,
    /// A FILE-CANCEL that waits for the chunks being written: the upload takes no
    /// more chunks meanwhile.
    cancel: Option<Req>,
    /// Being verified: takes no more chunks.
    finishing: bool,
    /// Bytes held when the ranges were last made durable.
    saved: u64,
    /// Its content is being made durable before its ranges are saved.
    syncing: bool,
}

impl Upload {
    /// A new upload (the shell hashes its content as it arrives in order:
    /// [`DiskJob::Begin`]).
    fn new(rec: UploadRecord) -> Upload {
        Upload {
            saved: 0,
            syncing: false,
            rec,
            writing: 0,
            commit: None,
            cancel: None,
            finishing: false,
        }
    }

    /// An upload taken up again (after a restart, or a failed commit): what it holds
    /// is durable, and a commit reads the content back to verify it.
    fn resumed(rec: UploadRecord) -> Upload {
        Upload {
            saved: rec.ranges.held(),
            syncing: false,
            rec,
            writing: 0,
            commit: None,
            cancel: None,
            finishing: false,
        }
    }

    /// Whether the upload still takes chunks, a commit or a cancel: not while it is
    /// verified, nor once a cancel waits on it.
    fn open(&self) -> bool {
        !self.finishing && self.cancel.is_none()
    }
}

/// The held ranges of an upload are made durable after this many more bytes (and
/// when its uploader's connection goes, and at shutdown), not after every chunk: a
/// chunk's answer then waits for no commit, and a crash costs at most this much to
/// send again (FILE-STATUS reports only what is durable). Every save after
/// 64 MiB first syncs the bytes written so far, so those ranges never claim what a
/// power cut could take back (the saves on disconnect and shutdown do not wait for a
/// sync), and the disk writes the upload while it arrives instead of all of it at
/// the commit's sync.
const SAVE_EVERY: u64 = 64 * 1024 * 1024;

/// The files the hub knows.
#[derive(Debug, Default)]
pub(crate) struct Files {
    shared: HashMap<FileId, FileRecord>,
    by_conv: HashMap<ConvKey, Vec<FileId>>,
    uploads: HashMap<FileId, Upload>,
    /// Content each user holds, counted once against their quota.
    contents: HashMap<UserName, HashMap<Sha256, u64>>,
    next_id: u64,
    prefix: u64,
}

impl Files {
    /// The files of a snapshot; new ids go on after the `next_id`th.
    pub(crate) fn load(
        uploads: Vec<UploadRecord>,
        files: Vec<FileRecord>,
        contents: Vec<(UserName, Sha256, u64)>,
        prefix: u64,
        next_id: u64,
    ) -> Files {
        let mut f = Files { prefix, next_id, ..Files::default() };
        for rec in uploads {
            f.uploads.insert(rec.id, Upload::resumed(rec));
        }
        for rec in files {
            f.by_conv.entry(rec.key).or_default().push(rec.id);
            f.shared.insert(rec.id, rec);
        }
        for list in f.by_conv.values_mut() {
            list.sort_by_key(|id| f.shared.get(id).map_or(0, |r| r.seq));
        }
        for (user, sha, size) in contents {
            f.contents.entry(user).or_default().insert(sha, size);
        }
        f
    }

    /// How many ids were handed out: a reload goes on from there.
    pub(crate) fn ids_given(&self) -> u64 {
        self.next_id
    }

    fn new_id(&mut self) -> FileId {
        loop {
            self.next_id += 1;
            // The prefix at its full width: unpadded, one run's prefix and count
            // could spell another's (`abc` then `12`, `abc1` then `2`).
            let id = format!("f{:08x}{:x}", self.prefix & 0xffff_ffff, self.next_id);
            // Hex digits after an 'f': always a valid id.
            if let Ok(id) = FileId::new(&id)
                && !self.shared.contains_key(&id)
                && !self.uploads.contains_key(&id)
            {
                return id;
            }
        }
    }

    /// Bytes a user holds or has offered to upload.
    fn used(&self, user: &UserName) -> u64 {
        let held: u64 = self.contents.get(user).map_or(0, |c| c.values().sum());
        let pending: u64 =
            self.uploads.values().filter(|u| u.rec.user == *user).map(|u| u.rec.size).sum();
        held.saturating_add(pending)
    }

    /// The FILE-COMMITs and FILE-CANCELs waiting on an upload.
    pub(crate) fn pending_commits(&self) -> Vec<Req> {
        self.uploads.values().flat_map(|u| u.commit.into_iter().chain(u.cancel)).collect()
    }

    /// The unfinished uploads' ids.
    pub(crate) fn upload_ids(&self) -> Vec<FileId> {
        self.uploads.keys().copied().collect()
    }

    /// Whether `file` is an unfinished upload.
    pub(crate) fn has_upload(&self, file: &FileId) -> bool {
        self.uploads.contains_key(file)
    }

    /// Drops the files of a conversation that is gone.
    pub(crate) fn forget_conv(&mut self, key: &ConvKey) {
        for id in self.by_conv.remove(key).unwrap_or_default() {
            self.shared.remove(&id);
        }
    }
}

fn fail(code: ErrorCode) -> Result<OkReply, Failure> {
    Err(Failure::new(code))
}

impl Hub {
    fn disk_job(&mut self, job: DiskJob) {
        self.outputs.push_back(Output::Disk(job));
    }

    pub(super) fn file_offer(
        &mut self,
        (conn, id): Req,
        user: UserName,
        offer: Offer,
        now: Millis,
    ) {
        let Offer { to, size, sha256, name } = offer;
        let resolved = self.resolve_to_write(user, to);
        // The same upload offered again (after a reconnect): the same id.
        let same_upload = self
            .files
            .uploads
            .values()
            .find(|u| {
                u.rec.user == user
                    && u.rec.sha256 == sha256
                    && u.rec.name == name
                    && u.rec.conv == to
                    && u.rec.size == size
            })
            .map(|u| u.rec.id);
        let facts = OfferFacts {
            reader: resolved.map(|_| ()),
            size,
            same_upload,
            holds: self.files.contents.get(&user).is_some_and(|c| c.contains_key(&sha256)),
            used: self.files.used(&user),
            open_uploads: self.files.uploads.values().filter(|u| u.rec.user == user).count() as u64,
        };
        let Some(u) = self.users.get_mut(&user) else { return };
        let outcome = match self.rules.file_offer(facts, &mut u.budget, now) {
            Ok(outcome) => outcome,
            Err(failure) => return self.reply(conn, id, Err(failure)),
        };
        let Ok((key, _)) = resolved else { return };
        let holds = match outcome {
            OfferOutcome::Resume(file) => {
                let reply = OkReply::FileOffer { file, status: OfferStatus::Need };
                return self.reply(conn, id, Ok(reply));
            }
            OfferOutcome::Share => true,
            OfferOutcome::Upload => false,
        };
        let file = self.files.new_id();
        if holds {
            // The uploader has sent this content before: shared at once.
            let seq = self.share(Some((conn, id)), file, user, to, key, size, sha256, name, now);
            return self.reply(
                conn,
                id,
                Ok(OkReply::FileOffer { file, status: OfferStatus::Done(seq) }),
            );
        }
        let rec = UploadRecord {
            id: file,
            user,
            conv: to,
            size,
            sha256,
            name,
            ranges: Ranges::new(),
            created: now,
        };
        self.write(Write::Upload(Box::new(rec.clone())));
        self.files.uploads.insert(file, Upload::new(rec));
        self.disk_job(DiskJob::Begin { file });
        self.reply(conn, id, Ok(OkReply::FileOffer { file, status: OfferStatus::Need }));
    }

    /// The caller's own upload, or NO_SUCH_FILE.
    fn own_upload(&mut self, user: &UserName, file: &FileId) -> Option<&mut Upload> {
        self.files.uploads.get_mut(file).filter(|u| u.rec.user == *user)
    }

    pub(super) fn file_chunk(
        &mut self,
        (conn, id): Req,
        user: UserName,
        file: FileId,
        offset: u64,
        data: Bytes,
    ) {
        let Some(u) = self.own_upload(&user, &file) else {
            return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
        };
        if !u.open() {
            return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
        }
        if let Err(code) = u.rec.ranges.check_chunk(u.rec.size, offset, data.len() as u64) {
            return self.reply(conn, id, fail(code));
        }
        u.writing += 1;
        let size = u.rec.size;
        self.disk_job(DiskJob::Chunk { req: (conn, id), file, size, offset, data });
    }

    pub(super) fn file_status(&mut self, (conn, id): Req, user: UserName, file: FileId) {
        let Some(u) = self.own_upload(&user, &file) else {
            return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
        };
        let items = u
            .rec
            .ranges
            .iter()
            .map(|(offset, length)| Item::Have { file, offset, length })
            .collect();
        let result =
            Ok(OkReply::FileStatus { file, size: u.rec.size, received: u.rec.ranges.held() });
        self.open_outs.push(super::Out::List { conn, id, items, result });
    }

    pub(super) fn file_commit(&mut self, (conn, id): Req, user: UserName, file: FileId) {
        // Committed already: the original answer again.
        if let Some(rec) = self.files.shared.get(&file).filter(|r| r.uploader == user) {
            let reply = OkReply::FileCommit { file, conv: rec.conv, seq: rec.seq };
            return self.reply(conn, id, Ok(reply));
        }
        let Some(u) = self.own_upload(&user, &file) else {
            return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
        };
        if !u.open() || u.commit.is_some() {
            return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
        }
        if u.writing > 0 {
            // Chunks sent before this commit are still being written: wait for them.
            u.commit = Some((conn, id));
            return;
        }
        self.try_finish(file, (conn, id));
    }

    /// FILE-CANCEL: the uploader gives up an unfinished upload. Judged, like a
    /// commit, after the chunks sent before it are written; then the store forgets
    /// the upload and, once that is durable, its bytes are deleted.
    pub(super) fn file_cancel(&mut self, (conn, id): Req, user: UserName, file: FileId) {
        let Some(u) = self.own_upload(&user, &file) else {
            return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
        };
        // One being verified for a commit is no longer unfinished.
        if !u.open() || u.commit.is_some() {
            return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
        }
        if u.writing > 0 {
            u.cancel = Some((conn, id));
            return;
        }
        self.cancel_upload(file, (conn, id));
    }

    /// Forgets an upload whose chunks are all written; once that is durable its
    /// bytes are deleted, and then its FILE-CANCEL is answered: the reply says the
    /// room is free.
    fn cancel_upload(&mut self, file: FileId, req: Req) {
        self.files.uploads.remove(&file);
        self.write(Write::UploadGone { id: file });
        self.open_outs.push(super::Out::DropUpload(file, Some(req)));
    }

    fn try_finish(&mut self, file: FileId, req: Req) {
        let Some(u) = self.files.uploads.get_mut(&file) else {
            return self.reply(req.0, req.1, fail(ErrorCode::NoSuchFile));
        };
        if !u.rec.ranges.covers(u.rec.size) {
            return self.reply(req.0, req.1, fail(ErrorCode::UploadIncomplete));
        }
        u.finishing = true;
        u.commit = Some(req);
        let (size, sha256) = (u.rec.size, u.rec.sha256);
        self.disk_job(DiskJob::Finish { file, size, sha256 });
    }

    pub(super) fn on_disk(&mut self, done: DiskDone, now: Millis) {
        match done {
            DiskDone::Chunk { req: (conn, id), file, offset, len, result } => {
                // A reload (after a failed commit) may have dropped the upload: the
                // chunk still gets its answer.
                let Some(u) = self.files.uploads.get_mut(&file) else {
                    // Its bytes too: the upload was dropped while this chunk was being
                    // written, which may have made its file again.
                    self.disk_job(DiskJob::Drop { file, req: None });
                    return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
                };
                // Saturating: a reload after a failed commit starts the count afresh
                // while chunks of before may still be finishing.
                u.writing = u.writing.saturating_sub(1);
                match result {
                    Ok(()) => {
                        u.rec.ranges.insert(offset, len);
                        let received = u.rec.ranges.held();
                        if !u.syncing && received >= u.saved.saturating_add(SAVE_EVERY) {
                            u.saved = received;
                            u.syncing = true;
                            let rec = Box::new(u.rec.clone());
                            self.disk_job(DiskJob::Sync { rec });
                        }
                        self.reply(conn, id, Ok(OkReply::FileChunk { file, received }));
                    }
                    Err(ErrorCode::StorageFull) => {
                        let retry = Some(baatkaro_proto::storage::FULL_RETRY_MS);
                        let failure =
                            Failure { retry_after: retry, ..Failure::new(ErrorCode::StorageFull) };
                        self.reply(conn, id, Err(failure));
                    }
                    Err(code) => self.reply(conn, id, fail(code)),
                }
                if let Some(u) = self.files.uploads.get_mut(&file)
                    && u.writing == 0
                    && !u.finishing
                {
                    if let Some(req) = u.cancel.take() {
                        self.cancel_upload(file, req);
                    } else if let Some(req) = u.commit.take() {
                        self.try_finish(file, req);
                    }
                }
            }
            DiskDone::Dropped { req: (conn, id) } => {
                let reply = Ok(OkReply::Done { verb: DoneVerb::FileCancel });
                self.deliver(super::Out::Reply { conn, id, result: reply });
            }
            DiskDone::Synced { rec, result } => {
                // Saved only while the upload is still open: a finished or dropped
                // one must not come back from a late save.
                let Some(u) = self.files.uploads.get_mut(&rec.id) else { return };
                u.syncing = false;
                // And only if no later save (its connection went meanwhile) holds more,
                // and the store takes writes.
                if result.is_ok() && u.open() && u.saved == rec.ranges.held() && !self.damaged {
                    self.write(Write::Upload(rec));
                }
            }
            DiskDone::Finished { file, result } => {
                let Some(u) = self.files.uploads.remove(&file) else { return };
                let Some((conn, id)) = u.commit else {
                    // A reload replaced the upload while it was verified: its commit
                    // was answered then; it stays for another commit.
                    self.files.uploads.insert(file, Upload::resumed(u.rec));
                    return;
                };
                let rec = u.rec;
                match result {
                    Ok(true) => {
                        self.write(Write::UploadGone { id: file });
                        let key = match self.resolve_to_write(rec.user, rec.conv) {
                            Ok((key, _)) => key,
                            Err(code) => return self.reply(conn, id, fail(code)),
                        };
                        let seq = self.share(
                            Some((conn, id)),
                            file,
                            rec.user,
                            rec.conv,
                            key,
                            rec.size,
                            rec.sha256,
                            rec.name,
                            now,
                        );
                        self.reply(conn, id, Ok(OkReply::FileCommit { file, conv: rec.conv, seq }));
                    }
                    Ok(false) => {
                        self.write(Write::UploadGone { id: file });
                        self.reply(conn, id, fail(ErrorCode::HashMismatch));
                    }
                    Err(ErrorCode::UploadIncomplete) => {
                        // The bytes it held are gone (SPEC.md 6.7, FILE-STATUS: after a
                        // crash a server may hold fewer): from now on it holds none,
                        // also after a restart, and the uploader sends them again.
                        let mut rec = rec;
                        rec.ranges = Ranges::new();
                        if !self.damaged {
                            self.write(Write::Upload(Box::new(rec.clone())));
                        }
                        self.files.uploads.insert(file, Upload::resumed(rec));
                        self.reply(conn, id, fail(ErrorCode::UploadIncomplete));
                    }
                    Err(code) => {
                        // Kept for another try (the disk may have room later).
                        self.files.uploads.insert(file, Upload::resumed(rec));
                        self.reply(conn, id, fail(code));
                    }
                }
            }
        }
    }

    /// Shares content as a FILE event in `to`: stores it, delivers it, remembers the
    /// file. The event's sequence number.
    #[allow(clippy::too_many_arguments)]
    fn share(
        &mut self,
        cause: Option<Req>,
        file: FileId,
        user: UserName,
        to: Conversation,
        key: ConvKey,
        size: u64,
        sha256: Sha256,
        name: FileName,
        now: Millis,
    ) -> u64 {
        let make = |conv, seq| StoredEvent::File {
            conv,
            seq,
            time: now,
            from: user,
            file,
            size,
            sha256,
            name: name.clone(),
        };
        let seq = self.store_event(user, to, key, make, cause);
        let rec = FileRecord {
            id: file,
            key,
            conv: to,
            seq,
            time: now,
            uploader: user,
            size,
            sha256,
            name: name.clone(),
        };
        self.write(Write::File(Box::new(rec.clone())));
        self.write(Write::Content { user, sha256, size });
        self.files.contents.entry(user).or_default().insert(sha256, size);
        self.files.by_conv.entry(key).or_default().push(file);
        self.files.shared.insert(file, rec);
        seq
    }

    pub(super) fn list_files(&mut self, (conn, id): Req, user: UserName, conv: Conversation) {
        let key = match self.resolve(user, conv) {
            Ok((key, _)) => key,
            Err(code) => return self.reply(conn, id, fail(code)),
        };
        let items = self
            .files
            .by_conv
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|f| self.files.shared.get(f))
            .map(|r| {
                Item::Stored(StoredEvent::File {
                    conv,
                    seq: r.seq,
                    time: r.time,
                    from: r.uploader,
                    file: r.id,
                    size: r.size,
                    sha256: r.sha256,
                    name: r.name.clone(),
                })
            })
            .collect();
        self.list(conn, id, ListVerb::Files, items);
    }

    pub(super) fn file_get(
        &mut self,
        (conn, id): Req,
        user: UserName,
        file: FileId,
        offset: u64,
        length: u64,
    ) {
        let Some(rec) = self.readable_file(&user, &file) else {
            return self.reply(conn, id, fail(ErrorCode::NoSuchFile));
        };
        let (offset, length) = match transfer::download_range(rec.size, offset, length) {
            Ok(range) => range,
            Err(code) => return self.reply(conn, id, fail(code)),
        };
        let job =
            Download { id, file, sha256: rec.sha256, offset, length, chunk: self.cfg.limits.chunk };
        self.outputs.push_back(Output::Download { conn, job });
    }

    /// The shared file `file` if `user` may read it: a reader of the conversation it
    /// was shared in (SPEC.md 6.7, FILE-GET). Who may not read it is told nothing
    /// more than of a file that does not exist.
    fn readable_file(&self, user: &UserName, file: &FileId) -> Option<&FileRecord> {
        self.files.shared.get(file).filter(|r| self.may_read_key(user, &r.key))
    }

    /// A download over HTTP (SPEC.md 12.4): its token is checked and its use
    /// recorded as AUTH's ([`Hub::check_token`], [`Hub::token_used`]), though no
    /// session logs in; then the token's user must be one who may FILE-GET the
    /// file ([`Hub::readable_file`]).
    pub(super) fn file_access(
        &mut self,
        FileAccess { peer, user, token, secret, file }: FileAccess,
        now: Millis,
    ) -> Result<FileGrant, Failure> {
        if self.shutting_down {
            let retry = Some(self.cfg.shutdown_retry_ms);
            return Err(Failure { retry_after: retry, ..Failure::new(ErrorCode::ShuttingDown) });
        }
        self.check_token(peer, user, token, &secret, now)?;
        self.token_used(peer, user, token, now);
        let rec = self.readable_file(&user, &file).ok_or(Failure::new(ErrorCode::NoSuchFile))?;
        Ok(FileGrant { size: rec.size, sha256: rec.sha256, name: rec.name.clone() })
    }

    /// Makes the held ranges of `user`'s uploads durable (their connection went),
    /// or of every upload (`None`: shutting down).
    pub(super) fn save_uploads(&mut self, user: Option<UserName>) {
        // A damaged store takes no writes; the ranges saved last still hold.
        if self.damaged {
            return;
        }
        let recs: Vec<UploadRecord> = self
            .files
            .uploads
            .values_mut()
            // One being synced too: its sync's record may come too late (at shutdown).
            .filter(|u| {
                user.is_none_or(|who| u.rec.user == who)
                    && (u.rec.ranges.held() != u.saved || u.syncing)
            })
            .map(|u| {
                u.saved = u.rec.ranges.held();
                u.rec.clone()
            })
            .collect();
        for rec in recs {
            self.write(Write::Upload(Box::new(rec)));
        }
    }

    /// Lets go of the chunks parked for the running hashes of `user`'s uploads (their
    /// last connection went): they would stay in memory until the upload expires. The
    /// commit reads such an upload back instead.
    pub(super) fn drop_parked(&mut self, user: UserName) {
        let files: Vec<FileId> =
            self.files.uploads.values().filter(|u| u.rec.user == user).map(|u| u.rec.id).collect();
        for file in files {
            self.disk_job(DiskJob::Release { file });
        }
    }

    /// Drops the unfinished uploads of a deleted account, and its hold on content
    /// (its quota). One that is being written or verified at that moment goes when
    /// it expires.
    pub(super) fn drop_uploads_of(&mut self, user: UserName) {
        let idle: Vec<FileId> = self
            .files
            .uploads
            .values()
            .filter(|u| u.rec.user == user)
            .filter(|u| u.writing == 0 && !u.finishing && !u.syncing && u.commit.is_none())
            .map(|u| u.rec.id)
            .collect();
        for file in idle {
            self.files.uploads.remove(&file);
            self.write(Write::UploadGone { id: file });
            // Deleted once the store forgot it: a failed commit brings it back.
            self.open_outs.push(super::Out::DropUpload(file, None));
        }
        self.files.contents.remove(&user);
    }

    /// Drops unfinished uploads older than `partial` seconds.
    pub(super) fn expire_uploads(&mut self, now: Millis) {
        let keep = self.cfg.limits.partial.saturating_mul(1000);
        let old: Vec<FileId> = self
            .files
            .uploads
            .values()
            .filter(|u| u.writing == 0 && u.open() && !u.syncing && u.commit.is_none())
            .filter(|u| now.saturating_sub(u.rec.created) >= keep)
            .map(|u| u.rec.id)
            .collect();
        for file in old {
            self.files.uploads.remove(&file);
            self.write(Write::UploadGone { id: file });
            // Deleted once the store forgot it: a failed commit brings it back.
            self.open_outs.push(super::Out::DropUpload(file, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids of two runs never coincide unless their prefixes do: the prefix is
    /// written at its full width (fails if it is not: `abc` then `12` and `abc1`
    /// then `2` both gave `fabc12`).
    #[test]
    fn ids_of_runs_with_different_prefixes_differ() {
        let first = Files::load(vec![], vec![], vec![], 0xabc, 0x11).new_id();
        let second = Files::load(vec![], vec![], vec![], 0xabc1, 0x1).new_id();
        assert_ne!(first, second);
        assert_eq!(first.as_str(), "f00000abc12");
        let widest = Files::load(vec![], vec![], vec![], u64::MAX, u64::MAX - 1).new_id();
        assert_eq!(widest.as_str().len(), 1 + 8 + 16, "within the 64 octets of a file id");
    }
}
