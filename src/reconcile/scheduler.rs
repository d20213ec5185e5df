//! The scheduler under the reconciler, generic over what it runs: "look at key K" requests in
//! (coalesced: a key asked for ten times while it waits runs once), one run per key at a time,
//! at most `parallel` runs at once, delayed looks, periodic looks at every key (a missed event
//! heals by itself), and exponential backoff for a key whose runs keep failing.
//!
//! What is pending is bounded: one entry per key, and at most `MAX_REQUESTS` requests (with
//! their waiters) per key; a caller beyond that is refused rather than queued.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};

/// Requests (with waiters) one key may have pending before callers are refused.
pub const MAX_REQUESTS: usize = 64;

/// What a run says of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing more to do until something pokes it.
    Idle,
    /// Look again after this long.
    After(Duration),
    /// The run failed: look again after the key's backoff, which doubles each time in a row.
    Failed,
}

/// Backoff of a key whose runs keep failing: `first`, doubled per failure, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// After the first failure.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `failures`th failure in a row (1-based).
    pub fn after(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How the scheduler runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Runs in flight at once, at most.
    pub parallel: usize,
    /// Every key is looked at this often, whatever else happens.
    pub resync: Duration,
    /// Waits after failures.
    pub backoff: Backoff,
    /// How long the runs in flight may take to finish at shutdown.
    pub drain: Duration,
}

/// A run in flight hears through this that its key was asked for again meanwhile, with the
/// requests pending for the next run.
pub trait InFlight<R>: Default + Send + Sync + 'static {
    /// The key was asked for again; `pending` are the requests the next run will get.
    fn poked(&self, pending: &[R]);
}

/// The caller asked for too much at once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0} requests already wait for {1:?}; try again later")]
pub struct Full(pub usize, pub String);

#[derive(Debug)]
struct Pending<R> {
    /// Keys asked for, in order, each once.
    keys: VecDeque<String>,
    queued: HashSet<String>,
    /// Every key is asked for.
    all: bool,
    requests: HashMap<String, Vec<R>>,
    waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
}

impl<R> Default for Pending<R> {
    fn default() -> Self {
        Pending {
            keys: VecDeque::new(),
            queued: HashSet::new(),
            all: false,
            requests: HashMap::new(),
            waiters: HashMap::new(),
        }
    }
}

/// The scheduler's inbox: cheap to clone, never blocks, bounded.
#[derive(Debug)]
pub struct Queue<R> {
    shared: Arc<(Mutex<Pending<R>>, Notify)>,
}

impl<R> Clone for Queue<R> {
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
        }
    }
}

impl<R> Default for Queue<R> {
    fn default() -> Self {
        Queue {
            shared: Arc::new((Mutex::new(Pending::default()), Notify::new())),
        }
    }
}

impl<R: PartialEq> Queue<R> {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending<R>> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(p: &mut Pending<R>, key: &str) {
        if p.queued.insert(key.to_string()) {
            p.keys.push_back(key.to_string());
        }
    }

    /// Keys waiting for a run (a key runs once however often it was asked for).
    pub fn depth(&self) -> usize {
        self.pending().keys.len()
    }

    /// Asks for a look at `key`.
    pub fn poke(&self, key: &str) {
        Self::mark(&mut self.pending(), key);
        self.shared.1.notify_one();
    }

    /// Asks for a look at every key.
    pub fn poke_all(&self) {
        self.pending().all = true;
        self.shared.1.notify_one();
    }

    /// Hands `request` to the next run of `key` (an equal one already pending counts for it);
    /// the receiver hears once that run is done.
    pub fn ask(&self, key: &str, request: R) -> Result<oneshot::Receiver<()>, Full> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending();
            let waiting = p.waiters.get(key).map_or(0, Vec::len);
            if waiting >= MAX_REQUESTS {
                return Err(Full(waiting, key.to_string()));
            }
            let requests = p.requests.entry(key.to_string()).or_default();
            if !requests.contains(&request) {
                requests.push(request);
            }
            p.waiters.entry(key.to_string()).or_default().push(tx);
            Self::mark(&mut p, key);
        }
        self.shared.1.notify_one();
        Ok(rx)
    }

    /// Hands `request` to the next run of `key`, nobody waiting for it.
    pub fn tell(&self, key: &str, request: R) {
        {
            let mut p = self.pending();
            let requests = p.requests.entry(key.to_string()).or_default();
            if requests.len() < MAX_REQUESTS && !requests.contains(&request) {
                requests.push(request);
            }
            Self::mark(&mut p, key);
        }
        self.shared.1.notify_one();
    }

    fn take(&self) -> Pending<R> {
        std::mem::take(&mut *self.pending())
    }
}

struct Slot<R, N> {
    running: bool,
    /// Asked for again while running: runs once more after.
    dirty: bool,
    /// Waiting for a run slot (in `ready`).
    ready: bool,
    requests: Vec<R>,
    /// Answered when the run in flight ends.
    current: Vec<oneshot::Sender<()>>,
    /// Answered when the run after it ends.
    next: Vec<oneshot::Sender<()>>,
    delay: Option<delay_queue::Key>,
    failures: u32,
    in_flight: Option<Arc<N>>,
}

impl<R, N> Default for Slot<R, N> {
    fn default() -> Self {
        Slot {
            running: false,
            dirty: false,
            ready: false,
            requests: Vec::new(),
            current: Vec::new(),
            next: Vec::new(),
            delay: None,
            failures: 0,
            in_flight: None,
        }
    }
}

/// Marks `key` due: queued for a run slot, or (running) to run again after.
fn due<R, N: InFlight<R>>(
    slots: &mut HashMap<String, Slot<R, N>>,
    ready: &mut VecDeque<String>,
    key: String,
) {
    let slot = slots.entry(key.clone()).or_default();
    if slot.running {
        slot.dirty = true;
        if let Some(n) = &slot.in_flight {
            n.poked(&slot.requests);
        }
    } else if !slot.ready {
        slot.ready = true;
        ready.push_back(key);
    }
}

/// Runs `work` for the keys asked for on `queue` until `cancel`, then waits (at most
/// `options.drain`) for the runs in flight. `keys` lists every key, for the periodic look.
pub async fn run<R, N, F, Fut>(
    queue: Queue<R>,
    options: Options,
    keys: impl Fn() -> Vec<String>,
    work: F,
    cancel: CancellationToken,
) where
    R: PartialEq + Clone + Send + 'static,
    N: InFlight<R>,
    F: Fn(String, Vec<R>, Arc<N>) -> Fut,
    Fut: Future<Output = Next> + Send + 'static,
{
    let mut slots: HashMap<String, Slot<R, N>> = HashMap::new();
    let mut ready: VecDeque<String> = VecDeque::new();
    let mut tasks: JoinSet<(String, Next)> = JoinSet::new();
    let mut delays: DelayQueue<String> = DelayQueue::new();
    let mut resync =
        tokio::time::interval_at(tokio::time::Instant::now() + options.resync, options.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let parallel = options.parallel.max(1);

    loop {
        tokio::select! {
            () = queue.shared.1.notified() => {
                let p = queue.take();
                let mut woken: Vec<String> = p.keys.into_iter().collect();
                if p.all {
                    woken.extend(keys());
                }
                for (key, requests) in p.requests {
                    let slot = slots.entry(key).or_default();
                    for r in requests {
                        if !slot.requests.contains(&r) {
                            slot.requests.push(r);
                        }
                    }
                }
                for (key, waiters) in p.waiters {
                    slots.entry(key).or_default().next.extend(waiters);
                }
                for key in woken {
                    due(&mut slots, &mut ready, key);
                }
            }
            Some(expired) = std::future::poll_fn(|cx| delays.poll_expired(cx)) => {
                let key = expired.into_inner();
                if let Some(slot) = slots.get_mut(&key) {
                    slot.delay = None;
                }
                due(&mut slots, &mut ready, key);
            }
            Some(done) = tasks.join_next() => {
                let (key, next) = match done {
                    Ok(r) => r,
                    Err(e) => {
                        // A run that panicked: its key is lost for this turn, not for good
                        // (the periodic look finds it again).
                        tracing::error!("reconcile task failed: {e}");
                        continue;
                    }
                };
                let slot = slots.entry(key.clone()).or_default();
                slot.running = false;
                slot.in_flight = None;
                for tx in slot.current.drain(..) {
                    let _ = tx.send(());
                }
                if let Some(k) = slot.delay.take() {
                    delays.remove(&k);
                }
                let after = match next {
                    Next::Idle => {
                        slot.failures = 0;
                        None
                    }
                    Next::After(d) => {
                        slot.failures = 0;
                        Some(d)
                    }
                    Next::Failed => {
                        slot.failures = slot.failures.saturating_add(1);
                        Some(options.backoff.after(slot.failures))
                    }
                };
                if let Some(after) = after {
                    slot.delay = Some(delays.insert(key.clone(), after));
                }
                if std::mem::take(&mut slot.dirty) {
                    due(&mut slots, &mut ready, key);
                }
            }
            _ = resync.tick() => {
                for key in keys() {
                    due(&mut slots, &mut ready, key);
                }
            }
            () = cancel.cancelled() => break,
        }
        while tasks.len() < parallel {
            let Some(key) = ready.pop_front() else { break };
            let slot = slots.entry(key.clone()).or_default();
            slot.ready = false;
            slot.running = true;
            let next = std::mem::take(&mut slot.next);
            slot.current.extend(next);
            let requests = std::mem::take(&mut slot.requests);
            let in_flight = Arc::new(N::default());
            slot.in_flight = Some(in_flight.clone());
            let fut = work(key.clone(), requests, in_flight);
            tasks.spawn(async move { (key, fut.await) });
        }
        // Forget idle slots with nothing pending, so the map does not grow without bound.
        if slots.len() > 64 {
            slots.retain(|_, s| {
                s.running
                    || s.ready
                    || s.delay.is_some()
                    || s.failures > 0
                    || !s.next.is_empty()
                    || !s.requests.is_empty()
            });
        }
    }
    // Let runs in flight finish their step, so what is recorded matches what runs.
    let _ = tokio::time::timeout(options.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Seen(Mutex<Vec<Vec<u8>>>);

    impl InFlight<u8> for Seen {
        fn poked(&self, pending: &[u8]) {
            self.0.lock().unwrap().push(pending.to_vec());
        }
    }

    const OPTIONS: Options = Options {
        parallel: 2,
        resync: Duration::from_secs(30),
        backoff: Backoff {
            first: Duration::from_secs(2),
            max: Duration::from_secs(60),
        },
        drain: Duration::from_secs(1),
    };

    /// A log of runs: (key, requests, time since start in ms).
    type Log = Arc<Mutex<Vec<(String, Vec<u8>, u128)>>>;

    /// Starts a scheduler whose runs take `took`, then say what `next` says of the key.
    fn start(
        options: Options,
        keys: Vec<&'static str>,
        took: Duration,
        next: impl Fn(&str) -> Next + Send + Sync + 'static,
    ) -> (Queue<u8>, Log, CancellationToken, Arc<AtomicUsize>) {
        let queue = Queue::default();
        let log: Log = Arc::default();
        let cancel = CancellationToken::new();
        let peak = Arc::new(AtomicUsize::new(0));
        let (l, p, q, c) = (log.clone(), peak.clone(), queue.clone(), cancel.clone());
        let next = Arc::new(next);
        let t0 = tokio::time::Instant::now();
        let now_running = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            run(
                q,
                options,
                move || keys.iter().map(|k| k.to_string()).collect(),
                move |key: String, requests: Vec<u8>, _n: Arc<Seen>| {
                    let (l, p, next, running) =
                        (l.clone(), p.clone(), next.clone(), now_running.clone());
                    async move {
                        let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(n, Ordering::SeqCst);
                        l.lock()
                            .unwrap()
                            .push((key.clone(), requests, t0.elapsed().as_millis()));
                        tokio::time::sleep(took).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        next(&key)
                    }
                },
                c,
            )
            .await
        });
        (queue, log, cancel, peak)
    }

    fn runs_of(log: &Log, key: &str) -> Vec<u128> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| k == key)
            .map(|(_, _, t)| *t)
            .collect()
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pokes_while_running_coalesce_into_one_more_run() {
        let (q, log, cancel, _) = start(OPTIONS, vec![], Duration::from_secs(1), |_| Next::Idle);
        q.poke("a");
        settle().await;
        for _ in 0..10_000 {
            q.poke("a");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs_of(&log, "a"), vec![0, 1000]);
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_parallel_runs_at_once_and_each_key_once() {
        let (q, log, cancel, peak) = start(OPTIONS, vec![], Duration::from_secs(1), |_| Next::Idle);
        for k in ["a", "b", "c", "d", "a", "b"] {
            q.poke(k);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(runs_of(&log, "a"), vec![0]);
        assert_eq!(runs_of(&log, "c"), vec![1000]);
        assert_eq!(runs_of(&log, "d"), vec![1000]);
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_success_resets() {
        let fails = Arc::new(AtomicUsize::new(4));
        let f = fails.clone();
        let (q, log, cancel, _) = start(OPTIONS, vec![], Duration::ZERO, move |_| {
            if f.load(Ordering::SeqCst) > 0 {
                f.fetch_sub(1, Ordering::SeqCst);
                Next::Failed
            } else {
                Next::Idle
            }
        });
        q.poke("a");
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Failed at 0, then looked at 2, 4, 8 s later; failed again and again, then idle.
        assert_eq!(runs_of(&log, "a"), vec![0, 2000, 6000, 14000, 30000]);
        assert_eq!(
            Backoff {
                first: Duration::from_secs(2),
                max: Duration::from_secs(60)
            }
            .after(40),
            Duration::from_secs(60)
        );
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_asked_for_is_kept_and_a_poke_runs_sooner() {
        let (q, log, cancel, _) = start(OPTIONS, vec![], Duration::ZERO, |_| {
            Next::After(Duration::from_secs(10))
        });
        q.poke("a");
        tokio::time::sleep(Duration::from_secs(3)).await;
        q.poke("a");
        tokio::time::sleep(Duration::from_secs(12)).await;
        // The poke ran it at 3 s, and that run's delay replaced the first one.
        assert_eq!(runs_of(&log, "a"), vec![0, 3000, 13000]);
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn every_key_is_looked_at_periodically() {
        let (_q, log, cancel, _) = start(OPTIONS, vec!["a", "b"], Duration::ZERO, |_| Next::Idle);
        tokio::time::sleep(Duration::from_secs(65)).await;
        assert_eq!(runs_of(&log, "a"), vec![30000, 60000]);
        assert_eq!(runs_of(&log, "b"), vec![30000, 60000]);
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn requests_reach_the_next_run_deduplicated_and_their_waiters_hear_of_it() {
        let (q, log, cancel, _) = start(OPTIONS, vec![], Duration::from_secs(1), |_| Next::Idle);
        q.poke("a");
        settle().await;
        // While the first run is in flight: these go to the second.
        let w1 = q.ask("a", 7).unwrap();
        let w2 = q.ask("a", 7).unwrap();
        q.tell("a", 8);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(w1.await.is_ok() && w2.await.is_ok());
        let log = log.lock().unwrap().clone();
        assert_eq!(log[0].1, Vec::<u8>::new());
        assert_eq!(log[1].1, vec![7, 8]);
        assert_eq!(log[1].2, 1000);
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_waiters_for_one_key_are_refused() {
        let q: Queue<u8> = Queue::default();
        for _ in 0..MAX_REQUESTS {
            q.ask("a", 1).unwrap();
        }
        assert!(q.ask("a", 1).is_err());
        assert!(q.ask("b", 1).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_in_flight_hears_of_pokes_with_the_pending_requests() {
        let queue: Queue<u8> = Queue::default();
        let cancel = CancellationToken::new();
        let heard: Arc<Mutex<Option<Arc<Seen>>>> = Arc::default();
        let h = heard.clone();
        let (q, c) = (queue.clone(), cancel.clone());
        tokio::spawn(run(
            q,
            OPTIONS,
            Vec::new,
            move |_k: String, _r: Vec<u8>, n: Arc<Seen>| {
                *h.lock().unwrap() = Some(n);
                async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Next::Idle
                }
            },
            c,
        ));
        queue.poke("a");
        settle().await;
        queue.tell("a", 3);
        settle().await;
        let seen = heard.lock().unwrap().clone().unwrap();
        assert_eq!(*seen.0.lock().unwrap(), vec![vec![3]]);
        cancel.cancel();
    }
}
