//! rcd-shim: one per container, started by rcd. No async runtime: it forks first.

use std::path::PathBuf;

use clap::Parser;

/// rcd-shim: supervises one container for rcd (not meant to be run by hand).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Runtime container id.
    #[arg(long)]
    id: String,
    /// OCI bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    /// OCI runtime binary.
    #[arg(long)]
    runtime: PathBuf,
    /// The runtime's state directory.
    #[arg(long)]
    runtime_root: PathBuf,
    /// Pass `--systemd-cgroup` to the runtime.
    #[arg(long)]
    systemd_cgroup: bool,
    /// Container log file.
    #[arg(long)]
    log: PathBuf,
    /// Container directory (exit file, pid file, runtime log).
    #[arg(long)]
    dir: PathBuf,
    /// Rotate the log file before it passes this many bytes.
    #[arg(long, default_value_t = rcd::logs::DEFAULT_MAX_SIZE)]
    log_max_size: u64,
    /// Log files kept, the current one included.
    #[arg(long, default_value_t = rcd::logs::DEFAULT_MAX_FILES)]
    log_max_files: u32,
    /// Send the container's output to journald too, at this socket.
    #[arg(long)]
    journal_socket: Option<PathBuf>,
    /// The unit, for the journal's fields.
    #[arg(long, requires = "journal_socket")]
    journal_unit: Option<String>,
    /// The image reference, for the journal's fields.
    #[arg(long, requires = "journal_socket")]
    journal_image: Option<String>,
}

fn main() {
    let a = Args::parse();
    let journal = a.journal_socket.map(|socket| rcd::logs::journal::Target {
        socket,
        unit: a.journal_unit.unwrap_or_else(|| a.id.clone()),
        container_id: a.id.clone(),
        image: a.journal_image,
    });
    let code = rcd::shim::process::run(rcd::shim::Options {
        id: a.id,
        bundle: a.bundle,
        runtime: a.runtime,
        runtime_root: a.runtime_root,
        systemd_cgroup: a.systemd_cgroup,
        log: a.log,
        dir: a.dir,
        log_limits: rcd::logs::Limits {
            max_size: a.log_max_size,
            max_files: a.log_max_files,
        },
        journal,
    });
    std::process::exit(code);
}
