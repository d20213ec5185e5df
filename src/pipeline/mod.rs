//! The start pipeline and its inverse: the only way a container starts (file drop, boot, restart
//! policy, rctl start) and the only way one is stopped and taken apart.

pub mod cleanup;
pub mod image;
pub mod mounts;
pub mod secrets;
pub mod start;
pub mod stop;

/// A pipeline step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image could not be resolved, pulled or unpacked.
    #[error("image {image}: {reason}")]
    Image {
        /// The normalized reference.
        image: String,
        /// The cause.
        reason: String,
    },
    /// `pull = "never"` and the image is not stored.
    #[error("image {image} is not present and pull = never")]
    ImageAbsent {
        /// The normalized reference.
        image: String,
    },
    /// The process to run could not be derived from the unit and its image.
    #[error("unit {unit}: {reason}")]
    Process {
        /// The unit.
        unit: String,
        /// Why.
        reason: String,
    },
    /// The root filesystem could not be prepared.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::Error),
    /// The OCI spec could not be built.
    #[error(transparent)]
    Spec(#[from] crate::spec::Error),
    /// A secret could not be given to the container (its content is never in the message).
    #[error("unit {unit}: {reason}")]
    Secret {
        /// The unit.
        unit: String,
        /// Why.
        reason: String,
    },
    /// A named volume could not be made.
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    /// A bind mount's host path is missing (and not to be created) or could not be created.
    #[error("mount source {}: {reason}", path.display())]
    MountSource {
        /// The host path.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The bundle could not be written.
    #[error("cannot write bundle {}: {source}", path.display())]
    Bundle {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The unit's record could not be saved or removed.
    #[error(transparent)]
    Record(#[from] crate::store::Error),
    /// An instance's directory could not be removed.
    #[error("cannot remove instance directory {}: {source}", path.display())]
    Instance {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The shim or the runtime failed.
    #[error(transparent)]
    Shim(#[from] crate::shim::launch::Error),
    /// The runtime failed outside the shim.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
    /// A blocking task was lost (the daemon is shutting down).
    #[error("internal: {0}")]
    Join(String),
    /// The container's network could not be set up.
    #[error(transparent)]
    Network(#[from] crate::network::attach::Error),
    /// A `container:` unit's target has no network to share.
    #[error("network of unit {target}: {reason}")]
    Shared {
        /// The target unit.
        target: String,
        /// Why not.
        reason: String,
    },
    /// The unit stopped wanting this start while it waited for its image.
    #[error("start abandoned: the unit changed while its image was pulled")]
    Superseded,
    /// A step failed and so did its rollback.
    #[error("{error}; rollback also failed: {rollback}")]
    Rollback {
        /// The step's error.
        error: Box<Error>,
        /// The rollback's error.
        rollback: Box<Error>,
    },
}

/// Runs blocking work (runtime calls, mounts) off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Join(e.to_string()))
}
