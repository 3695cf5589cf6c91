//! The operator's Prometheus metrics: reconciles per controller, and what a platform engineer
//! puts on a dashboard or alerts on (revisions and their state, in-use, rollout progress,
//! refused updates, version skew, the versions that run). The runtime serves them on
//! `--metrics-addr` in the text exposition format; see `docs/metrics.md` for the list.
//!
//! Counters and histograms are updated as things happen. The state metrics are read from the
//! controllers' caches at each scrape ([`StateCollector`]), so a deleted resource never leaves
//! a stale series behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use mizzen_api::condition_types::{IN_USE, READY, RECONCILED};
use mizzen_api::{
    Conditions, Istio, IstioCNI, IstioRevision, IstioRevisionTag, RolloutPolicy, ZTunnel,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The metrics the controllers update.
#[derive(Debug)]
pub struct Metrics {
    reconciles: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    in_flight: Family<Labels, Gauge>,
    refused: Family<Labels, Counter>,
    watch_errors: Family<Labels, Counter>,
    leader: Gauge,
    /// Rollout progress written by the reconciles, read by [`StateCollector`].
    rollouts: Mutex<HashMap<(&'static str, String), Rollout>>,
    stores: Stores,
}

/// Rollout progress of one component: nodes (DaemonSet) or replicas (istiod Deployment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// The version being rolled out (the workload's `app.kubernetes.io/version`).
    pub version: String,
    /// Nodes or replicas running the current spec.
    pub updated: i32,
    /// Of those, available.
    pub available: i32,
    /// Nodes scheduled, or replicas wanted.
    pub desired: i32,
}

/// The controllers' caches of the resources whose state is reported; each controller hands
/// over its own when it starts. Some are read by other controllers too.
#[derive(Default)]
pub struct Stores {
    /// Istios.
    pub istios: OnceLock<Store<Istio>>,
    /// IstioRevisions.
    pub revisions: OnceLock<Store<IstioRevision>>,
    /// IstioRevisionTags (read by the revisions' usage fingerprints).
    pub tags: OnceLock<Store<IstioRevisionTag>>,
    /// IstioCNIs.
    pub cnis: OnceLock<Store<IstioCNI>>,
    /// ZTunnels.
    pub ztunnels: OnceLock<Store<ZTunnel>>,
    /// RolloutPolicies.
    pub policies: OnceLock<Store<RolloutPolicy>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stores")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(histogram),
            in_flight: Family::default(),
            refused: Family::default(),
            watch_errors: Family::default(),
            leader: Gauge::default(),
            rollouts: Mutex::default(),
            stores: Stores::default(),
        }
    }
}

impl Metrics {
    /// New metrics, registered in `registry` (under the `mizzen_` prefix the registry adds).
    pub fn new(registry: &mut Registry) -> Arc<Self> {
        let m = Arc::new(Self::default());
        registry.register(
            "reconcile",
            "Reconciles by controller and result (success, error)",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by controller and reason",
            m.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile takes, by controller",
            m.duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by controller",
            m.in_flight.clone(),
        );
        registry.register(
            "refused_updates",
            "Spec changes refused by the version and skew rules, by kind and reason",
            m.refused.clone(),
        );
        registry.register(
            "watch_errors",
            "Watch failures, by watch",
            m.watch_errors.clone(),
        );
        registry.register(
            "leader",
            "1 when this process holds the leader lease (or runs without leader election)",
            m.leader.clone(),
        );
        registry.register_collector(Box::new(StateCollector(m.clone())));
        m
    }

    /// Records a finished reconcile of `controller`.
    pub fn reconciled(&self, controller: &'static str, seconds: f64, error: Option<&str>) {
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles
            .get_or_create(&vec![
                ("controller", controller.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
        self.duration
            .get_or_create(&vec![("controller", controller.to_owned())])
            .observe(seconds);
        if let Some(reason) = error {
            self.errors
                .get_or_create(&vec![
                    ("controller", controller.to_owned()),
                    ("reason", reason.to_owned()),
                ])
                .inc();
        }
    }

    /// The in-flight gauge of `controller`.
    pub fn in_flight(&self, controller: &'static str) -> Gauge {
        self.in_flight
            .get_or_create(&vec![("controller", controller.to_owned())])
            .clone()
    }

    /// Counts a refused spec change of a `kind` resource.
    pub fn refused(&self, kind: &str, reason: &str) {
        self.refused
            .get_or_create(&vec![
                ("kind", kind.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Counts a failure of watch `watch`.
    pub fn watch_error(&self, watch: &str) {
        self.watch_errors
            .get_or_create(&vec![("watch", watch.to_owned())])
            .inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Records the rollout progress of resource `name` of `kind`.
    pub fn rollout(&self, kind: &'static str, name: &str, progress: Rollout) {
        self.rollouts
            .lock()
            .expect("not poisoned")
            .insert((kind, name.to_owned()), progress);
    }

    /// Where the controllers hand their caches to the state collector.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }
}

/// Encodes the state metrics from the caches at scrape time.
#[derive(Debug)]
struct StateCollector(Arc<Metrics>);

/// A gauge family being encoded: name, help, and its series.
struct GaugeFamily {
    name: &'static str,
    help: &'static str,
    series: Vec<(Labels, i64)>,
}

impl GaugeFamily {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            series: Vec::new(),
        }
    }

    fn push(&mut self, labels: Labels, value: i64) {
        self.series.push((labels, value));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.series.is_empty() {
            return Ok(());
        }
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (labels, value) in &self.series {
            ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

fn condition_is(status: Option<&Vec<mizzen_api::Condition>>, t: &str) -> i64 {
    status
        .and_then(|c| c.get_condition(t))
        .is_some_and(|c| c.status == mizzen_api::ConditionStatus::True)
        .into()
}

/// Whether the object's `Reconciled` condition says the control plane moved out of the skew
/// rules.
fn skewed(conditions: Option<&Vec<mizzen_api::Condition>>) -> i64 {
    conditions
        .and_then(|c| c.get_condition(RECONCILED))
        .is_some_and(|c| c.reason.as_deref() == Some("VersionSkew"))
        .into()
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stores = &self.0.stores;
        let rollouts = self.0.rollouts.lock().expect("not poisoned").clone();
        let mut revisions =
            GaugeFamily::new("istio_revisions", "IstioRevisions of each Istio, by state");
        let mut in_use = GaugeFamily::new(
            "revision_in_use",
            "1 when something uses the IstioRevision (its InUse condition)",
        );
        let mut ready = GaugeFamily::new(
            "resource_ready",
            "1 when the resource's Ready condition is True",
        );
        let mut version = GaugeFamily::new(
            "component_version",
            "1 for the version each resource asks for (spec) and, for istio-cni and ztunnel, runs",
        );
        let mut skew = GaugeFamily::new(
            "version_skew",
            "1 when an IstioCNI or ZTunnel is outside the skew rules because a control plane moved",
        );
        let mut rollout = GaugeFamily::new(
            "rollout_pods",
            "Rollout progress of the version being rolled out: nodes (istio-cni, ztunnel) or replicas (istiod), by state",
        );
        let mut backlog = GaugeFamily::new(
            "reconcile_backlog",
            "Resources whose current spec (generation) the operator has not reconciled yet, by kind",
        );
        fn unobserved<K: kube::Resource>(
            objects: &[Arc<K>],
            observed: impl Fn(&K) -> Option<i64>,
        ) -> i64 {
            objects
                .iter()
                .filter(|o| observed(o).unwrap_or(0) < o.meta().generation.unwrap_or(0))
                .count() as i64
        }
        let istios = cached(&stores.istios);
        let revisions_cached = cached(&stores.revisions);
        let cnis = cached(&stores.cnis);
        let ztunnels = cached(&stores.ztunnels);
        for (kind, n) in [
            (
                "Istio",
                unobserved(&istios, |o| o.status.as_ref()?.observed_generation),
            ),
            (
                "IstioRevision",
                unobserved(&revisions_cached, |o| {
                    o.status.as_ref()?.observed_generation
                }),
            ),
            (
                "IstioCNI",
                unobserved(&cnis, |o| o.status.as_ref()?.observed_generation),
            ),
            (
                "ZTunnel",
                unobserved(&ztunnels, |o| o.status.as_ref()?.observed_generation),
            ),
        ] {
            backlog.push(vec![("kind", kind.into())], n);
        }
        let mut per_istio: BTreeMap<(String, String), i64> = BTreeMap::new();
        for rev in revisions_cached {
            let name = rev.name_any();
            let status = rev.status.as_ref();
            let conditions = status.map(|s| &s.conditions);
            let istio = rev
                .owner_references()
                .iter()
                .find(|o| o.kind == "Istio")
                .map_or_else(String::new, |o| o.name.clone());
            let state = status
                .and_then(|s| s.state.clone())
                .unwrap_or_else(|| "Unknown".into());
            *per_istio.entry((istio.clone(), state)).or_default() += 1;
            in_use.push(
                vec![("revision", name.clone()), ("istio", istio)],
                condition_is(conditions, IN_USE),
            );
            ready.push(
                vec![("kind", "IstioRevision".into()), ("name", name.clone())],
                condition_is(conditions, READY),
            );
            version.push(
                vec![
                    ("kind", "IstioRevision".into()),
                    ("name", name.clone()),
                    ("version", rev.spec.version.clone()),
                ],
                1,
            );
            if let Some(p) = rollouts.get(&("IstioRevision", name.clone())) {
                push_rollout(&mut rollout, "IstioRevision", &name, p);
            }
        }
        for ((istio, state), n) in per_istio {
            revisions.push(vec![("istio", istio), ("state", state)], n);
        }
        for istio in istios {
            let status = istio.status.as_ref();
            ready.push(
                vec![("kind", "Istio".into()), ("name", istio.name_any())],
                condition_is(status.map(|s| &s.conditions), READY),
            );
            version.push(
                vec![
                    ("kind", "Istio".into()),
                    ("name", istio.name_any()),
                    ("version", istio.spec.version.clone()),
                ],
                1,
            );
        }
        let dataplane = cnis
            .iter()
            .map(|c| {
                (
                    "IstioCNI",
                    c.name_any(),
                    c.spec.version.clone(),
                    c.status.as_ref().map(|s| s.conditions.clone()),
                )
            })
            .chain(ztunnels.iter().map(|z| {
                (
                    "ZTunnel",
                    z.name_any(),
                    z.spec.version.clone(),
                    z.status.as_ref().map(|s| s.conditions.clone()),
                )
            }))
            .collect::<Vec<_>>();
        for (kind, name, spec_version, conditions) in dataplane {
            ready.push(
                vec![("kind", kind.into()), ("name", name.clone())],
                condition_is(conditions.as_ref(), READY),
            );
            skew.push(
                vec![("kind", kind.into()), ("name", name.clone())],
                skewed(conditions.as_ref()),
            );
            version.push(
                vec![
                    ("kind", kind.into()),
                    ("name", name.clone()),
                    ("version", spec_version),
                ],
                1,
            );
            if let Some(p) = rollouts.get(&(kind, name.clone())) {
                push_rollout(&mut rollout, kind, &name, p);
            }
        }
        let mut policy_nodes = GaugeFamily::new(
            "rollout_policy_nodes",
            "Nodes of each DrainWaves RolloutPolicy's rollout, by state (updated, draining, pending, failed)",
        );
        let mut policy_wave = GaugeFamily::new(
            "rollout_policy_wave",
            "The wave under way of each DrainWaves RolloutPolicy (0 before the first), and their number as `of`",
        );
        for p in cached(&stores.policies) {
            let Some(s) = p.status.as_ref() else { continue };
            let name = p.name_any();
            for (state, n) in [
                ("updated", s.updated),
                ("draining", s.draining),
                ("pending", s.pending),
                ("failed", s.failed),
            ] {
                policy_nodes.push(
                    vec![("policy", name.clone()), ("state", state.into())],
                    n.into(),
                );
            }
            let of = s
                .wave
                .as_deref()
                .and_then(|w| w.split_once('/'))
                .and_then(|(_, of)| of.parse::<i64>().ok())
                .unwrap_or(0);
            policy_wave.push(
                vec![("policy", name), ("of", of.to_string())],
                s.current_wave.into(),
            );
        }
        for family in [
            backlog,
            revisions,
            in_use,
            ready,
            version,
            skew,
            rollout,
            policy_nodes,
            policy_wave,
        ] {
            family.encode(&mut encoder)?;
        }
        Ok(())
    }
}

fn cached<K>(store: &OnceLock<Store<K>>) -> Vec<Arc<K>>
where
    K: kube::Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.get().map(Store::state).unwrap_or_default()
}

fn push_rollout(family: &mut GaugeFamily, kind: &'static str, name: &str, p: &Rollout) {
    for (state, value) in [
        ("updated", p.updated),
        ("available", p.available),
        ("desired", p.desired),
    ] {
        family.push(
            vec![
                ("kind", kind.into()),
                ("name", name.to_owned()),
                ("version", p.version.clone()),
                ("state", state.into()),
            ],
            value.into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn reconciles_errors_and_refusals_are_counted_by_label() {
        let mut registry = Registry::with_prefix("mizzen");
        let m = Metrics::new(&mut registry);
        m.reconciled("Istio", 0.01, None);
        m.reconciled("Istio", 0.02, Some("Conflict"));
        m.refused("Istio", "UpdateRefused");
        m.set_leader(true);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        assert!(
            out.contains(r#"mizzen_reconcile_total{controller="Istio",result="success"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(
                r#"mizzen_reconcile_errors_total{controller="Istio",reason="Conflict"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(r#"mizzen_refused_updates_total{kind="Istio",reason="UpdateRefused"} 1"#),
            "{out}"
        );
        assert!(out.contains("mizzen_leader 1"), "{out}");
        assert!(
            out.contains(r#"mizzen_reconcile_duration_seconds_count{controller="Istio"} 2"#),
            "{out}"
        );
    }

    #[test]
    fn rollout_policies_report_their_wave_and_nodes() {
        let mut registry = Registry::with_prefix("mizzen");
        let m = Metrics::new(&mut registry);
        let (store, mut writer) = kube::runtime::reflector::store::<RolloutPolicy>();
        let mut p = RolloutPolicy::new("zt", Default::default());
        p.status = Some(mizzen_api::RolloutPolicyStatus {
            wave: Some("2/5".into()),
            current_wave: 2,
            updated: 7,
            draining: 1,
            pending: 22,
            ..Default::default()
        });
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(p));
        m.stores().policies.set(store).unwrap();
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        for line in [
            r#"mizzen_rollout_policy_nodes{policy="zt",state="updated"} 7"#,
            r#"mizzen_rollout_policy_nodes{policy="zt",state="draining"} 1"#,
            r#"mizzen_rollout_policy_nodes{policy="zt",state="pending"} 22"#,
            r#"mizzen_rollout_policy_wave{policy="zt",of="5"} 2"#,
        ] {
            assert!(out.contains(line), "{line} missing from {out}");
        }
    }
}
