//! Step 4 of the start pipeline: an image unit's reference in, its verified config and its
//! unpacked layer directories (top first) out, pulling per the unit's `pull` policy. The pull
//! holds no lock (the image is pinned instead); reading the stores and unpacking run under the
//! shared image lock, which the caller keeps until the overlay is mounted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::ImageConfiguration;

use crate::context::Context;
use crate::image::pins::Pin;
use crate::image::store::Image;
use crate::unit::PullPolicy;

use super::Error;

/// An image ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its config, read back from the content store and verified.
    pub config: ImageConfiguration,
    /// Its layer directories, top first.
    pub lowers: Vec<PathBuf>,
    /// Its HEALTHCHECK, if its (Docker) config has one.
    pub health: Option<crate::health::ImageHealth>,
    /// What its reference resolved to in the registry.
    pub digest: crate::image::digest::Digest,
}

fn fail(image: &str, reason: impl std::fmt::Display) -> Error {
    Error::Image {
        image: image.to_string(),
        reason: reason.to_string(),
    }
}

/// An image found stored or pulled, pinned until it is prepared.
pub struct Fetched {
    image: String,
    record: Image,
    /// Keeps removal and pruning off the image until the shared lock is held.
    pin: Pin,
}

/// Finds `image` (a normalized reference) in the store, or pulls it if the policy says so,
/// holding no lock. `on_pull` is called once before a pull begins (the unit shows `pulling`).
pub async fn fetch(
    ctx: &Arc<Context>,
    image: &str,
    pull: PullPolicy,
    on_pull: &(dyn Fn() + Send + Sync),
) -> Result<Fetched, Error> {
    let images = &ctx.images;
    // Pinned before the look at the store: a removal either went first (and the policy
    // decides) or leaves the image alone.
    let pin = images.pin(image);
    // The image record is read off the async workers.
    let stored = {
        let (c, name) = (ctx.clone(), image.to_string());
        super::blocking(move || c.images.store.get(&name))
            .await?
            .map_err(|e| fail(image, e))?
    };
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
            images.pull(image, &pin).await.map_err(|e| fail(image, e))?
        }
    };
    images.touch(image);
    Ok(Fetched {
        image: image.to_string(),
        record,
        pin,
    })
}

/// Reads a fetched image's config back and unpacks what its layers lack. The caller holds
/// [`Images::shared`](crate::image::service::Images::shared) from before this call until its
/// overlay is mounted: no removal or pruning meanwhile.
pub async fn prepare(ctx: &Arc<Context>, fetched: Fetched) -> Result<Prepared, Error> {
    let Fetched { image, record, pin } = fetched;
    // The shared lock takes over from here.
    drop(pin);
    let (images, image) = (&ctx.images, image.as_str());
    // The blob is read off the async workers.
    let config_bytes = {
        let (c, digest) = (ctx.clone(), record.config);
        super::blocking(move || c.images.content.read(&digest))
            .await?
            .map_err(|e| fail(image, format!("config {}: {e}", record.config)))?
    };
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| fail(image, format!("config {}: {e}", record.config)))?;
    let layers = record.layer_refs();
    if layers.is_empty() {
        return Err(fail(image, "the image has no layers"));
    }
    // Named in unpack errors, so that "No space left on device" says which filesystem: the
    // bottom layer's chain id is its DiffID, so its snapshot's parent is the snapshots directory.
    let into = layers
        .first()
        .and_then(|l| {
            images
                .snapshots
                .path(&l.diff_id)
                .parent()
                .map(Path::to_path_buf)
        })
        .unwrap_or_default();
    let snapshots = images.snapshots.clone();
    let content = images.content.clone();
    let lowers = super::blocking(move || snapshots.prepare(&layers, &content))
        .await?
        .map_err(|e| fail(image, format!("unpack into {}: {e}", into.display())))?;
    Ok(Prepared {
        config,
        lowers,
        health: crate::health::image_health(&config_bytes),
        digest: record.resolved(),
    })
}
