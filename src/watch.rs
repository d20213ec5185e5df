//! The units-directory watcher: inotify events in (through notify), "rescan now" ticks out.
//! Watches the directory and its ancestors, never single files, so rename-over saves, a
//! directory created later and a re-pointed symlink are all seen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long events are gathered into one rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// A running watcher; dropping it stops the watching.
pub struct DirWatcher {
    watcher: RecommendedWatcher,
    dir: PathBuf,
    watched: Vec<(PathBuf, Option<(u64, u64)>)>,
}

/// The device and inode a path resolves to now (through symlinks).
fn identity(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

impl DirWatcher {
    /// Starts watching `dir`; every event sends a tick on the returned channel.
    pub fn start(dir: &Path) -> notify::Result<(Self, mpsc::UnboundedReceiver<()>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let target = dir.to_path_buf();
        // Any relevant event, and any overflow (need_rescan), only means "look again".
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match &event {
                Ok(e) => {
                    e.paths.is_empty()
                        || e.need_rescan()
                        || e.paths.iter().any(|p| concerns(&target, p))
                }
                Err(_) => true,
            };
            if relevant {
                let _ = tx.send(());
            }
        })?;
        let mut w = DirWatcher {
            watcher,
            dir: dir.to_path_buf(),
            watched: Vec::new(),
        };
        w.rearm();
        Ok((w, rx))
    }

    /// Re-establishes the watches: the directory itself if it exists (through a symlink, its
    /// target), and each ancestor up to the first that exists, to see it appear or move.
    pub fn rearm(&mut self) {
        let mut targets = Vec::new();
        if self.dir.is_dir() {
            targets.push((self.dir.clone(), identity(&self.dir)));
        }
        let mut cur = self.dir.parent();
        while let Some(p) = cur {
            if p.is_dir() {
                targets.push((p.to_path_buf(), identity(p)));
                break;
            }
            cur = p.parent();
        }
        // Unchanged targets keep their watches: re-adding would itself raise events forever.
        if targets == self.watched {
            return;
        }
        for (p, _) in self.watched.drain(..) {
            let _ = self.watcher.unwatch(&p);
        }
        for (t, id) in targets {
            match self.watcher.watch(&t, RecursiveMode::NonRecursive) {
                Ok(()) => self.watched.push((t, id)),
                Err(e) => tracing::warn!(path = %t.display(), "cannot watch: {e}"),
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

/// Waits for a tick, then for the burst to settle; false when the watcher is gone.
pub async fn next_burst(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
    if rx.recv().await.is_none() {
        return false;
    }
    // Bounded, so a directory that never stops changing is still rescanned.
    let deadline = tokio::time::Instant::now() + DEBOUNCE * 10;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            Ok(Some(())) => continue,
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
