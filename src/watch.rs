//! The units-directory watcher: inotify events in (through notify), "rescan now" ticks out.
//! Watches the directory and its ancestors, never single files, so rename-over saves, a
//! directory created later and a re-pointed symlink are all seen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long a burst of in-progress events (a file being written) must stay quiet before a rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// What an event means for the next rescan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// A change that is complete when seen (a rename into place, a close after writing, a
    /// removal, a lost-events signal): rescan at once.
    Settled,
    /// A change that may be in progress (created, written, attributes): rescan once quiet.
    Busy,
}

/// Classifies an event; None for noise (opens and reads, including the scan's own).
fn classify(kind: &EventKind) -> Option<Tick> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Tick::Settled),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => Some(Tick::Settled),
        _ => Some(Tick::Busy),
    }
}

/// A running watcher; dropping it stops the watching.
///
/// The directory and its nearest existing ancestor each get a watcher (an inotify instance) of
/// their own, replaced whole when what they point at changes. One shared instance would let
/// notify's bookkeeping of a rename seen in the ancestor ("units" moved away) drop the watch
/// just added for the new "units" (a symlink to elsewhere, or a new directory).
pub struct DirWatcher {
    dir: PathBuf,
    tx: mpsc::UnboundedSender<Tick>,
    ancestor: Option<(PathBuf, RecommendedWatcher)>,
    inner: Option<((u64, u64), RecommendedWatcher)>,
    /// The directories of files outside the units directory that units read (env files).
    extra: std::collections::BTreeMap<PathBuf, RecommendedWatcher>,
}

/// The device and inode a path resolves to now (through symlinks).
fn identity(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

impl DirWatcher {
    /// Starts watching `dir`; every relevant event sends a tick on the returned channel.
    pub fn start(dir: &Path) -> notify::Result<(Self, mpsc::UnboundedReceiver<Tick>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut w = DirWatcher {
            dir: dir.to_path_buf(),
            tx,
            ancestor: None,
            inner: None,
            extra: std::collections::BTreeMap::new(),
        };
        w.rearm();
        if w.ancestor.is_none() && w.inner.is_none() {
            return Err(notify::Error::generic(
                "nothing on the way to the units directory can be watched",
            ));
        }
        Ok((w, rx))
    }

    /// A watcher on `path` whose relevant events become ticks.
    fn watcher_on(&self, path: &Path) -> notify::Result<RecommendedWatcher> {
        let tx = self.tx.clone();
        let target = self.dir.clone();
        // A relevant event only means "look again": the rescan decides what changed.
        let mut w = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let tick = match &event {
                Ok(e) if e.need_rescan() || e.paths.is_empty() => Some(Tick::Settled),
                Ok(e) if e.paths.iter().any(|p| concerns(&target, p)) => classify(&e.kind),
                Ok(_) => None,
                Err(_) => Some(Tick::Settled),
            };
            if let Some(t) = tick {
                let _ = tx.send(t);
            }
        })?;
        w.watch(path, RecursiveMode::NonRecursive)?;
        Ok(w)
    }

    /// Re-establishes the watches: the directory itself if it exists (through a symlink, its
    /// target), and its nearest existing ancestor, to see it appear, move or be re-pointed.
    /// Watches whose target did not change are kept (re-adding one raises events of its own).
    pub fn rearm(&mut self) {
        let id = if self.dir.is_dir() {
            identity(&self.dir)
        } else {
            None
        };
        match id {
            None => self.inner = None,
            Some(id) if self.inner.as_ref().is_some_and(|(old, _)| *old == id) => {}
            Some(id) => {
                self.inner = None;
                match self.watcher_on(&self.dir) {
                    Ok(w) => self.inner = Some((id, w)),
                    Err(e) => tracing::warn!(path = %self.dir.display(), "cannot watch: {e}"),
                }
            }
        }
        let mut cur = self.dir.parent();
        let ancestor = loop {
            match cur {
                Some(p) if p.is_dir() => break Some(p.to_path_buf()),
                Some(p) => cur = p.parent(),
                None => break None,
            }
        };
        if self.ancestor.as_ref().map(|(p, _)| p) != ancestor.as_ref() {
            self.ancestor = None;
            if let Some(a) = ancestor {
                match self.watcher_on(&a) {
                    Ok(w) => self.ancestor = Some((a, w)),
                    Err(e) => tracing::warn!(path = %a.display(), "cannot watch: {e}"),
                }
            }
        }
    }
}

impl DirWatcher {
    /// Watches the directories of `files` (units' env files, drop-ins; a directory among
    /// them, a drop-in directory, itself) too, so a change of one is rescanned like a change
    /// of a unit file; directories no longer needed are dropped.
    pub fn watch_files(&mut self, files: &[PathBuf]) {
        let dirs: std::collections::BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|f| {
                if f.is_dir() {
                    Some(f.clone())
                } else {
                    f.parent().map(Path::to_path_buf)
                }
            })
            .filter(|d| d != &self.dir)
            .collect();
        self.extra.retain(|d, _| dirs.contains(d));
        for dir in dirs {
            if self.extra.contains_key(&dir) || !dir.is_dir() {
                continue;
            }
            let tx = self.tx.clone();
            let watched = dir.clone();
            let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let tick = match &event {
                    Ok(e) if e.need_rescan() => Some(Tick::Settled),
                    Ok(e) if e.paths.iter().any(|p| p.parent() == Some(&watched)) => {
                        classify(&e.kind)
                    }
                    Ok(_) => None,
                    Err(_) => Some(Tick::Settled),
                };
                if let Some(t) = tick {
                    let _ = tx.send(t);
                }
            })
            .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
            match made {
                Ok(w) => {
                    self.extra.insert(dir, w);
                }
                Err(e) => tracing::warn!(path = %dir.display(), "cannot watch: {e}"),
            }
        }
    }
}

/// True if an event on `path` may change what `dir` holds: a file in it, the directory itself,
/// or an ancestor on the way to it (created, moved, re-pointed). Other files beside an ancestor
/// (a log next to the units directory) are noise.
fn concerns(dir: &Path, path: &Path) -> bool {
    path.parent() == Some(dir) || dir.starts_with(path)
}

/// Waits for a tick; a settled one returns at once, a busy one once the burst has been quiet for
/// `DEBOUNCE`. False when the watcher is gone.
pub async fn next_burst(rx: &mut mpsc::UnboundedReceiver<Tick>) -> bool {
    match rx.recv().await {
        None => return false,
        Some(Tick::Settled) => {
            // Take what else is already queued: one rescan covers it.
            while rx.try_recv().is_ok() {}
            return true;
        }
        Some(Tick::Busy) => {}
    }
    // Bounded, so a directory that never stops changing is still rescanned.
    let deadline = tokio::time::Instant::now() + DEBOUNCE * 10;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            Ok(Some(Tick::Settled)) => {
                while rx.try_recv().is_ok() {}
                return true;
            }
            Ok(Some(Tick::Busy)) => continue,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn event_kinds() {
        use super::Tick;
        use notify::event::{
            AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode,
        };
        let cases = [
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), None),
            (EventKind::Access(AccessKind::Close(AccessMode::Read)), None),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                Some(Tick::Settled),
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                Some(Tick::Settled),
            ),
            (
                EventKind::Remove(notify::event::RemoveKind::File),
                Some(Tick::Settled),
            ),
            (EventKind::Create(CreateKind::File), Some(Tick::Busy)),
            (EventKind::Modify(ModifyKind::Any), Some(Tick::Busy)),
        ];
        for (kind, want) in cases {
            assert_eq!(super::classify(&kind), want, "{kind:?}");
        }
    }

    #[test]
    fn relevant_paths() {
        let dir = Path::new("/etc/rcd/units");
        let cases = [
            ("/etc/rcd/units/web.toml", true),
            ("/etc/rcd/units", true),
            ("/etc/rcd", true),
            ("/etc/rcd/rcd.log", false),
            ("/etc/rcd/units/sub/x.toml", false),
            ("/etc/rcd/units2", false),
        ];
        for (p, want) in cases {
            assert_eq!(super::concerns(dir, Path::new(p)), want, "{p}");
        }
    }
}
