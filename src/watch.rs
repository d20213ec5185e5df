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
    watched: Vec<PathBuf>,
}

impl DirWatcher {
    /// Starts watching `dir`; every event sends a tick on the returned channel.
    pub fn start(dir: &Path) -> notify::Result<(Self, mpsc::UnboundedReceiver<()>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        // Any event, including an overflow (need_rescan), only means "look again".
        let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            let _ = tx.send(());
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
        for p in self.watched.drain(..) {
            let _ = self.watcher.unwatch(&p);
        }
        let mut targets = Vec::new();
        if self.dir.is_dir() {
            targets.push(self.dir.clone());
        }
        let mut cur = self.dir.parent();
        while let Some(p) = cur {
            if p.is_dir() {
                targets.push(p.to_path_buf());
                break;
            }
            cur = p.parent();
        }
        for t in targets {
            match self.watcher.watch(&t, RecursiveMode::NonRecursive) {
                Ok(()) => self.watched.push(t),
                Err(e) => tracing::warn!(path = %t.display(), "cannot watch: {e}"),
            }
        }
    }
}

/// Waits for a tick, then for the burst to settle; false when the watcher is gone.
pub async fn next_burst(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
    if rx.recv().await.is_none() {
        return false;
    }
    loop {
        match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}
