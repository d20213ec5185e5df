//! Step 6 of the start pipeline: the container's network. A network namespace made and kept by
//! rcd (`netns`), wired by the CNI plugins (`cni`), handed to the runtime through the OCI spec; or
//! another unit's, shared (`shared`).

pub mod attach;
pub mod cni;
pub mod files;
pub mod names;
pub mod netns;
pub mod shared;
