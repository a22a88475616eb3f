//! A typed method for every command of SPEC.md, returning what its reply means.
//!
//! Each method builds its [`Command`], sends it with [`Client::call`], and turns the
//! reply into a value (a list of [`Member`]s, a [`Sent`] message, …) or a
//! [`ClientError`]: `Refused` with the server's code when it said no, `Protocol`
//! when it answered with something else than that command's reply.

use std::time::Duration;

use baatkaro_proto::{
    Address, Command, Conversation, ErrorCode, FileId, GroupName, HistoryRange, IdemKey,
    InviteOutcome, Item, JoinOutcome, JoinRule, Membership, Millis, OfferName, OfferStatus,
    OkReply, Password, Presence, Role, Seq, Sha256, StoredEvent, Text, TokenId, TokenSecret,
    UserName,
};
use bytes::Bytes;

use crate::{Client, ClientError};

/// One of the user's groups, as GROUPS lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupEntry {
    /// The group.
    pub group: GroupName,
    /// The user's relation to it: owner, admin, member, invited or requested.
    pub membership: Membership,
    /// How it is joined.
    pub rule: JoinRule,
    /// How many members it has.
    pub members: u64,
    /// Its newest sequence number (0 while the user may not read it).
    pub latest: Seq,
    /// The member its ownership is offered to, while an offer stands (known only
    /// from a server with the `group-state` feature).
    pub offer: Option<UserName>,
}

/// A conversation the user can read, as CONVERSATIONS lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConversationEntry {
    /// The group (`#name`) or the other user (`@name`).
    pub conv: Conversation,
    /// Its newest sequence number.
    pub latest: Seq,
    /// The user's read marker: events up to it count as read (0: none). `None`
    /// from a server without the `read` feature.
    pub read: Option<Seq>,
    /// The messages and files of others after the marker: exact when `latest -
    /// read` is at most [`UNREAD_WINDOW`](baatkaro_proto::rules::UNREAD_WINDOW),
    /// else "this many or more". `None` without the `read` feature.
    pub unread: Option<u64>,
}

/// A user banned from a group, as BANS lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ban {
    /// The banned user.
    pub user: UserName,
    /// The owner or admin who banned them.
    pub by: UserName,
}

/// A member of a group, as MEMBERS lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The member.
    pub user: UserName,
    /// Owner, admin or member.
    pub role: Role,
    /// Online or offline.
    pub presence: Presence,
}

/// A pending request to join a group, as REQUESTS lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinRequest {
    /// Who asks.
    pub user: UserName,
    /// When they asked.
    pub time: Millis,
    /// Why, if they said.
    pub reason: Option<Text>,
}

/// One of the account's session tokens, as TOKENS lists it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenEntry {
    /// Its number, for [`Client::revoke`].
    pub token: TokenId,
    /// When it was made.
    pub created: Millis,
    /// When it last logged a session in.
    pub used: Millis,
    /// When it stops working unless used before.
    pub expires: Millis,
    /// The address it was last used from.
    pub address: Address,
    /// The device label it was made with.
    pub label: Text,
}

/// A new session token: keep the secret (it is shown this once) and log in with
/// [`Client::auth`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewToken {
    /// Its number.
    pub token: TokenId,
    /// Its secret.
    pub secret: TokenSecret,
}

/// A message stored by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// Its sequence number in the conversation.
    pub seq: Seq,
    /// When the server stored it.
    pub time: Millis,
}

/// Stored events of a conversation, and where they stand in it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct History {
    /// The events, oldest first.
    pub events: Vec<StoredEvent>,
    /// The conversation's newest sequence number (0 if it has none).
    pub latest: Seq,
    /// The oldest one the server still keeps: anything before it is gone.
    pub oldest: Seq,
}

/// The server's answer to a file offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Offer {
    /// The upload's (or the shared file's) id.
    pub file: FileId,
    /// Whether to send the bytes, or already shared.
    pub status: OfferStatus,
}

/// What the server holds of an unfinished upload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadState {
    /// The file's declared size.
    pub size: u64,
    /// Bytes held in all.
    pub received: u64,
    /// The byte ranges held, as (offset, length), in order.
    pub held: Vec<(u64, u64)>,
}

/// A bytes range of a file, as FILE-GET sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileBytes {
    /// Where the bytes start.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
}

/// The feature of read markers (SPEC.md 6.8).
const READ: &str = "read";
/// The feature of bans and offers in lists (SPEC.md 6.9).
const GROUP_STATE: &str = "group-state";

/// An answer that is not the reply its command has.
fn surprise(verb: &str, reply: &OkReply) -> ClientError {
    ClientError::Protocol(format!("{verb} answered with {reply:?}"))
}

impl Client {
    async fn done(&self, command: Command) -> Result<(), ClientError> {
        self.ok(command).await.map(|_| ())
    }

    // ----- the session and the account (SPEC.md 4) -----

    /// Creates an account and logs in (REGISTER).
    pub async fn register(&self, user: UserName, password: Password) -> Result<(), ClientError> {
        self.done(Command::Register { user, password }).await
    }

    /// Logs in with the account's password (LOGIN). With
    /// [`ConnectOptions::reconnect`](crate::ConnectOptions::reconnect), a
    /// reconnect logs in with it again; log in with a token ([`auth`](Self::auth))
    /// for the password never to cross the network again.
    pub async fn login(&self, user: UserName, password: Password) -> Result<(), ClientError> {
        self.done(Command::Login { user, password }).await
    }

    /// Logs in with a session token (AUTH, the `tokens` feature, SPEC.md 4.7): no
    /// password is sent, and none is hashed. A reconnect logs in with it again.
    pub async fn auth(
        &self,
        user: UserName,
        token: TokenId,
        secret: TokenSecret,
    ) -> Result<(), ClientError> {
        self.done(Command::Auth { user, token, secret }).await
    }

    /// Ends the session (LOGOUT); with `revoke`, the token it logged in with is
    /// revoked too. The server closes the connection, and the client does not
    /// reconnect.
    pub async fn logout(&self, revoke: bool) -> Result<(), ClientError> {
        self.done(Command::Logout { revoke }).await
    }

    /// Checks that the server answers (PING); the client pings by itself to keep
    /// an idle connection open.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.done(Command::Ping).await
    }

    /// Makes a session token for the logged-in account (TOKEN), labelled with the
    /// device that will keep it.
    pub async fn make_token(&self, label: Text) -> Result<NewToken, ClientError> {
        match self.ok(Command::Token { label }).await?.1 {
            OkReply::Token { token, secret } => Ok(NewToken { token, secret }),
            other => Err(surprise("TOKEN", &other)),
        }
    }

    /// The account's session tokens (TOKENS).
    pub async fn tokens(&self) -> Result<Vec<TokenEntry>, ClientError> {
        let (items, _) = self.ok(Command::Tokens).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Token { token, created, used, expires, address, label } => {
                    Some(TokenEntry { token, created, used, expires, address, label })
                }
                _ => None,
            })
            .collect())
    }

    /// Revokes one of the account's session tokens (REVOKE); the sessions it
    /// logged in end.
    pub async fn revoke(&self, token: TokenId) -> Result<(), ClientError> {
        self.done(Command::Revoke { token }).await
    }

    /// Changes the account's password (PASSWORD, the `account` feature): every
    /// other session ends, and every token but this session's is revoked.
    pub async fn change_password(&self, old: Password, new: Password) -> Result<(), ClientError> {
        self.done(Command::Password { old, new }).await
    }

    /// Deletes the account for good (DELETE-ACCOUNT, the `account` feature); the
    /// connection closes.
    pub async fn delete_account(&self, password: Password) -> Result<(), ClientError> {
        self.done(Command::DeleteAccount { password }).await
    }

    // ----- groups (SPEC.md 6.1 to 6.4) -----

    /// Creates a group, owned by this user (CREATE); no rule means `approval`.
    pub async fn create(
        &self,
        group: GroupName,
        rule: Option<JoinRule>,
    ) -> Result<(), ClientError> {
        self.done(Command::Create { group, rule }).await
    }

    /// Deletes a group (DELETE; the owner only).
    pub async fn delete_group(&self, group: GroupName) -> Result<(), ClientError> {
        self.done(Command::Delete { group }).await
    }

    /// Changes a group's join rule (RULE).
    pub async fn set_rule(&self, group: GroupName, rule: JoinRule) -> Result<(), ClientError> {
        self.done(Command::Rule { group, rule }).await
    }

    /// Asks to join a group (JOIN), with a reason for the approvers: joined at
    /// once, or pending.
    pub async fn join(
        &self,
        group: GroupName,
        reason: Option<Text>,
    ) -> Result<JoinOutcome, ClientError> {
        match self.ok(Command::Join { group, reason }).await?.1 {
            OkReply::Join { outcome, .. } => Ok(outcome),
            other => Err(surprise("JOIN", &other)),
        }
    }

    /// The pending requests to join a group (REQUESTS; owner and admins).
    pub async fn requests(&self, group: GroupName) -> Result<Vec<JoinRequest>, ClientError> {
        let (items, _) = self.ok(Command::Requests { group }).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Request { user, time, reason, .. } => {
                    Some(JoinRequest { user, time, reason })
                }
                _ => None,
            })
            .collect())
    }

    /// Admits a user who asked to join (APPROVE).
    pub async fn approve(&self, group: GroupName, user: UserName) -> Result<(), ClientError> {
        self.done(Command::Approve { group, user }).await
    }

    /// Refuses a user who asked to join (REJECT).
    pub async fn reject(&self, group: GroupName, user: UserName) -> Result<(), ClientError> {
        self.done(Command::Reject { group, user }).await
    }

    /// Invites a user (INVITE): invited, or joined at once if they had asked.
    pub async fn invite(
        &self,
        group: GroupName,
        user: UserName,
    ) -> Result<InviteOutcome, ClientError> {
        match self.ok(Command::Invite { group, user }).await?.1 {
            OkReply::Invite { outcome, .. } => Ok(outcome),
            other => Err(surprise("INVITE", &other)),
        }
    }

    /// Accepts an invitation (ACCEPT).
    pub async fn accept(&self, group: GroupName) -> Result<(), ClientError> {
        self.done(Command::Accept { group }).await
    }

    /// Declines an invitation (DECLINE).
    pub async fn decline(&self, group: GroupName) -> Result<(), ClientError> {
        self.done(Command::Decline { group }).await
    }

    /// Leaves a group, or withdraws a request to join it (LEAVE).
    pub async fn leave(&self, group: GroupName) -> Result<(), ClientError> {
        self.done(Command::Leave { group }).await
    }

    /// Removes a member (KICK); with `ban`, they may not come back until unbanned.
    pub async fn kick(
        &self,
        group: GroupName,
        user: UserName,
        ban: bool,
    ) -> Result<(), ClientError> {
        self.done(Command::Kick { group, user, ban }).await
    }

    /// Lifts a ban (UNBAN).
    pub async fn unban(&self, group: GroupName, user: UserName) -> Result<(), ClientError> {
        self.done(Command::Unban { group, user }).await
    }

    /// Makes a member an admin (PROMOTE; the owner only).
    pub async fn promote(&self, group: GroupName, user: UserName) -> Result<(), ClientError> {
        self.done(Command::Promote { group, user }).await
    }

    /// Makes an admin a plain member (DEMOTE; the owner only).
    pub async fn demote(&self, group: GroupName, user: UserName) -> Result<(), ClientError> {
        self.done(Command::Demote { group, user }).await
    }

    /// Offers ownership of a group to a member (TRANSFER; the owner only).
    pub async fn transfer(&self, group: GroupName, user: UserName) -> Result<(), ClientError> {
        self.done(Command::Transfer { group, user }).await
    }

    /// Accepts an ownership offer (TRANSFER-ACCEPT): this user owns the group now.
    pub async fn transfer_accept(&self, group: GroupName) -> Result<(), ClientError> {
        self.done(Command::TransferAccept { group }).await
    }

    /// Withdraws an ownership offer (TRANSFER-CANCEL).
    pub async fn transfer_cancel(&self, group: GroupName) -> Result<(), ClientError> {
        self.done(Command::TransferCancel { group }).await
    }

    // ----- lists and history (SPEC.md 6.5) -----

    /// The user's groups, invitations and requests (GROUPS), with the pending
    /// ownership offers where the server tells them (`group-state`).
    pub async fn groups(&self) -> Result<Vec<GroupEntry>, ClientError> {
        let command = if self.server().has(GROUP_STATE) {
            Command::GroupsWithOffers
        } else {
            Command::Groups
        };
        let (items, _) = self.ok(command).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Group { group, membership, rule, members, latest } => {
                    Some(GroupEntry { group, membership, rule, members, latest, offer: None })
                }
                Item::GroupOffered { group, membership, rule, members, latest, offer } => {
                    Some(GroupEntry {
                        group,
                        membership,
                        rule,
                        members,
                        latest,
                        offer: Some(offer),
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Every conversation the user can read, with its newest sequence number
    /// (CONVERSATIONS): where catching up starts. From a server with the `read`
    /// feature, each also has the user's read marker and unread count.
    pub async fn conversations(&self) -> Result<Vec<ConversationEntry>, ClientError> {
        let command = if self.server().has(READ) {
            Command::ConversationsWithMarkers
        } else {
            Command::Conversations
        };
        let (items, _) = self.ok(command).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Conversation { conv, latest } => {
                    Some(ConversationEntry { conv, latest, read: None, unread: None })
                }
                Item::ConversationMarked { conv, latest, read, unread } => {
                    Some(ConversationEntry { conv, latest, read: Some(read), unread: Some(unread) })
                }
                _ => None,
            })
            .collect())
    }

    /// Records that the user has read a conversation up to `seq` (READ, the `read`
    /// feature): the marker only moves forward and never past the newest event;
    /// the user's other sessions hear of it. Returns where the marker is now.
    pub async fn read(&self, conv: Conversation, seq: Seq) -> Result<Seq, ClientError> {
        if !self.server().has(READ) {
            return Err(ClientError::Unsupported(READ));
        }
        // A READ that moves the marker costs a unit of the send budget: a refusal
        // for the rate is waited out, as SEND's is (bounded, as there).
        for _ in 0..100 {
            match self.call(Command::Read { conv, seq }).await?.result {
                Ok(OkReply::Read { seq, .. }) => return Ok(seq),
                Ok(other) => return Err(surprise("READ", &other)),
                Err(f) if f.code == ErrorCode::RateLimited => {
                    let wait = f.retry_after.unwrap_or(100).min(60_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(f) => return Err(ClientError::Refused(f)),
            }
        }
        Err(ClientError::Protocol("READ was rate limited 100 times in a row".into()))
    }

    /// The users banned from a group and who banned each (BANS, the `group-state`
    /// feature; owner and admins).
    pub async fn bans(&self, group: GroupName) -> Result<Vec<Ban>, ClientError> {
        if !self.server().has(GROUP_STATE) {
            return Err(ClientError::Unsupported(GROUP_STATE));
        }
        let (items, _) = self.ok(Command::Bans { group }).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Ban { user, by, .. } => Some(Ban { user, by }),
                _ => None,
            })
            .collect())
    }

    /// A group's members, owner first, with role and presence (MEMBERS).
    pub async fn members(&self, group: GroupName) -> Result<Vec<Member>, ClientError> {
        let (items, _) = self.ok(Command::Members { group }).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Member { user, role, presence, .. } => Some(Member { user, role, presence }),
                _ => None,
            })
            .collect())
    }

    /// The online users who share a group with this user, or a group's online
    /// members (ONLINE).
    pub async fn online(&self, group: Option<GroupName>) -> Result<Vec<UserName>, ClientError> {
        let (items, _) = self.ok(Command::Online { group }).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Online { user } => Some(user),
                _ => None,
            })
            .collect())
    }

    /// One page of a conversation's stored events (HISTORY): `after` a sequence
    /// number, or the `last` ones; at most `limit` (and the server's `page`).
    pub async fn history(
        &self,
        conv: Conversation,
        range: HistoryRange,
        limit: u32,
    ) -> Result<History, ClientError> {
        let (items, reply) = self.ok(Command::History { conv, range, limit }).await?;
        let OkReply::History { latest, oldest, .. } = reply else {
            return Err(surprise("HISTORY", &reply));
        };
        let events = items
            .into_iter()
            .filter_map(|i| match i {
                Item::Stored(e) => Some(e),
                _ => None,
            })
            .collect();
        Ok(History { events, latest, oldest })
    }

    /// Every stored event of a conversation after `after`, page by page.
    pub async fn history_after(
        &self,
        conv: Conversation,
        after: Seq,
    ) -> Result<History, ClientError> {
        let limit = u32::try_from(self.server().limits.page).unwrap_or(u32::MAX).max(1);
        let mut all = self.history(conv, HistoryRange::After(after), limit).await?;
        // Each page moves on past the last event of the one before, or it ends.
        while let Some(last) = all.events.last().map(StoredEvent::seq) {
            if last >= all.latest {
                break;
            }
            let next = self.history(conv, HistoryRange::After(last), limit).await?;
            if next.events.is_empty() {
                break;
            }
            all.latest = next.latest;
            all.oldest = next.oldest;
            all.events.extend(next.events);
        }
        Ok(all)
    }

    // ----- messages (SPEC.md 6.6) -----

    /// Sends a message with a fresh idempotency key (SEND). A `RATE_LIMITED`
    /// answer is waited out and the same key sent again; with reconnect on, a send
    /// made while disconnected waits and goes once the connection is back, and is
    /// never stored twice.
    pub async fn send(&self, to: Conversation, text: Text) -> Result<Sent, ClientError> {
        self.send_with_key(to, self.new_key(), text).await
    }

    /// Sends a message with the caller's idempotency key, as [`send`](Self::send)
    /// does: a key sent again (after a crash, say) is not stored twice.
    pub async fn send_with_key(
        &self,
        to: Conversation,
        key: IdemKey,
        text: Text,
    ) -> Result<Sent, ClientError> {
        // Bounded: the server's hint is capped, and so is the number of tries.
        for _ in 0..100 {
            match self.call(Command::Send { to, key, text: text.clone() }).await?.result {
                Ok(OkReply::Send { seq, time, .. }) => return Ok(Sent { seq, time }),
                Ok(other) => return Err(surprise("SEND", &other)),
                Err(f) if f.code == ErrorCode::RateLimited => {
                    let wait = f.retry_after.unwrap_or(100).min(60_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(f) => return Err(ClientError::Refused(f)),
            }
        }
        Err(ClientError::Protocol("SEND was rate limited 100 times in a row".into()))
    }

    // ----- files, step by step (SPEC.md 6.7; `upload` and `download` do it all) -----

    /// Offers a file (FILE-OFFER): upload it, or it is shared already.
    pub async fn offer_file(
        &self,
        to: Conversation,
        size: u64,
        sha256: Sha256,
        name: OfferName,
    ) -> Result<Offer, ClientError> {
        match self.ok(Command::FileOffer { to, size, sha256, name }).await?.1 {
            OkReply::FileOffer { file, status } => Ok(Offer { file, status }),
            other => Err(surprise("FILE-OFFER", &other)),
        }
    }

    /// Uploads bytes of an offered file at `offset` (FILE-CHUNK): the bytes the
    /// server holds in all.
    pub async fn file_chunk(
        &self,
        file: FileId,
        offset: u64,
        data: Bytes,
    ) -> Result<u64, ClientError> {
        match self.ok(Command::FileChunk { file, offset, data }).await?.1 {
            OkReply::FileChunk { received, .. } => Ok(received),
            other => Err(surprise("FILE-CHUNK", &other)),
        }
    }

    /// What the server holds of an unfinished upload (FILE-STATUS), to resume it.
    pub async fn file_status(&self, file: FileId) -> Result<UploadState, ClientError> {
        let (items, reply) = self.ok(Command::FileStatus { file }).await?;
        let OkReply::FileStatus { size, received, .. } = reply else {
            return Err(surprise("FILE-STATUS", &reply));
        };
        let held = items
            .into_iter()
            .filter_map(|i| match i {
                Item::Have { offset, length, .. } => Some((offset, length)),
                _ => None,
            })
            .collect();
        Ok(UploadState { size, received, held })
    }

    /// Verifies an upload's SHA-256 and shares it (FILE-COMMIT): the FILE event's
    /// conversation and sequence number.
    pub async fn commit_file(&self, file: FileId) -> Result<(Conversation, Seq), ClientError> {
        match self.ok(Command::FileCommit { file }).await?.1 {
            OkReply::FileCommit { conv, seq, .. } => Ok((conv, seq)),
            other => Err(surprise("FILE-COMMIT", &other)),
        }
    }

    /// Downloads a range of a shared file (FILE-GET; `length` 0: to its end), as
    /// the server's chunks, held in memory: at most
    /// [`ANSWER_BYTES_MAX`](baatkaro_proto::client::ANSWER_BYTES_MAX) in one call
    /// (a longer range fails, and the connection goes on).
    /// [`download`](Self::download) saves a whole file of any size.
    pub async fn file_get(
        &self,
        file: FileId,
        offset: u64,
        length: u64,
    ) -> Result<Vec<FileBytes>, ClientError> {
        let (items, _) = self.ok(Command::FileGet { file, offset, length }).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Chunk { offset, data, .. } => Some(FileBytes { offset, data }),
                _ => None,
            })
            .collect())
    }
}
