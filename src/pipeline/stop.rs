//! Stopping a container: its stop signal, `stop_timeout`, then SIGKILL; done when its shim has
//! recorded the exit and gone.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::shim::{self, launch, Exit};

use super::{blocking, Error};

/// How long after SIGKILL a shim may take to record the exit before it is killed too.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Stops instance `id` whose shim is `shim_pid` (started at `shim_start`); returns its exit as
/// the shim recorded it, if it did.
pub async fn stop(
    ctx: &Arc<Context>,
    id: &str,
    shim_pid: i32,
    shim_start: u64,
    signal: &str,
    timeout: Duration,
) -> Result<Option<Exit>, Error> {
    if !blocking(move || launch::alive(shim_pid, shim_start)).await? {
        return Ok(exit_of(ctx, id).await);
    }
    let exited = launch::wait(shim_pid, shim_start);
    tokio::pin!(exited);
    // A zero timeout leaves no time to act on the stop signal: SIGKILL at once, as podman's
    // `stop -t 0` does (one runtime call instead of two).
    if !timeout.is_zero() {
        kill(ctx, id, signal, false).await?;
        if tokio::time::timeout(timeout, &mut exited).await.is_ok() {
            return Ok(exit_of(ctx, id).await);
        }
        tracing::info!(
            container = id,
            "stop timeout of {timeout:?} passed, sending SIGKILL"
        );
    }
    kill(ctx, id, "SIGKILL", true).await?;
    if tokio::time::timeout(KILL_GRACE, &mut exited).await.is_err() {
        // A shim that cannot finish must not keep us: end it and the container with it.
        tracing::warn!(
            container = id,
            shim_pid,
            "shim did not exit after SIGKILL; killing it"
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = tokio::time::timeout(KILL_GRACE, &mut exited).await;
    }
    Ok(exit_of(ctx, id).await)
}

async fn kill(ctx: &Arc<Context>, id: &str, signal: &str, all: bool) -> Result<(), Error> {
    let c = ctx.clone();
    let id = id.to_string();
    let signal = signal.to_string();
    blocking(move || c.runtime.kill(&id, &signal, all)).await??;
    Ok(())
}

/// The exit status the shim of instance `id` recorded, if any, read off the async workers.
pub async fn exit_of(ctx: &Arc<Context>, id: &str) -> Option<Exit> {
    let (c, i) = (ctx.clone(), id.to_string());
    blocking(move || read_exit(&c, &i)).await.ok().flatten()
}

/// The exit status the shim of instance `id` recorded, if any. Blocks.
pub fn read_exit(ctx: &Context, id: &str) -> Option<Exit> {
    crate::store::atomic::read_json(&ctx.paths.container(id).join(shim::EXIT_FILE))
        .ok()
        .flatten()
}
