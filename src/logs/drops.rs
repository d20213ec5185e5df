//! The daemon's copy of each container instance's dropped-line counts (the shim keeps them in
//! the container's directory), refreshed by a task of its own, so that a status read never
//! touches the disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::writer::{Dropped, DROPPED_FILE};

/// How often the counts are read again (only files whose modification time moved).
pub const EVERY: Duration = Duration::from_secs(1);

/// Lines dropped per container id, as last read.
#[derive(Debug, Default)]
pub struct Drops {
    counts: Mutex<HashMap<String, (SystemTime, u64)>>,
}

impl Drops {
    /// The lines container `id` dropped, as last read (0 if none).
    pub fn get(&self, id: &str) -> u64 {
        self.lock().get(id).map_or(0, |(_, n)| *n)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (SystemTime, u64)>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the counts of the containers `dirs` names (id, directory), keeping only those:
    /// a file not modified since it was last read is not read again. Blocks.
    pub fn refresh(&self, dirs: Vec<(String, PathBuf)>) {
        let known: HashMap<String, SystemTime> = self
            .lock()
            .iter()
            .map(|(k, (t, _))| (k.clone(), *t))
            .collect();
        let mut fresh = HashMap::new();
        for (id, dir) in dirs {
            let Ok(modified) = std::fs::metadata(dir.join(DROPPED_FILE)).and_then(|m| m.modified())
            else {
                continue;
            };
            if known.get(&id) == Some(&modified) {
                fresh.insert(id.clone(), (modified, self.get(&id)));
            } else {
                fresh.insert(id, (modified, Dropped::read(&dir).total()));
            }
        }
        *self.lock() = fresh;
    }
}

/// Refreshes `drops` every [`EVERY`] from the directories `running` lists, until `stop`.
pub async fn run(
    drops: std::sync::Arc<Drops>,
    running: impl Fn() -> Vec<(String, PathBuf)> + Send + 'static,
    stop: CancellationToken,
) {
    loop {
        let dirs = running();
        let d = drops.clone();
        let _ = tokio::task::spawn_blocking(move || d.refresh(dirs)).await;
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_from_the_shims_file_and_forgotten_with_the_container() {
        let dir = tempfile::tempdir().expect("tempdir");
        let drops = Drops::default();
        let c = dir.path().to_path_buf();
        drops.refresh(vec![("c1".into(), c.clone())]);
        assert_eq!(drops.get("c1"), 0, "no file: nothing dropped");
        std::fs::write(c.join(DROPPED_FILE), r#"{"stdout":5,"stderr":2}"#).expect("write");
        drops.refresh(vec![("c1".into(), c.clone())]);
        assert_eq!(drops.get("c1"), 7);
        drops.refresh(Vec::new());
        assert_eq!(drops.get("c1"), 0, "a container gone is forgotten");
    }
}
