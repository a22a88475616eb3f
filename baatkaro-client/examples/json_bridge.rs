//! A bridge: prints every event as one JSON object per line on standard output,
//! and sends each line read on standard input — `CONV TEXT`, as in
//! `#rust hello` or `@bob hi` — as a message.
//!
//! ```sh
//! cargo run -p baatkaro-client --example json_bridge -- 127.0.0.1:7667 bridge its-password
//! ```
//!
//! Reading and writing run in two tasks on clones of one client; with reconnect
//! on, lines read while the server is away are sent once it is back.

use baatkaro_client::{
    Client, ClientError, ClientEvent, ConnectOptions, Conversation, Event, Password, StoredEvent,
    Text,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// One event as a JSON object.
fn to_json(event: &ClientEvent) -> Value {
    match event {
        ClientEvent::Event(Event::Stored(StoredEvent::Message { conv, seq, time, from, text })) => {
            json!({ "type": "message", "conv": conv.to_string(), "seq": seq, "time": time,
                    "from": from.as_str(), "text": text.as_str() })
        }
        ClientEvent::Event(Event::Stored(e)) => json!({
            "type": "stored", "conv": e.conv().to_string(), "seq": e.seq(), "event": format!("{e:?}")
        }),
        ClientEvent::Event(Event::Presence { user, presence }) => {
            json!({ "type": "presence", "user": user.as_str(), "presence": presence.to_string() })
        }
        ClientEvent::Event(other) => json!({ "type": "event", "event": format!("{other:?}") }),
        ClientEvent::Lagged(n) => json!({ "type": "lagged", "lost": n }),
        ClientEvent::Disconnected { reason, retry_in } => {
            json!({ "type": "disconnected", "reason": reason, "retry_ms": retry_in.as_millis() as u64 })
        }
        ClientEvent::Reconnected { missed } => json!({ "type": "reconnected", "missed": missed }),
        other => json!({ "type": "other", "event": format!("{other:?}") }),
    }
}

/// `CONV TEXT` into where and what.
fn parse_line(line: &str) -> Option<(Conversation, Text)> {
    let (conv, text) = line.split_once(' ')?;
    Some((conv.parse().ok()?, Text::new(text).ok()?))
}

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let (Some(server), Some(user), Some(password)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: json_bridge SERVER USER PASSWORD");
        std::process::exit(2);
    };
    let client = Client::connect_with(&server, &ConnectOptions::default().reconnect(true)).await?;
    let mut events = client.events();
    client.login(user.parse()?, Password::new(&password)?).await?;

    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            println!("{}", to_json(&event));
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match parse_line(&line) {
            Some((conv, text)) => match client.send(conv, text).await {
                Ok(sent) => eprintln!("sent to {conv} as {}", sent.seq),
                Err(e) => eprintln!("not sent: {e}"),
            },
            None => eprintln!("not sent: write CONV TEXT, as in `#rust hello` or `@bob hi`"),
        }
    }
    // Standard input ended: log out, which ends the event stream too.
    client.logout(false).await?;
    let _ = printer.await;
    Ok(())
}
