//! The reconciler: "look at unit X" requests in, one reconcile per unit at a time out, units in
//! parallel. Level-triggered: a reconcile reads the current desired and observed state, never
//! the event that woke it. A reconcile that wants another look later returns a delay.

pub mod deps;
pub mod hosts;
pub mod intent;
pub mod plan;
pub mod record;
pub mod scheduler;
pub mod steps;
pub mod verbs;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::Context;
use scheduler::{Backoff, Options};

/// The reconciler's inbox: "look at unit X", with the operator's intents for it.
pub type Queue = scheduler::Queue<intent::Intent>;

/// How the reconciler schedules: every unit looked at every `resync`; reconciles in flight
/// bounded (starts are bounded further, by cores); a unit whose reconcile fails waits 2 s,
/// then twice as long each time, at most a minute.
pub fn options(resync: Duration) -> Options {
    Options {
        parallel: 256,
        resync,
        backoff: Backoff {
            first: Duration::from_secs(2),
            max: Duration::from_secs(60),
        },
        drain: Duration::from_secs(15),
    }
}

/// Runs the reconciler until `cancel`, then waits (bounded) for the reconciles in flight.
pub async fn run(ctx: Arc<Context>, resync: Duration, cancel: CancellationToken) {
    let keys = {
        let ctx = ctx.clone();
        move || ctx.units.names()
    };
    let queue = ctx.queue.clone();
    let work = move |name: String, intents: Vec<intent::Intent>, nudge: Arc<steps::Nudge>| {
        let ctx = ctx.clone();
        let span = tracing::info_span!("unit", unit = %name);
        async move {
            let began = std::time::Instant::now();
            let next = steps::reconcile(&ctx, &name, &intents, &nudge).await;
            let outcome = match next {
                scheduler::Next::Failed => crate::meters::Outcome::Failed,
                _ => crate::meters::Outcome::Ok,
            };
            crate::meters::get().reconciled(began.elapsed(), outcome);
            next
        }
        .instrument(span)
    };
    scheduler::run(queue, options(resync), keys, work, cancel).await;
}
