//! The daemon config file (`/etc/rcd/rcd.toml`, `--config`): registries (insecure ones, the
//! credentials file, private CAs, the idle timeout) and image limits. A missing default file
//! means the defaults; a bad file is refused with file:line:col, as unit files are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::image::layer::Limits;
use crate::image::registry::{self, ClientConfig};
use crate::unit::units::{parse_duration, parse_size};

/// The default config file.
pub const DEFAULT_PATH: &str = "/etc/rcd/rcd.toml";

/// What the config file says, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// The file it came from (None: the defaults, no file).
    pub path: Option<PathBuf>,
    /// Registry access.
    pub registries: Registries,
    /// Bounds on what an image layer may unpack to.
    pub layer_limits: Limits,
}

/// `[registries]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registries {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Docker `config.json`-format credentials.
    pub auth_file: PathBuf,
    /// Per-registry CAs and client certificates, Docker's `certs.d` layout.
    pub certs_dir: PathBuf,
    /// How long a registry may send nothing before a pull fails.
    pub idle_timeout: Duration,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            path: None,
            registries: Registries {
                insecure: Vec::new(),
                auth_file: "/etc/rcd/auth.json".into(),
                certs_dir: "/etc/rcd/certs.d".into(),
                idle_timeout: registry::DEFAULT_IDLE,
            },
            layer_limits: Limits::default(),
        }
    }
}

/// A config file or credentials file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file says something wrong, at a place.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The credentials file is not Docker's config.json format.
    #[error("{}: {source}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: registry::CredentialsError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    registries: Option<RawRegistries>,
    #[serde(default)]
    images: Option<RawImages>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistries {
    insecure: Option<Vec<Spanned<String>>>,
    auth_file: Option<Spanned<String>>,
    certs_dir: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImages {
    max_layer_size: Option<Spanned<String>>,
    max_layer_entries: Option<Spanned<i64>>,
}

impl FileConfig {
    /// Reads `path`; `explicit` says the operator named it (`--config`), so a missing file is
    /// an error rather than the defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(FileConfig::default())
            }
            Err(source) => Err(Error::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the text of a config file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = crate::unit::line_col(text, span.map_or(0, |s| s.start));
            Error::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: Raw = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
        let mut config = FileConfig {
            path: Some(path.to_path_buf()),
            ..FileConfig::default()
        };
        if let Some(r) = raw.registries {
            for host in r.insecure.unwrap_or_default() {
                check_registry(host.get_ref()).map_err(|m| at(Some(host.span()), m))?;
                config.registries.insecure.push(host.into_inner());
            }
            for (value, slot) in [
                (r.auth_file, &mut config.registries.auth_file),
                (r.certs_dir, &mut config.registries.certs_dir),
            ] {
                if let Some(v) = value {
                    if !Path::new(v.get_ref()).is_absolute() {
                        return Err(at(
                            Some(v.span()),
                            format!("\"{}\" is not an absolute path", v.get_ref()),
                        ));
                    }
                    *slot = v.into_inner().into();
                }
            }
            if let Some(v) = r.idle_timeout {
                let d = parse_duration(v.get_ref()).map_err(|m| at(Some(v.span()), m))?;
                if d.is_zero() {
                    return Err(at(Some(v.span()), "idle_timeout must be above 0".into()));
                }
                config.registries.idle_timeout = d;
            }
        }
        if let Some(i) = raw.images {
            if let Some(v) = i.max_layer_size {
                let bytes = parse_size(v.get_ref()).map_err(|m| at(Some(v.span()), m))?;
                if bytes == 0 {
                    return Err(at(Some(v.span()), "max_layer_size must be above 0".into()));
                }
                config.layer_limits.max_bytes = bytes;
            }
            if let Some(v) = i.max_layer_entries {
                let n = u64::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        at(Some(v.span()), "max_layer_entries must be above 0".into())
                    })?;
                config.layer_limits.max_entries = n;
            }
        }
        Ok(config)
    }

    /// The registry client's settings, with the credentials file read now (a missing file is
    /// no credentials, as with Docker).
    pub fn client_config(&self) -> Result<ClientConfig, Error> {
        Ok(ClientConfig {
            insecure: self.registries.insecure.clone(),
            credentials: load_credentials(&self.registries.auth_file)?,
            idle_timeout: Some(self.registries.idle_timeout),
            certs_dir: Some(self.registries.certs_dir.clone()),
        })
    }
}

/// Reads a Docker `config.json`-format credentials file; a missing one is none.
pub fn load_credentials(path: &Path) -> Result<HashMap<String, (String, String)>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            registry::credentials_from_docker_config(&text).map_err(|source| Error::Credentials {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// An insecure-registry entry is `host[:port]`, as references name registries.
fn check_registry(host: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("\"{host}\" is not a registry (host[:port]): {why}"));
    if host.is_empty() {
        return bad("empty");
    }
    if host.contains("://") {
        return bad("no scheme");
    }
    if host.contains('/') {
        return bad("no path (CIDR ranges are not supported; list each registry)");
    }
    if let Some((_, port)) = host.rsplit_once(':') {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return bad("bad port");
        }
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("whitespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(Path::new("/etc/rcd/rcd.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.registries, FileConfig::default().registries);
        assert_eq!(c.layer_limits, Limits::default());
    }

    #[test]
    fn every_key() {
        let c = parse(
            "[registries]\ninsecure = [\"reg.lan:5000\", \"mirror\"]\nauth_file = \"/x/auth.json\"\n\
             certs_dir = \"/x/certs.d\"\nidle_timeout = \"5m\"\n\n[images]\nmax_layer_size = \"2G\"\n\
             max_layer_entries = 1000\n",
        )
        .unwrap();
        assert_eq!(c.registries.insecure, ["reg.lan:5000", "mirror"]);
        assert_eq!(c.registries.auth_file, Path::new("/x/auth.json"));
        assert_eq!(c.registries.certs_dir, Path::new("/x/certs.d"));
        assert_eq!(c.registries.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.layer_limits.max_bytes, 2 << 30);
        assert_eq!(c.layer_limits.max_entries, 1000);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        for (text, want) in [
            ("[registries]\nbogus = 1\n", "/etc/rcd/rcd.toml:2:1: unknown field `bogus`"),
            ("[registrys]\n", "/etc/rcd/rcd.toml:1:2: unknown field `registrys`"),
            (
                "[registries]\ninsecure = [\"http://r:5000\"]\n",
                "/etc/rcd/rcd.toml:2:13: \"http://r:5000\" is not a registry (host[:port]): no scheme",
            ),
            (
                "[registries]\ninsecure = [\"r:0\"]\n",
                "/etc/rcd/rcd.toml:2:13: \"r:0\" is not a registry (host[:port]): bad port",
            ),
            (
                "[registries]\nauth_file = \"auth.json\"\n",
                "/etc/rcd/rcd.toml:2:13: \"auth.json\" is not an absolute path",
            ),
            ("[registries]\nidle_timeout = \"0s\"\n", "/etc/rcd/rcd.toml:2:16: idle_timeout must be above 0"),
            ("[registries]\nidle_timeout = \"soon\"\n", "/etc/rcd/rcd.toml:2:16:"),
            ("[images]\nmax_layer_entries = -1\n", "/etc/rcd/rcd.toml:2:21: max_layer_entries must be above 0"),
            ("[images]\nmax_layer_size = 5\n", "/etc/rcd/rcd.toml:2:18:"),
            ("[registries\n", "/etc/rcd/rcd.toml:1:"),
        ] {
            let got = parse(text).unwrap_err();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn a_missing_file_is_the_defaults_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rcd.toml");
        assert_eq!(
            FileConfig::load(&path, false).unwrap(),
            FileConfig::default()
        );
        let err = FileConfig::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("rcd.toml"), "{err}");
    }

    #[test]
    fn credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        assert!(load_credentials(&path).unwrap().is_empty());
        std::fs::write(&path, r#"{"auths":{"127.0.0.1:5000":{"auth":"dTpw"}}}"#).unwrap();
        let creds = load_credentials(&path).unwrap();
        assert_eq!(creds["127.0.0.1:5000"], ("u".to_string(), "p".to_string()));
        std::fs::write(&path, "{").unwrap();
        let err = load_credentials(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}
