//! The chat session: interactive on a terminal (a prompt with line editing, events
//! shown above it), line by line from a pipe; and `tail`.
//!
//! The session remembers the newest sequence number it has shown of every
//! conversation, so it shows each stored event once; when the connection drops it
//! reconnects with backoff and fetches exactly what it missed. It also remembers
//! the group and user names it has seen, for tab completion.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baatkaro_cli::{Client, ClientError, ClientEvent, show};
use baatkaro_proto::{
    Conversation, ErrorCode, Event, GroupName, Item, Membership, Seq, StoredEvent, UserName,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Fail;
use crate::actions::Printer;
use crate::complete::{self, Names};
use crate::editor::{Above, Editor, Input};
use crate::slash::{self, Typed};

use crate::login::Login;

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

/// The state of a chat.
struct Chat {
    client: Option<Client>,
    login: Login,
    printer: Printer,
    current: Option<GroupName>,
    seen: BTreeMap<Conversation, Seq>,
    unread: BTreeMap<GroupName, u64>,
    out: Out,
    /// Shared with the prompt's completer.
    names: Arc<Mutex<Names>>,
}

impl Chat {
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

    /// Shows a stored event unless it was shown already; counts unread messages.
    fn stored(&mut self, e: &StoredEvent) {
        let conv = e.conv();
        if self.seen.get(&conv).is_some_and(|s| *s >= e.seq()) {
            return;
        }
        self.seen.insert(conv, e.seq());
        if let (StoredEvent::Message { .. }, Conversation::Group(g)) = (e, conv)
            && Some(g) != self.current
        {
            *self.unread.entry(g).or_default() += 1;
        }
        let line =
            if self.printer.json { show::stored_json(e).to_string() } else { show::stored_line(e) };
        self.out.line(&line);
    }

    fn event(&mut self, e: &Event) {
        self.learn_event(e);
        match e {
            Event::Stored(s) => self.stored(s),
            other => {
                let line = if self.printer.json {
                    show::event_json(other).to_string()
                } else {
                    show::event_line(other)
                };
                self.out.line(&line);
            }
        }
    }

    fn prompt(&self) -> String {
        let mut p = match self.current {
            Some(g) => format!("[#{g}]"),
            None => "[no group]".to_string(),
        };
        for (g, n) in &self.unread {
            if *n > 0 {
                p.push_str(&format!(" #{g}:{n}"));
            }
        }
        p + " > "
    }

    /// Handles one typed line. False when the user quits.
    async fn typed(&mut self, line: &str) -> bool {
        if line.trim().is_empty() {
            return true;
        }
        match slash::parse(line, self.current) {
            Err(e) => self.out.line(&e),
            Ok(Typed::Quit) => return false,
            Ok(Typed::Help) => {
                for l in slash::help() {
                    self.out.line(&l);
                }
            }
            Ok(Typed::Switch(g)) => {
                self.learn(&[g], &[]);
                self.current = Some(g);
                self.unread.remove(&g);
                self.out.line(&format!("now in #{g}"));
            }
            Ok(Typed::Act(action)) => {
                let Some(client) = &self.client else {
                    self.out.line("not connected: reconnecting");
                    return true;
                };
                let mut lines = Vec::new();
                let result = action.run(client, self.printer, &mut |l| lines.push(l)).await;
                for l in &lines {
                    self.out.line(l);
                }
                match result {
                    Ok(items) => self.learn_items(&items),
                    Err(e) => self.out.line(&format!("error: {e}")),
                }
                // A group joined or created is one to complete from now on.
                if action.changes_groups()
                    && let Ok((groups, _)) = client.ok(baatkaro_proto::Command::Groups).await
                {
                    self.learn_items(&groups);
                }
            }
        }
        true
    }

    /// Logs in again, with backoff, and shows what was missed. False if the user
    /// quit meanwhile.
    async fn reconnect(&mut self, input: &mut In) -> bool {
        let mut wait = Duration::from_secs(1);
        loop {
            self.out.line(&format!("connection lost; reconnecting in {}s", wait.as_secs()));
            let jitter = Duration::from_millis(u64::from(std::process::id() % 500));
            tokio::select! {
                () = tokio::time::sleep(wait + jitter) => {}
                line = input.line() => match line {
                    None => return false,
                    Some(l) => if !self.typed(&l).await { return false },
                },
            }
            match connect(&mut self.login).await {
                Ok(client) => {
                    let mut seen = self.seen.clone();
                    match client.catch_up(&mut seen).await {
                        Ok(missed) => {
                            let messages = missed
                                .iter()
                                .filter(|e| matches!(e, StoredEvent::Message { .. }))
                                .count();
                            for e in &missed {
                                self.stored(e);
                            }
                            self.out.line(&format!("reconnected; {messages} missed messages"));
                            self.client = Some(client);
                            return true;
                        }
                        Err(e) => self.out.line(&format!("catching up failed: {e}")),
                    }
                }
                Err(Fail::Usage(e)) => {
                    // Nothing to retry: it needs the user.
                    self.out.line(&format!("cannot log in again: {e}"));
                    return false;
                }
                Err(e) => self.out.line(&format!("reconnect failed: {e}")),
            }
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }
}

/// Logs in again: with the saved token, or the password if the session began with
/// it (a chat that logged in with a token it can no longer use says so).
async fn connect(login: &mut Login) -> Result<Client, Fail> {
    login
        .connect(&mut || {
            Err(Fail::Usage(
                "the saved session token was refused; run `baatkaro login` to log in again".into(),
            ))
        })
        .await
}

/// Runs a chat until the user quits or the input ends.
pub(crate) async fn run(client: Client, login: Login, printer: Printer) -> Result<(), Fail> {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stdout());
    // No progress bars inside the chat: they would fight the prompt.
    let printer = Printer { progress: false, ..printer };
    let mut chat = Chat {
        client: None,
        login,
        printer,
        current: None,
        seen: BTreeMap::new(),
        unread: BTreeMap::new(),
        out: Out::Plain,
        names: Arc::default(),
    };
    // Start at the present: what is already stored is there with /history.
    let (convs, _) = client.ok(baatkaro_proto::Command::Conversations).await?;
    for item in convs {
        if let Item::Conversation { conv, latest } = item {
            chat.seen.insert(conv, latest);
        }
    }
    let (groups, _) = client.ok(baatkaro_proto::Command::Groups).await?;
    chat.learn_items(&groups);
    let (online, _) = client.ok(baatkaro_proto::Command::Online { group: None }).await?;
    chat.learn_items(&online);
    chat.current = groups.iter().find_map(|i| match i {
        Item::Group {
            group,
            membership: Membership::Owner | Membership::Admin | Membership::Member,
            ..
        } => Some(*group),
        _ => None,
    });
    chat.client = Some(client);
    let mut input = if interactive {
        let names = chat.names.clone();
        let completer = Box::new(move |line: &str, cursor: usize| {
            complete::complete(line, cursor, &names.lock().unwrap_or_else(|p| p.into_inner()))
        });
        let (editor, above) =
            Editor::new(&chat.prompt(), completer).map_err(|e| Fail::Usage(e.to_string()))?;
        chat.out = Out::Term(above);
        chat.out.line(&format!(
            "logged in as {}; /help lists the commands, Tab completes",
            chat.login.user
        ));
        In::Term(Box::new(editor))
    } else {
        In::Pipe(BufReader::new(tokio::io::stdin()).lines())
    };
    loop {
        if let In::Term(editor) = &input {
            editor.set_prompt(&chat.prompt());
        }
        let Some(client) = chat.client.as_mut() else {
            if !chat.reconnect(&mut input).await {
                break;
            }
            continue;
        };
        tokio::select! {
            line = input.line() => match line {
                Some(line) => {
                    if !chat.typed(&line).await {
                        break;
                    }
                }
                None => break,
            },
            event = client.next_event() => match event {
                Some(ClientEvent::Event(e)) => chat.event(&e),
                Some(ClientEvent::Lagged(_)) => {
                    let mut seen = chat.seen.clone();
                    if let Some(c) = &chat.client
                        && let Ok(missed) = c.catch_up(&mut seen).await
                    {
                        for e in &missed {
                            chat.stored(e);
                        }
                    }
                }
                None => {
                    // Revoked credentials are not a dropped connection: logging in
                    // again would undo the revocation.
                    let bye = client.closed().flatten();
                    if bye.as_ref().is_some_and(|f| f.code == ErrorCode::Revoked) {
                        chat.out.line("this session was revoked (its token, or the password changed)");
                        break;
                    }
                    chat.client = None;
                }
            },
        }
    }
    // Dropping the editor gives the terminal back.
    drop(input);
    Ok(())
}

/// Prints a group's events as they come, until interrupted or `count` messages.
pub(crate) async fn tail(
    mut client: Client,
    group: GroupName,
    count: Option<u64>,
    printer: Printer,
) -> Result<(), Fail> {
    let conv = Conversation::Group(group);
    let mut messages = 0;
    if count == Some(0) {
        return Ok(());
    }
    while let Some(event) = client.next_event().await {
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
