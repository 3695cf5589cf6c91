//! mizzen's own kinds (Istio, IstioRevision, IstioRevisionTag, IstioCNI, ZTunnel): one watch
//! and one store per kind, shared by every controller that reconciles, watches or reads it.
//!
//! Each kind's changes are fanned out to the controllers after the store holds them, so a
//! reconcile triggered by a change reads a store that already has it. Unlike kube's shared
//! reflector streams, deletions are fanned out too: removing a tag changes which revisions are
//! in use. Reads fall back to the API server while a store has not listed or its watch is
//! failing (docs/scale.md).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use kube::{Client, Resource, ResourceExt};
use mizzen_api::{Istio, IstioCNI, IstioRevision, IstioRevisionTag, RolloutPolicy, ZTunnel};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::wiring::{Health, WatchBackoff};

/// How many changes may wait for a slow controller before it is given every object instead.
const CHANGES_QUEUE: usize = 1024;

/// One kind's watch, store and fan-out.
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    /// Drops what no reader needs before an object enters the store.
    trim: fn(&mut K),
    writer: Mutex<Option<Writer<K>>>,
    changes: broadcast::Sender<Arc<K>>,
    watch: String,
    health: Arc<Health>,
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn new(health: Arc<Health>) -> Self {
        Self::trimmed(health, |_| {})
    }

    /// A store whose objects `trim` reduces to what the readers need.
    fn trimmed(health: Arc<Health>, trim: fn(&mut K)) -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            trim,
            writer: Mutex::new(Some(writer)),
            changes: broadcast::channel(CHANGES_QUEUE).0,
            watch: K::plural(&()).into_owned(),
            health,
        }
    }

    /// The store (filled once [`OwnKinds::start`] ran).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Each changed or deleted object, after the store holds the change; every object after
    /// each (re)list. A subscriber too slow to keep up gets every object in the store.
    pub fn changes(&self) -> impl futures::Stream<Item = Arc<K>> + Send + 'static {
        futures::stream::unfold(
            (self.changes.subscribe(), self.store.clone()),
            |(mut rx, store)| async move {
                let objects = match rx.recv().await {
                    Ok(o) => vec![o],
                    Err(broadcast::error::RecvError::Lagged(_)) => store.state(),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((futures::stream::iter(objects), (rx, store)))
            },
        )
        .flatten()
    }

    fn start<F>(&self, client: &Client, metrics: Arc<Metrics>, stopped: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(writer) = self.writer.lock().expect("not poisoned").take() else {
            return;
        };
        let stream = watcher::watcher(Api::<K>::all(client.clone()), crate::wiring::watch_config())
            .backoff(WatchBackoff::default())
            .modify({
                let trim = self.trim;
                move |o| {
                    o.managed_fields_mut().clear();
                    trim(o);
                }
            })
            .reflect(writer);
        let (store, changes, health, watch) = (
            self.store.clone(),
            self.changes.clone(),
            self.health.clone(),
            self.watch.clone(),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream.take_until(stopped));
            while let Some(event) = stream.next().await {
                let changed = match event {
                    Ok(Event::Apply(o) | Event::Delete(o)) => vec![Arc::new(o)],
                    Ok(Event::InitDone) => store.state(),
                    Ok(Event::Init | Event::InitApply(_)) => Vec::new(),
                    Err(e) => {
                        health.watch_error(&watch, &e, &metrics);
                        continue;
                    }
                };
                health.watch_ok(&watch);
                for o in changed {
                    let _ = changes.send(o);
                }
            }
        });
    }

    /// Every object, from the store, sorted by name as the API server lists them (a store
    /// holds no order, and statuses written from a list must not change with it); `None`
    /// while it has not listed or its watch is failing.
    pub fn listed(&self) -> Option<Vec<Arc<K>>> {
        trusted(&self.store, &self.health, &self.watch).then(|| {
            let mut all = self.store.state();
            all.sort_by_key(|o| o.name_any());
            all
        })
    }

    /// Every object: from the store, or from the API server when the store cannot answer.
    pub async fn list(&self, client: &Client) -> kube::Result<Vec<Arc<K>>> {
        match self.listed() {
            Some(all) => Ok(all),
            None => Ok(Api::<K>::all(client.clone())
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .map(Arc::new)
                .collect()),
        }
    }

    /// Object `name`: from the store, or from the API server when the store cannot answer.
    pub async fn get(&self, client: &Client, name: &str) -> kube::Result<Option<Arc<K>>> {
        if trusted(&self.store, &self.health, &self.watch) {
            return Ok(self.store.get(&ObjectRef::new(name)));
        }
        Ok(Api::<K>::all(client.clone())
            .get_opt(name)
            .await?
            .map(Arc::new))
    }

    /// Reads of this kind for the applier ([`crate::children::Children::with_lookup`]).
    pub fn lookup(&self) -> crate::children::Lookup {
        let (store, health, watch) = (self.store.clone(), self.health.clone(), self.watch.clone());
        Box::new(move |name| {
            if !trusted(&store, &health, &watch) {
                return None;
            }
            let found = store.get(&ObjectRef::new(name))?;
            // As the API server would serve it: apiVersion and kind included.
            let mut value = serde_json::to_value(found.as_ref()).ok()?;
            value["apiVersion"] = K::api_version(&()).as_ref().into();
            value["kind"] = K::kind(&()).as_ref().into();
            serde_json::from_value(value)
                .ok()
                .map(|o| Some(Arc::new(o)))
        })
    }

    async fn wait_until_ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }
}

/// Whether `store` can answer: it has listed, and its watch `watch` is not failing.
fn trusted<K>(store: &Store<K>, health: &Health, watch: &str) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.wait_until_ready().now_or_never().is_some() && !health.failing(watch)
}

/// Owned copies of shared objects, for the pure functions that take slices.
pub fn unshared<K: Clone>(objects: Vec<Arc<K>>) -> Vec<K> {
    objects.iter().map(|o| K::clone(o)).collect()
}

/// The shared watches of mizzen's own kinds.
pub struct OwnKinds {
    /// Istios.
    pub istios: Shared<Istio>,
    /// IstioRevisions.
    pub revisions: Shared<IstioRevision>,
    /// IstioRevisionTags.
    pub tags: Shared<IstioRevisionTag>,
    /// IstioCNIs.
    pub cnis: Shared<IstioCNI>,
    /// ZTunnels.
    pub ztunnels: Shared<ZTunnel>,
    /// RolloutPolicies (mizzen.io).
    pub policies: Shared<RolloutPolicy>,
    /// Nodes, reduced to what the rollouts read ([`trim_node`]).
    pub nodes: Shared<Node>,
}

/// What the rollouts read of a node: its metadata (labels, annotations, deletion), whether it
/// is cordoned, and its `Ready` condition. The rest (images, addresses, capacity, ...) is
/// dropped, so a node costs the cache a few hundred bytes.
pub fn trim_node(node: &mut Node) {
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable);
    node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
        unschedulable,
        ..Default::default()
    });
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned())
        .map(|mut c| {
            // Heartbeats change nothing the rollouts read.
            c.last_heartbeat_time = None;
            c
        });
    node.status = Some(k8s_openapi::api::core::v1::NodeStatus {
        conditions: ready.map(|c| vec![c]),
        ..Default::default()
    });
}

impl OwnKinds {
    /// The stores, empty and not watching yet: controllers subscribe to their changes before
    /// [`OwnKinds::start`], so none misses the first list.
    pub fn new(health: Arc<Health>) -> Self {
        Self {
            istios: Shared::new(health.clone()),
            revisions: Shared::new(health.clone()),
            tags: Shared::new(health.clone()),
            cnis: Shared::new(health.clone()),
            ztunnels: Shared::new(health.clone()),
            policies: Shared::new(health.clone()),
            nodes: Shared::trimmed(health, trim_node),
        }
    }

    /// Starts the five watches (once) until `stopped`; the metrics read their stores.
    pub fn start<F>(&self, client: &Client, metrics: Arc<Metrics>, stopped: impl Fn() -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stores = metrics.stores();
        let _ = stores.istios.set(self.istios.store());
        let _ = stores.revisions.set(self.revisions.store());
        let _ = stores.tags.set(self.tags.store());
        let _ = stores.cnis.set(self.cnis.store());
        let _ = stores.ztunnels.set(self.ztunnels.store());
        let _ = stores.policies.set(self.policies.store());
        self.istios.start(client, metrics.clone(), stopped());
        self.revisions.start(client, metrics.clone(), stopped());
        self.tags.start(client, metrics.clone(), stopped());
        self.cnis.start(client, metrics.clone(), stopped());
        self.ztunnels.start(client, metrics.clone(), stopped());
        self.policies.start(client, metrics.clone(), stopped());
        self.nodes.start(client, metrics, stopped());
    }

    /// Waits, for at most `limit`, until every store has listed; false if one has not (its
    /// kind is then read from the API server until it has).
    pub async fn wait_until_ready(&self, limit: Duration) -> bool {
        let all = async {
            self.istios.wait_until_ready().await;
            self.revisions.wait_until_ready().await;
            self.tags.wait_until_ready().await;
            self.cnis.wait_until_ready().await;
            self.ztunnels.wait_until_ready().await;
            self.policies.wait_until_ready().await;
            self.nodes.wait_until_ready().await;
        };
        tokio::time::timeout(limit, all).await.is_ok()
    }
}
