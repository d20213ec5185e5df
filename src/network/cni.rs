//! CNI: a container's network namespace and a network configuration list in, the plugins run
//! per the CNI specification (ADD, DEL, CHECK), and the result (interfaces, addresses,
//! routes) out, cached on disk for the DEL.
//!
//! The plugins are Debian's `containernetworking-plugins` (1.1.1 on Debian 12, CNI 1.0.0) in
//! `/usr/lib/cni`. The default network `rcd` ([`default_network`], shipped as
//! `packaging/cni/rcd.conflist`) is bridge `rcd0` with host-local addresses from
//! 10.89.0.0/16, published ports (portmap) and the firewall plugin; [`bridge_network`]
//! renders the same for another name, bridge and subnet (tests, a second root). portmap with
//! `snat` sets `route_localnet` on the bridge itself, so published ports answer on 127.0.0.1.
//!
//! Calls block (plugins are processes, run one after another); the daemon calls them from
//! `spawn_blocking`. A plugin is bounded by [`Cni::timeout`] and killed with its helpers past
//! it. Per the spec, the caller must not run two operations on the same container at once.
//!
//! DEL is idempotent and tolerant: no cached ADD, a namespace already gone, a second DEL all
//! succeed, and leave no per-container rule, veth or lease (the bridge plugin's masquerade
//! chain, which it cannot find without the namespace, is removed here). What stays is shared:
//! the chains the plugins create on first use (`CNI-FORWARD`, `CNI-ADMIN`, `CNI-HOSTPORT-*`)
//! and the bridge. The bridge plugin never deletes its bridge; neither does this module
//! (deleting it races with a concurrent ADD, and an idle bridge costs nothing): a test that
//! made its own bridge removes it.

mod cache;
pub mod config;
pub mod result;
mod sweep;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use cache::CachedAttachment;
pub use config::{
    bridge_network, default_network, load_dir, Cidr, NetworkList, PluginConf, DEFAULT_BRIDGE,
    DEFAULT_NETWORK, DEFAULT_SUBNET,
};
pub use result::{
    CniResult, Dns, Interface, IpConfig, PortMapping, Protocol, Route, RuntimeConfig,
};

/// Where plugins are looked for by default: Debian's package, then the upstream tarball's.
pub const DEFAULT_PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

/// How long one plugin may run by default. ADD of a bridge plugin takes tens of
/// milliseconds; this bounds a plugin stuck on a lock or a hung helper.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A CNI operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A network configuration list is invalid.
    #[error("{origin}: {message}")]
    Config {
        /// The file, or the network the list was rendered for.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// Two files define the same network.
    #[error("network {name} is defined twice: in {} and in {}", first.display(), second.display())]
    Duplicate {
        /// The network name.
        name: String,
        /// The first file (in name order).
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// The attachment parameters are invalid.
    #[error("network {network}: {message}")]
    Attachment {
        /// The network.
        network: String,
        /// What is wrong.
        message: String,
    },
    /// No plugin directory has the plugin.
    #[error("network {network}: plugin {plugin}: not found in {dirs}")]
    PluginNotFound {
        /// The network.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The directories searched, `:`-separated.
        dirs: String,
    },
    /// The plugin could not be executed.
    #[error("network {network}: plugin {plugin} ({}): cannot execute: {source}", path.display())]
    Exec {
        /// The network.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The executable.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The plugin ran and reported a failure.
    #[error("{call} failed: {message}")]
    Plugin {
        /// Which plugin call.
        call: Box<Call>,
        /// The CNI error code, if the plugin printed one (1-99 are the spec's).
        code: Option<u64>,
        /// The plugin's message (its `msg` and `details`, else its stderr).
        message: String,
    },
    /// The plugin ran past the timeout and was killed.
    #[error("{call}: no answer within {after:?}, killed{}", stderr_tail(stderr))]
    Timeout {
        /// Which plugin call.
        call: Box<Call>,
        /// The timeout.
        after: Duration,
        /// What it said on stderr until then.
        stderr: String,
    },
    /// The plugin succeeded but its output is not a result.
    #[error("{call}: unexpected output: {message}")]
    Output {
        /// Which plugin call.
        call: Box<Call>,
        /// What is wrong.
        message: String,
    },
    /// The plugin does not speak the list's CNI version.
    #[error("network {network}: plugin {plugin} does not support cniVersion {version} (it supports {supported})")]
    Version {
        /// The network.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The list's version.
        version: String,
        /// What the plugin supports.
        supported: String,
    },
    /// An ADD for an attachment that has one already (or one that was interrupted).
    #[error(
        "network {network}: container {container_id} is already attached as {ifname}; DEL it first"
    )]
    AlreadyAttached {
        /// The network.
        network: String,
        /// The container.
        container_id: String,
        /// The interface in the container.
        ifname: String,
    },
    /// A CHECK without a completed ADD to check against.
    #[error(
        "network {network}: container {container_id} has no completed ADD for {ifname} to check"
    )]
    NotAttached {
        /// The network.
        network: String,
        /// The container.
        container_id: String,
        /// The interface in the container.
        ifname: String,
    },
    /// The attachment cache could not be read or written.
    #[error("CNI cache {}: {source}", path.display())]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Leftovers of a DEL could not be removed.
    #[error("network {network}: container {container_id}: removing what DEL left: {message}")]
    Sweep {
        /// The network.
        network: String,
        /// The container.
        container_id: String,
        /// What failed.
        message: String,
    },
    /// An ADD failed, and so did the DEL that was to undo it.
    #[error("{add}; undoing it failed too: {del}")]
    Rollback {
        /// Why the ADD failed.
        add: Box<Error>,
        /// Why the DEL failed (the cache entry is kept for a later DEL).
        del: Box<Error>,
    },
}

/// One plugin invocation, for errors: "network N: plugin P ADD for container C".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The network.
    pub network: String,
    /// The plugin type.
    pub plugin: String,
    /// ADD, DEL, CHECK or VERSION.
    pub command: &'static str,
    /// The container (empty for VERSION).
    pub container_id: String,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "network {}: plugin {} {}",
            self.network, self.plugin, self.command
        )?;
        if !self.container_id.is_empty() {
            write!(f, " for container {}", self.container_id)?;
        }
        Ok(())
    }
}

fn stderr_tail(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", stderr.trim())
    }
}

/// One attachment's parameters (the spec's "attachment parameters"): the same for the ADD,
/// the CHECK and the DEL of one container on one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The container id (`CNI_CONTAINERID`): an alphanumeric, then alphanumerics, `_.-`.
    pub container_id: String,
    /// The network namespace (`CNI_NETNS`): a bind mount of it, or `/proc/<pid>/ns/net`.
    pub netns: PathBuf,
    /// The interface to create in it (`CNI_IFNAME`), e.g. `eth0`.
    pub ifname: String,
    /// `CNI_ARGS` key-value pairs.
    #[serde(default)]
    pub args: Vec<(String, String)>,
    /// Capability arguments (published ports, ...).
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
}

impl Attachment {
    /// An attachment without CNI_ARGS or capability arguments.
    pub fn new(container_id: &str, netns: &Path, ifname: &str) -> Self {
        Attachment {
            container_id: container_id.to_string(),
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            args: Vec::new(),
            runtime_config: RuntimeConfig::default(),
        }
    }

    /// The same with published ports.
    pub fn with_ports(mut self, ports: Vec<PortMapping>) -> Self {
        self.runtime_config.port_mappings = ports;
        self
    }

    fn check(&self, network: &str) -> Result<(), Error> {
        let bad = |message: String| Error::Attachment {
            network: network.to_string(),
            message,
        };
        config::check_identifier(&self.container_id)
            .map_err(|m| bad(format!("container id {:?}: {m}", self.container_id)))?;
        config::check_interface_name(&self.ifname)
            .map_err(|m| bad(format!("interface name {:?}: {m}", self.ifname)))?;
        for (k, v) in &self.args {
            if k.is_empty() || k.contains([';', '=']) || v.contains(';') {
                return Err(bad(format!("CNI_ARGS entry {k:?}={v:?}: has ';' or '='")));
            }
        }
        Ok(())
    }

    fn cni_args(&self) -> String {
        let pairs: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(";")
    }
}

/// The CNI commands that act on an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Del,
    Check,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
        }
    }
}

/// Runs CNI plugins for one daemon: where they are, where results and IPAM state go.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Directories searched for plugins, in order (`CNI_PATH`).
    pub plugin_dirs: Vec<PathBuf>,
    /// The attachment cache (under the daemon's root).
    pub cache_dir: PathBuf,
    /// host-local's `dataDir` for lists that do not set one (under the daemon's root, so two
    /// daemons never share leases); None leaves host-local's default, /var/lib/cni/networks.
    pub ipam_data_dir: Option<PathBuf>,
    /// How long one plugin may run.
    pub timeout: Duration,
}

impl Cni {
    /// The default plugin directories and timeout, with this cache and IPAM state directory.
    pub fn new(cache_dir: impl Into<PathBuf>, ipam_data_dir: impl Into<PathBuf>) -> Self {
        Cni {
            plugin_dirs: DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
            cache_dir: cache_dir.into(),
            ipam_data_dir: Some(ipam_data_dir.into()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// ADD: runs the plugins in order, each given the previous one's result, and returns the
    /// last result, cached. If a plugin fails, the whole list is DELeted (undoing what the
    /// others did) and the error returned, with the DEL's error too if that fails. An
    /// attachment the cache holds already (added, or interrupted by a crash) is refused:
    /// DEL it first.
    pub fn add(&self, network: &NetworkList, att: &Attachment) -> Result<CniResult, Error> {
        att.check(&network.name)?;
        self.check_netns(network, att)?;
        let Some(last) = network.plugins.len().checked_sub(1) else {
            return Err(Error::Config {
                origin: network.origin(),
                message: "plugins: empty".into(),
            });
        };
        let file = self.cache_file(&network.name, att);
        if cache::read(&file)?.is_some() {
            return Err(Error::AlreadyAttached {
                network: network.name.clone(),
                container_id: att.container_id.clone(),
                ifname: att.ifname.clone(),
            });
        }
        // Written before the first plugin runs, so a crash in the middle leaves a trace for
        // the DEL that cleans up after it.
        cache::write(&self.cache_dir, network, att, None, false)?;
        let runtime = att.runtime_config.to_map();
        let netns = att.netns.as_os_str().to_owned();
        let mut prev: Option<Value> = None;
        for (i, plugin) in network.plugins.iter().enumerate() {
            let step = self
                .invoke(
                    network,
                    plugin,
                    Op::Add,
                    att,
                    &netns,
                    &runtime,
                    prev.as_ref(),
                )
                .and_then(|out| {
                    out.ok_or_else(|| output_error(network, plugin, Op::Add, att, "no result"))
                });
            match step {
                Ok(v) => prev = Some(v),
                Err(e) => return Err(self.undo(network, att, prev.as_ref(), e)),
            }
            if i < last {
                // Partial results let a DEL after a crash pass them on (the firewall plugin
                // finds its rules only from the addresses in prevResult).
                if let Err(e) = cache::write(&self.cache_dir, network, att, prev.as_ref(), false) {
                    return Err(self.undo(network, att, prev.as_ref(), e));
                }
            }
        }
        let raw = prev.unwrap_or(Value::Null);
        let result = match CniResult::from_value(raw.clone()) {
            Ok(r) => r,
            Err(e) => {
                let plugin = &network.plugins[last];
                let err = output_error(network, plugin, Op::Add, att, &e.to_string());
                return Err(self.undo(network, att, Some(&raw), err));
            }
        };
        if let Err(e) = cache::write(&self.cache_dir, network, att, Some(&raw), true) {
            return Err(self.undo(network, att, Some(&raw), e));
        }
        Ok(result)
    }

    /// Undoes a failed ADD with a DEL of the whole list; returns the error to report. A
    /// plugin that is not installed is skipped: its ADD never ran.
    fn undo(
        &self,
        network: &NetworkList,
        att: &Attachment,
        prev: Option<&Value>,
        add: Error,
    ) -> Error {
        match self.run_del(network, att, prev, true) {
            Ok(()) => {
                let file = self.cache_file(&network.name, att);
                match cache::remove(&file) {
                    Ok(()) => add,
                    Err(del) => Error::Rollback {
                        add: Box::new(add),
                        del: Box::new(del),
                    },
                }
            }
            Err(del) => Error::Rollback {
                add: Box::new(add),
                del: Box::new(del),
            },
        }
    }

    /// DEL: runs the plugins in reverse order, each given the cached ADD result if there is
    /// one, then forgets the attachment. It undoes the ADD as it was done: with the
    /// configuration and capability arguments the ADD cached, when there are any (the
    /// operator may have edited the list since), else with `network` and `att`. Nothing to
    /// undo, a namespace that is gone, a second DEL: all success.
    pub fn del(&self, network: &NetworkList, att: &Attachment) -> Result<(), Error> {
        att.check(&network.name)?;
        let file = self.cache_file(&network.name, att);
        let cached = match cache::read(&file) {
            Ok(c) => c,
            // A damaged entry must not block the cleanup it exists for.
            Err(e) => {
                tracing::warn!("{e}; deleting without it");
                None
            }
        };
        let (list, params, prev) = match &cached {
            Some(c) if c.network.name == network.name => {
                let mut params = att.clone();
                params.args = c.attachment.args.clone();
                params.runtime_config = c.attachment.runtime_config.clone();
                (&c.network, params, c.result.as_ref().map(|r| r.raw.clone()))
            }
            _ => (network, att.clone(), None),
        };
        self.run_del(list, &params, prev.as_ref(), false)?;
        cache::remove(&file)
    }

    /// CHECK: asks each plugin in order whether the attachment is as the ADD left it. Success
    /// without running anything when the list sets `disableCheck` or predates CHECK (0.3.x).
    pub fn check(&self, network: &NetworkList, att: &Attachment) -> Result<(), Error> {
        att.check(&network.name)?;
        if network.disable_check || network.cni_version.starts_with("0.3.") {
            return Ok(());
        }
        let file = self.cache_file(&network.name, att);
        let prev = match cache::read(&file)? {
            Some(CachedAttachment {
                result: Some(r),
                complete: true,
                ..
            }) => r.raw,
            _ => {
                return Err(Error::NotAttached {
                    network: network.name.clone(),
                    container_id: att.container_id.clone(),
                    ifname: att.ifname.clone(),
                })
            }
        };
        self.check_netns(network, att)?;
        let runtime = att.runtime_config.to_map();
        let netns = att.netns.as_os_str().to_owned();
        for plugin in &network.plugins {
            self.invoke(
                network,
                plugin,
                Op::Check,
                att,
                &netns,
                &runtime,
                Some(&prev),
            )?;
        }
        Ok(())
    }

    /// The cached ADD of a container on a network, if any.
    pub fn cached(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CachedAttachment>, Error> {
        cache::read(&cache::path(&self.cache_dir, network, container_id, ifname))
    }

    /// Every cached attachment, complete or interrupted: what a daemon that starts after a
    /// crash compares with its containers, to DEL the ones that are gone. Unreadable entries
    /// are logged and skipped.
    pub fn cached_all(&self) -> Result<Vec<CachedAttachment>, Error> {
        let mut all = Vec::new();
        for file in cache::list(&self.cache_dir)? {
            match cache::read(&file) {
                Ok(Some(c)) => all.push(c),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(all)
    }

    /// Checks that every plugin of the list exists and speaks its CNI version (VERSION).
    pub fn validate(&self, network: &NetworkList) -> Result<(), Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Versions {
            #[serde(default)]
            supported_versions: Vec<String>,
        }
        for plugin in &network.plugins {
            let path = self.find(network, plugin)?;
            let mut cmd = self.base_command(&path);
            cmd.env("CNI_COMMAND", "VERSION");
            let input = serde_json::json!({ "cniVersion": network.cni_version }).to_string();
            let out = self.exec(network, plugin, "VERSION", "", cmd, &path, input.as_bytes())?;
            let v: Versions = serde_json::from_slice(&out).map_err(|e| Error::Output {
                call: call(network, plugin, "VERSION", ""),
                message: e.to_string(),
            })?;
            if !v.supported_versions.contains(&network.cni_version) {
                return Err(Error::Version {
                    network: network.name.clone(),
                    plugin: plugin.plugin_type.clone(),
                    version: network.cni_version.clone(),
                    supported: v.supported_versions.join(", "),
                });
            }
        }
        Ok(())
    }

    /// DEL of the whole list in reverse order, then the bridge's leftovers if the namespace
    /// was gone.
    fn run_del(
        &self,
        network: &NetworkList,
        att: &Attachment,
        prev: Option<&Value>,
        skip_missing: bool,
    ) -> Result<(), Error> {
        // A path that is no longer a namespace (deleted, or an unmounted bind-mount file)
        // is passed as none: plugins then clean up what they can without entering it, where
        // entering it would fail the DEL.
        let alive = is_netns(&att.netns);
        let netns = if alive {
            att.netns.as_os_str().to_owned()
        } else {
            OsString::new()
        };
        let runtime = att.runtime_config.to_map();
        for plugin in network.plugins.iter().rev() {
            match self.invoke(network, plugin, Op::Del, att, &netns, &runtime, prev) {
                Err(Error::PluginNotFound { .. }) if skip_missing => {}
                other => drop(other?),
            }
        }
        if !alive
            && network.plugins.iter().any(|p| {
                p.plugin_type == "bridge" && p.conf.get("ipMasq") == Some(&Value::Bool(true))
            })
        {
            let chain = sweep::masquerade_chain(&network.name, &att.container_id);
            sweep::remove_nat_chain(&chain, self.timeout).map_err(|message| Error::Sweep {
                network: network.name.clone(),
                container_id: att.container_id.clone(),
                message,
            })?;
        }
        Ok(())
    }

    fn cache_file(&self, network: &str, att: &Attachment) -> PathBuf {
        cache::path(&self.cache_dir, network, &att.container_id, &att.ifname)
    }

    fn check_netns(&self, network: &NetworkList, att: &Attachment) -> Result<(), Error> {
        if is_netns(&att.netns) {
            Ok(())
        } else {
            Err(Error::Attachment {
                network: network.name.clone(),
                message: format!("{} is not a network namespace", att.netns.display()),
            })
        }
    }

    /// Runs one plugin; its stdout parsed as JSON if it printed anything.
    #[allow(clippy::too_many_arguments)]
    fn invoke(
        &self,
        network: &NetworkList,
        plugin: &PluginConf,
        command: Op,
        att: &Attachment,
        netns: &OsString,
        runtime: &Map<String, Value>,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, Error> {
        let path = self.find(network, plugin)?;
        let conf = derive_conf(
            network,
            plugin,
            runtime,
            prev,
            self.ipam_data_dir.as_deref(),
        );
        let mut cmd = self.base_command(&path);
        cmd.env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_ARGS", att.cni_args());
        let input = serde_json::to_vec(&conf).unwrap_or_default();
        let started = std::time::Instant::now();
        let out = self.exec(
            network,
            plugin,
            command.as_str(),
            &att.container_id,
            cmd,
            &path,
            &input,
        )?;
        tracing::debug!(
            network = %network.name,
            plugin = %plugin.plugin_type,
            command = command.as_str(),
            container = %att.container_id,
            elapsed = ?started.elapsed(),
            "cni plugin"
        );
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match serde_json::from_slice::<Value>(&out) {
            Ok(v @ Value::Object(_)) => Ok(Some(v)),
            Ok(_) => Err(output_error(
                network,
                plugin,
                command,
                att,
                "not a JSON object",
            )),
            // Only ADD's output is used; DEL and CHECK may print anything.
            Err(_) if command != Op::Add => Ok(None),
            Err(e) => Err(output_error(network, plugin, command, att, &e.to_string())),
        }
    }

    /// The command for a plugin with the environment every invocation shares.
    fn base_command(&self, path: &Path) -> Command {
        let mut cmd = Command::new(path);
        // A plugin must never notify a service manager on our behalf.
        cmd.env_remove("NOTIFY_SOCKET")
            .env("CNI_PATH", self.cni_path())
            .current_dir("/");
        if std::env::var_os("PATH").is_none() {
            // Plugins run iptables, ip6tables, ...
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
        cmd
    }

    /// Runs a prepared plugin command; its stdout on success, else a typed error.
    #[allow(clippy::too_many_arguments)]
    fn exec(
        &self,
        network: &NetworkList,
        plugin: &PluginConf,
        command: &'static str,
        container_id: &str,
        cmd: Command,
        path: &Path,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        match crate::bounded::run(cmd, input, self.timeout) {
            Ok(out) if out.status.success() => Ok(out.stdout),
            Ok(out) => {
                let (code, message) = failure_message(&out.stdout, &out.stderr, out.status);
                Err(Error::Plugin {
                    call: call(network, plugin, command, container_id),
                    code,
                    message,
                })
            }
            Err(
                crate::bounded::RunError::Spawn(source) | crate::bounded::RunError::Wait(source),
            ) => Err(Error::Exec {
                network: network.name.clone(),
                plugin: plugin.plugin_type.clone(),
                path: path.to_path_buf(),
                source,
            }),
            Err(crate::bounded::RunError::TimedOut { stderr }) => Err(Error::Timeout {
                call: call(network, plugin, command, container_id),
                after: self.timeout,
                stderr: tail(&stderr),
            }),
        }
    }

    /// The plugin's executable: the first plugin directory that has it.
    fn find(&self, network: &NetworkList, plugin: &PluginConf) -> Result<PathBuf, Error> {
        self.plugin_dirs
            .iter()
            .map(|d| d.join(&plugin.plugin_type))
            .find(|p| crate::config::is_executable(p))
            .ok_or_else(|| Error::PluginNotFound {
                network: network.name.clone(),
                plugin: plugin.plugin_type.clone(),
                dirs: self.cni_path().to_string_lossy().into_owned(),
            })
    }

    fn cni_path(&self) -> OsString {
        std::env::join_paths(&self.plugin_dirs).unwrap_or_default()
    }
}

/// The configuration one plugin gets on stdin (spec section 3, "Deriving execution
/// configuration"): its object from the list without `capabilities`, plus the list's name and
/// cniVersion, the capability arguments it declares (`runtimeConfig`) and `prevResult`; and
/// host-local's `dataDir` under the daemon's root unless the list sets one.
fn derive_conf(
    network: &NetworkList,
    plugin: &PluginConf,
    runtime: &Map<String, Value>,
    prev: Option<&Value>,
    ipam_data_dir: Option<&Path>,
) -> Value {
    let mut conf = plugin.conf.clone();
    conf.remove("capabilities");
    conf.insert(
        "cniVersion".into(),
        Value::String(network.cni_version.clone()),
    );
    conf.insert("name".into(), Value::String(network.name.clone()));
    let declared: Map<String, Value> = runtime
        .iter()
        .filter(|(k, _)| plugin.capabilities.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !declared.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(declared));
    }
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    if let (Some(dir), Some(Value::Object(ipam))) = (ipam_data_dir, conf.get_mut("ipam")) {
        if ipam.get("type").and_then(Value::as_str) == Some("host-local")
            && !ipam.contains_key("dataDir")
        {
            ipam.insert(
                "dataDir".into(),
                Value::String(dir.to_string_lossy().into_owned()),
            );
        }
    }
    Value::Object(conf)
}

/// A failed plugin's code and message: its error JSON (`{code, msg, details}`, on stdout per
/// the plugins' library, on stderr per the spec's text), else its stderr, else its status.
fn failure_message(
    stdout: &[u8],
    stderr: &[u8],
    status: std::process::ExitStatus,
) -> (Option<u64>, String) {
    #[derive(Deserialize)]
    struct PluginError {
        code: Option<u64>,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    for stream in [stdout, stderr] {
        if let Ok(e) = serde_json::from_slice::<PluginError>(stream) {
            if e.msg.is_empty() && e.details.is_empty() {
                continue;
            }
            let mut message = e.msg;
            if !e.details.is_empty() && !message.contains(&e.details) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&e.details);
            }
            if let Some(code) = e.code {
                message.push_str(&format!(" (CNI error {code})"));
            }
            return (e.code, message);
        }
    }
    let err = tail(stderr);
    if !err.is_empty() {
        return (None, err);
    }
    let out = tail(stdout);
    if !out.is_empty() {
        return (None, out);
    }
    (None, format!("exited with {status}"))
}

/// The end of a plugin's output, trimmed and bounded (a plugin may print a lot).
fn tail(bytes: &[u8]) -> String {
    const MAX: usize = 2000;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut start = text.len() - MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

fn output_error(
    network: &NetworkList,
    plugin: &PluginConf,
    command: Op,
    att: &Attachment,
    message: &str,
) -> Error {
    Error::Output {
        call: call(network, plugin, command.as_str(), &att.container_id),
        message: message.to_string(),
    }
}

fn call(
    network: &NetworkList,
    plugin: &PluginConf,
    command: &'static str,
    container_id: &str,
) -> Box<Call> {
    Box::new(Call {
        network: network.name.clone(),
        plugin: plugin.plugin_type.clone(),
        command,
        container_id: container_id.to_string(),
    })
}

/// True when `path` is a network namespace (nsfs): a live bind mount or /proc/<pid>/ns/net.
fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

#[cfg(test)]
mod tests;
