//! rcd: a container daemon for a single Linux host, driven by TOML unit files.
//!
//! ```text
//!  /etc/rcd/units/*.toml
//!         │  watch (inotify, debounced; full rescan on every burst and at start)
//!         ▼
//!  unit::parse ──► Unit (validated, normalized, spec hash)      rctl check uses the same code
//!         │
//!         ▼                            rctl ──HTTP/JSON over the Unix socket──► api
//!  desired (unit table) ──┐                                                   │ start/stop/restart
//!                         ▼                                                   ▼
//!                 reconcile  ◄── "look at unit X": file changed, shim exited, timer fired
//!      (one loop; level-triggered; plan() compares desired, observed and intent per unit)
//!                         │ Start / Stop / Recreate / Remove (one unit at a time, units in parallel)
//!                         ▼
//!                 pipeline::start: record → rootfs (overlay) → spec → bundle → shim → record
//!                         │
//!                         ▼
//!                 rcd-shim (one per container; outlives the daemon): runtime create+start,
//!                 stdio → log file, reaps the init, writes exit.json
//!                         │ exit (pidfd)
//!                         ▼
//!                 restart (policy + backoff) ──► reconcile ──► pipeline again
//! ```
//!
//! Modules in flow order: [`unit`], [`watch`], [`desired`], [`reconcile`], [`restart`],
//! [`pipeline`], [`rootfs`], [`network`], [`spec`], [`runtime`], [`shim`], [`logs`],
//! [`store`], [`api`], [`ctl`], [`daemon`], [`config`].
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod bounded;
pub mod cgroup;
pub mod clock;
pub mod config;
pub mod context;
pub mod ctl;
pub mod daemon;
pub mod desired;
pub mod events;
pub mod failpoint;
pub mod health;
pub mod image;
pub mod keyed;
pub mod logs;
pub mod network;
pub mod pipeline;
pub mod reconcile;
pub mod restart;
pub mod rootfs;
pub mod runtime;
pub mod shim;
pub mod spec;
pub mod store;
pub mod table;
pub mod unit;
pub mod watch;
