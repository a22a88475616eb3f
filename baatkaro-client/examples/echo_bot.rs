//! An echo bot: answers every private message with what it said.
//!
//! ```sh
//! cargo run -p baatkaro-client --example echo_bot -- 127.0.0.1:7667 echo its-password
//! ```
//!
//! It registers the account if it does not exist, logs in otherwise, and comes
//! back by itself when the server restarts, catching up on what it missed.

use baatkaro_client::{
    Client, ClientError, ClientEvent, ConnectOptions, ErrorCode, Event, Password, StoredEvent,
    Text, UserName,
};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let (Some(server), Some(user), Some(password)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: echo_bot SERVER USER PASSWORD");
        std::process::exit(2);
    };
    let user: UserName = user.parse()?;
    let password = Password::new(&password)?;

    let client = Client::connect_with(&server, &ConnectOptions::default().reconnect(true)).await?;
    let mut events = client.events();
    match client.login(user, password.clone()).await {
        Err(e) if e.code() == Some(ErrorCode::AuthFailed) => {
            client.register(user, password).await?;
        }
        other => other?,
    }
    println!("{user} is listening on {server}");

    while let Some(event) = events.next().await {
        match event {
            ClientEvent::Event(Event::Stored(StoredEvent::Message {
                conv, from, text, ..
            })) if from != user && conv.to_string().starts_with('@') => {
                let reply = Text::new(&format!("you said: {text}"))
                    .or_else(|_| Text::new("you said something too long to repeat"))?;
                client.send(conv, reply).await?;
            }
            ClientEvent::Disconnected { reason, retry_in } => {
                eprintln!("disconnected ({reason}); trying again in {retry_in:?}");
            }
            ClientEvent::Reconnected { missed } => eprintln!("back; {missed} events missed"),
            _ => {}
        }
    }
    Ok(())
}
