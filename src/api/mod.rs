//! The API: HTTP/JSON over the daemon's Unix socket. `server` answers from the unit table and
//! hands operator intents to the reconciler; `client` is what rctl uses.

pub mod access;
pub mod client;
pub mod copy;
pub mod events;
pub mod exec;
pub mod images;
pub mod logs;
pub mod metrics;
pub mod process;
pub mod server;
pub mod stats;
pub mod tcp;
pub mod types;
pub mod update;
pub mod volumes;
