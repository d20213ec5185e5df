//! rcd: a container daemon for a single Linux host, driven by TOML unit files.
//!
//! ```text
//!  /etc/rcd/units/*.toml
//!         │  watch (inotify, debounced): "rescan" ──┐         rctl reload ──┐
//!         ▼                                         ▼                      ▼
//!  desired::owner (the one scan owner) ── desired::read (files, off the async workers)
//!         │                                  unit::parse ──► Unit (validated, spec hash)
//!         ▼ desired::apply                                   rctl check uses the same code
//!  table (UnitTable: per unit its Unit beside its store::Record; methods only, no I/O)
//!         │ changed units and their dependents poked
//!         ▼                          rctl ──HTTP/JSON over the Unix socket──► api
//!  reconcile::scheduler  ◄── "look at X" (coalesced, bounded): file changed, shim exited,
//!         │                  health changed, delay over, every --resync-interval; intents
//!         │                  (start/stop/restart) from the api, answered when applied
//!         ▼ one run per unit at a time, units in parallel, backoff on failure
//!  reconcile::steps: plan() (desired × observed × intent) ──► a verb (reconcile::verbs::*)
//!         │ start / stop / hold / remove / recreate / observe_exit / rejoin / unhealthy / wait
//!         ▼
//!  pipeline::start: image (image::service: pull, verify, unpack) → rootfs (overlay)
//!         → network (network::attach: native bridge or CNI) → spec → bundle → shim → record (store)
//!         │                                             events (a writer thread) ◄── every step
//!         ▼
//!  rcd-shim (one per container; outlives the daemon): `runtime run --detach`, stdio → the
//!  log file (logs::writer), reaps the init, writes exit.json
//!         │ exit (pidfd: reconcile::watch)          health probes (health) ──► poke
//!         ▼
//!  restart (policy + backoff) ──► scheduler ──► steps ──► pipeline again
//! ```
//!
//! Modules in flow order: [`watch`], [`desired`], [`unit`](mod@unit), [`table`], [`context`] (what the
//! daemon's tasks share), [`reconcile`], [`restart`], [`pipeline`], [`image`], [`rootfs`],
//! [`network`], [`spec`], [`cgroup`], [`runtime`], [`bounded`] (every external command with a
//! deadline), [`shim`], [`health`], [`logs`], [`events`], [`store`], [`clock`], [`api`],
//! [`copy`] (`rctl cp`'s walk and path rules), [`openat`] (untrusted paths opened in a root),
//! [`tree`] (containers' trees measured and removed without recursion),
//! [`ctl`], [`config`], and the wiring: [`daemon`] (start, recovery, tasks, shutdown), which
//! no other module imports.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod bounded;
pub mod cgroup;
pub mod clock;
pub mod config;
pub mod context;
pub mod convert;
pub mod copy;
pub mod ctl;
pub mod daemon;
pub mod desired;
pub mod docker;
pub mod events;
pub mod failpoint;
pub mod health;
pub mod image;
pub mod keyed;
pub mod logs;
pub mod meters;
pub mod network;
pub mod openat;
pub mod pipeline;
pub mod reconcile;
pub mod restart;
pub mod rootfs;
pub mod runtime;
pub mod shim;
pub mod spec;
pub mod store;
pub mod table;
pub mod tree;
pub mod unit;
pub mod update;
pub mod volume;
pub mod watch;
