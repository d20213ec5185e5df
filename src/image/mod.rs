//! Images: a reference in, a verified, unpacked image out (registry pull, content store, layers).

pub mod content;
pub mod digest;
pub mod reference;
