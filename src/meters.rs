//! The daemon's own figures for `/metrics`: reconciles (count and duration), API requests
//! (duration by route), image pulls and the bytes read from registries, and each unit's start
//! latency. Counted where they happen with atomics (a lock only to find a route's or a unit's
//! histogram), rendered only when scraped. One set per process: a daemon is a process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of a reconcile's or an API request's duration buckets.
const FAST: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Upper bounds (seconds) of a start's buckets: from a rootfs unit's tens of milliseconds to a
/// pull of a large image.
const SLOW: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// A Prometheus histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), then the +Inf bucket.
    buckets: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Its samples (`_bucket` cumulative with `le`, `_sum`, `_count`) under `name`, each with
    /// `labels` first.
    fn render(&self, f: &mut Family<'_>, name: &str, labels: &[(&str, &str)]) {
        let bucket = format!("{name}_bucket");
        let les: Vec<String> = (0..self.buckets.len())
            .map(|i| {
                self.bounds
                    .get(i)
                    .map_or("+Inf".to_string(), |b| b.to_string())
            })
            .collect();
        let mut with_le = labels.to_vec();
        let mut total = 0;
        for (b, le) in self.buckets.iter().zip(&les) {
            total += b.load(Ordering::Relaxed);
            with_le.truncate(labels.len());
            with_le.push(("le", le));
            f.sample(&bucket, &with_le, total);
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        f.sample(&format!("{name}_sum"), labels, format_args!("{sum:.6}"));
        // The count of the buckets read, so the +Inf bucket and the count always agree.
        f.sample(&format!("{name}_count"), labels, total);
    }
}

/// How a reconcile or a pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what it had to.
    Ok,
    /// It failed (and is retried by its own rules).
    Failed,
}

/// The daemon's figures.
#[derive(Debug)]
pub struct Meters {
    reconciles: Histogram,
    reconcile_failures: AtomicU64,
    pulls: [AtomicU64; 2],
    pulled_bytes: AtomicU64,
    /// By method and route (`GET /v1/units/{name}`).
    /// Keyed by method, then route: a request looks its histogram up without allocating.
    requests: Mutex<HashMap<&'static str, HashMap<String, Histogram>>>,
    /// By unit.
    starts: Mutex<HashMap<String, Histogram>>,
    /// Image updates by unit: kept, rolled back.
    updates: Mutex<HashMap<String, [u64; 2]>>,
}

static METERS: LazyLock<Meters> = LazyLock::new(|| Meters {
    reconciles: Histogram::new(&FAST),
    reconcile_failures: AtomicU64::new(0),
    pulls: [AtomicU64::new(0), AtomicU64::new(0)],
    pulled_bytes: AtomicU64::new(0),
    requests: Mutex::new(HashMap::new()),
    starts: Mutex::new(HashMap::new()),
    updates: Mutex::new(HashMap::new()),
});

/// The process's figures.
pub fn get() -> &'static Meters {
    &METERS
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A label value escaped as the text format asks.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One family being written in Prometheus' text format: its samples follow its HELP and TYPE
/// lines. The one writer of the exposition, for `/metrics` and for these figures.
pub struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    /// A sample with its labels (values escaped as the format asks).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Starts family `name` of `kind` (`gauge`, `counter`, `histogram`) in `out`.
pub fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

impl Meters {
    /// One reconcile of a unit ran for `d`.
    pub fn reconciled(&self, d: Duration, outcome: Outcome) {
        self.reconciles.observe(d);
        if outcome == Outcome::Failed {
            self.reconcile_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An API request to `route` (its pattern, so that the label's values stay few) took `d`.
    pub fn requested(&self, method: &'static str, route: &str, d: Duration) {
        let mut m = lock(&self.requests);
        let routes = m.entry(method).or_default();
        match routes.get(route) {
            Some(h) => h.observe(d),
            None => routes
                .entry(route.to_string())
                .or_insert_with(|| Histogram::new(&FAST))
                .observe(d),
        }
    }

    /// Unit `unit` is gone: its series go with it (a unit of the same name later starts afresh).
    pub fn forget(&self, unit: &str) {
        lock(&self.starts).remove(unit);
        lock(&self.updates).remove(unit);
    }

    /// A pull from a registry ended.
    pub fn pulled(&self, outcome: Outcome) {
        self.pulls[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` bytes came in from a registry.
    pub fn received(&self, n: u64) {
        self.pulled_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// A container of `unit` was started in `d` (from the start's beginning, its image pull
    /// included, to the runtime's report that it runs).
    pub fn started(&self, unit: &str, d: Duration) {
        let mut m = lock(&self.starts);
        match m.get(unit) {
            Some(h) => h.observe(d),
            None => {
                let h = Histogram::new(&SLOW);
                h.observe(d);
                m.insert(unit.to_string(), h);
            }
        }
    }

    /// An image update of `unit` ended: kept, or rolled back.
    pub fn updated(&self, unit: &str, kept: bool) {
        lock(&self.updates).entry(unit.to_string()).or_default()[usize::from(!kept)] += 1;
    }

    /// The exposition of the daemon's figures; `queued` is the reconciler's queue depth now and
    /// `units` the units loaded (whose start latencies are shown).
    pub fn render(&self, out: &mut String, queued: usize, units: &[&str]) {
        let mut f = family(
            out,
            "rcd_reconcile_duration_seconds",
            "histogram",
            "How long each reconcile of a unit took.",
        );
        self.reconciles
            .render(&mut f, "rcd_reconcile_duration_seconds", &[]);
        let single = |out: &mut String, name: &str, kind: &str, help: &str, value: u64| {
            family(out, name, kind, help).sample(name, &[], value);
        };
        single(
            out,
            "rcd_reconcile_failures_total",
            "counter",
            "Reconciles that failed (each is retried after its backoff).",
            self.reconcile_failures.load(Ordering::Relaxed),
        );
        single(
            out,
            "rcd_reconcile_queue_depth",
            "gauge",
            "Units waiting for a reconcile.",
            queued as u64,
        );
        let name = "rcd_api_request_duration_seconds";
        let mut f = family(
            out,
            name,
            "histogram",
            "How long the API took to answer (until the headers of a streamed answer).",
        );
        let requests = lock(&self.requests);
        let mut keys: Vec<(&str, &String)> = requests
            .iter()
            .flat_map(|(m, routes)| routes.keys().map(move |r| (*m, r)))
            .collect();
        keys.sort();
        for (method, route) in keys {
            requests[method][route].render(&mut f, name, &[("method", method), ("route", route)]);
        }
        drop(requests);
        let name = "rcd_image_pulls_total";
        let mut f = family(
            out,
            name,
            "counter",
            "Image pulls from registries, by result.",
        );
        for (result, n) in [("ok", &self.pulls[0]), ("error", &self.pulls[1])] {
            f.sample(name, &[("result", result)], n.load(Ordering::Relaxed));
        }
        single(
            out,
            "rcd_image_pull_bytes_total",
            "counter",
            "Bytes read from registries (blobs already stored are not fetched).",
            self.pulled_bytes.load(Ordering::Relaxed),
        );
        let name = "rcd_unit_start_duration_seconds";
        let mut f = family(
            out,
            name,
            "histogram",
            "How long the unit's container starts took, its image pull included.",
        );
        let starts = lock(&self.starts);
        for unit in units {
            if let Some(h) = starts.get(*unit) {
                h.render(&mut f, name, &[("unit", unit)]);
            }
        }
        drop(starts);
        let name = "rcd_unit_updates_total";
        let mut f = family(
            out,
            name,
            "counter",
            "Image updates of the unit since the daemon started, by result.",
        );
        let updates = lock(&self.updates);
        for unit in units {
            if let Some(counts) = updates.get(*unit) {
                for (result, n) in ["kept", "rolled_back"].iter().zip(counts) {
                    f.sample(name, &[("unit", unit), ("result", result)], n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_agree_with_their_count() {
        let h = Histogram::new(&SLOW);
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_millis(700));
        h.observe(Duration::from_secs(500));
        let mut out = String::new();
        h.render(
            &mut family(&mut out, "x", "histogram", "h"),
            "x",
            &[("unit", "a")],
        );
        for line in [
            "x_bucket{unit=\"a\",le=\"0.05\"} 1",
            "x_bucket{unit=\"a\",le=\"0.5\"} 1",
            "x_bucket{unit=\"a\",le=\"1\"} 2",
            "x_bucket{unit=\"a\",le=\"120\"} 2",
            "x_bucket{unit=\"a\",le=\"+Inf\"} 3",
            "x_sum{unit=\"a\"} 500.730000",
            "x_count{unit=\"a\"} 3",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
        let mut out = String::new();
        Histogram::new(&FAST).render(&mut family(&mut out, "y", "histogram", "h"), "y", &[]);
        assert!(
            out.contains("y_bucket{le=\"+Inf\"} 0\ny_sum 0.000000\ny_count 0\n"),
            "{out}"
        );
    }
}
