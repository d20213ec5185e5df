//! CDI (the Container Device Interface, used by GPU and accelerator vendors): device names
//! such as `nvidia.com/gpu=0` in, the edits their specs in `/etc/cdi` and `/var/run/cdi` make
//! to a container out (device nodes, environment, mounts, hooks).
//!
//! Spec files are JSON or YAML (`*.json`, `*.yaml`, `*.yml`); a later directory's spec of the
//! same kind and device name wins, as the CDI reference does (`/var/run/cdi` over `/etc/cdi`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The directories CDI specs are read from unless the daemon config names others.
pub const DEFAULT_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// Whether `text` is a CDI device name: `vendor.com/class=name`.
pub fn is_name(text: &str) -> bool {
    let Some((kind, name)) = text.split_once('=') else {
        return false;
    };
    let Some((vendor, class)) = kind.split_once('/') else {
        return false;
    };
    let ok = |s: &str, extra: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    ok(vendor, ".-") && ok(class, "_.-") && ok(name, "_.:-")
}

/// One spec file.
#[derive(Debug, Clone, Deserialize)]
struct SpecFile {
    kind: String,
    #[serde(default)]
    devices: Vec<DeviceSpec>,
    #[serde(default, rename = "containerEdits")]
    edits: Option<Edits>,
}

#[derive(Debug, Clone, Deserialize)]
struct DeviceSpec {
    name: String,
    #[serde(rename = "containerEdits")]
    edits: Edits,
}

/// What a device (or every device of a spec) does to a container.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Edits {
    /// `KEY=value` variables.
    #[serde(default)]
    pub env: Vec<String>,
    /// Device nodes.
    #[serde(default, rename = "deviceNodes")]
    pub device_nodes: Vec<DeviceNode>,
    /// Bind mounts.
    #[serde(default)]
    pub mounts: Vec<CdiMount>,
    /// OCI hooks.
    #[serde(default)]
    pub hooks: Vec<Hook>,
}

/// A device node: `path` in the container, `hostPath` (default the same) on the host.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DeviceNode {
    /// Where it appears in the container.
    pub path: String,
    /// The host node (default: `path`).
    #[serde(default, rename = "hostPath")]
    pub host_path: Option<String>,
    /// Cgroup access, letters of `rwm` (default all).
    #[serde(default)]
    pub permissions: Option<String>,
}

/// A mount of a host path.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CdiMount {
    /// On the host.
    #[serde(rename = "hostPath")]
    pub host_path: String,
    /// In the container.
    #[serde(rename = "containerPath")]
    pub container_path: String,
    /// Mount options (`ro`, `nosuid`, ...); a bind mount whatever they say.
    #[serde(default)]
    pub options: Vec<String>,
}

/// An OCI hook of a CDI spec.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Hook {
    /// `createRuntime`, `createContainer`, `startContainer`, `prestart`, `poststart`,
    /// `poststop`.
    #[serde(rename = "hookName")]
    pub hook_name: String,
    /// The program.
    pub path: String,
    /// Its argv.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds it may take.
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// The edits of `names`, read from the specs in `dirs`, merged in the order named (each
/// spec's own edits once, before its first device's).
pub fn resolve(names: &[String], dirs: &[PathBuf]) -> Result<Edits, String> {
    if names.is_empty() {
        return Ok(Edits::default());
    }
    let specs = load(dirs);
    let mut out = Edits::default();
    let mut kinds_applied: Vec<String> = Vec::new();
    for full in names {
        let Some((kind, name)) = full.split_once('=') else {
            return Err(format!("CDI device {full:?}: expected vendor/class=name"));
        };
        let Some((spec, device)) = specs.get(&(kind.to_owned(), name.to_owned())) else {
            let known: Vec<String> = specs.keys().map(|(k, n)| format!("{k}={n}")).collect();
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(format!(
                "CDI device {full}: no spec in {} names it (known: {})",
                dirs.join(", "),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ));
        };
        if !kinds_applied.contains(&spec.kind) {
            if let Some(e) = &spec.edits {
                merge(&mut out, e);
            }
            kinds_applied.push(spec.kind.clone());
        }
        merge(&mut out, &device.edits);
    }
    Ok(out)
}

fn merge(into: &mut Edits, e: &Edits) {
    into.env.extend(e.env.iter().cloned());
    into.device_nodes.extend(e.device_nodes.iter().cloned());
    into.mounts.extend(e.mounts.iter().cloned());
    into.hooks.extend(e.hooks.iter().cloned());
}

type Registry = BTreeMap<(String, String), (SpecFile, DeviceSpec)>;

/// Every device of every readable spec in `dirs`; later ones win. A spec that does not parse
/// is skipped with a warning, as the CDI reference does.
fn load(dirs: &[PathBuf]) -> Registry {
    let mut out = Registry::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            match read(&f) {
                Ok(Some(spec)) => {
                    for d in &spec.devices {
                        out.insert(
                            (spec.kind.clone(), d.name.clone()),
                            (spec.clone(), d.clone()),
                        );
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(file = %f.display(), "CDI spec skipped: {e}"),
            }
        }
    }
    out
}

/// A spec file by its extension; None for other files.
fn read(path: &Path) -> Result<Option<SpecFile>, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    if !matches!(ext, "json" | "yaml" | "yml") {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let value: serde_json::Value = if ext == "json" {
        serde_json::from_str(&text).map_err(|e| e.to_string())?
    } else {
        yaml_to_json(&text)?
    };
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A YAML document as JSON, through the compose reader's tree (no interpolation: a `$` in a
/// spec is taken as written).
fn yaml_to_json(text: &str) -> Result<serde_json::Value, String> {
    use crate::convert::yaml::{Node, Value};
    fn conv(n: &Node) -> serde_json::Value {
        match &n.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(conv).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.clone(), conv(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
    let doc = crate::convert::yaml::parse_literal(text)
        .map_err(|e| format!("line {}: {}", e.at.line, e.message))?;
    Ok(conv(&doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("nvidia.com/gpu=0"));
        assert!(is_name("vendor.example/class_x=all"));
        assert!(!is_name("/dev/dri"));
        assert!(!is_name("nvidia.com/gpu"));
        assert!(!is_name("gpu=0"));
    }

    #[test]
    fn specs_in_json_and_yaml_resolve_later_directories_winning() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(
            a.path().join("v.json"),
            r#"{"cdiVersion":"0.6.0","kind":"v.test/dev","containerEdits":{"env":["ALL=1"]},
               "devices":[{"name":"a","containerEdits":{"env":["A=old"]}},
                          {"name":"b","containerEdits":{"deviceNodes":[{"path":"/dev/b","hostPath":"/dev/null"}]}}]}"#,
        )
        .unwrap();
        std::fs::write(
            b.path().join("v.yaml"),
            "cdiVersion: 0.6.0\nkind: v.test/dev\ndevices:\n  - name: a\n    containerEdits:\n      env: [A=new]\n      mounts:\n        - hostPath: /etc/hostname\n          containerPath: /x\n          options: [ro]\n",
        )
        .unwrap();
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        let e = resolve(&["v.test/dev=a".into(), "v.test/dev=b".into()], &dirs).unwrap();
        // `a` comes from the later directory, whose spec has no spec-wide edits.
        assert_eq!(e.env, ["A=new"]);
        assert_eq!(e.mounts[0].container_path, "/x");
        assert_eq!(e.device_nodes[0].path, "/dev/b");
        let err = resolve(&["v.test/dev=c".into()], &dirs).unwrap_err();
        assert!(err.contains("known: v.test/dev=a, v.test/dev=b"), "{err}");
    }
}
