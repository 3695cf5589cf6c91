//! Crash convergence (issue 10): the seed's InPlace (§1.5.2) and RevisionBased (§1.6.2)
//! procedures, driven step by step with the scripts' kubectl commands, while the operator is
//! killed with SIGKILL at a random moment (0–1500 ms) after every step and started again at once
//! (RevisionBased: once more at a random moment of the old revision's 30 s grace period).
//! Convergence is measured from the kill after the last step.
//! Every trial must end with the seed's tables, the exact set of IstioRevisions, no orphaned
//! children, and no revision deleted while something used it (judged by the test's own watch of
//! namespaces, pods and the `istiod-active-<istio>` Service, not by the operator's status).
//!
//! `MIZZEN_CRASH_TRIALS` (default 2) sets the number of trials, `MIZZEN_CRASH_SEED` replays a
//! run's kill moments (each run prints its seed):
//!
//! ```sh
//! MIZZEN_CRASH_TRIALS=20 cargo test -p mizzen --test crash -- --nocapture
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use mizzen_api::{Istio, IstioRevision};
use mizzen_testcluster::{Cluster, shared};

const FROM: &str = "v1.26.3";
const TO: &str = "v1.26.4";
/// The longest random delay between a step and the kill, in milliseconds.
const MAX_KILL_DELAY_MS: u64 = 1500;
/// RevisionBased: the longest random delay of the extra kill after ztunnel is Ready, while the
/// old revision waits out its 30 s grace period, in milliseconds.
const GRACE_KILL_WINDOW_MS: u64 = 32_000;
/// Bound of each wait the seed scripts make with `kubectl wait` (they allow 5 to 10 min; on
/// KWOK nodes each takes seconds).
const WAIT: &str = "--timeout=120s";
/// Bound of the wait for the old revision's pruning (grace period 30 s, as the seed's script).
const PRUNE_WAIT: &str = "--timeout=180s";
/// Seconds within which the seed's tables must appear once the waits are over.
const TABLE_SECS: u64 = 60;
/// Seconds within which garbage collection must have removed everything whose owner went.
const GC_SECS: u64 = 60;
/// How much earlier than its grace period a pruned revision may go, in ms: the operator rounds
/// condition times to the second and may see a terminated ztunnel pod go before this test does.
const GRACE_TOLERANCE_MS: u128 = 2000;

const MANAGED: &str = "app.kubernetes.io/managed-by=mizzen";
const INVENTORY: &str = "mizzen.io/owner";
const IN_USE_FINALIZER: &str = "mizzen.io/in-use-protection";
const REV: &str = "istio.io/rev";
const INJECTION: &str = "istio-injection";
const INJECT: &str = "sidecar.istio.io/inject";
const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
const FOLLOWS_ISTIO: &str = "mizzen.io/follows-istio";
const STABLE_SERVICE_PREFIX: &str = "istiod-active-";

// ---------------------------------------------------------------------------------------------
// Randomness: SplitMix64, seeded from MIZZEN_CRASH_SEED or the clock.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`.
    fn up_to(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// The test's own view of the cluster: watches of namespaces, pods, the stable Services, Istios
// and IstioRevisions, and the in-use rules of DESIGN.md decision 2 (crates/controller/src/inuse.rs)
// applied to it at every event.

#[derive(Clone, Debug, Default)]
struct PodView {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// creationTimestamp (whole seconds), in unix ms.
    created_ms: Option<i64>,
    /// Succeeded or Failed: keeps nothing in use.
    terminal: bool,
}

impl PodView {
    fn is_ztunnel(&self) -> bool {
        self.labels.get("app").is_some_and(|a| a == "ztunnel")
    }
}

#[derive(Clone, Debug)]
struct IstioView {
    deleting: bool,
    grace_secs: i64,
}

#[derive(Clone, Debug, Default)]
struct RevisionView {
    istio: Option<String>,
    deleting: bool,
    finalizers: Vec<String>,
    /// What uses it now (test's view).
    users: Vec<String>,
    /// Since when nothing uses it (test's view); `None` while in use.
    unused_since: Option<Instant>,
    deletion_noted: bool,
}

#[derive(Clone, Debug)]
struct Deletion {
    revision: String,
    /// Deleted by pruning (its Istio still exists), not with its Istio.
    pruned: bool,
    /// How long nothing had used it when it went.
    unused_for: Option<Duration>,
    grace_secs: Option<i64>,
}

#[derive(Default)]
struct World {
    synced: BTreeSet<&'static str>,
    watch_errors: usize,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pods: BTreeMap<String, PodView>,
    /// Stable Services: key → Istio name.
    services: BTreeMap<String, String>,
    /// Per Istio: when (unix ms, as this test saw it) its stable Service started selecting which
    /// revision (`None`: no Service). A ztunnel pod that follows an Istio talks to the revision
    /// that Service selected when the pod was created.
    switches: BTreeMap<String, Vec<(i64, Option<String>)>>,
    istios: BTreeMap<String, IstioView>,
    revisions: BTreeMap<String, RevisionView>,
    /// What the main thread is doing (for the journal).
    context: String,
    /// Revision names seen since the last [`World::begin`].
    seen: BTreeSet<String>,
    deletions: Vec<Deletion>,
    violations: Vec<String>,
    journal: Vec<String>,
    started: Option<Instant>,
}

/// Where a procedure's observations start.
#[derive(Clone, Copy)]
struct Mark {
    deletions: usize,
    violations: usize,
}

impl World {
    fn note(&mut self, line: String) {
        let t = self.started.get_or_insert_with(Instant::now).elapsed();
        self.journal.push(format!(
            "[{:>7.1}s] {}: {line}",
            t.as_secs_f64(),
            self.context
        ));
    }

    fn violation(&mut self, line: String) {
        self.note(format!("VIOLATION: {line}"));
        let t = self.started.get_or_insert_with(Instant::now).elapsed();
        self.violations.push(format!(
            "[{:.1}s] {}: {line}",
            t.as_secs_f64(),
            self.context
        ));
    }

    fn begin(&mut self, context: &str) -> Mark {
        self.context = context.to_owned();
        self.seen = self.revisions.keys().cloned().collect();
        Mark {
            deletions: self.deletions.len(),
            violations: self.violations.len(),
        }
    }

    /// The revision a namespace selects by label.
    fn namespace_selection(labels: &BTreeMap<String, String>) -> Option<&str> {
        if labels.get(INJECTION).is_some_and(|v| v == "enabled") {
            return Some("default");
        }
        labels
            .get(REV)
            .map(String::as_str)
            .filter(|r| !r.is_empty())
    }

    /// The revision a pod asks for by label (counts only in a namespace that selects none).
    fn pod_label_selection(p: &PodView) -> Option<&str> {
        let inject = p.labels.get(INJECT).map(String::as_str);
        if inject == Some("false") {
            return None;
        }
        match p.labels.get(REV).map(String::as_str) {
            Some(r) if !r.is_empty() => Some(r),
            _ if inject == Some("true") => Some("default"),
            _ => None,
        }
    }

    /// The revision a ztunnel pod talks to: its pin, else the revision its Istio's stable
    /// Service selected when the pod was created (a pod older than the Service: the first one
    /// it selected afterwards).
    fn binding(&self, p: &PodView) -> Option<String> {
        if let Some(r) = p.annotations.get(REV).filter(|r| !r.is_empty()) {
            return Some(r.clone());
        }
        let history = self.switches.get(p.annotations.get(FOLLOWS_ISTIO)?)?;
        let created = p.created_ms?;
        history
            .iter()
            .rev()
            .find(|(t, _)| *t <= created)
            .and_then(|(_, r)| r.clone())
            .or_else(|| {
                history
                    .iter()
                    .find(|(t, r)| *t > created && r.is_some())
                    .and_then(|(_, r)| r.clone())
            })
    }

    /// Everything that uses `revision`, as this test sees it.
    fn users_of(&self, revision: &str) -> Vec<String> {
        let mut users = Vec::new();
        for (ns, labels) in &self.namespaces {
            if Self::namespace_selection(labels) == Some(revision) {
                users.push(format!("namespace {ns} (label)"));
            }
        }
        let live = || self.pods.values().filter(|p| !p.terminal);
        for p in live() {
            let ns_selects = self
                .namespaces
                .get(&p.namespace)
                .and_then(Self::namespace_selection)
                .is_some();
            let injected = p.annotations.get(REV).is_some_and(|r| r == revision);
            let by_label = !ns_selects && Self::pod_label_selection(p) == Some(revision);
            if injected || by_label {
                users.push(format!("pod {}/{}", p.namespace, p.name));
            }
        }
        let mut ambient: Vec<String> = self
            .namespaces
            .iter()
            .filter(|(_, l)| l.get(DATAPLANE_MODE).is_some_and(|m| m == "ambient"))
            .map(|(n, _)| format!("namespace {n}"))
            .collect();
        ambient.extend(
            live()
                .filter(|p| !p.is_ztunnel())
                .filter(|p| p.labels.get(DATAPLANE_MODE).is_some_and(|m| m == "ambient"))
                .map(|p| format!("pod {}/{}", p.namespace, p.name)),
        );
        if !ambient.is_empty() {
            let bound: Vec<String> = live()
                .filter(|p| p.is_ztunnel())
                .filter(|p| self.binding(p).as_deref() == Some(revision))
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect();
            if !bound.is_empty() {
                users.push(format!(
                    "ambient {} through ztunnel pods bound to it: {}",
                    ambient.join(", "),
                    bound.join(", ")
                ));
            }
        }
        users
    }

    /// Re-evaluates every revision's users after a change.
    fn evaluate(&mut self) {
        let names: Vec<String> = self.revisions.keys().cloned().collect();
        for name in names {
            let users = self.users_of(&name);
            let r = self.revisions.get_mut(&name).expect("listed");
            match (users.is_empty(), r.unused_since) {
                (true, None) => r.unused_since = Some(Instant::now()),
                (false, _) => r.unused_since = None,
                _ => {}
            }
            r.users = users;
        }
    }

    fn upsert_revision(&mut self, rev: IstioRevision) {
        let name = rev.name_any();
        self.seen.insert(name.clone());
        let view = RevisionView {
            istio: rev
                .owner_references()
                .iter()
                .find(|o| o.kind == "Istio")
                .map(|o| o.name.clone()),
            deleting: rev.metadata.deletion_timestamp.is_some(),
            finalizers: rev.finalizers().to_vec(),
            ..Default::default()
        };
        let old = self.revisions.remove(&name);
        let fresh = old.is_none();
        let mut view = match old {
            Some(mut o) => {
                o.istio = view.istio;
                o.deleting = view.deleting;
                o.finalizers = view.finalizers;
                o
            }
            None => view,
        };
        if fresh {
            view.users = self.users_of(&name);
            view.unused_since = view.users.is_empty().then(Instant::now);
        }
        if view.deleting && !view.deletion_noted {
            view.deletion_noted = true;
            let users = self.users_of(&name);
            let held = view.finalizers.iter().any(|f| f == IN_USE_FINALIZER);
            self.note(format!(
                "deletion of IstioRevision {name} requested; finalizers {:?}; users: {}",
                view.finalizers,
                describe(&users)
            ));
            if !users.is_empty() && view.finalizers.is_empty() {
                self.violation(format!(
                    "IstioRevision {name} is being deleted, with nothing to hold it, while in use by: {}",
                    users.join("; ")
                ));
            } else if !users.is_empty() && held {
                self.note(format!(
                    "{IN_USE_FINALIZER} holds IstioRevision {name} while it is in use"
                ));
            }
        }
        self.revisions.insert(name, view);
    }

    fn remove_revision(&mut self, name: &str) {
        let Some(view) = self.revisions.remove(name) else {
            return;
        };
        let users = self.users_of(name);
        let owner = view.istio.as_ref().and_then(|i| self.istios.get(i));
        let pruned = owner.is_some_and(|i| !i.deleting);
        let grace_secs = owner.map(|i| i.grace_secs);
        let unused_for = view.unused_since.map(|t| t.elapsed());
        self.note(format!(
            "IstioRevision {name} deleted ({}); unused for {}; users now: {}",
            if pruned {
                "pruned by the operator"
            } else {
                "with its Istio"
            },
            unused_for.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64())),
            describe(&users)
        ));
        if !users.is_empty() {
            self.violation(format!(
                "IstioRevision {name} was deleted while in use by: {}",
                users.join("; ")
            ));
        }
        if pruned && let (Some(g), Some(u)) = (grace_secs, unused_for) {
            let grace_ms = (g as u128) * 1000;
            if u.as_millis() + GRACE_TOLERANCE_MS < grace_ms {
                self.violation(format!(
                    "IstioRevision {name} was pruned {:.1}s after its last user went; the grace period is {g}s",
                    u.as_secs_f64()
                ));
            }
        }
        self.deletions.push(Deletion {
            revision: name.to_owned(),
            pruned,
            unused_for,
            grace_secs,
        });
    }

    fn set_service(&mut self, key: String, svc: &Service) {
        let Some(istio) = svc
            .name_any()
            .strip_prefix(STABLE_SERVICE_PREFIX)
            .map(str::to_owned)
        else {
            return;
        };
        let selected = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.get(REV))
            .cloned();
        self.services.insert(key, istio.clone());
        self.switch(istio, selected);
    }

    fn switch(&mut self, istio: String, selected: Option<String>) {
        let history = self.switches.entry(istio.clone()).or_default();
        if history.last().map(|(_, r)| r) != Some(&selected) {
            history.push((unix_ms(), selected.clone()));
            self.note(format!(
                "Service {STABLE_SERVICE_PREFIX}{istio} selects {}",
                selected.as_deref().unwrap_or("nothing (gone)")
            ));
        }
    }
}

fn describe(users: &[String]) -> String {
    if users.is_empty() {
        "none".into()
    } else {
        users.join("; ")
    }
}

/// One watched kind of [`World`].
trait Tracked: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static {
    const KIND: &'static str;
    fn upsert(self, w: &mut World);
    fn remove(key: &str, w: &mut World);
    fn keys(w: &World) -> BTreeSet<String>;
}

fn key_of<K: Resource>(o: &K) -> String {
    match o.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", o.meta().name.as_deref().unwrap_or_default()),
        None => o.meta().name.clone().unwrap_or_default(),
    }
}

impl Tracked for Namespace {
    const KIND: &'static str = "Namespace";
    fn upsert(self, w: &mut World) {
        w.namespaces.insert(self.name_any(), self.labels().clone());
    }
    fn remove(key: &str, w: &mut World) {
        w.namespaces.remove(key);
    }
    fn keys(w: &World) -> BTreeSet<String> {
        w.namespaces.keys().cloned().collect()
    }
}

impl Tracked for Pod {
    const KIND: &'static str = "Pod";
    fn upsert(self, w: &mut World) {
        let phase = self.status.as_ref().and_then(|s| s.phase.as_deref());
        let view = PodView {
            namespace: self.namespace().unwrap_or_default(),
            name: self.name_any(),
            labels: self.labels().clone(),
            annotations: self.annotations().clone(),
            created_ms: self
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond()),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
        };
        w.pods.insert(key_of(&self), view);
    }
    fn remove(key: &str, w: &mut World) {
        w.pods.remove(key);
    }
    fn keys(w: &World) -> BTreeSet<String> {
        w.pods.keys().cloned().collect()
    }
}

impl Tracked for Service {
    const KIND: &'static str = "Service";
    fn upsert(self, w: &mut World) {
        w.set_service(key_of(&self), &self);
    }
    fn remove(key: &str, w: &mut World) {
        if let Some(istio) = w.services.remove(key) {
            w.switch(istio, None);
        }
    }
    fn keys(w: &World) -> BTreeSet<String> {
        w.services.keys().cloned().collect()
    }
}

impl Tracked for Istio {
    const KIND: &'static str = "Istio";
    fn upsert(self, w: &mut World) {
        let grace_secs = self
            .spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.inactive_revision_deletion_grace_period_seconds)
            .unwrap_or(30);
        w.istios.insert(
            self.name_any(),
            IstioView {
                deleting: self.metadata.deletion_timestamp.is_some(),
                grace_secs,
            },
        );
    }
    fn remove(key: &str, w: &mut World) {
        w.istios.remove(key);
    }
    fn keys(w: &World) -> BTreeSet<String> {
        w.istios.keys().cloned().collect()
    }
}

impl Tracked for IstioRevision {
    const KIND: &'static str = "IstioRevision";
    fn upsert(self, w: &mut World) {
        w.upsert_revision(self);
    }
    fn remove(key: &str, w: &mut World) {
        w.remove_revision(key);
    }
    fn keys(w: &World) -> BTreeSet<String> {
        w.revisions.keys().cloned().collect()
    }
}

/// The next item of a watch stream (polled by hand: the `Stream` trait is reached through
/// kube's `WatchStreamExt`, its subtrait, without another dependency).
async fn next<S: WatchStreamExt + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Follows one kind into `world`, re-evaluating every revision's users after each event.
async fn follow<K: Tracked>(api: Api<K>, world: Arc<Mutex<World>>) {
    let mut stream = Box::pin(watcher::watcher(api, watcher::Config::default()).default_backoff());
    let mut buffer: Vec<K> = Vec::new();
    while let Some(event) = next(&mut stream).await {
        let mut w = world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Err(e) => {
                w.watch_errors += 1;
                w.note(format!("{} watch error: {e}", K::KIND));
                continue;
            }
            Ok(Event::Apply(o)) => o.upsert(&mut w),
            Ok(Event::Delete(o)) => K::remove(&key_of(&o), &mut w),
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(o)) => buffer.push(o),
            Ok(Event::InitDone) => {
                // A relist: what is no longer listed went while the watch was down.
                let listed: BTreeSet<String> = buffer.iter().map(key_of).collect();
                for gone in K::keys(&w).difference(&listed) {
                    K::remove(gone, &mut w);
                }
                for o in buffer.drain(..) {
                    o.upsert(&mut w);
                }
                w.synced.insert(K::KIND);
            }
        }
        w.evaluate();
    }
}

/// The watches, on the test's runtime.
struct Monitor {
    world: Arc<Mutex<World>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Monitor {
    fn start(rt: &tokio::runtime::Runtime, cluster: &Cluster) -> Self {
        let world = Arc::new(Mutex::new(World {
            started: Some(Instant::now()),
            context: "setup".into(),
            ..Default::default()
        }));
        let client = rt.block_on(async { cluster.client() });
        let tasks = vec![
            rt.spawn(follow(Api::<Namespace>::all(client.clone()), world.clone())),
            rt.spawn(follow(Api::<Pod>::all(client.clone()), world.clone())),
            rt.spawn(follow(Api::<Service>::all(client.clone()), world.clone())),
            rt.spawn(follow(Api::<Istio>::all(client.clone()), world.clone())),
            rt.spawn(follow(Api::<IstioRevision>::all(client), world.clone())),
        ];
        let m = Self { world, tasks };
        let deadline = Instant::now() + Duration::from_secs(60);
        while m.world().synced.len() < 5 {
            assert!(
                Instant::now() < deadline,
                "the test's watches did not sync within 60 s: {:?}",
                m.world().journal
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Orphans: every object mizzen labels (managed-by or inventory) has a live owner, except the
// Istio CRDs, which mizzen applies without one on purpose (crates/controller/src/revision.rs,
// `apply_crds`: they hold every user's Istio configuration and outlive every revision).

#[derive(Debug, Default)]
struct Inventory {
    /// Objects with a live owner.
    owned: Vec<String>,
    /// The documented unowned objects (Istio CRDs).
    unowned_crds: usize,
    /// Everything wrong, one line each.
    problems: Vec<String>,
}

/// Lists every object mizzen labelled, with its owners looked up. `version`: the Istio version
/// every direct child of a sailoperator.io object must carry (stale children were not pruned).
async fn inventory(client: &kube::Client, version: Option<&str>) -> Inventory {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("API discovery");
    let mut objects: BTreeMap<String, (String, kube::api::ObjectMeta)> = BTreeMap::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            for selector in [MANAGED, INVENTORY] {
                let list = api
                    .list_metadata(&ListParams::default().labels(selector))
                    .await
                    .unwrap_or_else(|e| panic!("list {} -l {selector}: {e}", ar.plural));
                for o in list.items {
                    let uid = o.metadata.uid.clone().unwrap_or_default();
                    objects.insert(uid, (ar.kind.clone(), o.metadata));
                }
            }
        }
    }
    let mut inv = Inventory::default();
    // (apiVersion, kind, namespace, name) → (uid, being deleted), `None` when gone.
    type OwnerKey = (String, String, String, String);
    let mut owners: BTreeMap<OwnerKey, Option<(String, bool)>> = BTreeMap::new();
    for (kind, meta) in objects.values() {
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let what = if ns.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {ns}/{name}")
        };
        let refs = meta.owner_references.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        if refs.is_empty() && kind == "Endpoints" {
            // The endpoints controller copies a Service's labels to the Endpoints of the same
            // name, without an owner reference, and deletes it with the Service.
            let service = Api::<Service>::namespaced(client.clone(), &ns)
                .get_metadata_opt(&name)
                .await
                .unwrap_or_else(|e| panic!("get Service {ns}/{name}: {e}"));
            match service {
                Some(s) if s.metadata.deletion_timestamp.is_none() => inv.owned.push(what),
                _ => inv.problems.push(format!("{what}: its Service is gone")),
            }
            continue;
        }
        if refs.is_empty() {
            if kind == "CustomResourceDefinition"
                && name.ends_with(".istio.io")
                && !labels.contains_key(INVENTORY)
            {
                inv.unowned_crds += 1;
            } else {
                inv.problems.push(format!("{what} has no owner"));
            }
            continue;
        }
        let mut fine = true;
        for r in &refs {
            let (group, ver) = r
                .api_version
                .rsplit_once('/')
                .unwrap_or(("", &r.api_version));
            let key = (
                r.api_version.clone(),
                r.kind.clone(),
                ns.clone(),
                r.name.clone(),
            );
            if !owners.contains_key(&key) {
                let found = match discovery.resolve_gvk(&GroupVersionKind::gvk(group, ver, &r.kind))
                {
                    None => None,
                    Some((ar, caps)) => {
                        let api: Api<DynamicObject> = match caps.scope {
                            Scope::Namespaced => Api::namespaced_with(client.clone(), &ns, &ar),
                            Scope::Cluster => Api::all_with(client.clone(), &ar),
                        };
                        api.get_metadata_opt(&r.name)
                            .await
                            .unwrap_or_else(|e| panic!("get {} {}: {e}", r.kind, r.name))
                            .map(|o| {
                                (
                                    o.metadata.uid.unwrap_or_default(),
                                    o.metadata.deletion_timestamp.is_some(),
                                )
                            })
                    }
                };
                owners.insert(key.clone(), found);
            }
            match &owners[&key] {
                None => {
                    fine = false;
                    inv.problems
                        .push(format!("{what}: its owner {} {} is gone", r.kind, r.name));
                }
                Some((uid, _)) if *uid != r.uid => {
                    fine = false;
                    inv.problems.push(format!(
                        "{what}: its owner {} {} is gone (a new one has another uid)",
                        r.kind, r.name
                    ));
                }
                Some((_, true)) => {
                    fine = false;
                    inv.problems.push(format!(
                        "{what}: its owner {} {} is being deleted",
                        r.kind, r.name
                    ));
                }
                Some(_) => {}
            }
            if r.controller == Some(true) && group == "sailoperator.io" {
                let expected = format!("{}.{}", r.kind, r.name).to_lowercase();
                if let Some(v) = labels.get(INVENTORY)
                    && *v != expected
                {
                    fine = false;
                    inv.problems.push(format!(
                        "{what}: inventory label {INVENTORY}={v} but its owner is {} {}",
                        r.kind, r.name
                    ));
                }
                if let (Some(want), Some(have)) = (version, labels.get("app.kubernetes.io/version"))
                    && want.trim_start_matches('v') != have
                {
                    fine = false;
                    inv.problems.push(format!(
                        "{what}: a child of {} {} still at version {have} (not pruned)",
                        r.kind, r.name
                    ));
                }
            }
        }
        if fine {
            inv.owned.push(what);
        }
    }
    inv
}

// ---------------------------------------------------------------------------------------------
// The procedures.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Strategy {
    InPlace,
    RevisionBased,
}

impl Strategy {
    fn old_revision(self) -> String {
        match self {
            Strategy::InPlace => "default".into(),
            Strategy::RevisionBased => format!("default-{}", FROM.replace('.', "-")),
        }
    }

    fn new_revision(self) -> String {
        match self {
            Strategy::InPlace => "default".into(),
            Strategy::RevisionBased => format!("default-{}", TO.replace('.', "-")),
        }
    }
}

/// What one procedure of one trial measured.
struct Outcome {
    kills: Vec<u64>,
    /// RevisionBased: the extra kill during the grace period, ms after ztunnel was Ready.
    grace_kill: Option<u64>,
    /// From the kill after the last step to the seed's final tables.
    convergence: Duration,
    /// From the kill after the last step to the ZTunnel's Ready (the rollout done).
    ready: Duration,
    /// RevisionBased: how long the old revision had been unused when it was pruned, and the
    /// grace period.
    pruned_after: Option<(Duration, i64)>,
}

/// The table rows of `kubectl get` output without the AGE column, whitespace-normalised.
fn rows(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut cols: Vec<&str> = l.split_whitespace().collect();
            cols.pop();
            cols.join(" ")
        })
        .collect()
}

fn istio_header() -> String {
    "NAME REVISIONS READY IN USE ACTIVE REVISION STATUS VERSION".into()
}

fn revision_header() -> String {
    "NAME TYPE READY STATUS IN USE VERSION".into()
}

fn component_header() -> String {
    "NAME READY STATUS VERSION".into()
}

/// The seed's tables after the update: `kubectl get istio,istiorevision,istiocni,ztunnel`.
fn final_tables(s: Strategy) -> Vec<String> {
    let rev = s.new_revision();
    vec![
        istio_header(),
        format!("istio.sailoperator.io/default 1 1 1 {rev} Healthy {TO}"),
        revision_header(),
        format!("istiorevision.sailoperator.io/{rev} Local True Healthy True {TO}"),
        component_header(),
        format!("istiocni.sailoperator.io/default True Healthy {TO}"),
        component_header(),
        format!("ztunnel.sailoperator.io/default True Healthy {TO}"),
    ]
}

struct Harness<'a> {
    cluster: &'a Cluster,
    rt: &'a tokio::runtime::Runtime,
    monitor: &'a Monitor,
    dir: PathBuf,
    op: Option<Operator>,
    starts: usize,
    rng: Rng,
    /// Logs of the operator processes of the current procedure.
    logs: Vec<PathBuf>,
    /// Trial and procedure, for the journal.
    context: String,
}

impl Harness<'_> {
    fn start_operator(&mut self) {
        self.starts += 1;
        let op = Operator::start(
            &format!("mizzen-{}", self.starts),
            &self.cluster.kubeconfig_path(),
            &self.dir,
            &[],
        );
        self.logs.push(op.log.clone());
        self.op = Some(op);
    }

    /// Runs `action` (one step of the procedure), then kills the operator with SIGKILL at a
    /// random moment and starts a new one. Returns the delay.
    fn step(&mut self, what: &str, action: impl FnOnce(&Cluster)) -> u64 {
        self.monitor.world().context = format!("{} / {what}", self.context);
        action(self.cluster);
        let delay = self.rng.up_to(MAX_KILL_DELAY_MS);
        std::thread::sleep(Duration::from_millis(delay));
        self.kill();
        println!("    {what}: kill -9 after {delay} ms");
        self.start_operator();
        delay
    }

    fn kill(&mut self) {
        let mut op = self.op.take().expect("an operator runs");
        assert!(
            op.child_alive(),
            "the operator died by itself before it was killed:\n{}",
            op.log_tail(60)
        );
        op.signal("KILL");
        op.wait_exit(10);
    }

    /// What a failure report needs: the objects, the pods, the test's journal and the last
    /// two operators' log tails.
    fn diagnostics(&self) -> String {
        let get = |args: &[&str]| {
            let out = kubectl_output(self.cluster, args, None);
            format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let mut text = String::new();
        text += &get(&["get", "istio,istiorevision,istiocni,ztunnel", "-o", "wide"]);
        text += &get(&[
            "get",
            "istiorevision",
            "-o",
            "custom-columns=NAME:.metadata.name,DELETING:.metadata.deletionTimestamp,FINALIZERS:.metadata.finalizers,ACTIVE-SINCE:.metadata.annotations.mizzen\\.io/active-since,INUSE-BY:.status.inUseBy",
        ]);
        text += &get(&["get", "pods", "-A", "-o", "wide"]);
        text += &get(&[
            "get",
            "svc",
            "-A",
            "-o",
            "custom-columns=NAME:.metadata.name,SELECTOR:.spec.selector",
        ]);
        let w = self.monitor.world();
        text += "\nthe test's journal (last 40 entries):\n";
        let skip = w.journal.len().saturating_sub(40);
        for l in &w.journal[skip..] {
            text += l;
            text.push('\n');
        }
        drop(w);
        for log in self.logs.iter().rev().take(2).rev() {
            let body = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = body.lines().collect();
            let from = lines.len().saturating_sub(40);
            text += &format!(
                "\noperator log {} (last {} lines):\n{}\n",
                log.display(),
                lines.len() - from,
                lines[from..].join("\n")
            );
        }
        text
    }

    /// Polls `kubectl get <kinds>` until its rows (AGE dropped) are `expected`.
    fn until_tables(&self, what: &str, kinds: &str, expected: &[String], secs: u64) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = kubectl(self.cluster, &["get", kinds]);
            if rows(&out) == expected {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `kubectl get {kinds}` did not show the seed's table within {secs} s\n\
                 expected:\n{}\nlast seen:\n{out}",
                expected.join("\n")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait(&self, args: &[&str]) {
        let mut all = vec!["wait"];
        all.extend_from_slice(args);
        kubectl(self.cluster, &all);
    }

    fn inventory(&self, version: Option<&str>) -> Inventory {
        self.rt.block_on(async {
            let client = self.cluster.client();
            inventory(&client, version).await
        })
    }

    /// Waits (for garbage collection) until nothing mizzen labelled lacks a live owner.
    fn until_no_orphans(&self, what: &str, version: Option<&str>) -> Inventory {
        let deadline = Instant::now() + Duration::from_secs(GC_SECS);
        loop {
            let inv = self.inventory(version);
            if inv.problems.is_empty() {
                return inv;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: orphaned or stale children {GC_SECS} s later:\n{}",
                inv.problems.join("\n")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn ensure_namespace(&self, ns: &str) {
        if !kubectl_output(self.cluster, &["get", "namespace", ns], None)
            .status
            .success()
        {
            kubectl(self.cluster, &["create", "namespace", ns]);
        }
    }

    fn patch_version(c: &Cluster, kind: &str, version: &str) {
        set_version(c, &format!("{kind}/default"), version);
    }

    /// One procedure, as the seed scripts drive it, with a kill after every step.
    fn procedure(&mut self, s: Strategy) -> Outcome {
        let (old, new) = (s.old_revision(), s.new_revision());
        let mut kills = Vec::new();
        let mark = self.monitor.world().begin(&self.context);
        self.logs.clear();
        self.logs
            .push(self.op.as_ref().expect("running").log.clone());

        // Install (scripts/seed/install-ambient.sh, or the head of revisionbased.sh).
        let manifest = match s {
            Strategy::InPlace => {
                std::fs::read_to_string(root().join("deploy/examples/ambient.yaml"))
                    .unwrap()
                    .replace("v1.26.3", FROM)
            }
            Strategy::RevisionBased => {
                let script =
                    std::fs::read_to_string(root().join("scripts/seed/revisionbased.sh")).unwrap();
                script
                    .split_once("<<YAML\n")
                    .and_then(|(_, rest)| rest.split_once("\nYAML\n"))
                    .expect("revisionbased.sh applies a heredoc")
                    .0
                    .replace("$from", FROM)
            }
        };
        kills.push(self.step(&format!("apply the mesh at {FROM}"), |c| {
            for ns in ["istio-system", "istio-cni", "ztunnel"] {
                if !kubectl_output(c, &["get", "namespace", ns], None)
                    .status
                    .success()
                {
                    kubectl(c, &["create", "namespace", ns]);
                }
            }
            kubectl_stdin(c, &["apply", "-f", "-"], Some(manifest.as_bytes()));
        }));
        self.wait(&["--for=condition=Ready", "istios/default", WAIT]);
        self.wait(&[
            "--for=condition=Ready",
            "istiocnis/default",
            "ztunnels/default",
            WAIT,
        ]);

        // Ambient workloads (revisionbased.sh; the InPlace section's prerequisites show the
        // revision IN USE, so the same workloads).
        self.ensure_namespace("bookinfo");
        kills.push(self.step("enrol namespace bookinfo in ambient", |c| {
            kubectl(
                c,
                &[
                    "label",
                    "namespace",
                    "bookinfo",
                    "istio.io/dataplane-mode=ambient",
                    "--overwrite",
                ],
            );
            kubectl(
                c,
                &[
                    "create",
                    "deployment",
                    "ratings",
                    "-n",
                    "bookinfo",
                    "--image=example.invalid/bookinfo/ratings:1",
                ],
            );
        }));
        kubectl(
            self.cluster,
            &["rollout", "status", "deployment", "-n", "bookinfo", WAIT],
        );
        self.wait(&[
            "--for=condition=InUse",
            &format!("istiorevision/{old}"),
            WAIT,
        ]);
        // The seed's tables before the update.
        // (`kubectl get istio,istiorevision` names rows `<kind>.sailoperator.io/<name>`.)
        let (i, r) = ("istio.sailoperator.io/", "istiorevision.sailoperator.io/");
        let (kinds, before) = match s {
            Strategy::InPlace => (
                "istio",
                vec![
                    istio_header(),
                    format!("default 1 1 1 {old} Healthy {FROM}"),
                ],
            ),
            Strategy::RevisionBased => (
                "istio,istiorevision",
                vec![
                    istio_header(),
                    format!("{i}default 1 1 1 {old} Healthy {FROM}"),
                    revision_header(),
                    format!("{r}{old} Local True Healthy True {FROM}"),
                ],
            ),
        };
        self.until_tables("before the update", kinds, &before, TABLE_SECS);

        // The control plane.
        kills.push(self.step(&format!("patch istio to {TO}"), |c| {
            Self::patch_version(c, "istio", TO)
        }));
        self.wait(&["--for=condition=Ready", "istios/default", WAIT]);
        let during = match s {
            Strategy::InPlace => vec![
                istio_header(),
                format!("default 1 1 1 default Healthy {TO}"),
            ],
            Strategy::RevisionBased => vec![
                istio_header(),
                format!("{i}default 2 2 1 {new} Healthy {TO}"),
                revision_header(),
                format!("{r}{old} Local True Healthy True {FROM}"),
                format!("{r}{new} Local True Healthy False {TO}"),
            ],
        };
        self.until_tables(
            "after the control plane's update",
            kinds,
            &during,
            TABLE_SECS,
        );

        // istio-cni.
        kills.push(self.step(&format!("patch istiocni to {TO}"), |c| {
            Self::patch_version(c, "istiocni", TO)
        }));
        self.wait(&["--for=condition=Ready", "istiocnis/default", WAIT]);
        self.until_tables(
            "after istio-cni's update",
            "istiocni",
            &[component_header(), format!("default True Healthy {TO}")],
            TABLE_SECS,
        );

        // ztunnel, the last step.
        kills.push(self.step(&format!("patch ztunnel to {TO}"), |c| {
            Self::patch_version(c, "ztunnel", TO)
        }));
        let last_kill = Instant::now();
        kubectl(
            self.cluster,
            &[
                "rollout",
                "status",
                "daemonset/ztunnel",
                "-n",
                "ztunnel",
                WAIT,
            ],
        );
        self.wait(&["--for=condition=Ready", "ztunnels/default", WAIT]);
        let ready = last_kill.elapsed();
        let mut grace_kill = None;
        if s == Strategy::RevisionBased {
            // One more kill while the old revision waits out its grace period (30 s), so a
            // crash around the moment of pruning is covered too.
            let delay = self.rng.up_to(GRACE_KILL_WINDOW_MS);
            std::thread::sleep(Duration::from_millis(delay));
            self.kill();
            println!("    waiting for the pruning: kill -9 after {delay} ms more");
            grace_kill = Some(delay);
            self.start_operator();
            self.wait(&["--for=delete", &format!("istiorevision/{old}"), PRUNE_WAIT]);
        }
        self.wait(&[
            "--for=jsonpath={.status.state}=Healthy",
            "istios/default",
            WAIT,
        ]);
        let converged = self.until_tables(
            "after the update",
            "istio,istiorevision,istiocni,ztunnel",
            &final_tables(s),
            TABLE_SECS,
        );
        let convergence = converged - last_kill;

        // The exact set of revisions, now and over the whole procedure.
        let names = kubectl(
            self.cluster,
            &[
                "get",
                "istiorevisions",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        );
        assert_eq!(names.trim(), new, "the IstioRevisions left");
        let w = self.monitor.world();
        let allowed: BTreeSet<String> = [old.clone(), new.clone()].into();
        let seen = w.seen.clone();
        let deletions: Vec<Deletion> = w.deletions[mark.deletions..].to_vec();
        drop(w);
        assert!(
            seen.is_subset(&allowed),
            "IstioRevisions seen during the procedure: {seen:?}, expected only {allowed:?}"
        );
        let deleted: Vec<&str> = deletions.iter().map(|d| d.revision.as_str()).collect();
        let pruned_after = match s {
            Strategy::InPlace => {
                assert!(deleted.is_empty(), "InPlace deleted revisions: {deleted:?}");
                None
            }
            Strategy::RevisionBased => {
                assert_eq!(deleted, [old.as_str()], "revisions deleted: {deletions:?}");
                let d = &deletions[0];
                assert!(d.pruned, "the old revision went by pruning: {d:?}");
                Some((
                    d.unused_for.expect("unused when pruned"),
                    d.grace_secs.expect("its Istio's grace period"),
                ))
            }
        };

        // No orphaned or stale children once garbage collection has run.
        let inv = self.until_no_orphans("after the update", Some(TO));
        println!(
            "    {} objects labelled by mizzen, all with live owners (and {} Istio CRDs, unowned by design)",
            inv.owned.len(),
            inv.unowned_crds
        );
        assert!(inv.unowned_crds > 0, "the Istio CRDs are installed");

        // Still converged (nothing undid it meanwhile), nothing deleted in use, no panic.
        self.until_tables(
            "still, after the checks",
            "istio,istiorevision,istiocni,ztunnel",
            &final_tables(s),
            0,
        );
        self.assert_clean(mark);
        Outcome {
            kills,
            grace_kill,
            convergence,
            ready,
            pruned_after,
        }
    }

    /// No violation since `mark` and no panic in the operators' logs.
    fn assert_clean(&self, mark: Mark) {
        let violations = self.monitor.world().violations[mark.violations..].to_vec();
        assert!(
            violations.is_empty(),
            "revisions deleted while in use:\n{}",
            violations.join("\n")
        );
        for log in &self.logs {
            let body = std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                !body.contains("panicked"),
                "the operator panicked ({}):\n{body}",
                log.display()
            );
        }
    }

    /// Removes the mesh with the operator running, workloads first (README: to uninstall a
    /// mesh, unenrol the workloads or delete the ZTunnel, then the Istio), and checks that
    /// nothing mizzen made is left but the Istio CRDs.
    fn cleanup(&mut self) {
        let mark = self
            .monitor
            .world()
            .begin(&format!("{} / cleanup", self.context));
        let c = self.cluster;
        kubectl(
            c,
            &[
                "delete",
                "namespace",
                "bookinfo",
                "--ignore-not-found",
                "--wait",
                WAIT,
            ],
        );
        kubectl(c, &["delete", "ztunnel", "--all", "--wait", WAIT]);
        self.until_empty("pods", &["-n", "ztunnel"]);
        kubectl(c, &["delete", "istio", "--all", "--wait", WAIT]);
        self.until_empty("istiorevisions", &[]);
        kubectl(c, &["delete", "istiocni", "--all", "--wait", WAIT]);
        self.until_empty("pods", &["-n", "istio-cni"]);
        self.until_empty("pods", &["-n", "istio-system"]);
        let inv = self.until_no_orphans("after removing the mesh", None);
        assert!(
            inv.owned.is_empty(),
            "left after removing the mesh: {:?}",
            inv.owned
        );
        self.assert_clean(mark);
    }

    fn until_empty(&self, kind: &str, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut all = vec!["get", kind, "-o", "name"];
            all.extend_from_slice(args);
            let out = kubectl(self.cluster, &all);
            if out.trim().is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still there 120 s after the deletion: {out}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn spread(values: &mut [Duration]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.sort();
    format!(
        "min {}, median {}, max {}",
        seconds(values[0]),
        seconds(values[values.len() / 2]),
        seconds(values[values.len() - 1])
    )
}

#[test]
fn the_seed_procedures_converge_after_kill_9_at_random_moments() {
    let trials: usize = std::env::var("MIZZEN_CRASH_TRIALS")
        .ok()
        .map(|t| t.parse().expect("MIZZEN_CRASH_TRIALS is a number"))
        .unwrap_or(2);
    let seed: u64 = std::env::var("MIZZEN_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("MIZZEN_CRASH_SEED is a number"))
        .unwrap_or_else(|| unix_ms() as u64);
    println!(
        "crash convergence: {trials} trials, seed {seed} (replay with MIZZEN_CRASH_SEED={seed})"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = rt.block_on(shared());
    install_crds(cluster);
    let monitor = Monitor::start(&rt, cluster);
    let dir = tempfile::Builder::new()
        .prefix("mizzen-crash-")
        .tempdir()
        .unwrap();
    let mut h = Harness {
        cluster,
        rt: &rt,
        monitor: &monitor,
        dir: dir.path().to_owned(),
        op: None,
        starts: 0,
        rng: Rng(seed),
        logs: Vec::new(),
        context: String::new(),
    };
    h.start_operator();

    let mut passed = 0;
    let mut failures = Vec::new();
    let mut conv: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut ready: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut pruned_after = Vec::new();
    let mut per_trial = Vec::new();
    let mut kills = 0;
    for trial in 1..=trials {
        let started = Instant::now();
        println!("trial {trial}/{trials}");
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut out = Vec::new();
            for s in [Strategy::InPlace, Strategy::RevisionBased] {
                let name = format!("{s:?}");
                h.context = format!("trial {trial} {name}");
                println!("  {name}");
                let o = h.procedure(s);
                h.cleanup();
                out.push((s, o));
            }
            out
        }));
        match result {
            Ok(out) => {
                passed += 1;
                let mut line = format!("trial {trial}: passed");
                for (s, o) in out {
                    kills += o.kills.len() + usize::from(o.grace_kill.is_some());
                    line += &format!(
                        "; {s:?}: {} kills ({:?} ms after each step), ZTunnel Ready {} and the \
                         seed's final tables {} after the last",
                        o.kills.len(),
                        o.kills,
                        seconds(o.ready),
                        seconds(o.convergence)
                    );
                    if let Some(k) = o.grace_kill {
                        line += &format!(", one more kill {k} ms into the grace period");
                    }
                    if let Some((p, grace)) = o.pruned_after {
                        line += &format!(
                            ", old revision pruned {} after its last user went (grace {grace} s)",
                            seconds(p)
                        );
                        pruned_after.push(p);
                    }
                    let name = if s == Strategy::InPlace {
                        "InPlace"
                    } else {
                        "RevisionBased"
                    };
                    conv.entry(name).or_default().push(o.convergence);
                    ready.entry(name).or_default().push(o.ready);
                }
                let took = started.elapsed();
                per_trial.push(took);
                println!("{line}; trial took {}", seconds(took));
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let report = format!(
                    "trial {trial} FAILED: {message}\n{}\n(operator logs kept in {})",
                    h.diagnostics(),
                    h.dir.display()
                );
                println!("{report}");
                failures.push(format!("trial {trial}: {message}"));
                // Start the next trial from a clean cluster, or stop here.
                if h.op.as_mut().is_none_or(|o| !o.child_alive()) {
                    h.start_operator();
                }
                if catch_unwind(AssertUnwindSafe(|| h.cleanup())).is_err() {
                    println!("the cluster could not be cleaned up after trial {trial}: stopping");
                    break;
                }
            }
        }
    }
    // One lock, taken once (the guard is not reentrant).
    let (deletions, violations, watch_errors) = {
        let w = monitor.world();
        (w.deletions.clone(), w.violations.len(), w.watch_errors)
    };
    println!("\ncrash convergence: {passed}/{trials} trials passed (seed {seed}), {kills} kills");
    for (s, v) in &mut conv {
        println!(
            "  {s} convergence after the last kill (the seed's final tables): {}",
            spread(v)
        );
    }
    for (s, v) in &mut ready {
        println!("  {s} ZTunnel Ready after the last kill: {}", spread(v));
    }
    println!(
        "  old revision pruned after its last user went (grace 30 s): {}",
        spread(&mut pruned_after)
    );
    println!("  time per trial: {}", spread(&mut per_trial));
    println!(
        "  revisions deleted: {} ({} pruned by the operator, the others with their Istio); \
         deleted while in use: {}; watch errors: {}",
        deletions.len(),
        deletions.iter().filter(|d| d.pruned).count(),
        violations,
        watch_errors
    );
    if failures.is_empty() {
        drop(h);
    } else {
        let kept = dir.keep();
        panic!(
            "{} of {trials} trials failed (operator logs in {}):\n{}",
            trials - passed,
            kept.display(),
            failures.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The checker itself, without a cluster: it flags what it must.

#[cfg(test)]
mod checker {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ztunnel(name: &str, created_ms: i64) -> PodView {
        PodView {
            namespace: "ztunnel".into(),
            name: name.into(),
            labels: labels(&[("app", "ztunnel"), (INJECT, "false")]),
            annotations: labels(&[(FOLLOWS_ISTIO, "default")]),
            created_ms: Some(created_ms),
            terminal: false,
        }
    }

    /// RevisionBased half-way: v1-26-4 active since t=2000 s, bookinfo ambient, one ztunnel pod.
    fn world(ztunnel_created_ms: i64) -> World {
        let mut w = World::default();
        w.namespaces
            .insert("bookinfo".into(), labels(&[(DATAPLANE_MODE, "ambient")]));
        w.istios.insert(
            "default".into(),
            IstioView {
                deleting: false,
                grace_secs: 30,
            },
        );
        w.switches.insert(
            "default".into(),
            vec![
                (1_000_000, Some("default-v1-26-3".into())),
                (2_000_000, Some("default-v1-26-4".into())),
            ],
        );
        w.pods
            .insert("ztunnel/z".into(), ztunnel("z", ztunnel_created_ms));
        for r in ["default-v1-26-3", "default-v1-26-4"] {
            w.revisions.insert(
                r.into(),
                RevisionView {
                    istio: Some("default".into()),
                    ..Default::default()
                },
            );
        }
        w.evaluate();
        w
    }

    #[test]
    fn a_revision_pruned_under_ambient_workloads_is_a_violation() {
        let mut w = world(1_500_000);
        assert_eq!(w.users_of("default-v1-26-3").len(), 1, "{:?}", w.journal);
        assert!(w.users_of("default-v1-26-4").is_empty());
        w.remove_revision("default-v1-26-3");
        assert_eq!(w.violations.len(), 1, "{:?}", w.violations);
        assert!(w.violations[0].contains("deleted while in use"));
    }

    #[test]
    fn a_revision_pruned_before_its_grace_period_is_a_violation() {
        // The ztunnel pod was replaced after the switch: v1-26-3 is unused, but only just.
        let mut w = world(2_500_000);
        assert!(w.users_of("default-v1-26-3").is_empty());
        w.remove_revision("default-v1-26-3");
        assert_eq!(w.violations.len(), 1, "{:?}", w.violations);
        assert!(w.violations[0].contains("grace period"));
        // Unused for longer than the grace period: fine.
        let mut w = world(2_500_000);
        w.revisions.get_mut("default-v1-26-3").unwrap().unused_since =
            Instant::now().checked_sub(Duration::from_secs(31));
        w.remove_revision("default-v1-26-3");
        assert!(w.violations.is_empty(), "{:?}", w.violations);
        assert!(w.deletions[0].pruned);
    }

    #[test]
    fn deletion_with_nothing_holding_an_in_use_revision_is_a_violation_a_finalizer_is_not() {
        let mut w = world(1_500_000);
        let rev = |finalizers: &[&str]| {
            let mut r = IstioRevision::new("default-v1-26-3", Default::default());
            r.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
            r.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
            r
        };
        w.upsert_revision(rev(&[IN_USE_FINALIZER]));
        assert!(w.violations.is_empty(), "{:?}", w.violations);
        let mut w = world(1_500_000);
        w.upsert_revision(rev(&[]));
        assert_eq!(w.violations.len(), 1, "{:?}", w.violations);
    }

    #[test]
    fn namespace_and_pod_labels_use_revisions() {
        let mut w = World::default();
        w.namespaces
            .insert("a".into(), labels(&[(INJECTION, "enabled")]));
        w.namespaces.insert("b".into(), labels(&[(REV, "canary")]));
        w.namespaces.insert("c".into(), BTreeMap::new());
        w.pods.insert(
            "c/p".into(),
            PodView {
                namespace: "c".into(),
                name: "p".into(),
                labels: labels(&[(REV, "r2")]),
                ..Default::default()
            },
        );
        w.pods.insert(
            "c/istiod".into(),
            PodView {
                namespace: "c".into(),
                name: "istiod".into(),
                labels: labels(&[(REV, "r3"), (INJECT, "false")]),
                ..Default::default()
            },
        );
        assert_eq!(w.users_of("default"), ["namespace a (label)"]);
        assert_eq!(w.users_of("canary"), ["namespace b (label)"]);
        assert_eq!(w.users_of("r2"), ["pod c/p"]);
        assert!(w.users_of("r3").is_empty(), "mesh pods opt out");
        // No ambient workloads: ztunnel alone uses nothing.
        let mut w = world(1_500_000);
        w.namespaces.clear();
        assert!(w.users_of("default-v1-26-3").is_empty());
    }
}
