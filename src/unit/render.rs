//! The effective unit as text (`rctl cat`): a unit's layers merged, written back as TOML with
//! the file and line every value comes from, and the variables its env files add.

use std::fmt::Write as _;
use std::path::Path;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::sources::{Layers, Sources};
use super::{unit_name, Error};

/// The unit listed at `path` as it takes effect: its layers (template, file, drop-ins) merged
/// and written as TOML, each value followed by `# FILE:LINE`; then the variables its env files
/// add, each with its file. Secrets' contents are never read here: `[[secret]]` names files.
pub fn effective(path: &Path) -> Result<String, Error> {
    let name = unit_name(path).unwrap_or_default();
    let layers = if super::is_template(&name) {
        Layers::for_template(path, &name)
    } else {
        Layers::discover(path, &name)
    };
    let sources = layers.read()?;
    // A unit that does not load is shown with its problems, not half-rendered.
    let unit = super::parse_sources(&layers.name, path, &sources)
        .map_err(|diagnostics| Error::Invalid { diagnostics })?;
    let (table, _) = sources.table().map_err(|_| Error::Invalid {
        diagnostics: vec![],
    })?;
    let mut out = String::new();
    let _ = writeln!(out, "# {} (effective)", layers.name);
    for f in sources.files() {
        let _ = writeln!(out, "# from {}", f.display());
    }
    let from_env_files = env_file_vars(&unit);
    let mut tables: Vec<(String, &DeTable<'_>)> = Vec::new();
    for (key, value) in &table {
        match value.get_ref() {
            DeValue::Table(t) => tables.push((key_text(key.get_ref()), t)),
            DeValue::Array(items) if items.iter().all(|i| i.get_ref().is_table()) => {
                for item in items {
                    if let DeValue::Table(t) = item.get_ref() {
                        let _ = writeln!(out, "\n[[{}]]", key_text(key.get_ref()));
                        write_table(&mut out, &sources, "", t);
                    }
                }
            }
            _ => line(&mut out, &sources, key.get_ref(), value),
        }
    }
    for (name, t) in tables {
        let _ = writeln!(out, "\n[{name}]");
        write_table(&mut out, &sources, &name, t);
        if name == "container" && !from_env_files.is_empty() {
            let _ = writeln!(out, "\n# from env_file, under [container.env]");
            for (k, v, file) in &from_env_files {
                let _ = writeln!(
                    out,
                    "# {} = {}  # {}",
                    key_text(k),
                    toml::Value::String(v.clone()),
                    file
                );
            }
        }
    }
    Ok(out)
}

/// The variables `unit`'s env files give it (those its own `env` does not set), with the file
/// each comes from (the last that sets it).
fn env_file_vars(unit: &super::Unit) -> Vec<(String, String, String)> {
    let mut out: std::collections::BTreeMap<String, (String, String)> = Default::default();
    for f in &unit.container.env_files {
        if let Ok(pairs) = super::envfile::read_pairs(f) {
            for (k, v) in pairs {
                out.insert(k, (v, f.display().to_string()));
            }
        }
    }
    out.into_iter()
        .filter(|(k, _)| !unit.container.env.contains_key(k))
        .map(|(k, (v, file))| (k, v, file))
        .collect()
}

/// A table's plain keys, then its subtables as `[prefix.key]`.
fn write_table(out: &mut String, sources: &Sources, prefix: &str, t: &DeTable<'_>) {
    let mut subtables = Vec::new();
    for (key, value) in t {
        match value.get_ref() {
            DeValue::Table(sub) if !prefix.is_empty() => {
                subtables.push((format!("{prefix}.{}", key_text(key.get_ref())), sub))
            }
            _ => line(out, sources, key.get_ref(), value),
        }
    }
    for (name, sub) in subtables {
        let _ = writeln!(out, "\n[{name}]");
        write_table(out, sources, &name, sub);
    }
}

/// `key = value  # FILE:LINE`.
fn line(out: &mut String, sources: &Sources, key: &str, value: &Spanned<DeValue<'_>>) {
    let (file, line, _) = sources.locate(value.span().start);
    let _ = writeln!(
        out,
        "{} = {}  # {}:{line}",
        key_text(key),
        value_text(value.get_ref()),
        file.display()
    );
}

/// A key as TOML writes it: bare if it can be.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

/// A value as TOML writes it inline.
fn value_text(v: &DeValue<'_>) -> String {
    to_value(v).map_or_else(|| "?".to_owned(), |v| v.to_string())
}

fn to_value(v: &DeValue<'_>) -> Option<toml::Value> {
    Some(match v {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits
                .trim_start_matches("0x")
                .trim_start_matches("0o")
                .trim_start_matches("0b");
            toml::Value::Integer(i64::from_str_radix(digits, i.radix()).ok()?)
        }
        DeValue::Float(f) => toml::Value::Float(f.as_str().replace('_', "").parse().ok()?),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(a) => toml::Value::Array(
            a.iter()
                .map(|x| to_value(x.get_ref()))
                .collect::<Option<_>>()?,
        ),
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, x)| Some((k.get_ref().to_string(), to_value(x.get_ref())?)))
                .collect::<Option<_>>()?,
        ),
    })
}
