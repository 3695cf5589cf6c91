//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics.
//!
//! Every replica watches the Lease. The holder renews it every [`LeaseTimes::renew_every`]
//! and steps down when it has not renewed for [`LeaseTimes::renew_deadline`] (it stops
//! reconciling and campaigns again, in the same process); a standby takes
//! it when it is free, or when its record has not changed for [`LeaseTimes::duration`] by the
//! standby's own clock (so clock skew between nodes does not matter). Writes carry the
//! `resourceVersion` they were based on, so of two replicas racing for a free Lease exactly
//! one wins. On shutdown the holder clears `holderIdentity`, and the standbys, which see the
//! change through their watch, take over at once.
//!
//! Why not a crate: `kube-lease-manager` (the one that supports kube 5) keeps the holder it
//! last read until that holder's lease would expire and offers no way to re-read it, so a
//! released Lease is taken over only after up to a lease duration (15 s) instead of at once,
//! and it has no renew deadline; `kube-leader-election` needs kube 4 and kubert's lease module
//! is published only for kube 1.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_objects};
use kube::{Client, ResourceExt};
use mizzen_controller::Health;
use mizzen_controller::metrics::Metrics;
use mizzen_controller::wiring::WatchBackoff;
use tokio::sync::watch;

/// The timings of the election (client-go's defaults, but for the renewal period, which is
/// longer than client-go's 2 s retry so that an idle leader writes 12 times a minute, not 30).
#[derive(Clone, Copy, Debug)]
pub struct LeaseTimes {
    /// How long a standby waits, after the record last changed, before taking the Lease.
    pub duration: Duration,
    /// How long the holder may go without a successful renewal before it steps down.
    pub renew_deadline: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Which Lease, and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This process's identity (the pod name).
    pub identity: String,
    /// Timings.
    pub times: LeaseTimes,
}

/// How an election ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown: the Lease was released if held.
    Shutdown,
    /// Another replica holds the Lease while this one led: the process exits so that none of
    /// its reconciles still running can write beside the new leader.
    Lost(String),
}

/// Runs the election until `stop` turns true. `leader` tells, at every moment, whether this
/// process holds the Lease.
pub async fn elect(
    client: Client,
    cfg: LeaseConfig,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Ended {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut events = Box::pin(
        watch_objects(
            api.clone(),
            watcher::Config::default().fields(&format!("metadata.name={}", cfg.name)),
        )
        .backoff(WatchBackoff::default()),
    );
    let mut e = Election {
        api,
        cfg,
        observed: None,
        observed_at: Instant::now(),
        synced: false,
        last_renew: None,
        next_renew: Instant::now(),
        not_before: Instant::now(),
        health,
        metrics,
    };
    loop {
        let next = e.next_action();
        let stopping = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            biased;
            _ = stopping => {
                if e.last_renew.is_some() {
                    e.release().await;
                    let _ = leader.send(false);
                }
                return Ended::Shutdown;
            }
            event = events.next() => match event {
                Some(Ok(ev)) => e.observe(ev),
                Some(Err(err)) => e.health.watch_error("lease", &err, &e.metrics),
                None => return Ended::Lost("the lease watch ended".into()),
            },
            _ = tokio::time::sleep_until(next.into()) => {
                if e.last_renew.is_some() {
                    e.renew().await;
                } else if e.can_acquire() && e.acquire().await {
                    tracing::info!(identity = e.cfg.identity, lease = e.cfg.name, "became the leader");
                    let _ = leader.send(true);
                }
            }
        }
        if let Some(last) = e.last_renew {
            let holder = e.holder();
            if holder.is_some() && holder != Some(e.cfg.identity.as_str()) {
                let _ = leader.send(false);
                return Ended::Lost(format!("the lease is now held by {}", holder.unwrap_or("")));
            }
            if last.elapsed() > e.cfg.times.renew_deadline {
                // Most often the API server is unreachable (restarted, upgraded): step down
                // (no reconcile starts from now on) and campaign again as a standby, rather
                // than exit and have the pod restarted (and backed off) after every
                // outage. Nobody else can take the Lease before its duration has passed
                // since our last renewal, which is later than this deadline.
                let _ = leader.send(false);
                tracing::warn!(
                    identity = e.cfg.identity,
                    lease = e.cfg.name,
                    "could not renew the lease for {:?}; stepped down, reconciles paused; \
                     campaigning again",
                    last.elapsed()
                );
                e.metrics.watch_error("lease");
                e.last_renew = None;
            }
        }
    }
}

struct Election {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The Lease as last seen (watch or own write).
    observed: Option<Lease>,
    /// When the observed record last changed, by our clock.
    observed_at: Instant,
    /// Whether the watch has listed once (absence is known).
    synced: bool,
    /// When we last renewed (or acquired): `Some` while we lead.
    last_renew: Option<Instant>,
    /// When the holder tries to renew next.
    next_renew: Instant,
    /// A standby whose last attempt failed waits until then.
    not_before: Instant,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl Election {
    fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()?
            .spec
            .as_ref()?
            .holder_identity
            .as_deref()
            .filter(|h| !h.is_empty())
    }

    fn observe(&mut self, event: Event<Lease>) {
        self.health.watch_ok("lease");
        match event {
            Event::Apply(l) | Event::InitApply(l) => self.record(Some(l)),
            Event::Delete(_) => self.record(None),
            Event::Init => {}
            Event::InitDone => self.synced = true,
        }
    }

    fn record(&mut self, lease: Option<Lease>) {
        let rv = |l: &Option<Lease>| l.as_ref().and_then(|l| l.resource_version());
        if rv(&lease) != rv(&self.observed) {
            self.observed_at = Instant::now();
        }
        self.observed = lease;
    }

    fn can_acquire(&self) -> bool {
        self.synced
            && (self.holder().is_none() || self.observed_at.elapsed() >= self.cfg.times.duration)
    }

    /// When to act next: renew, try to acquire, or (far away) nothing until the watch says.
    fn next_action(&self) -> Instant {
        if self.last_renew.is_some() {
            return self.next_renew;
        }
        if !self.synced {
            return Instant::now() + Duration::from_secs(3600);
        }
        if self.holder().is_none() {
            return self.not_before;
        }
        (self.observed_at + self.cfg.times.duration).max(self.not_before)
    }

    fn spec(&self, acquire: bool) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let old = self.observed.as_ref().and_then(|l| l.spec.clone());
        let transitions = old.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.times.duration.as_secs() as i32),
            acquire_time: if acquire {
                Some(now.clone())
            } else {
                old.as_ref().and_then(|s| s.acquire_time.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if acquire && self.holder().is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..Default::default()
        }
    }

    /// Creates or takes over the Lease; true when we hold it now.
    async fn acquire(&mut self) -> bool {
        let spec = self.spec(true);
        let result = match self.observed.clone() {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(lease) => {
                self.record(Some(lease));
                self.last_renew = Some(Instant::now());
                self.next_renew = Instant::now() + self.cfg.times.renew_every;
                true
            }
            Err(kube::Error::Api(s)) if s.code == 409 => false,
            Err(e) => {
                // A missing namespace, a forbidden verb, an unreachable API server: say so
                // (log, metric, /readyz) and retry without spinning.
                self.not_before = Instant::now() + Duration::from_secs(2);
                self.metrics.watch_error("lease");
                self.health.watch_failed(
                    "lease",
                    &format!(
                        "cannot take Lease {}/{}: {}",
                        self.cfg.namespace,
                        self.cfg.name,
                        describe(&e)
                    ),
                );
                false
            }
        }
    }

    async fn renew(&mut self) {
        let Some(mut lease) = self.observed.clone() else {
            return;
        };
        lease.spec = Some(self.spec(false));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(lease) => {
                self.record(Some(lease));
                self.last_renew = Some(Instant::now());
                self.next_renew = Instant::now() + self.cfg.times.renew_every;
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = self.cfg.name, "could not renew the lease");
                // Retry soon; the deadline check decides when to give up.
                self.next_renew = Instant::now() + Duration::from_secs(1);
                if let kube::Error::Api(s) = &e
                    && s.code == 409
                    && let Ok(fresh) = self.api.get(&self.cfg.name).await
                {
                    self.record(Some(fresh));
                }
            }
        }
    }

    /// Clears the holder so a standby takes over at once.
    async fn release(&mut self) {
        let Some(mut lease) = self.observed.clone() else {
            return;
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(identity = self.cfg.identity, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the lease"),
        }
        self.last_renew = None;
    }
}

/// The API server's message for an answer, else the error.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
        e => e.to_string(),
    }
}
