//! The fault suite: each fault injected into a real daemon with real runc containers, then the
//! invariants checked (what runs equals what the unit files ask for; no orphan container,
//! process, mount, namespace or file; no duplicate; the state readable). Needs root.

#[path = "it/harness.rs"]
mod harness;

#[path = "faults/invariants.rs"]
mod invariants;

#[path = "faults/churn.rs"]
mod churn;

#[path = "faults/clock.rs"]
mod clock;

#[path = "faults/processes.rs"]
mod processes;

#[path = "faults/runtime.rs"]
mod runtime;

#[path = "faults/unit_files.rs"]
mod unit_files;

#[path = "faults/disk_full.rs"]
mod disk_full;

#[path = "faults/scans.rs"]
mod scans;

#[path = "it/registry.rs"]
mod registry;

#[path = "faults/updates.rs"]
mod updates;
