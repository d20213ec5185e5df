//! `_ping`, `version`, `info`: what every client asks first.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::view::Container;
use super::{DockerError, API_VERSION, MIN_API_VERSION};
use crate::context::Context;

/// `GET /_ping`: `OK`, uncached.
pub async fn ping() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "OK",
    )
}

/// `HEAD /_ping`: the headers alone (the CLI's first request).
pub async fn ping_head() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "",
    )
}

/// Swarm routes: this is no swarm node.
pub async fn no_swarm() -> DockerError {
    DockerError(
        StatusCode::SERVICE_UNAVAILABLE,
        "This node is not a swarm manager. rcd runs the units of one host; swarm is not supported"
            .into(),
    )
}

/// Go's name for this machine's architecture.
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    let v = env!("CARGO_PKG_VERSION");
    let kernel = kernel_version();
    Json(json!({
        "Platform": {"Name": format!("rcd {v}")},
        "Components": [
            {"Name": "Engine", "Version": v, "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux", "Arch": goarch(), "KernelVersion": kernel,
                "GitCommit": "", "GoVersion": "", "BuildTime": "", "Experimental": "false"}},
            {"Name": "rcd", "Version": v, "Details": {"Units": "TOML unit files"}}
        ],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": goarch(),
        "KernelVersion": kernel,
        "BuildTime": "",
        "Experimental": false,
    }))
}

/// The host's memory in bytes (`/proc/meminfo`).
pub(super) fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn operating_system() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".into())
}

/// `GET /info`: counts, the host, and the unit files that do not load as warnings (the CLI
/// prints them).
pub async fn info(State(ctx): State<Arc<Context>>) -> Json<Value> {
    let all = Container::all(&ctx);
    let running = all.iter().filter(|c| c.state() == "running").count();
    let stopped = all.iter().filter(|c| c.state() != "running").count();
    let images = ctx.images.store.list().map(|l| l.len()).unwrap_or(0);
    let warnings: Vec<String> = ctx.units.view(|v| {
        v.iter()
            .filter_map(|(n, e)| e.file_error.as_ref().map(|err| format!("unit {n}: {err}")))
            .collect()
    });
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    Json(json!({
        "ID": format!("rcd-{}", ctx.tag),
        "Name": hostname,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Containers": all.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "rcd rootfs (overlay)"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Log": ["rcd"]},
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": ""},
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "KernelVersion": kernel_version(),
        "OperatingSystem": operating_system(),
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": mem_total(),
        "DockerRootDir": ctx.paths.root.display().to_string(),
        "CgroupDriver": ctx.cgroups.driver.as_str(),
        "CgroupVersion": cgroup_version,
        "LoggingDriver": "rcd",
        "Runtimes": {"runc": {"path": "runc"}},
        "DefaultRuntime": "runc",
        "LiveRestoreEnabled": ctx.settings().live_restore,
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges"],
        "RegistryConfig": null,
        "Labels": [],
        "ExperimentalBuild": false,
        "Warnings": warnings,
    }))
}
