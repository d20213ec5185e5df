//! The one owner of scans of the units directory. The watcher and `POST /v1/reload` both ask
//! it; it reads the directory off the async workers, applies the read to the table and pokes
//! what changed, one scan at a time, so an older read can never be applied after a newer one.
//! A reload is answered once a scan that began after it was asked for has been applied.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::context::Context;

/// How many reloads may wait for the owner at once before a caller waits to ask.
const INBOX: usize = 64;

/// What a reload hears: the units whose desired state changed, or why the scan failed.
pub type Outcome = Result<BTreeSet<String>, String>;

/// Asks the scan owner for scans.
#[derive(Debug, Clone)]
pub struct Scans {
    tx: mpsc::Sender<Option<oneshot::Sender<Outcome>>>,
}

/// The owner's end of the requests.
#[derive(Debug)]
pub struct Inbox(mpsc::Receiver<Option<oneshot::Sender<Outcome>>>);

/// A new pair of ends.
pub fn channel() -> (Scans, Inbox) {
    let (tx, rx) = mpsc::channel(INBOX);
    (Scans { tx }, Inbox(rx))
}

impl Scans {
    /// Asks for a scan soon, without waiting: one already asked for and not begun covers it.
    pub fn request(&self) {
        let _ = self.tx.try_send(None);
    }

    /// Asks for a scan and waits until it has been applied.
    pub async fn reload(&self) -> Outcome {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Some(tx))
            .await
            .map_err(|_| "the daemon is shutting down".to_string())?;
        rx.await
            .map_err(|_| "the daemon is shutting down".to_string())?
    }
}

/// One scan: read off the async workers, applied to the table. A read that panics (a bug, or
/// an injected fault) changes nothing.
pub async fn once(ctx: &Arc<Context>) -> Outcome {
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let snapshot = crate::desired::read(&c.units_dir, &crate::desired::known(&c));
        crate::desired::apply(&c, snapshot)
    })
    .await
    .map_err(|e| {
        let why = match e.try_into_panic() {
            Ok(p) => p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into()),
            Err(e) => e.to_string(),
        };
        format!("scan of {} failed: {why}", ctx.units_dir.display())
    })
}

/// Runs the owner until every `Scans` is dropped or `stop` is cancelled: each burst of requests
/// is one scan, whose changed units and the units that name them are poked.
pub async fn run(ctx: Arc<Context>, mut inbox: Inbox, stop: tokio_util::sync::CancellationToken) {
    loop {
        let first = tokio::select! {
            got = inbox.0.recv() => match got { Some(r) => r, None => return },
            () = stop.cancelled() => return,
        };
        // Everything asked for until now is answered by the scan that begins now.
        let mut waiting: Vec<oneshot::Sender<Outcome>> = first.into_iter().collect();
        while let Ok(more) = inbox.0.try_recv() {
            waiting.extend(more);
        }
        let outcome = once(&ctx).await;
        match &outcome {
            Ok(changed) => poke(&ctx, changed),
            Err(e) => tracing::error!("{e}; the units as last read stay"),
        }
        for w in waiting {
            let _ = w.send(outcome.clone());
        }
    }
}

/// Pokes the changed units and those that name one of them: what they wait for may have
/// appeared, gone, or changed.
fn poke(ctx: &Context, changed: &BTreeSet<String>) {
    let set: HashSet<&str> = changed.iter().map(String::as_str).collect();
    let joiners = crate::reconcile::deps::dependents(ctx, |t| set.contains(t));
    for name in changed.iter().chain(&joiners) {
        ctx.poke(name);
    }
}
