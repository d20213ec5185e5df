//! Images (start pipeline step 4 and the image half of 5): references, registry pulls, the content store and layers unpacked for overlayfs.

pub mod layer;
