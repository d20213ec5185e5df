//! Desired state: the units directory in, the unit table's desired half updated out (the last
//! valid version of each file, its current error), and the names whose desired state changed.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::daemon::context::Context;
use crate::unit;

/// Reads the whole units directory and updates the table. Returns the units to reconcile.
pub fn scan(ctx: &Context) -> BTreeSet<String> {
    let dir = &ctx.units_dir;
    let listing = match list(dir) {
        Ok(listing) => {
            *ctx.dir_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            listing
        }
        Err(Listing::Missing) => {
            *ctx.dir_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            Vec::new()
        }
        Err(Listing::Refused(reason)) => {
            // Keep everything as it is: an untrusted directory changes nothing.
            tracing::error!(dir = %dir.display(), "units directory refused: {reason}");
            *ctx.dir_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            return BTreeSet::new();
        }
    };

    // Read and parse outside the table lock.
    let mut seen = Vec::with_capacity(listing.len());
    for (name, path) in listing {
        let read = std::fs::read(&path);
        seen.push((name, path, read));
    }

    let mut changed = BTreeSet::new();
    let mut table = ctx.table();
    let mut present = BTreeSet::new();
    for (name, path, read) in seen {
        present.insert(name.clone());
        let entry = table.entry(name.clone()).or_default();
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                entry.file_error = Some(format!("{}: cannot read: {e}", path.display()));
                entry.digest = None;
                entry.present = true;
                continue;
            }
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if entry.present && entry.digest == Some(digest) && entry.file.as_deref() == Some(&path) {
            continue;
        }
        entry.present = true;
        entry.digest = Some(digest);
        entry.file = Some(path.clone());
        let parsed = unit::trust::check(&path).and_then(|()| {
            let text = String::from_utf8(bytes).map_err(|_| unit::Error::Invalid {
                diagnostics: vec![unit::Diagnostic {
                    file: path.clone(),
                    line: 1,
                    column: 1,
                    message: "file is not valid UTF-8".into(),
                }],
            })?;
            unit::parse(&name, &path, &text)
                .map_err(|diagnostics| unit::Error::Invalid { diagnostics })
        });
        match parsed {
            Ok(u) => {
                entry.file_error = None;
                if entry.unit.as_deref() != Some(&u) {
                    tracing::info!(unit = %name, file = %path.display(), "unit loaded");
                    entry.unit = Some(Arc::new(u));
                    changed.insert(name);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(unit = %name, "invalid unit file, keeping its last valid version: {msg}");
                entry.file_error = Some(msg);
            }
        }
    }
    for (name, entry) in table.iter_mut() {
        if entry.present && !present.contains(name) {
            tracing::info!(unit = %name, "unit file removed");
            entry.present = false;
            entry.digest = None;
            entry.file_error = None;
            entry.unit = None;
            changed.insert(name.clone());
        }
    }
    changed
}

enum Listing {
    Missing,
    Refused(String),
}

/// The unit files in `dir`, sorted by name.
fn list(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, Listing> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Listing::Refused("not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Listing::Missing),
        Err(e) => return Err(Listing::Refused(e.to_string())),
    }
    unit::trust::check_dir(dir).map_err(|e| Listing::Refused(e.to_string()))?;
    let entries = std::fs::read_dir(dir).map_err(|e| Listing::Refused(e.to_string()))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = unit::unit_name(&path) else {
            continue;
        };
        // Follow symlinks: a unit may be a link to a file kept elsewhere.
        if std::fs::metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}
