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
    /// Container log file.
    #[arg(long)]
    log: PathBuf,
    /// Container directory (exit file, pid file, runtime log).
    #[arg(long)]
    dir: PathBuf,
}

fn main() {
    let a = Args::parse();
    let code = rcd::shim::process::run(rcd::shim::Options {
        id: a.id,
        bundle: a.bundle,
        runtime: a.runtime,
        runtime_root: a.runtime_root,
        log: a.log,
        dir: a.dir,
    });
    std::process::exit(code);
}
