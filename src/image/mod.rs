//! Images (start pipeline step 4 and the image half of step 5): a reference in, a verified,
//! unpacked image out: references, the content store, layers unpacked for overlayfs.

pub mod content;
pub mod digest;
pub mod layer;
pub mod platform;
pub mod reference;
pub mod registry;
