//! Collection by threshold (`[images] gc_high`, `gc_low`) as a daemon task: it looks once a
//! minute and after every pull, and removes least recently used images no unit needs.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;

/// Between two looks when nothing is pulled.
const EVERY: Duration = Duration::from_secs(60);

/// Runs until the daemon stops.
pub async fn run(ctx: Arc<Context>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = ctx.images.stored.notified() => {}
            () = ctx.cancel.cancelled() => return,
        }
        let thresholds = ctx.settings().image_gc;
        let keep = |i: &crate::image::store::Image| !crate::api::images::users(&ctx, i).is_empty();
        match ctx.images.collect(thresholds, keep).await {
            Ok(p) if !p.images.is_empty() => tracing::info!(
                images = ?p.images,
                bytes = p.swept.bytes,
                high = thresholds.high,
                low = thresholds.low,
                "image store past its threshold: least recently used images removed"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("image collection by threshold: {e}"),
        }
    }
}
