//! rctl: the command line in, requests to the daemon (or, for `check`, the unit parser) out,
//! and what the operator reads.

mod convert;
mod copy;
mod events;
mod exec;
mod format;
mod image;
mod logs;
mod stats;
mod volume;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::api::client::{Client, Error as ClientError};
use crate::api::types::{DaemonInfo, Inspect, Reloaded, UnitStatus};

/// Exit codes, as `rctl --help` documents them.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The request failed, or `check` found problems.
    pub const FAILED: i32 = 1;
    /// Bad usage (clap's own code).
    pub const USAGE: i32 = 2;
    /// The daemon could not be reached.
    pub const NO_DAEMON: i32 = 3;
    /// A named unit is not loaded, a named image is not stored, or `rctl cp`'s path is not in
    /// the container.
    pub const UNKNOWN_UNIT: i32 = 4;
}

const EXIT_CODES: &str = "Exit codes:
  0  success
  1  the request failed (a unit failed to start, `check` found problems, ...)
  2  bad usage
  3  the daemon could not be reached (is rcd running? see --socket / RCD_SOCKET)
  4  a named unit is not loaded, a named image is not stored, or rctl cp's path is not in the
     container";

/// rctl: control rcd, the file-driven container daemon.
#[derive(Parser, Debug)]
#[command(name = "rctl", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// The daemon's socket.
    #[arg(
        long,
        env = "RCD_SOCKET",
        default_value = "/run/rcd/rcd.sock",
        global = true
    )]
    pub socket: PathBuf,
    /// A daemon's TCP listener instead of the socket (`tcp://host:port`).
    #[arg(long, env = "RCD_HOST", global = true)]
    pub host: Option<String>,
    /// With --host: the CA the daemon's certificate chains to (PEM); without it, plain TCP.
    #[arg(long, env = "RCD_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// With --host: this client's certificate (PEM), which the daemon requires.
    #[arg(long, env = "RCD_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// With --host: this client's private key (PEM).
    #[arg(long, env = "RCD_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// rctl's commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show units in detail: state, pid, restarts, last exit, error, recent log lines.
    Status {
        /// Units to show (default: all).
        units: Vec<String>,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// One line per unit.
    #[command(alias = "ps")]
    List {
        /// Output format.
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// Start a unit (clears an `rctl stop` hold, resets the restart count).
    Start {
        /// The unit.
        unit: String,
    },
    /// Stop a unit and hold it stopped.
    Stop {
        /// The unit.
        unit: String,
    },
    /// Stop and start a unit (clears a hold, resets the restart count).
    Restart {
        /// The unit.
        unit: String,
    },
    /// Rescan the units directory now; with a unit, send its `reload_signal` to its container
    /// instead (a proxy re-reads its config without a restart).
    Reload {
        /// The unit to signal (none: rescan the units directory).
        unit: Option<String>,
    },
    /// Send a signal to a unit's container, as `docker kill`: SIGKILL (the default) or the
    /// container's stop signal stops it and holds it stopped; another signal is delivered to
    /// its processes and changes nothing else.
    Kill {
        /// The signal (`HUP`, `SIGUSR1`, `10`).
        #[arg(long, short, default_value = "KILL")]
        signal: String,
        /// The unit.
        unit: String,
    },
    /// Copy files between a unit's running container and the host, as `docker cp`: `rctl cp
    /// UNIT:PATH DEST` or `rctl cp SRC UNIT:PATH`; `-` is a tar stream on stdout or stdin.
    /// Directories are copied whole, symlinks as symlinks; paths in the container resolve
    /// inside it, never on the host.
    Cp(copy::CpArgs),
    /// The processes of a unit's container: host and container pids, user, state, memory, CPU
    /// time, command.
    Top {
        /// The unit.
        unit: String,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// Image updates: say what the registry's tags would change (the default), update now
    /// (`--now`), or clear a rejected digest and a rollback's hold and update (`--retry`).
    Update {
        /// The units (default: every unit with `[update] policy = "registry"`).
        units: Vec<String>,
        /// Only say what would change (the default).
        #[arg(long, conflicts_with_all = ["now", "retry"])]
        check: bool,
        /// Look at the registry and roll out what changed now.
        #[arg(long)]
        now: bool,
        /// Try again a digest that failed its gate, and end a rollback's hold.
        #[arg(long)]
        retry: bool,
    },
    /// Go back to the image digest the unit ran before, and stay there until `rctl update
    /// --retry UNIT`.
    Rollback {
        /// The unit.
        unit: String,
    },
    /// Stop the daemon, as SIGTERM does (containers keep running unless `live_restore =
    /// false`); answered once it is on its way out.
    Shutdown {
        /// Stop every container first (dependents first, each with its stop signal and
        /// timeout), whatever live_restore says: nothing is left running without rcd.
        #[arg(long)]
        stop_containers: bool,
    },
    /// Show a unit's container output (or remove the logs of removed units: --prune).
    Logs(logs::LogsArgs),
    /// What happened: units loaded, changed, started, exited, restarting, ... (Docker's events).
    Events {
        /// From this time (RFC 3339, Unix seconds, or a duration ago: `10m`); the past is kept
        /// on disk, across daemon restarts.
        #[arg(long)]
        since: Option<String>,
        /// Until this time (same forms; `0s` is now), then exit; default: follow.
        #[arg(long)]
        until: Option<String>,
        /// One unit's only.
        #[arg(long)]
        unit: Option<String>,
        /// `text` or `json` (one object per line).
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Each running container's CPU (over one second), memory and pids, from its cgroup.
    Stats {
        /// Only these units (default: all running).
        units: Vec<String>,
        /// `text` or `json`.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print rctl's man page (roff), for packaging.
    #[command(hide = true)]
    Manpage,
    /// Run a command in a unit's running container; exits with its exit code.
    Exec {
        /// Forward stdin to the command.
        #[arg(long, short)]
        interactive: bool,
        /// Give the command a terminal.
        #[arg(long, short)]
        tty: bool,
        /// Set an environment variable (KEY=VALUE), beside the container's.
        #[arg(long, short, value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The working directory (default: the container's).
        #[arg(long, short, value_name = "DIR")]
        workdir: Option<String>,
        /// Run as this user: name or uid, with `:group` (default: the container's).
        #[arg(long, short, value_name = "USER[:GROUP]")]
        user: Option<String>,
        /// The unit.
        unit: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Converts a compose file, or a `docker run` command line, to units: one per service,
    /// every key that could not be expressed said with its line. Exit 1 if any was refused.
    Convert {
        /// A compose file, or a quoted `docker run ...` command line.
        input: String,
        /// Write `SERVICE.toml` files here (default: print them).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The effective unit: its template, file and drop-ins merged (env files' variables
    /// listed), each value with the file and line it comes from; secrets' contents never shown.
    Cat {
        /// The unit.
        unit: String,
    },
    /// A unit as loaded, its container record and its bundle, as JSON.
    Inspect {
        /// The unit.
        unit: String,
    },
    /// Images: pull, ls, rm, prune, import.
    Image {
        /// What to do.
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Named volumes: ls, inspect, rm, prune.
    Volume {
        /// What to do.
        #[command(subcommand)]
        command: volume::VolumeCommand,
    },
    /// Validate unit files without a daemon (files or directories; default /etc/rcd/units).
    Check {
        /// Files or directories.
        paths: Vec<PathBuf>,
        /// The daemon config whose networks units may name.
        #[arg(long, default_value = crate::config::file::DEFAULT_PATH)]
        config: PathBuf,
        /// Also print each valid unit as it takes effect, every value with the file and line
        /// it comes from (template, file, drop-ins), as `rctl cat` does.
        #[arg(long)]
        origins: bool,
    },
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let client = match client_for(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rctl: {e}");
            return exit::USAGE;
        }
    };
    let result = match cli.command {
        Command::Check {
            paths,
            config,
            origins,
        } => return check(paths, &config, origins),
        Command::Convert { input, out } => return convert::run(&input, out.as_deref()),
        Command::Status { units, output } => status(&client, units, output).await,
        Command::List { output } => list(&client, output).await,
        Command::Start { unit } => intent(&client, &unit, "start").await,
        Command::Stop { unit } => intent(&client, &unit, "stop").await,
        Command::Restart { unit } => intent(&client, &unit, "restart").await,
        Command::Update {
            units,
            check: _,
            now,
            retry,
        } => {
            let req = crate::api::update::UpdateRequest { units, now, retry };
            client
                .post_json::<Vec<crate::api::update::UpdateCheck>>("/v1/update", &req)
                .await
                .map(|checks| {
                    for c in checks {
                        println!(
                            "{}\t{}\trunning {}\tregistry {}\t{}",
                            c.unit,
                            c.image,
                            c.running.as_deref().unwrap_or("-"),
                            c.registry.as_deref().unwrap_or("-"),
                            c.status
                        );
                    }
                })
        }
        Command::Rollback { unit } => client
            .post::<crate::update::State>(&format!("/v1/rollback/{}", enc(&unit)))
            .await
            .map(|s| {
                println!(
                    "{unit}: rolling back to {}; held there until `rctl update --retry {unit}`",
                    s.target.as_deref().unwrap_or("?")
                )
            }),
        Command::Reload { unit: None } => client.post::<Reloaded>("/v1/reload").await.map(|r| {
            if r.changed.is_empty() {
                println!("no changes");
            } else {
                println!("changed: {}", r.changed.join(", "));
            }
        }),
        Command::Reload { unit: Some(unit) } => client
            .post::<crate::api::process::Signalled>(&format!("/v1/units/{}/reload", enc(&unit)))
            .await
            .map(|s| println!("{}: {} sent", s.unit, s.signal)),
        Command::Kill { signal, unit } => client
            .post::<crate::api::process::Signalled>(&format!(
                "/v1/units/{}/kill?signal={}",
                enc(&unit),
                enc(&signal)
            ))
            .await
            .map(|s| match s.sent {
                crate::api::process::Sent::Held => {
                    println!(
                        "{}: {}: stopped, held (rctl start runs it again)",
                        s.unit, s.signal
                    )
                }
                crate::api::process::Sent::Delivered => println!("{}: {} sent", s.unit, s.signal),
            }),
        Command::Top { unit, output } => client
            .get::<Vec<crate::api::process::Process>>(&format!("/v1/units/{}/top", enc(&unit)))
            .await
            .map(|list| {
                if output == Output::Json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&list).unwrap_or_default()
                    );
                } else {
                    print!("{}", format::top(&list));
                }
            }),
        Command::Shutdown { stop_containers } => {
            let path = if stop_containers {
                "/v1/shutdown?containers=stop"
            } else {
                "/v1/shutdown"
            };
            client
                .post::<crate::api::types::ShutDown>(path)
                .await
                .map(|r| {
                    println!(
                        "rcd is stopping; {}",
                        if r.containers_stopped {
                            "every container is stopped"
                        } else {
                            "containers keep running (live restore)"
                        }
                    );
                })
        }
        Command::Logs(args) => logs::run(&client, args).await,
        Command::Cp(args) => return copy::run(&client, args).await,
        Command::Image { command } => image::run(&client, command).await,
        Command::Volume { command } => volume::run(&client, command).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "rctl", &mut std::io::stdout());
            return exit::OK;
        }
        Command::Manpage => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            return match page.render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("rctl: {e}");
                    exit::FAILED
                }
            };
        }
        Command::Stats { units, output } => {
            stats::run(&client, units, output == Output::Json).await
        }
        Command::Events {
            since,
            until,
            unit,
            output,
        } => {
            let now = std::time::SystemTime::now();
            let parse = |t: Option<String>| t.map(|t| events::parse_time(&t, now)).transpose();
            match (parse(since), parse(until)) {
                (Ok(since), Ok(until)) => {
                    events::run(&client, since, until, unit, output == Output::Json).await
                }
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("rctl: {e}");
                    return exit::USAGE;
                }
            }
        }
        Command::Exec {
            interactive,
            tty,
            env,
            workdir,
            user,
            unit,
            cmd,
        } => {
            let path = format!("/v1/units/{}/exec", enc(&unit));
            let request = crate::api::exec::ExecRequest {
                cmd,
                stdin: interactive,
                tty,
                env,
                workdir,
                user,
            };
            match exec::run(&client, &path, request).await {
                Ok(code) => return code,
                Err(e) => Err(e),
            }
        }
        Command::Cat { unit } => client
            .get::<crate::api::types::Cat>(&format!("/v1/units/{}/cat", enc(&unit)))
            .await
            .map(|c| print!("{}", c.text)),
        Command::Inspect { unit } => client
            .get::<Inspect>(&format!("/v1/units/{}/inspect", enc(&unit)))
            .await
            .map(|i| {
                println!("{}", serde_json::to_string_pretty(&i).unwrap_or_default());
            }),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("rctl: {e}");
            exit_for(&e)
        }
    }
}

/// The exit code for a failed request.
fn exit_for(e: &ClientError) -> i32 {
    match e {
        ClientError::Connect { .. } => exit::NO_DAEMON,
        ClientError::Status { code, .. } if *code == hyper::StatusCode::NOT_FOUND => {
            exit::UNKNOWN_UNIT
        }
        _ => exit::FAILED,
    }
}

/// The client the flags ask for: the socket, or a TCP listener (with TLS when a CA is given).
fn client_for(cli: &Cli) -> Result<Client, String> {
    let Some(host) = &cli.host else {
        return Ok(Client::new(&cli.socket));
    };
    let addr = host.trim_start_matches("tcp://");
    let Some(ca) = &cli.tls_ca else {
        return Ok(Client::tcp(addr, None));
    };
    let e = |e: crate::image::tls::Error| e.to_string();
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::image::tls::certificates(ca).map_err(e)? {
        roots
            .add(c)
            .map_err(|err| format!("{}: {err}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| err.to_string())?
    .with_root_certificates(roots);
    let config = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                crate::image::tls::certificates(cert).map_err(e)?,
                crate::image::tls::private_key(key).map_err(e)?,
            )
            .map_err(|err| format!("{}: {err}", cert.display()))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(Client::tcp(addr, Some(config)))
}

/// Percent-encodes a unit name for a URL path (names are [A-Za-z0-9_.-], but input is input).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check(paths: Vec<PathBuf>, config: &std::path::Path, origins: bool) -> i32 {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("/etc/rcd/units")]
    } else {
        paths
    };
    // The networks the daemon would have: its config's default, plus its networks directory.
    let explicit = config != std::path::Path::new(crate::config::file::DEFAULT_PATH);
    let networks = crate::config::file::FileConfig::load(config, explicit)
        .map_err(|e| e.to_string())
        .and_then(|c| crate::network::attach::configured(&c.network));
    let known = match networks {
        Ok(lists) => lists.into_keys().collect(),
        Err(e) => {
            println!("{e}");
            eprintln!("rctl: the daemon config is invalid");
            return exit::FAILED;
        }
    };
    let problems = crate::unit::check_paths(&paths, Some(&known));
    for p in &problems {
        println!("{p}");
    }
    if origins {
        for file in paths.iter().flat_map(|p| {
            if p.is_dir() {
                crate::unit::unit_files(p).unwrap_or_default()
            } else {
                vec![p.clone()]
            }
        }) {
            // Units with problems are listed above; the others as they take effect.
            if let Ok(text) = crate::unit::effective(&file) {
                println!("{text}");
            }
        }
    }
    if problems.is_empty() {
        exit::OK
    } else {
        eprintln!("rctl: {} problem(s) found", problems.len());
        exit::FAILED
    }
}

/// Warns on stderr when the daemon is not reading its units directory.
async fn warn_daemon(client: &Client) {
    if let Ok(info) = client.get::<DaemonInfo>("/v1/daemon").await {
        if let Some(e) = info.units_dir_error {
            eprintln!(
                "warning: units directory {} is not being read: {e}",
                info.units_dir
            );
        }
    }
}

async fn status(client: &Client, units: Vec<String>, output: Output) -> Result<(), ClientError> {
    warn_daemon(client).await;
    let all: Vec<UnitStatus> = if units.is_empty() {
        client.get("/v1/units").await?
    } else {
        let mut v = Vec::new();
        for u in &units {
            v.push(client.get(&format!("/v1/units/{}", enc(u))).await?);
        }
        v
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Ok(());
    }
    // Log lines cost a request per unit: shown for named units or a handful.
    let with_logs = !units.is_empty() || all.len() <= 10;
    let mut out = std::io::stdout().lock();
    for (i, s) in all.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out);
        }
        let lines = if with_logs {
            client
                .get_text(&format!("/v1/units/{}/logs?tail=10", enc(&s.name)))
                .await
                .unwrap_or_default()
        } else {
            String::new()
        };
        let usage = if with_logs && s.state == "running" {
            client
                .get::<Vec<crate::api::stats::UnitUsage>>(&format!(
                    "/v1/stats?unit={}",
                    enc(&s.name)
                ))
                .await
                .ok()
                .and_then(|v| v.into_iter().next())
                .map(|u| u.usage)
        } else {
            None
        };
        let _ = write!(out, "{}", format::status(s, usage.as_ref(), &lines));
    }
    Ok(())
}

async fn list(client: &Client, output: Output) -> Result<(), ClientError> {
    warn_daemon(client).await;
    let all: Vec<UnitStatus> = client.get("/v1/units").await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        print!("{}", format::table(&all));
    }
    Ok(())
}

async fn intent(client: &Client, unit: &str, verb: &str) -> Result<(), ClientError> {
    let s: UnitStatus = client
        .post(&format!("/v1/units/{}/{verb}", enc(unit)))
        .await?;
    println!("{}: {}", s.name, s.state);
    Ok(())
}
