//! `[[secret]]`: files of root's given to the container read-only from a tmpfs (or as an
//! environment variable when asked), never part of what is shown of the unit. Their
//! declaration is part of the spec hash; their content is not: a changed secret is applied as
//! its `on_change` says (restart, a signal, or nothing until the next start).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_spanned::Spanned;
use sha2::{Digest, Sha256};

use super::raw::{Problem, SecretSection};
use super::{Diagnostic, Unit};

/// Secrets are small; a cap keeps a stray huge file out of memory and the tmpfs.
pub const MAX_SECRET: u64 = 512 * 1024;

/// Where file secrets go by default: `/run/secrets/NAME` (Docker's and compose's place).
pub const DEFAULT_DIR: &str = "/run/secrets";

/// One secret, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Secret {
    /// Its name: the file's name under `/run/secrets`, unique in the unit.
    pub name: String,
    /// The host file: root's, readable by root alone.
    pub source: PathBuf,
    /// Where it appears in the container as a file; None when delivered as `env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The environment variable it is delivered in instead of a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The file's permission bits in the container (default 0444: any user of the container
    /// may read it, as with Docker's secrets).
    pub mode: u32,
    /// What a change of its content does to a running container.
    pub on_change: OnChange,
}

/// `on_change`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnChange {
    /// Restart the container (not counted by the restart policy), the default.
    Restart,
    /// Rewrite the file in place and send this signal (`SIGHUP`) to the container.
    Signal(String),
    /// Nothing until the container's next start.
    None,
}

/// Validates the `[[secret]]` tables; problems go to `problems`.
pub(super) fn validate(
    sections: Vec<Spanned<SecretSection>>,
    unit_file: &Path,
    problems: &mut Vec<Problem>,
) -> Vec<Secret> {
    let mut out: Vec<Secret> = Vec::new();
    for section in sections {
        let header = section.span();
        let s = section.into_inner();
        let before = problems.len();
        let Some(source) = s.source else {
            problems.push(Problem::new(
                header,
                "missing required key `source` in [[secret]]",
            ));
            continue;
        };
        if source.get_ref().is_empty() || source.get_ref().contains('\0') {
            problems.push(Problem::new(source.span(), "secret source must be a path"));
            continue;
        }
        let path = super::envfile::resolve(unit_file, source.get_ref());
        let name = match &s.name {
            Some(n) => n.get_ref().clone(),
            None => path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let name_span = s.name.as_ref().map_or(source.span(), Spanned::span);
        if !crate::volume::valid_name(&name) {
            problems.push(Problem::new(
                name_span.clone(),
                format!("invalid secret name {name:?}: letters, digits, '_', '.' and '-', starting with a letter or digit"),
            ));
        } else if out.iter().any(|o| o.name == name) {
            problems.push(Problem::new(
                name_span,
                format!("secret {name:?} is given twice"),
            ));
        }
        let env = s.env.as_ref().map(|e| e.get_ref().clone());
        if let Some(e) = &s.env {
            let v = e.get_ref();
            if v.is_empty() || v.contains(['=', '\0']) {
                problems.push(Problem::new(
                    e.span(),
                    format!("invalid variable name {v:?}"),
                ));
            }
            if let Some(t) = &s.target {
                problems.push(Problem::new(
                    t.span(),
                    "a secret goes to a file (`target`) or to a variable (`env`), not both",
                ));
            }
        }
        let target = match (&env, s.target) {
            (Some(_), _) => None,
            (None, Some(t)) => {
                let p = Path::new(t.get_ref());
                if !t.get_ref().starts_with('/')
                    || p.components().any(|c| c == std::path::Component::ParentDir)
                {
                    problems.push(Problem::new(
                        t.span(),
                        "secret target must be an absolute path without \"..\"",
                    ));
                }
                Some(t.into_inner())
            }
            (None, None) => Some(format!("{DEFAULT_DIR}/{name}")),
        };
        let mode = super::knobs::mode(s.mode, 0o777, "\"0400\"", problems).unwrap_or(0o444);
        let on_change = match s.on_change.as_ref().map(|o| o.get_ref().as_str()) {
            None | Some("restart") => OnChange::Restart,
            Some("none") => OnChange::None,
            Some(other) => match other.strip_prefix("signal:").map(super::parse_signal) {
                Some(Ok(sig)) => OnChange::Signal(sig.as_str().to_owned()),
                _ => {
                    problems.push(Problem::new(
                        s.on_change.as_ref().map_or(header.clone(), Spanned::span),
                        format!("invalid on_change {other:?}: expected \"restart\", \"signal:SIGHUP\" (any signal) or \"none\""),
                    ));
                    OnChange::Restart
                }
            },
        };
        if env.is_some() && matches!(on_change, OnChange::Signal(_)) {
            problems.push(Problem::new(
                s.on_change.as_ref().map_or(header.clone(), Spanned::span),
                "a secret in a variable cannot change under a running process: use \"restart\" or \"none\"",
            ));
        }
        if problems.len() == before {
            out.push(Secret {
                name,
                source: path,
                target,
                env,
                mode,
                on_change,
            });
        }
    }
    out
}

/// The trust rule for a secret file: root's, a regular file, no access for group or others.
fn check(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.uid() != 0 {
        return Err(format!("refused: owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "refused: mode {:o} lets others read it (chmod 600)",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// The content of secret `s`, checked by the trust rule and the size cap.
pub fn read(s: &Secret) -> Result<Vec<u8>, String> {
    use std::io::Read;
    check(&s.source)?;
    let mut bytes = Vec::new();
    std::fs::File::open(&s.source)
        .and_then(|f| f.take(MAX_SECRET + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET {
        return Err(format!("larger than {MAX_SECRET} bytes"));
    }
    Ok(bytes)
}

/// Checks `unit`'s secret files and records the digest of their content (never the content):
/// what tells a changed secret. Problems are diagnostics at the secret file.
pub fn apply(unit: &mut Unit) -> Result<(), Vec<Diagnostic>> {
    if unit.secrets.is_empty() {
        return Ok(());
    }
    let mut h = Sha256::new();
    let mut problems = Vec::new();
    for s in &unit.secrets {
        match read(s) {
            Ok(bytes) => {
                h.update(s.name.as_bytes());
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(message) => problems.push(Diagnostic {
                file: s.source.clone(),
                line: 1,
                column: 1,
                message: format!("secret {} of unit {}: {message}", s.name, unit.name),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    unit.secret_digest = Some(hex::encode(h.finalize()));
    Ok(())
}
