//! What the application hears from the connection, as a [`Stream`].

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use baatkaro_proto::Event;
use futures::Stream;
use tokio::sync::broadcast;

/// Something that happened, as the application sees it, in the order it happened.
// Nearly every value is an `Event`; boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An untagged event from the server: a stored conversation event (a
    /// message, a file, a membership change), a join request, an invitation,
    /// presence, or the server's BYE.
    Event(Event),
    /// This many events were lost here, between the one before and the one after,
    /// because the application did not take them fast enough (the queue holds
    /// [`EVENT_QUEUE`]). Stored ones can be fetched again with
    /// [`Client::history`](crate::Client::history).
    Lagged(u64),
    /// The connection dropped (the server restarted, the network failed); with
    /// [`ConnectOptions::reconnect`](crate::ConnectOptions::reconnect) on, the
    /// client tries again after `retry_in` (or at once on
    /// [`Client::reconnect_now`](crate::Client::reconnect_now)).
    Disconnected {
        /// Why, in words.
        reason: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// The client stopped reconnecting, for good: the server refused its
    /// credentials (the password changed, the token was revoked), or its
    /// certificate changed. The stream ends after this.
    Closed {
        /// Why, in words.
        reason: String,
    },
    /// The client is connected and logged in again. The stored events sent while
    /// it was away came just before this, in order, as [`ClientEvent::Event`]s:
    /// this many of them. (A group joined while away starts at the user's own
    /// JOINED; a conversation the server no longer keeps all of starts at the
    /// oldest it keeps; one the user can no longer read is skipped.)
    Reconnected {
        /// How many stored events the catch-up delivered.
        missed: u64,
    },
}

/// Events queued for each [`Events`] stream before the oldest are dropped (and
/// reported in their place as [`ClientEvent::Lagged`]).
pub const EVENT_QUEUE: usize = 4096;

/// The events of one client, in order: a [`Stream`] of [`ClientEvent`]s that ends
/// once the connection is gone for good. Each stream made by
/// [`Client::events`](crate::Client::events) sees every event from the moment it
/// was made; one that falls [`EVENT_QUEUE`] events behind loses the oldest and is
/// told so in their place.
pub struct Events {
    inner: Pin<Box<dyn Stream<Item = ClientEvent> + Send>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<ClientEvent>) -> Events {
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((ClientEvent::Lagged(n), rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Events { inner: Box::pin(stream) }
    }

    /// The next event, or `None` once the connection is gone for good and every
    /// event was taken. (The same as `StreamExt::next`, without the import.)
    pub async fn next(&mut self) -> Option<ClientEvent> {
        futures::StreamExt::next(self).await
    }
}

impl Stream for Events {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn events_lost_to_a_slow_reader_are_reported_where_they_were_lost() {
        let (tx, rx) = broadcast::channel(2);
        let mut events = Events::new(rx);
        for n in 1..=5 {
            tx.send(ClientEvent::Reconnected { missed: n }).unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(e) = events.next().await {
            got.push(e);
        }
        assert_eq!(
            got,
            [
                ClientEvent::Lagged(3),
                ClientEvent::Reconnected { missed: 4 },
                ClientEvent::Reconnected { missed: 5 },
            ]
        );
    }
}
