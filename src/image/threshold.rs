//! Image garbage collection by disk usage, as kubelet's: once the filesystem under the image
//! stores is `high` per cent full, the least recently used images that nothing keeps are
//! removed, one at a time, until it is at most `low` per cent full (or nothing is left to
//! remove). What units name, run, try or would roll back to is kept by the caller's `keep`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::store::Image;

/// `[images] gc_high` and `gc_low`, per cent of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Collect once usage reaches this (100: never).
    pub high: u8,
    /// Collect down to this.
    pub low: u8,
    /// An image stored or used more recently than this stays (kubelet's minimum age): a pull
    /// is not undone by the collection it set off.
    pub min_age: Duration,
}

impl Default for Thresholds {
    /// kubelet's defaults.
    fn default() -> Self {
        Thresholds {
            high: 85,
            low: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

/// Parses `"85%"` (or `"85"`) as a percentage from 0 to 100.
pub fn parse_percent(text: &str) -> Result<u8, String> {
    let n = text.trim().trim_end_matches('%').trim();
    n.parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| format!("{text:?} is not a percentage from 0% to 100%"))
}

/// How full the filesystem holding `path` is, in per cent, as `df` counts it (blocks reserved
/// for root count as unavailable).
pub fn usage(path: &Path) -> std::io::Result<f64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let used = s.blocks().saturating_sub(s.blocks_free()) as f64;
    let avail = s.blocks_available() as f64;
    if used + avail == 0.0 {
        return Ok(0.0);
    }
    Ok(used * 100.0 / (used + avail))
}

/// The images that may go, least recently used first: those `keep` does not keep and that
/// were neither stored nor used by a start (`last_used`, this daemon's life) within `min_age`
/// of `now_ms`.
pub fn victims(
    images: Vec<Image>,
    last_used: &HashMap<String, u64>,
    keep: impl Fn(&Image) -> bool,
    now_ms: u64,
    min_age: Duration,
) -> Vec<Image> {
    let used = |i: &Image| {
        last_used
            .get(&i.name)
            .copied()
            .unwrap_or(i.stored_ms)
            .max(i.stored_ms)
    };
    let oldest_kept = now_ms.saturating_sub(min_age.as_millis() as u64);
    let mut out: Vec<Image> = images
        .into_iter()
        .filter(|i| used(i) < oldest_kept && !keep(i))
        .collect();
    out.sort_by_key(|i| (used(i), i.name.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;

    fn image(name: &str, stored_ms: u64) -> Image {
        Image {
            name: name.into(),
            manifest: Digest::of(name.as_bytes()),
            config: Digest::of(b"c"),
            digest: None,
            layers: vec![],
            stored_ms,
        }
    }

    #[test]
    fn least_recently_used_first_and_kept_ones_never() {
        let images = vec![
            image("a", 10),
            image("b", 20),
            image("c", 30),
            image("d", 5),
            image("e", 95),
        ];
        // `c` was used by a start after `b` was stored; `d` is kept; `e` is too recent.
        let used = HashMap::from([("a".to_string(), 40), ("c".to_string(), 35)]);
        let min_age = Duration::from_millis(10);
        let order: Vec<String> = victims(images, &used, |i| i.name == "d", 100, min_age)
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(order, ["b", "c", "a"]);
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("85%"), Ok(85));
        assert_eq!(parse_percent("80"), Ok(80));
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("lots").is_err());
        let u = usage(Path::new("/")).unwrap();
        assert!((0.0..=100.0).contains(&u), "{u}");
    }
}
