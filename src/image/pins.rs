//! Pins: what pulls in flight hold on to, in, and what garbage collection must leave, out.
//! Pulls run without the image lock (a network pull must not hold up removal, pruning or the
//! starts queued behind them), so each pins the image's name and, as it learns them, its
//! blobs (stored or partly downloaded) and its layers' snapshots (made or being unpacked).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use super::digest::Digest;

/// Everything pinned now, each with how many pins hold it.
#[derive(Debug, Default)]
pub struct Pinned {
    images: HashMap<String, usize>,
    blobs: HashMap<Digest, usize>,
    chains: HashMap<Digest, usize>,
}

impl Pinned {
    /// Whether image `name`'s record is pinned.
    pub fn image(&self, name: &str) -> bool {
        self.images.contains_key(name)
    }

    /// Whether blob `digest` (or its partial download) is pinned.
    pub fn blob(&self, digest: &Digest) -> bool {
        self.blobs.contains_key(digest)
    }

    /// Whether the snapshot of chain id `chain` (or its unpack in progress) is pinned.
    pub fn chain(&self, chain: &Digest) -> bool {
        self.chains.contains_key(chain)
    }
}

/// The pins of one set of image stores; cheap to clone, clones share.
#[derive(Debug, Clone, Default)]
pub struct Pins(Arc<Mutex<Pinned>>);

impl Pins {
    /// Pins image `name` until the returned pin is dropped; the pull adds its blobs and
    /// snapshots to it as it learns them.
    pub fn pin(&self, name: &str) -> Pin {
        up(&mut self.lock().images, name.to_string());
        Pin {
            pins: self.clone(),
            image: name.to_string(),
            held: Mutex::default(),
        }
    }

    /// What is pinned now. Nothing is pinned while the guard lives, so a collector that checks
    /// and removes under it never removes what a pull has just pinned (and a pull pins before
    /// it looks whether a blob or a snapshot is there). Held briefly: no slow removal under it.
    pub fn lock(&self) -> MutexGuard<'_, Pinned> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One pull's pins, released when dropped.
#[derive(Debug)]
pub struct Pin {
    pins: Pins,
    image: String,
    /// Blobs, then chain ids, each pinned once by this pin.
    held: Mutex<(Vec<Digest>, Vec<Digest>)>,
}

impl Pin {
    /// Pins blob `digest`; call before looking whether it is stored.
    pub fn blob(&self, digest: &Digest) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if !held.0.contains(digest) {
            held.0.push(*digest);
            up(&mut self.pins.lock().blobs, *digest);
        }
    }

    /// Pins the snapshot of chain id `chain`; call before looking whether it is unpacked.
    pub fn chain(&self, chain: &Digest) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if !held.1.contains(chain) {
            held.1.push(*chain);
            up(&mut self.pins.lock().chains, *chain);
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let (blobs, chains) =
            std::mem::take(self.held.get_mut().unwrap_or_else(|p| p.into_inner()));
        let mut pinned = self.pins.lock();
        down(&mut pinned.images, &self.image);
        for b in &blobs {
            down(&mut pinned.blobs, b);
        }
        for c in &chains {
            down(&mut pinned.chains, c);
        }
    }
}

fn up<K: Eq + Hash>(counts: &mut HashMap<K, usize>, key: K) {
    *counts.entry(key).or_default() += 1;
}

fn down<K: Eq + Hash>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_hold_until_the_last_one_goes() {
        let pins = Pins::default();
        let (x, y) = (Digest::of(b"x"), Digest::of(b"y"));
        let a = pins.pin("example.com/a:1");
        a.blob(&x);
        a.blob(&x);
        a.chain(&y);
        let b = pins.pin("example.com/a:1");
        b.blob(&x);
        {
            let p = pins.lock();
            assert!(p.image("example.com/a:1") && p.blob(&x) && p.chain(&y));
            assert!(!p.image("example.com/b:1") && !p.blob(&y) && !p.chain(&x));
        }
        drop(a);
        {
            let p = pins.lock();
            assert!(p.image("example.com/a:1") && p.blob(&x));
            assert!(!p.chain(&y), "only a pinned it");
        }
        drop(b);
        let p = pins.lock();
        assert!(!p.image("example.com/a:1") && !p.blob(&x));
        assert!(p.images.is_empty() && p.blobs.is_empty() && p.chains.is_empty());
    }
}
