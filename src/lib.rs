//! rcd
#![deny(unsafe_code)]

pub mod unit;
