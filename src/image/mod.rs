//! Images (start pipeline step 4 and the image half of step 5): a reference in, a verified,
//! unpacked image out: references, registry pulls and their TLS trust (certs.d), the content
//! store, the image store, imports, layers unpacked for overlayfs and shared as snapshots, and
//! the pins that keep what a pull in flight needs from garbage collection.

pub mod content;
pub mod digest;
pub mod gc;
pub mod import;
pub mod layer;
pub mod pins;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod threshold;
pub mod tls;
