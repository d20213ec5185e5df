//! Step 4 of the start pipeline: an image unit's reference in, its verified config and its
//! unpacked layer directories (top first) out, pulling per the unit's `pull` policy.

use std::path::PathBuf;
use std::sync::Arc;

use oci_spec::image::ImageConfiguration;

use crate::daemon::context::Context;
use crate::image::digest::Digest;
use crate::image::platform::Want;
use crate::image::progress::Progress;
use crate::image::reference;
use crate::image::store::{Image, Layer};
use crate::unit::PullPolicy;

use super::Error;

/// An image ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its config, read back from the content store and verified.
    pub config: ImageConfiguration,
    /// Its layer directories, top first.
    pub lowers: Vec<PathBuf>,
}

fn fail(image: &str, reason: impl std::fmt::Display) -> Error {
    Error::Image {
        image: image.to_string(),
        reason: reason.to_string(),
    }
}

/// Resolves, pulls if the policy says so, and unpacks `image` (a normalized reference).
/// `on_pull` is called once before a pull begins (the unit shows `pulling`).
pub async fn prepare(
    ctx: &Arc<Context>,
    image: &str,
    pull: PullPolicy,
    on_pull: &(dyn Fn() + Send + Sync),
) -> Result<Prepared, Error> {
    let images = &ctx.images;
    let stored = images.store.get(image).map_err(|e| fail(image, e))?;
    let record = match (pull, stored) {
        (PullPolicy::Never, None) => {
            return Err(Error::ImageAbsent {
                image: image.to_string(),
            });
        }
        (PullPolicy::Never | PullPolicy::Missing, Some(stored)) => stored,
        // Docker's `--pull always`: a failed pull fails the start even with a stored copy.
        (PullPolicy::Missing, None) | (PullPolicy::Always, _) => {
            on_pull();
            pull_and_record(ctx, image).await?
        }
    };
    let config_bytes = images
        .content
        .read(&record.config)
        .map_err(|e| fail(image, format!("config {}: {e}", record.config)))?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| fail(image, format!("config {}: {e}", record.config)))?;
    let layers = record.layer_refs();
    if layers.is_empty() {
        return Err(fail(image, "the image has no layers"));
    }
    let snapshots = images.snapshots.clone();
    let content = images.content.clone();
    let lowers = super::blocking(move || snapshots.prepare(&layers, &content))
        .await?
        .map_err(|e| fail(image, format!("unpack: {e}")))?;
    Ok(Prepared { config, lowers })
}

/// Pulls `image` for this host and records it in the image store.
async fn pull_and_record(ctx: &Arc<Context>, image: &str) -> Result<Image, Error> {
    let images = &ctx.images;
    let r = reference::parse(image).map_err(|e| fail(image, e))?;
    let pulled = images
        .client
        .pull(&r, &images.content, &Want::host(), &Progress::default())
        .await
        .map_err(|e| fail(image, format!("pull failed: {e}")))?;
    let diff_ids = pulled.config.rootfs().diff_ids();
    if diff_ids.len() != pulled.layers.len() {
        return Err(fail(
            image,
            format!(
                "{} layers but {} DiffIDs in its config",
                pulled.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::with_capacity(pulled.layers.len());
    for (l, diff) in pulled.layers.iter().zip(diff_ids) {
        let diff_id: Digest = diff
            .parse()
            .map_err(|e| fail(image, format!("DiffID {diff}: {e}")))?;
        layers.push(Layer {
            blob: l.digest,
            diff_id,
            size: l.size,
            media_type: l.media_type.clone(),
        });
    }
    let record = Image {
        name: image.to_string(),
        manifest: pulled.manifest_digest,
        config: pulled.config_digest,
        layers,
        stored_ms: crate::shim::now_ms(),
    };
    images.store.put(&record).map_err(|e| fail(image, e))?;
    Ok(record)
}
