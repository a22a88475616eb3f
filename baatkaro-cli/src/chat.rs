//! The chat session: interactive on a terminal (a prompt with line editing, events
//! shown above it), line by line from a pipe; and `tail`.
//!
//! The session remembers the newest sequence number it has shown of every
//! conversation, so it shows each stored event once. When the connection drops the
//! client crate reconnects with backoff and hands over exactly what was missed; the
//! chat says when it tries next (`/reconnect` tries at once), and messages typed
//! meanwhile wait in the outbox, in order, and go once the connection is back. It
//! also remembers the group and user names it has seen, for tab completion.
//!
//! Every line has a time. On a terminal a message that mentions you stands out (in
//! reverse video) and, unless `NO_COLOR` is set, each sender's name has a colour of
//! its own; a pipe gets plain text.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baatkaro_client::{Client, ClientError, ClientEvent, ConversationEntry};
use baatkaro_proto::rules::UNREAD_WINDOW;
use baatkaro_proto::{
    Command, Conversation, ErrorCode, Event, GroupName, HistoryRange, Item, Membership, Seq,
    StoredEvent, UserName,
};
use crossterm::style::{Color, Stylize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::Fail;
use crate::complete::{self, Names};
use crate::editor::{Above, Editor, Input};
use crate::login::Login;
use crate::ops::{Op, Printer};
use crate::show;
use crate::slash::{self, ChatCommand, Typed};
use crate::transfers::{self, Transfers};

/// Where lines go: above the prompt, or plainly to standard output.
enum Out {
    Term(Above),
    Plain,
}

impl Out {
    fn line(&mut self, line: &str) {
        match self {
            Out::Term(above) => above.line(line),
            Out::Plain => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
        }
    }
}

/// Where input comes from.
enum In {
    Term(Box<Editor>),
    Pipe(tokio::io::Lines<BufReader<tokio::io::Stdin>>),
}

impl In {
    /// The next line, or `None` at the end of input.
    async fn line(&mut self) -> Option<String> {
        match self {
            In::Term(editor) => match editor.read_line().await {
                Input::Line(line) => Some(line),
                Input::Eof | Input::Interrupted => None,
            },
            In::Pipe(lines) => lines.next_line().await.ok().flatten(),
        }
    }
}

/// The colours a sender's name may have: none is the terminal's own text colour,
/// so that every name stands out from the text.
const PALETTE: [Color; 6] =
    [Color::Red, Color::Green, Color::Yellow, Color::Blue, Color::Magenta, Color::Cyan];

/// A sender's colour: the same for a name on every run and every machine (FNV-1a of
/// the name, not std's hasher, whose output may change between Rust versions).
fn colour_of(name: &str) -> Color {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    PALETTE[(hash % PALETTE.len() as u64) as usize]
}

/// Whether `text` mentions `me`: `@me`, or `me` as a word of its own (not inside a
/// longer name: `bob` is not mentioned by `bobby` or `bob.smith`).
fn mentions(text: &str, me: UserName) -> bool {
    let name_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    let me = me.as_str();
    text.match_indices(me).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + me.len()..].chars().next();
        // A trailing `.` ends a sentence, not a name.
        let after_ok = match after {
            None => true,
            Some('.') => text[at + me.len() + 1..].chars().next().is_none_or(|c| !name_char(c)),
            Some(c) => !name_char(c),
        };
        before.is_none_or(|c| c == '@' || !name_char(c)) && after_ok
    })
}

/// What the operations task tells the chat.
enum Report {
    /// A line an operation printed.
    Line(String),
    /// A notice (an error, mostly).
    Notice(String),
    /// Names to learn from a listing, and the user's groups when they may have
    /// changed.
    Learned { items: Vec<Item>, groups: Option<Vec<Item>> },
}

/// Operations typed but not yet done, messages among them: one task does them in
/// the order they were typed (a message then `/leave` leaves after the message),
/// waiting out a reconnect for what may be sent late, so that the chat never waits
/// for the network and keeps showing events and reading keys.
struct Outbox {
    queue: mpsc::Sender<Queued>,
    sender: tokio::task::JoinHandle<()>,
    /// What the operations had to say.
    reports: mpsc::Receiver<Report>,
}

/// What waits in the outbox.
enum Queued {
    /// An operation to do.
    Op(Op),
    /// Answered once everything queued before it is done: what a `/switch` waits
    /// for, so that `/join team` then `/switch team` switches to the joined group.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Operations that may wait in the outbox; typing more is refused until they go.
const OUTBOX: usize = 256;

/// How long leaving the chat waits for typed messages still in the outbox.
const OUTBOX_DRAIN: Duration = Duration::from_secs(10);

/// How often the read marker of the current conversation moves up to what was
/// shown: one READ per conversation per period, not one per message (each costs
/// some of the sender's rate budget, SPEC.md 6.8).
const READ_EVERY: Duration = Duration::from_secs(2);

/// How long the chat waits for a request of its own (a check, a catch-up) before
/// going on without it: it never stops showing events and reading keys for long.
const ASK_WITHIN: Duration = Duration::from_secs(5);

/// How many missed events of a conversation the chat shows when it opens there or
/// switches there (the newest; `/history` has the rest).
const SHOWN_MISSED: u32 = UNREAD_WINDOW as u32;

impl Outbox {
    fn new(client: Client, printer: Printer) -> Outbox {
        let (queue, mut queued) = mpsc::channel::<Queued>(OUTBOX);
        let (tell, reports) = mpsc::channel(OUTBOX);
        let sender = tokio::task::spawn_local(async move {
            while let Some(next) = queued.recv().await {
                let op = match next {
                    Queued::Op(op) => op,
                    Queued::Barrier(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                let mut lines = Vec::new();
                let result = op.run(&client, printer, &mut |l| lines.push(l)).await;
                for line in lines {
                    let _ = tell.send(Report::Line(line)).await;
                }
                let items = match result {
                    Ok(items) => items,
                    Err(e) => {
                        let what = if matches!(op, Op::Send { .. } | Op::Dm { .. }) {
                            "not sent"
                        } else {
                            "error"
                        };
                        let _ = tell.send(Report::Notice(format!("{what}: {e}"))).await;
                        Vec::new()
                    }
                };
                // A group joined or created is one to complete and switch to.
                let groups = if op.changes_groups() {
                    client.ok(Command::Groups).await.ok().map(|(items, _)| items)
                } else {
                    None
                };
                let _ = tell.send(Report::Learned { items, groups }).await;
            }
        });
        Outbox { queue, sender, reports }
    }
}

/// The state of a chat.
struct Chat {
    client: Client,
    outbox: Outbox,
    login: Login,
    printer: Printer,
    current: Option<Conversation>,
    seen: BTreeMap<Conversation, Seq>,
    /// Messages that arrived in conversations other than the current one.
    unread: BTreeMap<Conversation, u64>,
    /// Conversations with events missed before the chat started and not shown
    /// yet: the read marker then, and the newest event then.
    unshown: BTreeMap<Conversation, (Seq, Seq)>,
    /// Whether what is shown moves the read markers: a person at a terminal, not a
    /// script reading the output.
    marks: bool,
    /// The read marker of each conversation, as last sent or heard: the current
    /// conversation's moves up to what was shown (READ, every [`READ_EVERY`]).
    read_sent: BTreeMap<Conversation, Seq>,
    /// The groups the user is a member of, as last heard.
    groups: BTreeSet<GroupName>,
    out: Out,
    /// Text attributes: a mention in reverse video, notices dim (a terminal).
    styled: bool,
    /// Senders' colours (a terminal, without `NO_COLOR`).
    colour: bool,
    /// Show presence changes.
    presence: bool,
    /// Shared with the prompt's completer.
    names: Arc<Mutex<Names>>,
    transfers: Transfers,
}

impl Chat {
    fn me(&self) -> UserName {
        self.login.user
    }

    /// Shows a notice of the client's own, with the time.
    fn notice(&mut self, text: &str) {
        let line = format!("{} {text}", show::now());
        let line = if self.styled { line.dim().to_string() } else { line };
        self.out.line(&line);
    }

    /// Remembers names to complete.
    fn learn(&self, groups: &[GroupName], users: &[UserName]) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names.groups.extend(groups.iter().map(|g| g.to_string()));
        names.users.extend(users.iter().map(|u| u.to_string()));
    }

    /// Remembers the names in list items.
    fn learn_items(&self, items: &[Item]) {
        for item in items {
            match item {
                Item::Group { group, .. } => self.learn(&[*group], &[]),
                Item::GroupOffered { group, offer, .. } => self.learn(&[*group], &[*offer]),
                Item::Request { group, user, .. }
                | Item::Member { group, user, .. }
                | Item::Ban { group, user, .. } => {
                    self.learn(&[*group], &[*user]);
                }
                Item::Online { user } => self.learn(&[], &[*user]),
                Item::Stored(e) => self.learn_stored(e),
                Item::Conversation { conv, .. } | Item::ConversationMarked { conv, .. } => {
                    self.learn_conv(*conv)
                }
                Item::Have { .. } | Item::Chunk { .. } | Item::Token { .. } => {}
            }
        }
    }

    fn learn_conv(&self, conv: Conversation) {
        match conv {
            Conversation::Group(g) => self.learn(&[g], &[]),
            Conversation::Direct(u) => self.learn(&[], &[u]),
        }
    }

    fn learn_stored(&self, e: &StoredEvent) {
        self.learn_conv(e.conv());
        match e {
            StoredEvent::Message { from, .. } | StoredEvent::File { from, .. } => {
                self.learn(&[], &[*from]);
            }
            StoredEvent::Joined { user, by, .. } | StoredEvent::Kicked { user, by, .. } => {
                self.learn(&[], &[*user, *by]);
            }
            _ => {}
        }
    }

    fn learn_event(&self, e: &Event) {
        match e {
            Event::Stored(s) => self.learn_stored(s),
            Event::Presence { user, .. } => self.learn(&[], &[*user]),
            Event::JoinRequested { group, user, .. } => self.learn(&[*group], &[*user]),
            Event::Invited { group, by, .. }
            | Event::RequestApproved { group, by }
            | Event::RequestRejected { group, by } => self.learn(&[*group], &[*by]),
            _ => {}
        }
    }

    /// Forgets the counts of groups the user is no longer in (a GROUPS listing).
    fn prune_left(&mut self, items: &[Item]) {
        let listed: BTreeSet<GroupName> = items
            .iter()
            .filter_map(|i| match i {
                Item::Group { group, .. } | Item::GroupOffered { group, .. } => Some(*group),
                _ => None,
            })
            .collect();
        let kept = |c: &Conversation| match c {
            Conversation::Group(g) => listed.contains(g),
            Conversation::Direct(_) => true,
        };
        self.unread.retain(|c, _| kept(c));
        self.unshown.retain(|c, _| kept(c));
    }

    /// Remembers the groups the user is a member of, from a GROUPS listing.
    fn learn_groups(&mut self, items: &[Item]) {
        self.prune_left(items);
        self.groups = items
            .iter()
            .filter_map(|i| match i {
                Item::Group {
                    group,
                    membership: Membership::Owner | Membership::Admin | Membership::Member,
                    ..
                } => Some(*group),
                _ => None,
            })
            .collect();
        self.learn_items(items);
    }

    /// A stored event as a line: a message with its sender in their colour, and
    /// the whole line standing out when it mentions the user.
    fn stored_line(&self, e: &StoredEvent) -> String {
        if self.printer.json {
            return show::stored_json(e).to_string();
        }
        let StoredEvent::Message { from, text, time, conv, .. } = e else {
            return show::stored_line(e);
        };
        let mentioned = *from != self.me() && mentions(text.as_str(), self.me());
        let name = if self.colour {
            from.as_str().with(colour_of(from.as_str())).bold().to_string()
        } else {
            from.to_string()
        };
        let text = if mentioned && self.styled {
            text.as_str().reverse().to_string()
        } else {
            text.to_string()
        };
        format!("{} {conv} {name}: {text}", show::clock(*time))
    }

    /// Shows a stored event unless it was shown already; counts unread messages.
    fn stored(&mut self, e: &StoredEvent) {
        let conv = e.conv();
        if self.seen.get(&conv).is_some_and(|s| *s >= e.seq()) {
            return;
        }
        self.seen.insert(conv, e.seq());
        // What the server counts as unread: others' messages and files.
        if let StoredEvent::Message { from, .. } | StoredEvent::File { from, .. } = e
            && Some(conv) != self.current
            && *from != self.me()
        {
            *self.unread.entry(conv).or_default() += 1;
        }
        let line = self.stored_line(e);
        self.out.line(&line);
    }

    fn event(&mut self, e: &Event) {
        self.learn_event(e);
        match e {
            Event::Stored(s) => self.stored(s),
            // Read on another device: not unread here either.
            Event::ReadMarker { conv, seq } => {
                let sent = self.read_sent.entry(*conv).or_default();
                *sent = (*sent).max(*seq);
                if self.seen.get(conv).is_none_or(|s| s <= seq) {
                    self.unread.remove(conv);
                }
            }
            Event::Presence { .. } if !self.presence => {}
            other if self.printer.json => self.out.line(&show::event_json(other).to_string()),
            other => self.notice(&show::event_line(other)),
        }
    }

    fn prompt(&self) -> String {
        let mut p = match self.current {
            Some(c) => format!("[{c}]"),
            None => "[nowhere]".to_string(),
        };
        for (c, n) in &self.unread {
            if *n > 0 {
                p.push_str(&format!(" {c}:{n}"));
            }
        }
        p + " > "
    }

    /// Whether `conv` may be made the current conversation: a group the user is a
    /// member of, or a user who exists (the server says, within [`ASK_WITHIN`];
    /// while disconnected, only what the chat knows).
    async fn check_switch(&mut self, conv: Conversation) -> Result<(), String> {
        let known = match conv {
            Conversation::Group(g) => self.groups.contains(&g),
            Conversation::Direct(_) => self.seen.contains_key(&conv),
        };
        if known {
            return Ok(());
        }
        if !self.client.is_connected() {
            return Err(format!("not connected: cannot check {conv} now; try again once back"));
        }
        match conv {
            Conversation::Group(g) => {
                // The list may be old: ask again before refusing.
                if let Ok(Ok((items, _))) =
                    tokio::time::timeout(ASK_WITHIN, self.client.ok(Command::Groups)).await
                {
                    self.learn_groups(&items);
                }
                if self.groups.contains(&g) {
                    Ok(())
                } else {
                    Err(format!("you are not in #{g}: /join {g} first (/groups lists yours)"))
                }
            }
            Conversation::Direct(u) => {
                let ask = Command::History { conv, range: HistoryRange::Last, limit: 1 };
                match tokio::time::timeout(ASK_WITHIN, self.client.ok(ask)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) if e.code() == Some(ErrorCode::NoSuchUser) => {
                        Err(format!("there is no user {u}"))
                    }
                    Ok(Err(e)) => Err(format!("cannot switch to @{u}: {e}")),
                    Err(_) => Err(format!("cannot switch to @{u}: the server did not answer")),
                }
            }
        }
    }

    /// Handles one typed line. False when the user quits.
    async fn typed(&mut self, line: &str) -> bool {
        if line.trim().is_empty() {
            return true;
        }
        match slash::parse(line, self.current) {
            Err(e) => self.notice(&e),
            Ok(Typed::Chat(ChatCommand::Quit)) => return false,
            Ok(Typed::Chat(ChatCommand::Reconnect)) => {
                if self.client.is_connected() {
                    self.notice("connected already");
                } else {
                    self.notice("reconnecting now");
                    self.client.reconnect_now();
                }
            }
            Ok(Typed::Op(op)) if transfers::is_transfer(&op) => {
                match self.transfers.start(op, &self.client, self.printer) {
                    Ok(started) => self.notice(&started),
                    Err(e) => self.notice(&e),
                }
            }
            Ok(Typed::Op(op)) => {
                let message = matches!(op, Op::Send { .. } | Op::Dm { .. });
                if self.outbox.queue.try_send(Queued::Op(op)).is_err() {
                    self.notice(&format!("not done: {OUTBOX} commands wait to be done already"));
                } else if !self.client.is_connected() {
                    self.notice(if message {
                        "not connected: the message goes once the connection is back"
                    } else {
                        "not connected: done once the connection is back, if safe to do late"
                    });
                }
            }
            Ok(Typed::Chat(ChatCommand::Help { command })) => {
                let lines = match command {
                    None => Ok(slash::help()),
                    Some(c) => slash::help_for(&c),
                };
                match lines {
                    Ok(lines) => lines.iter().for_each(|l| self.out.line(l)),
                    Err(e) => self.notice(&e),
                }
            }
            Ok(Typed::Chat(ChatCommand::Presence { state })) => {
                self.presence = state;
                let says = if state { "shown" } else { "hidden" };
                self.notice(&format!("people coming online and going: {says}"));
            }
            Ok(Typed::Chat(ChatCommand::Switch { conversation })) => {
                self.after_outbox().await;
                match self.check_switch(conversation).await {
                    Ok(()) => {
                        // What was shown where the chat was counts as read, now.
                        self.mark_read();
                        self.learn_conv(conversation);
                        self.current = Some(conversation);
                        self.unread.remove(&conversation);
                        self.save_place();
                        self.notice(&format!("now in {conversation}"));
                        self.show_unshown(conversation).await;
                        self.mark_read();
                    }
                    Err(e) => self.notice(&e),
                }
            }
        }
        true
    }

    /// Shows what the operations task reported.
    fn report(&mut self, report: Report) {
        match report {
            Report::Line(line) => self.out.line(&line),
            Report::Notice(notice) => self.notice(&notice),
            Report::Learned { items, groups } => {
                self.learn_items(&items);
                if let Some(groups) = groups {
                    self.learn_groups(&groups);
                }
            }
        }
    }

    /// What was missed since the read markers, per conversation: "12 unread in
    /// #rust since 09:14"; the current conversation's missed events are shown (it
    /// comes last, nearest the prompt), the others' when the chat switches there,
    /// and until then their counts wait in the prompt.
    async fn missed_since_read(&mut self, convs: &[ConversationEntry]) {
        let mut order: Vec<&ConversationEntry> = convs.iter().collect();
        order.sort_by_key(|c| Some(c.conv) == self.current);
        for c in order {
            let (Some(read), Some(unread)) = (c.read, c.unread) else { continue };
            let (conv, read) = (c.conv, read.min(c.latest));
            self.read_sent.insert(conv, read);
            if unread == 0 {
                continue;
            }
            let first = self.ask(self.client.history(conv, HistoryRange::After(read), 1)).await;
            let since = first
                .and_then(|h| h.events.first().map(|e| format!(" since {}", show::clock(e.time()))))
                .unwrap_or_default();
            // Past the server's counting window the count is a lower bound.
            let or_more =
                if c.latest.saturating_sub(read) > UNREAD_WINDOW { " or more" } else { "" };
            self.notice(&format!("{unread}{or_more} unread in {conv}{since}"));
            if Some(conv) == self.current {
                self.show_missed(conv, read, c.latest).await;
            } else {
                self.unread.insert(conv, unread);
                self.unshown.insert(conv, (read, c.latest));
            }
        }
    }

    /// A request of the chat's own, given [`ASK_WITHIN`] (the loop waits for it);
    /// none while disconnected (it would wait for the reconnect).
    async fn ask<T>(&self, request: impl Future<Output = Result<T, ClientError>>) -> Option<T> {
        if !self.client.is_connected() {
            return None;
        }
        tokio::time::timeout(ASK_WITHIN, request).await.ok()?.ok()
    }

    /// Waits (within [`ASK_WITHIN`], and not while disconnected) until what was
    /// typed before is done, and learns what it reported: a `/switch` then sees
    /// the group a `/join` just before it joined.
    async fn after_outbox(&mut self) {
        if !self.client.is_connected() {
            return;
        }
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.outbox.queue.try_send(Queued::Barrier(done)).is_ok() {
            let _ = tokio::time::timeout(ASK_WITHIN, finished).await;
        }
        while let Ok(report) = self.outbox.reports.try_recv() {
            self.report(report);
        }
    }

    /// Shows the missed events of a conversation the chat just switched to.
    async fn show_unshown(&mut self, conv: Conversation) {
        if let Some((read, upto)) = self.unshown.remove(&conv) {
            self.show_missed(conv, read, upto).await;
        }
    }

    /// Shows the events of `conv` after `read` up to `upto` (the newest
    /// [`SHOWN_MISSED`], saying where the earlier ones are), page by page. What
    /// cannot be fetched now (disconnected, no answer) stays to be shown at the next
    /// switch there, and the marker does not move over it meanwhile.
    async fn show_missed(&mut self, conv: Conversation, read: Seq, upto: Seq) {
        let from = read.max(upto.saturating_sub(u64::from(SHOWN_MISSED)));
        let mut events = Vec::new();
        let mut after = from;
        // Each page moves `after` on, or the loop ends; at most SHOWN_MISSED events.
        while after < upto {
            let page = self.client.history(conv, HistoryRange::After(after), SHOWN_MISSED);
            let Some(page) = self.ask(page).await else {
                self.unshown.insert(conv, (read, upto));
                self.notice(&format!("what was missed in {conv} is shown once it can be fetched"));
                return;
            };
            let last = page.events.last().map_or(after, StoredEvent::seq);
            events.extend(page.events.into_iter().filter(|e| e.seq() <= upto));
            if last <= after {
                break;
            }
            after = last;
        }
        if from > read {
            self.notice(&format!("… the {} before: /history {conv} {read}", from - read));
        }
        for e in &events {
            let line = self.stored_line(e);
            self.out.line(&line);
        }
    }

    /// Moves the current conversation's read marker up to what was shown, in the
    /// background, if it moved since the last READ (a server with `read`).
    fn mark_read(&mut self) {
        if !self.marks {
            return;
        }
        // Not over missed events not shown yet.
        let Some(conv) = self.current.filter(|c| !self.unshown.contains_key(c)) else { return };
        let Some(&seen) = self.seen.get(&conv) else { return };
        if self.read_sent.get(&conv).is_some_and(|r| *r >= seen)
            || !self.client.server().has("read")
        {
            return;
        }
        self.read_sent.insert(conv, seen);
        let client = self.client.clone();
        tokio::task::spawn_local(async move {
            // A refusal (left the group meanwhile) leaves the marker: nothing to do.
            let _ = client.read(conv, seen).await;
        });
    }

    /// Remembers the current conversation, for the next chat to open there.
    /// (Readable by the user alone, as the tokens beside it: it names who they
    /// talk to.)
    /// A script reading from a pipe does not change where a person's chat opens.
    fn save_place(&self) {
        if !self.marks {
            return;
        }
        let (Some(path), Some(conv)) = (&self.login.place, self.current) else { return };
        let Some(dir) = path.parent() else { return };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        if builder.create(dir).is_err() {
            return;
        }
        // A new file renamed into place: never written through a link planted there.
        // (create_new: O_EXCL, which a link at that name makes fail.)
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&tmp)
            .and_then(|mut f| f.write_all(format!("{conv}\n").as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Where the last chat was, if it is still a conversation the user reads.
    fn saved_place(&self, convs: &[ConversationEntry]) -> Option<Conversation> {
        let path = self.login.place.as_ref()?;
        // A file of ours is a line; anything else (a FIFO, a huge file) is not.
        if !std::fs::symlink_metadata(path).ok()?.is_file() {
            return None;
        }
        let mut text = String::new();
        let file = std::fs::File::open(path).ok()?;
        std::io::Read::read_to_string(&mut std::io::Read::take(file, 256), &mut text).ok()?;
        let conv: Conversation = text.trim().parse().ok()?;
        let readable = match conv {
            Conversation::Group(g) => self.groups.contains(&g),
            Conversation::Direct(_) => convs.iter().any(|c| c.conv == conv),
        };
        readable.then_some(conv)
    }

    /// Shows what the client's reconnect says: when it tries next, and that it is
    /// back (the missed events came just before, as events).
    fn reconnecting(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Closed { reason } => {
                self.notice(&format!("not reconnecting: {reason}"));
            }
            ClientEvent::Disconnected { reason, retry_in } => {
                let at = show::clock_in(retry_in);
                self.notice(&format!(
                    "connection lost ({reason}); trying again at {at}, /reconnect tries now"
                ));
            }
            ClientEvent::Reconnected { missed } => {
                let missed = show::count(missed, "missed event");
                self.notice(&format!("reconnected; {missed}"));
            }
            _ => {}
        }
    }
}

/// Whether colours are wanted: on a terminal, unless `NO_COLOR` is set
/// (<https://no-color.org>: present and not empty).
fn colour_wanted(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Runs a chat until the user quits or the input ends.
pub(crate) async fn run(client: Client, login: Login, printer: Printer) -> Result<(), Fail> {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stdout());
    // No progress bars inside the chat: they would fight the prompt.
    let printer = Printer { progress: false, chat: true, ..printer };
    let mut events = client.events();
    let mut chat = Chat {
        outbox: Outbox::new(client.clone(), printer),
        client: client.clone(),
        login,
        printer,
        current: None,
        seen: BTreeMap::new(),
        unread: BTreeMap::new(),
        unshown: BTreeMap::new(),
        marks: interactive,
        read_sent: BTreeMap::new(),
        groups: BTreeSet::new(),
        out: Out::Plain,
        styled: interactive && !printer.json,
        colour: colour_wanted(interactive) && !printer.json,
        presence: false,
        names: Arc::default(),
        transfers: Transfers::new(),
    };
    // Start at the present, after what was missed since the read markers (a
    // server without them: at the present; the rest is there with /history).
    let convs = client.conversations().await?;
    for c in &convs {
        chat.learn_conv(c.conv);
        chat.seen.insert(c.conv, c.latest);
    }
    let (groups, _) = client.ok(Command::Groups).await?;
    chat.learn_groups(&groups);
    let (online, _) = client.ok(Command::Online { group: None }).await?;
    chat.learn_items(&online);
    // Where the last chat was, else the first group.
    chat.current = chat
        .saved_place(&convs)
        .or_else(|| chat.groups.iter().next().copied().map(Conversation::Group));
    let mut input = if interactive {
        let names = chat.names.clone();
        let completer = Box::new(move |line: &str, cursor: usize| {
            complete::complete(line, cursor, &names.lock().unwrap_or_else(|p| p.into_inner()))
        });
        let (editor, above) =
            Editor::new(&chat.prompt(), completer).map_err(|e| Fail::Usage(e.to_string()))?;
        chat.out = Out::Term(above);
        let me = chat.me();
        chat.notice(&format!("logged in as {me}; /help lists the commands, Tab completes"));
        In::Term(Box::new(editor))
    } else {
        In::Pipe(BufReader::new(tokio::io::stdin()).lines())
    };
    if chat.marks {
        chat.missed_since_read(&convs).await;
    }
    let mut read_tick = tokio::time::interval(READ_EVERY);
    read_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let In::Term(editor) = &input {
            editor.set_prompt(&chat.prompt());
        }
        tokio::select! {
            line = input.line() => match line {
                Some(line) => {
                    if !chat.typed(&line).await {
                        break;
                    }
                }
                None => break,
            },
            Some(notice) = chat.transfers.notices.recv() => chat.notice(&notice),
            Some(report) = chat.outbox.reports.recv() => chat.report(report),
            _ = read_tick.tick() => chat.mark_read(),
            event = events.next() => match event {
                Some(ClientEvent::Event(e)) => chat.event(&e),
                Some(ClientEvent::Lagged(n)) => {
                    // Events the chat could not keep up with: fetched again (within
                    // ASK_WITHIN, so the chat never stalls on it).
                    let mut seen = chat.seen.clone();
                    match chat.ask(chat.client.catch_up(&mut seen)).await {
                        Some(missed) => {
                            for e in &missed {
                                chat.stored(e);
                            }
                        }
                        None => chat.notice(&format!("{n} events went by too fast to show")),
                    }
                }
                Some(other) => {
                    let back = matches!(other, ClientEvent::Reconnected { .. });
                    chat.reconnecting(other);
                    if back && let Some(conv) = chat.current {
                        chat.show_unshown(conv).await;
                    }
                }
                None => {
                    let bye = chat.client.closed().flatten();
                    if bye.as_ref().is_some_and(|f| f.code == ErrorCode::Revoked) {
                        chat.notice("this session was revoked (its token, or the password changed)");
                    } else {
                        let why = bye.map(|f| format!(": {}", f.code)).unwrap_or_default();
                        chat.notice(&format!("the connection is closed{why}"));
                    }
                    break;
                }
            },
        }
    }
    // Where the chat was, and what was read there, for next time.
    chat.save_place();
    // Sent again even if a READ went before: that one may still wait (a rate
    // limit) in a task that ends with the chat.
    if let Some(conv) = chat.current.filter(|c| !chat.unshown.contains_key(c))
        && let Some(&seen) = chat.seen.get(&conv)
        && chat.marks
        && chat.client.is_connected()
        && chat.client.server().has("read")
    {
        let _ = tokio::time::timeout(OUTBOX_DRAIN, chat.client.read(conv, seen)).await;
    }
    // What was typed goes before the chat ends (a piped script's last lines), unless
    // the server stays away.
    let Outbox { queue, mut sender, mut reports } = chat.outbox;
    drop(queue);
    // Disconnected, there is nothing to wait for: say so rather than hang.
    let drain = if chat.client.is_connected() { OUTBOX_DRAIN } else { Duration::ZERO };
    let deadline = tokio::time::sleep(drain);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut sender => break,
            Some(report) = reports.recv() => match report {
                Report::Line(line) | Report::Notice(line) => chat.out.line(&line),
                Report::Learned { .. } => {}
            },
            () = &mut deadline => {
                if !sender.is_finished() {
                    chat.out.line("leaving with what was typed last not done: the server is away");
                }
                break;
            }
        }
    }
    while let Ok(report) = reports.try_recv() {
        if let Report::Line(line) | Report::Notice(line) = report {
            chat.out.line(&line);
        }
    }
    // Dropping the editor gives the terminal back.
    drop(input);
    Ok(())
}

/// Prints a group's events as they come, until interrupted or `count` messages.
pub(crate) async fn tail(
    client: Client,
    group: GroupName,
    count: Option<u64>,
    printer: Printer,
) -> Result<(), Fail> {
    let conv = Conversation::Group(group);
    let mut messages = 0;
    if count == Some(0) {
        return Ok(());
    }
    let mut events = client.events();
    while let Some(event) = events.next().await {
        let ClientEvent::Event(Event::Stored(e)) = event else { continue };
        if e.conv() != conv {
            continue;
        }
        println!(
            "{}",
            if printer.json { show::stored_json(&e).to_string() } else { show::stored_line(&e) }
        );
        if matches!(e, StoredEvent::Message { .. }) {
            messages += 1;
            if count.is_some_and(|n| messages >= n) {
                return Ok(());
            }
        }
    }
    Err(ClientError::Closed(client.closed().flatten()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_is_the_name_as_a_word() {
        let bob: UserName = "bob".parse().unwrap();
        for yes in ["bob: hi", "hi @bob", "thanks, bob!", "ask bob.", "(bob)"] {
            assert!(mentions(yes, bob), "{yes}");
        }
        for no in ["bobby is here", "ask bob.smith", "kebob", "b o b", "jimbob_2"] {
            assert!(!mentions(no, bob), "{no}");
        }
    }

    #[test]
    fn a_sender_keeps_their_colour() {
        assert_eq!(colour_of("alice"), colour_of("alice"));
        // Not every name the same colour.
        let names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
        let colours: BTreeSet<String> =
            names.iter().map(|n| format!("{:?}", colour_of(n))).collect();
        assert!(colours.len() >= 3, "{colours:?}");
    }
}
