//! Per-key shared values that exist only while someone holds them: a lock per blob being
//! downloaded, per layer being unpacked, per image being pulled. The map never grows beyond
//! what is in use.

use std::collections::HashMap;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// Values by key, each created on first `enter` and dropped when its last holder leaves.
#[derive(Debug)]
pub struct Keyed<K, V> {
    map: Mutex<HashMap<K, Arc<V>>>,
}

impl<K, V> Default for Keyed<K, V> {
    fn default() -> Self {
        Keyed {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Default> Keyed<K, V> {
    /// The value of `key` (created if nobody holds it), held until the guard drops.
    pub fn enter(&self, key: &K) -> Held<'_, K, V> {
        let value = self.lock().entry(key.clone()).or_default().clone();
        Held {
            owner: self,
            key: key.clone(),
            value,
        }
    }

    /// Applies `f` to the value of `key` if someone holds it.
    pub fn peek<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.lock().get(key).map(|v| f(v))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<V>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A hold on one key's value.
pub struct Held<'a, K: Eq + Hash + Clone, V: Default> {
    owner: &'a Keyed<K, V>,
    key: K,
    value: Arc<V>,
}

impl<K: Eq + Hash + Clone, V: Default> Deref for Held<'_, K, V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

impl<K: Eq + Hash + Clone, V: Default> Drop for Held<'_, K, V> {
    fn drop(&mut self) {
        let mut map = self.owner.lock();
        // The map's reference and ours only: nobody else holds it. (Counted under the map's
        // lock, where every other reference is made.)
        if map
            .get(&self.key)
            .is_some_and(|v| Arc::strong_count(v) == 2)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_while_held_forgotten_after() {
        let k: Keyed<u8, Mutex<u32>> = Keyed::default();
        let a = k.enter(&1);
        let b = k.enter(&1);
        *a.lock().unwrap() += 1;
        assert_eq!(*b.lock().unwrap(), 1, "one value per key");
        assert_eq!(k.peek(&1, |v| *v.lock().unwrap()), Some(1));
        drop(a);
        assert!(k.peek(&1, |_| ()).is_some(), "b still holds it");
        drop(b);
        assert!(k.peek(&1, |_| ()).is_none(), "forgotten");
        assert_eq!(*k.enter(&1).lock().unwrap(), 0, "a fresh value");
    }
}
