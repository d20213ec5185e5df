//! Step 6 of the start pipeline: the container's network. A network namespace made and kept by
//! rcd (`netns`), wired to the default bridge by rcd itself (`bridge`) and to other networks by
//! the CNI plugins (`cni`), handed to the runtime through the OCI spec; or another unit's,
//! shared (`shared`).

pub mod attach;
pub mod bridge;
pub mod cni;
pub mod counters;
pub mod files;
pub mod names;
pub mod netns;
pub mod shared;
