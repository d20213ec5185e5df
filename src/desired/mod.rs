//! Desired state: the units directory in, the unit table's desired half updated out (the last
//! valid version of each file, its current error), and the names whose desired state changed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::unit;

pub mod owner;

/// One read of the units directory: what was listed and parsed, before it touches the table.
#[derive(Debug)]
pub struct Snapshot {
    listing: Result<Vec<FileRead>, Listing>,
}

/// One unit file as read.
#[derive(Debug)]
struct FileRead {
    name: String,
    path: PathBuf,
    digest: Option<[u8; 32]>,
    /// The files outside it that it reads (its env files), part of its digest.
    externals: Vec<PathBuf>,
    /// None: its bytes and ownership are as last seen, so it was not parsed again.
    outcome: Option<Result<unit::Unit, unit::Error>>,
}

/// What the table knows of a file: its digest and the external files that went into it.
pub type Known = HashMap<String, ([u8; 32], Vec<PathBuf>)>;

/// The digests of the files the table holds now: what `read` need not parse again.
pub fn known(ctx: &Context) -> Known {
    ctx.units.view(|v| {
        v.iter()
            .filter(|(_, e)| e.present)
            .filter_map(|(n, e)| Some((n.clone(), (e.digest?, e.externals.clone()))))
            .collect()
    })
}

/// Reads and parses the units directory (file I/O only, no table): run it off the async
/// workers. A file whose digest is in `known` is not parsed again.
pub fn read(dir: &Path, known: &Known) -> Snapshot {
    let listing = list(dir).map(|listing| {
        listing
            .into_iter()
            .map(|(name, path)| {
                let own = fingerprint(&path);
                // Unchanged if the file and every external file it read last time are.
                if let (Some(own), Some((digest, externals))) = (own, known.get(&name)) {
                    if with_externals(own, externals) == *digest {
                        return FileRead {
                            name,
                            path,
                            digest: Some(*digest),
                            externals: externals.clone(),
                            outcome: None,
                        };
                    }
                }
                let (outcome, externals) = unit::load_file_with_externals(&path);
                FileRead {
                    name,
                    path,
                    digest: own.map(|own| with_externals(own, &externals)),
                    externals,
                    outcome: Some(outcome),
                }
            })
            .collect()
    });
    crate::failpoint::hit("desired-read");
    Snapshot { listing }
}

/// Reads the units directory and updates the table at once (tests and tools; the daemon
/// reads off its async workers and applies through its scan owner).
pub fn scan(ctx: &Context) -> BTreeSet<String> {
    apply(ctx, read(&ctx.units_dir, &known(ctx)))
}

/// Applies one read of the directory to the table: the desired half of each entry, the
/// directory's error. Returns the units whose desired state changed. No file I/O.
pub fn apply(ctx: &Context, snapshot: Snapshot) -> BTreeSet<String> {
    let dir = &ctx.units_dir;
    let listing = match snapshot.listing {
        Ok(listing) => {
            *ctx.dir_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            listing
        }
        Err(Listing::Missing)
            if ctx
                .units
                .view(|v| v.values().all(|e| !e.present && e.record.is_none())) =>
        {
            // Nothing was ever loaded from it, nothing is recorded: an empty start, waiting
            // for it to appear.
            *ctx.dir_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            Vec::new()
        }
        Err(Listing::Missing) => {
            // A directory that vanishes (an unmounted /etc, a mistaken rename) says nothing
            // about what should run: keep everything; an empty directory removes all.
            let reason = "does not exist; keeping the units loaded from it".to_string();
            tracing::error!(dir = %dir.display(), "units directory {reason}");
            *ctx.dir_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            return BTreeSet::new();
        }
        Err(Listing::Refused(reason)) => {
            // Keep everything as it is: an untrusted directory changes nothing.
            tracing::error!(dir = %dir.display(), "units directory refused: {reason}");
            *ctx.dir_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            return BTreeSet::new();
        }
    };

    ctx.units.edit(|table| {
    let mut changed = BTreeSet::new();
    let mut present = BTreeSet::new();
    for FileRead {
        name,
        path,
        digest,
        externals,
        outcome,
    } in listing
    {
        // Deleted between the listing and the read: gone, not invalid (the removal below).
        if let Some(Err(crate::unit::Error::Read { source, .. })) = &outcome {
            if source.kind() == std::io::ErrorKind::NotFound {
                continue;
            }
        }
        present.insert(name.clone());
        let entry = table.entry(&name);
        entry.present = true;
        entry.file = Some(path.clone());
        let Some(outcome) = outcome else { continue };
        entry.digest = digest;
        entry.externals = externals;
        match outcome {
            Ok(u) => {
                entry.file_error = None;
                if entry.unit.as_deref() != Some(&u) {
                    tracing::info!(unit = %name, file = %path.display(), "unit loaded");
                    let action = if entry.unit.is_some() {
                        "changed"
                    } else {
                        "loaded"
                    };
                    ctx.events
                        .emit(&name, action, &[("file", path.display().to_string())]);
                    entry.unit = Some(Arc::new(u));
                    changed.insert(name);
                } else if entry.record.is_none() {
                    changed.insert(name);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(unit = %name, "invalid unit file, keeping its last valid version: {msg}");
                ctx.events.emit(&name, "invalid", &[("error", msg.clone())]);
                entry.file_error = Some(msg);
            }
        }
    }
    for (name, entry) in table.iter_mut() {
        if entry.present && !present.contains(name) {
            tracing::info!(unit = %name, "unit file removed");
            ctx.events.emit(name, "file-removed", &[]);
            entry.present = false;
            entry.digest = None;
            entry.externals.clear();
            entry.file_error = None;
            entry.unit = None;
            changed.insert(name.clone());
        }
    }
    changed
    })
}

/// A unit file's digest combined with those of the external files it reads (a missing or
/// unreadable one counts as such, so its appearance is a change).
fn with_externals(own: [u8; 32], externals: &[PathBuf]) -> [u8; 32] {
    if externals.is_empty() {
        return own;
    }
    let mut h = Sha256::new();
    h.update(own);
    for p in externals {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update(fingerprint(p).unwrap_or([0; 32]));
    }
    h.finalize().into()
}

/// Digest of a unit file's bytes (capped), owner and mode: what decides whether it must be
/// read again (a chmod that makes a refused file acceptable counts as a change). Of a
/// directory (a drop-in directory), its listing.
fn fingerprint(path: &Path) -> Option<[u8; 32]> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        // A drop-in directory: what it lists (a file added or removed), and who may write it.
        let mut names: Vec<_> = std::fs::read_dir(path)
            .ok()?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        let mut h = Sha256::new();
        h.update(meta.uid().to_le_bytes());
        h.update(meta.mode().to_le_bytes());
        for n in names {
            h.update(n.as_encoded_bytes());
            h.update([0]);
        }
        return Some(h.finalize().into());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(2 * 1024 * 1024)
        .read_to_end(&mut bytes)
        .ok()?;
    let mut h = Sha256::new();
    h.update(meta.uid().to_le_bytes());
    h.update(meta.gid().to_le_bytes());
    h.update(meta.mode().to_le_bytes());
    h.update(&bytes);
    Some(h.finalize().into())
}

#[derive(Debug)]
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
        // A template (`web@.toml`) is no unit: its instances are.
        let Some(name) = unit::unit_name(&path).filter(|n| !unit::is_template(n)) else {
            continue;
        };
        // Follow symlinks: a unit may be a link to a file kept elsewhere. A dangling link is
        // no unit (its target may come later); a link that cannot be resolved for another
        // reason (a loop) is listed, so loading reports it as the unit's error.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => out.push((name, path)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => out.push((name, path)),
        }
    }
    out.sort();
    Ok(out)
}
