//! rcd: the daemon. Parses flags into a `Config` and runs `daemon::run`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// rcd: a container daemon driven by TOML unit files.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Directory of unit files (*.toml).
    #[arg(long, default_value = "/etc/rcd/units")]
    units_dir: PathBuf,
    /// State directory (records, container layers, runtime state, logs).
    #[arg(long, default_value = "/var/lib/rcd")]
    root: PathBuf,
    /// API socket.
    #[arg(long, default_value = "/run/rcd/rcd.sock")]
    socket: PathBuf,
    /// OCI runtime binary (default: the first of runc, crun, youki on PATH).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// rcd-shim binary (default: beside rcd, else on PATH).
    #[arg(long)]
    shim: Option<PathBuf>,
    /// How long the runtime may take to start a container ("2m", "30s") before the start
    /// counts as a failure.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    start_timeout: std::time::Duration,
    /// How long any other runtime call (state, list, kill, delete) may take before it is
    /// killed with what it started, and reported as an error.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    runtime_timeout: std::time::Duration,
    /// How long `rctl start|stop|restart` waits for the daemon to apply the request before it
    /// answers with an error (the request still stands and is applied).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    intent_timeout: std::time::Duration,
    /// How often every unit is looked at even if nothing announced a change: what a missed
    /// event or a wrong record heals by.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    resync_interval: std::time::Duration,
    /// Daemon config file (registries, image limits) [default: /etc/rcd/rcd.toml; if it does
    /// not exist, the defaults].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the config file and the credentials file it names, then exit (0: good, 1: not).
    #[arg(long)]
    check_config: bool,
    /// Print rcd's man page (roff) and exit; for packaging.
    #[arg(long, hide = true)]
    manpage: bool,
}

fn main() -> anyhow::Result<()> {
    rcd::daemon::logging::init();
    let args = Args::parse();
    if args.manpage {
        let cmd = <Args as clap::CommandFactory>::command().name("rcd");
        clap_mangen::Man::new(cmd)
            .section("8")
            .render(&mut std::io::stdout())?;
        return Ok(());
    }
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| rcd::config::file::DEFAULT_PATH.into());
    let file = rcd::config::file::FileConfig::load(&config_path, args.config.is_some())?;
    if args.check_config {
        file.client_config()?;
        println!("{}: ok", config_path.display());
        return Ok(());
    }
    let config = rcd::config::Config {
        units_dir: args.units_dir,
        root: args.root,
        socket: args.socket,
        runtime: args.runtime,
        shim: args.shim,
        start_timeout: args.start_timeout,
        runtime_timeout: args.runtime_timeout,
        intent_timeout: args.intent_timeout,
        resync: args.resync_interval,
        file,
        config_path: (config_path, args.config.is_some()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let _lock = rcd::daemon::lock_root(&config.root)?;
        let listener = rcd::daemon::bind_socket(&config.socket)?;
        rcd::daemon::run(config, listener, rcd::daemon::shutdown_signal()).await?;
        Ok(())
    })
}
