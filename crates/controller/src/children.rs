//! Caches of the objects mizzen renders: one watch per kind, over the objects that carry
//! mizzen's `app.kubernetes.io/managed-by` label, shared by every controller.
//!
//! They serve two purposes (docs/scale.md):
//! - **Triggers.** Every event of a cached object requests a reconcile of its controlling
//!   owner ([`Children::owned_by`]), as kube's `Controller::owns` would, but with one watch per
//!   kind instead of one per kind and controller.
//! - **Reads.** The applier compares desired objects with the cached copies and prunes from
//!   the caches, so a reconcile with nothing to change sends no request at all. A kind whose
//!   watch has not listed yet, or is failing (forbidden, say), is answered "not cached"
//!   ([`Children::live`] returns `None`) and callers read from the API server instead.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::wiring::{Health, WatchBackoff};

/// How many owner triggers may wait for a slow controller before it reconciles everything.
const OWNER_QUEUE: usize = 1024;

/// The controlling owner of a cached object that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    /// The owner's kind (`IstioRevision`, ...).
    pub kind: String,
    /// The owner's name (every owner in mizzen's API is cluster-scoped).
    pub name: String,
}

/// One cached kind.
struct Cache {
    resource: ApiResource,
    namespaced: bool,
    store: Store<DynamicObject>,
    /// Until the watch starts.
    writer: Mutex<Option<Writer<DynamicObject>>>,
    /// Listed at least once.
    synced: AtomicBool,
    /// The watch's name in the health report.
    watch: String,
}

/// A cache kept elsewhere (a shared store of one of mizzen's own kinds), answering as
/// [`Children::live`] does.
pub type Lookup = Box<dyn Fn(&str) -> Option<Option<Arc<DynamicObject>>> + Send + Sync>;

/// An object's identity in [`Children::written`]: kind, namespace, name.
type WrittenKey = (GroupVersionKind, Option<String>, String);

/// The caches of every rendered kind.
pub struct Children {
    kinds: HashMap<GroupVersionKind, Arc<Cache>>,
    /// Cluster-scoped kinds the applier writes whose cache is kept elsewhere.
    elsewhere: HashMap<GroupVersionKind, Lookup>,
    /// Per object: what this process's last write returned, until the cache holds that
    /// version or a newer one. A read right after a write (the applier's next comparison, a
    /// status that reads a DaemonSet it just changed) sees the write, not the older copy the
    /// cache still holds.
    written: Mutex<HashMap<WrittenKey, Arc<DynamicObject>>>,
    owners: broadcast::Sender<Owned>,
    health: Arc<Health>,
}

fn written_key(gvk: &GroupVersionKind, namespace: Option<&str>, name: &str) -> WrittenKey {
    (gvk.clone(), namespace.map(str::to_string), name.to_string())
}

/// An object's resourceVersion as a number (etcd's revision), 0 when it is not one.
fn resource_version(obj: &DynamicObject) -> u64 {
    obj.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The kinds of cluster-scoped objects mizzen renders; every other rendered kind is
/// namespaced.
fn cluster_scoped(gvk: &GroupVersionKind) -> bool {
    matches!(
        gvk.kind.as_str(),
        "ClusterRole"
            | "ClusterRoleBinding"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "CustomResourceDefinition"
    )
}

impl Children {
    /// No caches: every read goes to the API server (what tests of the applier alone use).
    pub fn none() -> Arc<Self> {
        Arc::new(Self::new(&[], Arc::default()))
    }

    /// Empty caches of `kinds`, not watching yet: [`Children::start`] starts them.
    pub fn new(kinds: &[GroupVersionKind], health: Arc<Health>) -> Self {
        let caches = kinds
            .iter()
            .map(|gvk| {
                let resource =
                    ApiResource::from_gvk_with_plural(gvk, &crate::permissions::plural(&gvk.kind));
                let writer = Writer::new(resource.clone());
                let cache = Cache {
                    namespaced: !cluster_scoped(gvk),
                    store: writer.as_reader(),
                    writer: Mutex::new(Some(writer)),
                    synced: AtomicBool::new(false),
                    watch: format!("cache {}", resource.plural),
                    resource,
                };
                (gvk.clone(), Arc::new(cache))
            })
            .collect();
        Self {
            kinds: caches,
            elsewhere: HashMap::new(),
            written: Mutex::new(HashMap::new()),
            owners: broadcast::channel(OWNER_QUEUE).0,
            health,
        }
    }

    /// Answers reads of the cluster-scoped kind `gvk` from `lookup`.
    pub fn with_lookup(mut self, gvk: GroupVersionKind, lookup: Lookup) -> Self {
        self.elsewhere.insert(gvk, lookup);
        self
    }

    /// Starts one watch per kind (once), of the objects mizzen manages, until `stopped`.
    pub fn start<F>(&self, client: &Client, metrics: Arc<Metrics>, stopped: impl Fn() -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        for cache in self.kinds.values() {
            let Some(writer) = cache.writer.lock().expect("not poisoned").take() else {
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &cache.resource);
            let config = crate::wiring::watch_config().labels(&mizzen_render::managed_selector());
            let stream = watcher::watcher(api, config)
                .backoff(WatchBackoff::default())
                .modify(|o| o.managed_fields_mut().clear())
                .reflect(writer);
            tokio::spawn(drive(
                stream,
                cache.clone(),
                self.owners.clone(),
                self.health.clone(),
                metrics.clone(),
                stopped(),
            ));
        }
    }

    /// Waits until every cache has listed once, for at most `limit`: a kind whose watch
    /// cannot list (forbidden, say) is read from the API server instead, so start-up does not
    /// wait for it. Returns the watches that had not listed.
    pub async fn wait_until_ready(&self, limit: std::time::Duration) -> Vec<String> {
        let all =
            futures::future::join_all(self.kinds.values().map(|c| c.store.wait_until_ready()));
        let _ = tokio::time::timeout(limit, all).await;
        let mut late: Vec<String> = self
            .kinds
            .values()
            .filter(|c| !c.synced.load(Ordering::SeqCst))
            .map(|c| c.watch.clone())
            .collect();
        late.sort();
        late
    }

    /// Whether `gvk` has a cache (trusted or not).
    pub fn caches(&self, gvk: &GroupVersionKind) -> bool {
        self.kinds.contains_key(gvk) || self.elsewhere.contains_key(gvk)
    }

    fn usable(&self, gvk: &GroupVersionKind) -> Option<&Cache> {
        let cache = self.kinds.get(gvk)?;
        (cache.synced.load(Ordering::SeqCst) && !self.health.failing(&cache.watch))
            .then_some(cache.as_ref())
    }

    /// The cached copy of an object, or this process's last write of it when that is newer:
    /// `None` when the kind is not cached or its cache cannot be trusted now (not listed yet,
    /// watch failing); `Some(None)` when the cache has no such object (created a moment ago,
    /// or deleted since the last write).
    pub fn live(
        &self,
        gvk: &GroupVersionKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Option<Arc<DynamicObject>>> {
        let (cached, namespaced) = match self.elsewhere.get(gvk) {
            Some(lookup) => (lookup(name)?, false),
            None => {
                let cache = self.usable(gvk)?;
                let mut r = ObjectRef::new_with(name, cache.resource.clone());
                if cache.namespaced {
                    r = r.within(namespace.unwrap_or_default());
                }
                (cache.store.get(&r), cache.namespaced)
            }
        };
        let key = written_key(gvk, namespace.filter(|_| namespaced), name);
        let mut written = self.written.lock().expect("not poisoned");
        Some(match (cached, written.get(&key)) {
            (None, _) => {
                written.remove(&key);
                None
            }
            (Some(c), Some(w)) if resource_version(w) > resource_version(&c) => Some(w.clone()),
            (Some(c), Some(_)) => {
                written.remove(&key);
                Some(c)
            }
            (Some(c), None) => Some(c),
        })
    }

    /// Forgets the last write of an object this process deleted.
    pub fn forget(&self, gvk: &GroupVersionKind, namespace: Option<&str>, name: &str) {
        let namespaced = self.kinds.get(gvk).is_some_and(|c| c.namespaced);
        self.written
            .lock()
            .expect("not poisoned")
            .remove(&written_key(gvk, namespace.filter(|_| namespaced), name));
    }

    /// Records what a write of a cached kind returned, for [`Children::live`].
    pub fn wrote(&self, gvk: &GroupVersionKind, mut obj: DynamicObject) {
        if !self.caches(gvk) {
            return;
        }
        obj.managed_fields_mut().clear();
        let namespaced = self.kinds.get(gvk).is_some_and(|c| c.namespaced);
        let key = written_key(
            gvk,
            obj.namespace().as_deref().filter(|_| namespaced),
            &obj.name_any(),
        );
        self.written
            .lock()
            .expect("not poisoned")
            .insert(key, Arc::new(obj));
    }

    /// The cached objects of `gvk` whose label `label.0` is `label.1`; `None` when the kind's
    /// cache cannot be trusted now.
    pub fn labelled(
        &self,
        gvk: &GroupVersionKind,
        label: (&str, &str),
    ) -> Option<Vec<Arc<DynamicObject>>> {
        let cache = self.usable(gvk)?;
        Some(
            cache
                .store
                .state()
                .into_iter()
                .filter(|o| o.labels().get(label.0).map(String::as_str) == Some(label.1))
                .collect(),
        )
    }

    /// Reads object `name` of kind `K` from its cache, or from the API server when the kind is
    /// not cached, its cache cannot be trusted, or the object is not in it (it may have been
    /// created a moment ago).
    pub async fn get<K>(
        &self,
        client: &Client,
        namespace: Option<&str>,
        name: &str,
    ) -> kube::Result<Option<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let resource = ApiResource::erase::<K>(&());
        let gvk = GroupVersionKind::gvk(&resource.group, &resource.version, &resource.kind);
        let obj = match self.live(&gvk, namespace, name) {
            Some(Some(cached)) => Some(cached.as_ref().clone()),
            _ => {
                let api: Api<DynamicObject> = match namespace {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                    None => Api::all_with(client.clone(), &resource),
                };
                api.get_opt(name).await?
            }
        };
        obj.map(|o| serde_json::to_value(o).and_then(serde_json::from_value))
            .transpose()
            .map_err(kube::Error::SerdeError)
    }

    /// Reconcile requests of controller kind `K`'s objects, one per event of a cached object
    /// it controls. After missing triggers (a controller far behind) every object in `store`
    /// is requested.
    pub fn owned_by<K>(
        &self,
        store: Store<K>,
    ) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let kind = K::kind(&()).into_owned();
        futures::stream::unfold(
            (self.owners.subscribe(), store, kind),
            |(mut rx, store, kind)| async move {
                loop {
                    let refs: Vec<ObjectRef<K>> = match rx.recv().await {
                        Ok(o) if o.kind == kind => vec![ObjectRef::new(&o.name)],
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => store
                            .state()
                            .iter()
                            .map(|o| ObjectRef::from_obj(o.as_ref()))
                            .collect(),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    };
                    return Some((futures::stream::iter(refs), (rx, store, kind)));
                }
            },
        )
        .flatten()
    }
}

impl Children {
    /// One item each time a cached object controlled by an owner of one of `kinds` changes
    /// (and after missed events), for controllers that read those children without owning
    /// them.
    pub fn changes_of_owners(
        &self,
        kinds: &'static [&'static str],
    ) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.owners.subscribe(), move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(o) if kinds.contains(&o.kind.as_str()) => return Some(((), rx)),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(((), rx)),
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

/// The controlling owner of `obj`, if it has one.
fn controller_of(obj: &DynamicObject) -> Option<Owned> {
    obj.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| Owned {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
}

/// Drives one cache's watch: marks it synced after its first list, reports its health, and
/// sends the controlling owner of each changed object.
async fn drive<S>(
    stream: S,
    cache: Arc<Cache>,
    owners: broadcast::Sender<Owned>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stopped: impl Future<Output = ()>,
) where
    S: futures::Stream<Item = Result<Event<DynamicObject>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream.take_until(stopped));
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(Event::Apply(o) | Event::InitApply(o) | Event::Delete(o)) => controller_of(&o),
            Ok(Event::InitDone) => {
                cache.synced.store(true, Ordering::SeqCst);
                None
            }
            Ok(Event::Init) => None,
            Err(e) => {
                health.watch_error(&cache.watch, &e, &metrics);
                continue;
            }
        };
        health.watch_ok(&cache.watch);
        if let Some(owner) = changed {
            let _ = owners.send(owner);
        }
    }
}
