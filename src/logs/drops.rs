//! The daemon's copy of each container instance's dropped-line counts (the shim keeps them in
//! the container's directory), kept current by a task of its own that the shim's writes wake,
//! so that a status read never touches the disk and an idle daemon does nothing for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::writer::{Dropped, DROPPED_FILE};

/// How often the set of watched instance directories is matched with the table's (in memory;
/// a syscall only for a directory to add or drop).
pub const EVERY: Duration = Duration::from_secs(1);

/// Lines dropped per container id, as last read.
#[derive(Debug, Default)]
pub struct Drops {
    counts: Mutex<HashMap<String, u64>>,
}

impl Drops {
    /// The lines container `id` dropped, as last read (0 if none).
    pub fn get(&self, id: &str) -> u64 {
        self.lock().get(id).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the counts the shim of container `id` left in `dir`. Blocks.
    pub fn read(&self, id: &str, dir: &Path) {
        let n = Dropped::read(dir).total();
        self.lock().insert(id.to_string(), n);
    }

    /// Forgets container `id` (its instance is gone).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// Keeps `drops` current until `stop`: each instance directory `running` lists is watched
/// (inotify, through notify) and its counts file read when the shim rewrites it, so an idle
/// daemon makes no system call for it. The list is matched every [`EVERY`].
pub async fn run(
    drops: std::sync::Arc<Drops>,
    running: impl Fn() -> Vec<(String, PathBuf)> + Send + 'static,
    stop: CancellationToken,
) {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PathBuf>(256);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            for p in e.paths {
                if p.file_name().is_some_and(|n| n == DROPPED_FILE) {
                    // A full channel drops the word, not the count: the next write says it.
                    let _ = tx.try_send(p);
                }
            }
        }
    });
    let Ok(mut watcher) = watcher else {
        tracing::warn!("cannot watch the log drop counts; status shows none");
        return;
    };
    let mut watched: HashMap<String, PathBuf> = HashMap::new();
    loop {
        let now: HashMap<String, PathBuf> = running().into_iter().collect();
        let added: Vec<(String, PathBuf)> = now
            .iter()
            .filter(|(id, _)| !watched.contains_key(*id))
            .map(|(i, d)| (i.clone(), d.clone()))
            .collect();
        for (id, dir) in watched.iter().filter(|(id, _)| !now.contains_key(*id)) {
            let _ = watcher.unwatch(dir);
            drops.forget(id);
        }
        watched.retain(|id, _| now.contains_key(id));
        for (id, dir) in added {
            if watcher
                .watch(&dir, notify::RecursiveMode::NonRecursive)
                .is_ok()
            {
                // What was written before the watch began.
                let (d, i, p) = (drops.clone(), id.clone(), dir.clone());
                let _ = tokio::task::spawn_blocking(move || d.read(&i, &p)).await;
                watched.insert(id, dir);
            }
        }
        let deadline = tokio::time::sleep(EVERY);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                Some(path) = rx.recv() => {
                    let Some(dir) = path.parent().map(Path::to_path_buf) else { continue };
                    // The instance directory's name is the container id.
                    let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                        continue;
                    };
                    if !watched.contains_key(&id) {
                        continue;
                    }
                    let d = drops.clone();
                    let _ = tokio::task::spawn_blocking(move || d.read(&id, &dir)).await;
                }
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_follow_the_shims_file_and_are_forgotten_with_the_container() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Named for its container, as instance directories are.
        let c = dir.path().join("c1");
        std::fs::create_dir(&c).expect("instance dir");
        let drops = std::sync::Arc::new(Drops::default());
        let list = std::sync::Arc::new(Mutex::new(vec![("c1".to_string(), c.clone())]));
        let stop = CancellationToken::new();
        let l = list.clone();
        let task = tokio::spawn(run(
            drops.clone(),
            move || l.lock().expect("list").clone(),
            stop.clone(),
        ));
        let until = |want: u64| {
            let drops = drops.clone();
            async move {
                for _ in 0..300 {
                    if drops.get("c1") == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        assert!(until(0).await, "no file: nothing dropped");
        // Written as the shim writes it (a new file renamed into place).
        std::fs::write(c.join("tmp"), r#"{"stdout":5,"stderr":2}"#).expect("write");
        std::fs::rename(c.join("tmp"), c.join(DROPPED_FILE)).expect("rename");
        assert!(until(7).await, "read when written");
        std::fs::write(c.join("tmp"), r#"{"stdout":9,"stderr":2}"#).expect("write");
        std::fs::rename(c.join("tmp"), c.join(DROPPED_FILE)).expect("rename");
        assert!(until(11).await, "read again when rewritten");
        list.lock().expect("list").clear();
        tokio::time::sleep(EVERY * 2).await;
        assert_eq!(drops.get("c1"), 0, "a container gone is forgotten");
        stop.cancel();
        let _ = task.await;
    }
}
