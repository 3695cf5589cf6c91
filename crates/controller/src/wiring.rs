//! What every controller is built from and shares: the [`Wiring`] handed to each controller's
//! constructor, the reconcile wrapper (leadership gate, metrics, per-object backoff), the
//! error policy, and the health of the watches. The controllers import this module; the code
//! that runs them ([`crate::run`]) sits above both, so there is no import circle.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::runtime::Controller;
use kube::runtime::controller::{self, Action, Config as ControllerConfig};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};

use crate::{Context, Error};

/// First retry delay after a failed reconcile; it doubles per consecutive failure.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// A watch counts as failing while its last error is this recent and nothing succeeded since.
/// Every watch retries within [`WatchBackoff`]'s 1.2 s while it fails, so a watch with no
/// error for this long works again, even if (a controller with no objects) nothing says so.
const WATCH_FAILING_FOR: Duration = Duration::from_secs(5);

/// What a controller is built from.
pub struct Wiring {
    /// API client.
    pub client: Client,
    /// Shared state.
    pub ctx: Arc<Context>,
    pub(crate) triggers: broadcast::Sender<()>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) leader: watch::Receiver<bool>,
}

impl Wiring {
    /// Completes when the operator shuts down.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.stop.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Reconcile requests, after namespace or pod changes that can affect usage or
    /// prerequisites, for just the objects in `store` whose fingerprint changed.
    /// `fingerprints` gives one per object of the slice, from in-memory caches only (what
    /// the object's reconcile reads from namespaces and pods). Changes arriving together
    /// are evaluated once. Every object is requested the first time.
    pub fn usage_changes_of<K, F>(
        &self,
        store: Store<K>,
        fingerprints: F,
    ) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
        F: Fn(&Context, &[Arc<K>]) -> Vec<u64> + Send + 'static,
    {
        let state = (
            self.triggers.subscribe(),
            HashMap::<ObjectRef<K>, u64>::new(),
            store,
            self.ctx.clone(),
            fingerprints,
        );
        futures::stream::unfold(
            state,
            |(mut rx, mut last, store, ctx, fingerprints)| async move {
                loop {
                    match rx.recv().await {
                        Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                    while matches!(
                        rx.try_recv(),
                        Ok(()) | Err(broadcast::error::TryRecvError::Lagged(_))
                    ) {}
                    let objects = store.state();
                    let prints = fingerprints(&ctx, &objects);
                    let mut now = HashMap::with_capacity(objects.len());
                    let mut changed = Vec::new();
                    for (obj, print) in objects.iter().zip(prints) {
                        let r = ObjectRef::from_obj(obj.as_ref());
                        if last.get(&r) != Some(&print) {
                            changed.push(r.clone());
                        }
                        now.insert(r, print);
                    }
                    last = now;
                    if !changed.is_empty() {
                        let state = (rx, last, store, ctx, fingerprints);
                        return Some((futures::stream::iter(changed), state));
                    }
                }
            },
        )
        .flatten()
    }

    /// Fires each time this process becomes the leader: a standby has skipped every reconcile
    /// until then, so everything is reconciled once.
    fn leadership_gained(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let rx = self.leader.clone();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                rx.changed().await.ok()?;
                if *rx.borrow_and_update() {
                    return Some(((), rx));
                }
            }
        })
    }

    /// The controller settings every controller uses: bounded concurrency, no debounce (a
    /// debounce would set a floor under every reaction; docs/scale.md).
    pub fn config(&self) -> ControllerConfig {
        ControllerConfig::default().concurrency(4)
    }

    /// Runs `controller` with `reconcile` until shutdown: reconciles only while this process
    /// leads (all of them once when it becomes the leader), measured, with per-object
    /// exponential backoff on failure; watch failures go to the health report.
    pub fn start<K, F, Fut>(
        &self,
        name: &'static str,
        controller: Controller<K>,
        reconcile: F,
    ) -> BoxFuture<'static, ()>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        K: Send + Sync + 'static,
        F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, Error>> + Send + 'static,
    {
        let leader = self.leader.clone();
        let reconcile = Arc::new(reconcile);
        let gated = move |obj: Arc<K>, ctx: Arc<Context>| {
            let reconcile = reconcile.clone();
            let leading = *leader.borrow();
            async move {
                if !leading {
                    return Ok(Action::await_change());
                }
                let in_flight = ctx.metrics.in_flight(name);
                in_flight.inc();
                let started = Instant::now();
                let key = retry_key(obj.as_ref());
                let result = reconcile(obj, ctx.clone()).await;
                in_flight.dec();
                let label = result.as_ref().err().map(Error::metric_label);
                ctx.metrics
                    .reconciled(name, started.elapsed().as_secs_f64(), label.as_deref());
                if result.is_ok() {
                    ctx.retries.lock().expect("not poisoned").remove(&key);
                }
                result
            }
        };
        let ctx = self.ctx.clone();
        // kube's default trigger backoff (0.8 s doubling to 30 s) pauses the merged stream of
        // all of a controller's watches on every error: with its kinds gone (CRDs deleted),
        // each of the several failing watches pushes it to 30 s, and a controller took
        // minutes to come back after the CRDs returned. A short cap keeps recovery in seconds
        // at the cost of a 404 a second per controller while the kinds are missing.
        let backoff = ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(30));
        let stream = controller
            .trigger_backoff(backoff)
            .reconcile_all_on(self.leadership_gained())
            .with_config(self.config())
            .graceful_shutdown_on(self.stopped())
            .run(gated, error_policy, self.ctx.clone());
        async move {
            stream
                .for_each(|r| {
                    let ctx = ctx.clone();
                    async move { ctx.health.observe(name, &ctx.metrics, r) }
                })
                .await
        }
        .boxed()
    }
}

/// Settings of every watch: each watch request lasts 15 to 30 minutes, drawn at random, so
/// that the watches are not re-established together. Each re-establishment is one request,
/// the only one an idle operator sends (docs/scale.md).
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(900 + fastrand::u32(0..900))
}

/// The watch backoff of the controllers, the namespace and pod caches and the Lease: 250 ms doubling
/// to 1 s, with ±20 % jitter (kube's default, up to 30 s, left the caches up to 45 s behind
/// after an API-server outage).
#[derive(Default)]
pub struct WatchBackoff(u32);

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let base = Duration::from_millis(250).saturating_mul(1 << self.0.min(2));
        self.0 = self.0.saturating_add(1);
        Some(base.mul_f64(0.8 + 0.4 * fastrand::f64()))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn retry_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}",
        K::kind(&()),
        obj.meta().uid.as_deref().unwrap_or_default()
    )
}

/// The retry delay after the `attempt`-th consecutive failure (1-based): exponential from
/// [`RETRY_BASE`] to [`RETRY_MAX`], with ±20 % jitter so failing objects do not retry in step.
pub fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let exp = RETRY_BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    exp.min(RETRY_MAX)
        .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// After a failed reconcile: log it and retry with the object's backoff.
pub(crate) fn error_policy<K>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let attempt = {
        let mut retries = ctx.retries.lock().expect("not poisoned");
        let n = retries.entry(retry_key(obj.as_ref())).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = retry_delay(attempt, fastrand::f64());
    tracing::warn!(kind = %K::kind(&()), name = obj.name_any(), error = %err, attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A watch mapper that enqueues every object of `store` (revisions, policies: there are few).
pub(crate) fn all_of<K, T>(store: Store<K>) -> impl Fn(T) -> Vec<ObjectRef<K>> + Clone
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    move |_| {
        store
            .state()
            .iter()
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect()
    }
}

/// Whether the operator's watches work: `/readyz` of the runtime answers from it.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    watches: Mutex<BTreeMap<String, WatchState>>,
}

#[derive(Debug, Clone)]
struct WatchState {
    failed_at: Instant,
    error: String,
}

impl Health {
    /// Marks the controllers as running (caches filled).
    pub fn set_started(&self, started: bool) {
        self.started.store(started, Ordering::SeqCst);
    }

    /// Why the operator is not ready, if it is not: not started yet, or watches failing.
    pub fn not_ready(&self) -> Option<String> {
        if !self.started.load(Ordering::SeqCst) {
            return Some("starting: waiting for the CRDs and the caches".into());
        }
        let failing: Vec<String> = self
            .watches
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, s)| s.failed_at.elapsed() < WATCH_FAILING_FOR)
            .map(|(w, s)| format!("watch {w} failing: {}", s.error))
            .collect();
        (!failing.is_empty()).then(|| failing.join("\n"))
    }

    /// Whether watch `name` is failing now (its last error is recent and nothing succeeded
    /// since): what it cached may be stale.
    pub fn failing(&self, name: &str) -> bool {
        self.watches
            .lock()
            .expect("not poisoned")
            .get(name)
            .is_some_and(|s| s.failed_at.elapsed() < WATCH_FAILING_FOR)
    }

    /// Records a failure of watch `name`.
    pub fn watch_failed(&self, name: &str, error: &dyn std::fmt::Display) {
        let mut watches = self.watches.lock().expect("not poisoned");
        if !watches.contains_key(name) {
            tracing::warn!(watch = name, %error, "watch failing");
        }
        watches.insert(
            name.to_owned(),
            WatchState {
                failed_at: Instant::now(),
                error: error.to_string(),
            },
        );
    }

    /// Accounts an error of watch `name`: counted and failing, except a 410 Gone ("too old
    /// resource version"), after which the watcher lists again by itself. A restarted API
    /// server answers every resumed watch so; counted as failing, `/readyz` stayed 503 for up
    /// to 40 s after an outage while everything worked.
    pub fn watch_error(
        &self,
        name: &str,
        error: &watcher::Error,
        metrics: &crate::metrics::Metrics,
    ) {
        if matches!(error, watcher::Error::WatchError(s) if s.code == 410) {
            tracing::debug!(watch = name, %error, "watch expired; listing again");
            return;
        }
        metrics.watch_error(name);
        self.watch_failed(name, error);
    }

    /// Records that watch `name` delivered something.
    pub fn watch_ok(&self, name: &str) {
        if self
            .watches
            .lock()
            .expect("not poisoned")
            .remove(name)
            .is_some()
        {
            tracing::info!(watch = name, "watch recovered");
        }
    }

    /// Accounts one item of a controller's output stream.
    fn observe<K, E>(
        &self,
        name: &'static str,
        metrics: &crate::metrics::Metrics,
        r: Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>,
    ) where
        K: Resource,
        K::DynamicType: Eq + std::hash::Hash + Clone,
        E: std::error::Error,
    {
        match r {
            Ok((o, _)) => {
                self.watch_ok(name);
                tracing::debug!(kind = name, name = o.name, "reconciled");
            }
            Err(controller::Error::QueueError(e)) => self.watch_error(name, &e, metrics),
            Err(e) => tracing::debug!(kind = name, error = %e, "controller event"),
        }
    }
}

/// Per-object retry counts (consecutive failures), reset by a successful reconcile.
pub(crate) type Retries = Mutex<HashMap<String, u32>>;

/// Usage fingerprints of resources whose reconcile reads only whether their namespace
/// (`namespace` of each) is ready, for [`Wiring::usage_changes_of`].
pub fn namespace_fingerprints<K>(
    ctx: &Context,
    objects: &[Arc<K>],
    namespace: impl Fn(&K) -> &str,
) -> Vec<u64> {
    objects
        .iter()
        .map(|o| fingerprint(&ctx.namespace_ready(namespace(o)).is_ok()))
        .collect()
}

/// A hash of `value`, for comparing what a reconcile would read.
pub(crate) fn fingerprint(value: &impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        assert_eq!(retry_delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(retry_delay(2, 0.5), Duration::from_secs(2));
        assert_eq!(retry_delay(5, 0.5), Duration::from_secs(16));
        assert_eq!(retry_delay(40, 0.5), RETRY_MAX);
        assert_eq!(retry_delay(3, 0.0), Duration::from_secs_f64(3.2));
        assert_eq!(retry_delay(3, 1.0), Duration::from_secs_f64(4.8));
    }

    #[test]
    fn health_reports_start_and_failing_watches() {
        let h = Health::default();
        assert!(h.not_ready().unwrap().contains("starting"));
        h.set_started(true);
        assert_eq!(h.not_ready(), None);
        h.watch_failed("Istio", &"404 page not found");
        assert!(h.not_ready().unwrap().contains("watch Istio failing: 404"));
        h.watch_ok("Istio");
        assert_eq!(h.not_ready(), None);
    }
}
