//! The reconciler: "look at unit X" requests in, one reconcile per unit at a time out, units in
//! parallel. Level-triggered: a reconcile reads the current desired and observed state, never
//! the event that woke it. A reconcile that wants another look later returns a delay.

pub mod deps;
pub mod intent;
pub mod plan;
pub mod unit;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::time::{delay_queue, DelayQueue};
use tracing::Instrument;

use crate::daemon::context::Context;

/// A request to the reconciler.
#[derive(Debug)]
pub enum Msg {
    /// Look at this unit.
    Reconcile(String),
    /// Look at every unit in the table.
    ReconcileAll,
    /// Apply an operator intent to this unit, reconcile it, and answer once done.
    Intent(String, intent::Intent, oneshot::Sender<()>),
}

#[derive(Default)]
struct Slot {
    running: bool,
    dirty: bool,
    current: Vec<oneshot::Sender<()>>,
    next: Vec<oneshot::Sender<()>>,
    intents: Vec<intent::Intent>,
    delay: Option<delay_queue::Key>,
    /// The reconcile in flight's line from the loop.
    nudge: Option<Arc<unit::Nudge>>,
}

/// Runs the loop until `rx` closes or `shutdown` resolves, then waits (bounded) for the
/// reconciles in flight.
pub async fn run(
    ctx: Arc<Context>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut tasks: JoinSet<(String, Option<Duration>)> = JoinSet::new();
    let mut delays: DelayQueue<String> = DelayQueue::new();
    tokio::pin!(shutdown);
    loop {
        let mut wake: HashSet<String> = HashSet::new();
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Reconcile(name)) => { wake.insert(name); }
                Some(Msg::ReconcileAll) => wake.extend(ctx.table().keys().cloned()),
                Some(Msg::Intent(name, intent, tx)) => {
                    let slot = slots.entry(name.clone()).or_default();
                    slot.intents.push(intent);
                    if slot.running { slot.next.push(tx) } else { slot.current.push(tx) }
                    wake.insert(name);
                }
                None => break,
            },
            Some(expired) = std::future::poll_fn(|cx| delays.poll_expired(cx)) => {
                let name = expired.into_inner();
                if let Some(slot) = slots.get_mut(&name) { slot.delay = None; }
                wake.insert(name);
            },
            Some(done) = tasks.join_next() => {
                let (name, requeue) = match done {
                    Ok(r) => r,
                    Err(e) => { tracing::error!("reconcile task failed: {e}"); continue; }
                };
                let slot = slots.entry(name.clone()).or_default();
                slot.running = false;
                slot.nudge = None;
                for tx in slot.current.drain(..) { let _ = tx.send(()); }
                if let Some(key) = slot.delay.take() { delays.remove(&key); }
                if let Some(after) = requeue {
                    slot.delay = Some(delays.insert(name.clone(), after));
                }
                if slot.dirty {
                    slot.dirty = false;
                    slot.current = std::mem::take(&mut slot.next);
                    wake.insert(name);
                }
            },
            () = &mut shutdown => break,
        }
        for name in wake {
            let slot = slots.entry(name.clone()).or_default();
            if slot.running {
                slot.dirty = true;
                if let Some(n) = &slot.nudge {
                    n.poke(slot.intents.contains(&intent::Intent::Stop));
                }
                continue;
            }
            slot.running = true;
            if !slot.next.is_empty() {
                let next = std::mem::take(&mut slot.next);
                slot.current.extend(next);
            }
            let intents = std::mem::take(&mut slot.intents);
            let nudge = Arc::new(unit::Nudge::default());
            slot.nudge = Some(nudge.clone());
            let ctx = ctx.clone();
            let span = tracing::info_span!("unit", unit = %name);
            tasks.spawn(
                async move {
                    let requeue = unit::reconcile(&ctx, &name, &intents, &nudge).await;
                    (name, requeue)
                }
                .instrument(span),
            );
        }
        // Forget idle slots of units that are gone, so the map does not grow without bound.
        if slots.len() > 64 && slots.len() > ctx.table().len() * 2 {
            let table = ctx.table();
            slots.retain(|n, s| s.running || s.delay.is_some() || table.contains_key(n));
        }
    }
    // Let reconciles in flight finish their step, so records match what runs.
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}
