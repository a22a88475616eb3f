//! Uploads and downloads started in the chat, run beside it: each in a task of its
//! own, on a handle of the chat's client, telling the chat how it goes in notices.
//! The chat goes on showing events and taking commands meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use baatkaro_client::transfer::UploadProgress;
use tokio::sync::mpsc;

use crate::ops::{self, Op, Printer};
use crate::{Fail, show};
use baatkaro_client::Client;

/// How many transfers may run at once (each holds a file open and shares the
/// connection with the chat).
pub(crate) const MAX_RUNNING: usize = 4;

/// The transfers running, and the notices they send.
pub(crate) struct Transfers {
    running: Arc<AtomicUsize>,
    tell: mpsc::Sender<String>,
    /// Notices for the chat to show.
    pub(crate) notices: mpsc::Receiver<String>,
}

/// Counts a transfer as running until dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells of a transfer's progress a quarter at a time, not at every chunk.
struct Quarters {
    told: u64,
}

impl Quarters {
    /// The quarter newly reached (1 to 3), if one was.
    fn reached(&mut self, done: u64, total: u64) -> Option<u64> {
        let quarter = done.saturating_mul(4).checked_div(total)?.min(4);
        (quarter > self.told && quarter < 4).then(|| {
            self.told = quarter;
            quarter
        })
    }
}

impl Transfers {
    /// None running yet.
    pub(crate) fn new() -> Self {
        let (tell, notices) = mpsc::channel(64);
        Transfers { running: Arc::default(), tell, notices }
    }

    /// Starts an upload or a download in the background; anything else, or one
    /// more than [`MAX_RUNNING`], is refused.
    pub(crate) fn start(&self, op: Op, client: &Client, p: Printer) -> Result<String, String> {
        let what = match &op {
            Op::Upload { conversation: Some(to), path, .. } => {
                format!("uploading {} to {to}", path.display())
            }
            Op::Download { file, .. } => format!("downloading {file}"),
            _ => return Err("only uploads and downloads run in the background".into()),
        };
        if self.running.fetch_add(1, Ordering::Relaxed) >= MAX_RUNNING {
            self.running.fetch_sub(1, Ordering::Relaxed);
            return Err(format!("{MAX_RUNNING} transfers are running: wait for one to end"));
        }
        let running = Running(self.running.clone());
        let tell = self.tell.clone();
        let client = client.clone();
        // On the chat's thread: the client's progress callbacks are not `Send`.
        tokio::task::spawn_local(async move {
            let _running = running;
            let result = run(op, &client, p, &tell).await;
            let line = match result {
                Ok(line) => line,
                Err(e) => format!("transfer failed: {e}"),
            };
            let _ = tell.send(line).await;
        });
        Ok(format!("{what} in the background; the chat goes on"))
    }
}

async fn run(
    op: Op,
    client: &Client,
    p: Printer,
    tell: &mpsc::Sender<String>,
) -> Result<String, Fail> {
    let tell_quarter = |name: &str, q: u64, total: u64| {
        // Dropped when the chat is behind: the next notice says more anyway.
        let _ = tell.try_send(format!("{name}: {}% of {}", q * 25, show::bytes(total)));
    };
    match op {
        Op::Upload { conversation: Some(to), path, name } => {
            let label = path.display().to_string();
            let quarters = std::sync::Mutex::new(Quarters { told: 0 });
            let tick = |progress: &UploadProgress| {
                if let UploadProgress::Held(done, total) = *progress {
                    let mut q = quarters.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(q) = q.reached(done, total) {
                        tell_quarter(&label, q, total);
                    }
                }
            };
            let what = (to, path.as_path(), name);
            let shared = ops::upload(client, p, what, std::future::pending(), tick).await?;
            Ok(ops::shared_line(&shared, p))
        }
        Op::Download { file, output, force } => {
            let mut quarters = Quarters { told: 0 };
            let label = file.to_string();
            let mut tick = |done: u64, total: u64| {
                if let Some(q) = quarters.reached(done, total) {
                    tell_quarter(&label, q, total);
                }
            };
            let saved = ops::download(client, file, output.as_deref(), force, &mut tick).await?;
            Ok(ops::saved_line(&saved, p))
        }
        // `start` lets nothing else through.
        _ => Err(Fail::Usage("not a transfer".into())),
    }
}

/// Whether an operation is one the chat runs in the background.
pub(crate) fn is_transfer(op: &Op) -> bool {
    matches!(op, Op::Upload { .. } | Op::Download { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_told_a_quarter_at_a_time() {
        let mut q = Quarters { told: 0 };
        let told: Vec<u64> = (0..=40).filter_map(|i| q.reached(i * 25, 1000)).collect();
        assert_eq!(told, [1, 2, 3]);
        assert_eq!(Quarters { told: 0 }.reached(5, 0), None);
    }
}
