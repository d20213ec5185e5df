//! How far a pull has got: counters the puller bumps and `rctl status` / `rctl image pull` read.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Live counters of one pull; shared (`Arc`) between the puller and whoever reports it.
#[derive(Debug, Default)]
pub struct Progress {
    layers_total: AtomicU64,
    layers_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
}

/// A snapshot of a pull's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Layers the image has.
    pub layers_total: u64,
    /// Layers stored and verified (including ones already present).
    pub layers_done: u64,
    /// Bytes of all layers.
    pub bytes_total: u64,
    /// Bytes stored so far (including blobs already present and resumed partials).
    pub bytes_done: u64,
}

impl Progress {
    /// The layer list is known: `sizes` are the blobs' sizes.
    pub fn begin(&self, sizes: &[u64]) {
        // A second pull of the same image reuses the counters: start them over.
        self.layers_done.store(0, Ordering::Relaxed);
        self.bytes_done.store(0, Ordering::Relaxed);
        self.layers_total
            .store(sizes.len() as u64, Ordering::Relaxed);
        self.bytes_total
            .store(sizes.iter().sum(), Ordering::Relaxed);
    }

    /// `n` more bytes are stored.
    pub fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes counted earlier are discarded (a partial restarted from zero).
    pub fn sub_bytes(&self, n: u64) {
        // Saturating: a report is information, never a reason to wrap.
        let _ = self
            .bytes_done
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// One more layer is complete.
    pub fn layer_done(&self) {
        self.layers_done.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        Counts {
            layers_total: self.layers_total.load(Ordering::Relaxed),
            layers_done: self.layers_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_pull() {
        let p = Progress::default();
        p.begin(&[10, 20]);
        p.add_bytes(15);
        p.sub_bytes(20);
        p.add_bytes(30);
        p.layer_done();
        assert_eq!(
            p.counts(),
            Counts {
                layers_total: 2,
                layers_done: 1,
                bytes_total: 30,
                bytes_done: 30
            }
        );
    }
}
