//! Integration tests: a real rcd daemon on temporary directories, a real rcd-shim, real runc
//! containers on a busybox rootfs built from Debian's busybox-static. Needs root.

#[path = "it/harness.rs"]
mod harness;

#[path = "it/api.rs"]
mod api;
#[path = "it/bridge.rs"]
mod bridge;
#[path = "it/check.rs"]
mod check;
#[path = "it/cni.rs"]
mod cni;
#[path = "it/convert.rs"]
mod convert;
#[path = "it/copy.rs"]
mod copy;
#[path = "it/deps.rs"]
mod deps;
#[path = "it/docker_api.rs"]
mod docker_api;
#[path = "it/events.rs"]
mod events;
#[path = "it/exec.rs"]
mod exec;
#[path = "it/health.rs"]
mod health;
#[path = "it/image.rs"]
mod image;
#[path = "it/image_cmd.rs"]
mod image_cmd;
#[path = "it/image_gc.rs"]
mod image_gc;
#[path = "it/journald.rs"]
mod journald;
#[path = "it/knobs.rs"]
mod knobs;
#[path = "it/layers.rs"]
mod layers;
#[path = "it/lifecycle.rs"]
mod lifecycle;
#[path = "it/logs.rs"]
mod logs;
#[path = "it/metrics.rs"]
mod metrics;
#[path = "it/native_net.rs"]
mod native_net;
#[path = "it/policy.rs"]
mod policy;
#[path = "it/pull.rs"]
mod pull;
#[path = "it/recovery.rs"]
mod recovery;
#[path = "it/registry.rs"]
mod registry;
#[path = "it/restore.rs"]
mod restore;
#[path = "it/service.rs"]
mod service;
#[path = "it/shared_net.rs"]
mod shared_net;
#[path = "it/signals.rs"]
mod signals;
#[path = "it/stats.rs"]
mod stats;
#[path = "it/tcp_api.rs"]
mod tcp_api;
#[path = "it/templates.rs"]
mod templates;
#[path = "it/update.rs"]
mod update;
#[path = "it/watching.rs"]
mod watching;
