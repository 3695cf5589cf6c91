//! The compact index of namespaces and pods the in-use rules read, kept from two
//! metadata-only watches.
//!
//! Every namespace is kept (a reconcile checks that its target namespace exists and is not
//! being deleted), with only the labels [`NamespaceLabels`] names. A pod is kept only when
//! [`PodInfo::matters`], with only what [`PodInfo`] names: in a cluster whose pods are mostly
//! outside the mesh the index stays small whatever the pod count. Each watch event says
//! whether the index changed, which is what wakes the controllers.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

use crate::inuse::{NamespaceInfo, NamespaceLabels, PodInfo, Usage};

/// What is kept of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NamespaceEntry {
    labels: NamespaceLabels,
    /// `metadata.deletionTimestamp` is set.
    deleting: bool,
}

/// A pod's key: namespace and name (the same strings as its [`PodInfo`]'s).
type PodKey = (Arc<str>, Arc<str>);

/// The namespaces and relevant pods, each fed by its watch.
#[derive(Debug)]
pub struct Workloads {
    namespaces: RwLock<Index<Arc<str>, NamespaceEntry>>,
    pods: RwLock<Index<PodKey, PodInfo>>,
    /// Whether each watch has completed its first list.
    namespaces_listed: watch::Sender<bool>,
    pods_listed: watch::Sender<bool>,
}

impl Default for Workloads {
    fn default() -> Self {
        Self {
            namespaces: Default::default(),
            pods: Default::default(),
            namespaces_listed: watch::Sender::new(false),
            pods_listed: watch::Sender::new(false),
        }
    }
}

/// Whether namespace `name` exists and is being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceState {
    /// Not in the index.
    Missing,
    /// Exists, `metadata.deletionTimestamp` set.
    Deleting,
    /// Exists.
    Present,
}

impl Workloads {
    /// An empty index; the watches fill it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds in one event of the namespace watch; true when the index changed (always on
    /// the end of a list).
    pub fn namespace_event(&self, event: Event<PartialObjectMeta<Namespace>>) -> bool {
        let mut index = self.namespaces.write().expect("not poisoned");
        let entry = |n: &PartialObjectMeta<Namespace>| {
            Some(NamespaceEntry {
                labels: NamespaceLabels::new(n.labels()),
                deleting: n.metadata.deletion_timestamp.is_some(),
            })
        };
        // A namespace's name is shared by its entry in both indexes.
        let key = |index: &Index<Arc<str>, NamespaceEntry>, n: &PartialObjectMeta<Namespace>| {
            let name = n.name_any();
            index
                .live
                .get_key_value(name.as_str())
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| name.into())
        };
        let changed = match event {
            Event::Init => index.init(),
            Event::InitApply(n) => {
                let k = key(&index, &n);
                index.init_apply(k, entry(&n))
            }
            Event::InitDone => index.init_done(),
            Event::Apply(n) => {
                let k = key(&index, &n);
                index.apply(k, entry(&n))
            }
            Event::Delete(n) => {
                let k = key(&index, &n);
                index.delete(&k)
            }
        };
        drop(index);
        if changed.listed {
            self.namespaces_listed.send_replace(true);
        }
        changed.changed
    }

    /// Folds in one event of the pod watch; true when the index changed (always on the end
    /// of a list).
    pub fn pod_event(&self, event: Event<PartialObjectMeta<Pod>>) -> bool {
        let key = |p: &PartialObjectMeta<Pod>| -> PodKey {
            let namespace = p.namespace().unwrap_or_default();
            (namespace.into(), p.name_any().into())
        };
        let info = |p: &PartialObjectMeta<Pod>| -> (PodKey, Option<PodInfo>) {
            if !PodInfo::matters(p.labels(), p.annotations()) {
                return (key(p), None);
            }
            let info = PodInfo::new(
                self.namespace_name(&p.namespace().unwrap_or_default()),
                &p.name_any(),
                p.labels(),
                p.annotations(),
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            );
            ((info.namespace.clone(), info.name.clone()), Some(info))
        };
        let changed = {
            let mut index = self.pods.write().expect("not poisoned");
            match event {
                Event::Init => index.init(),
                Event::InitApply(p) => {
                    let (k, v) = info(&p);
                    index.init_apply(k, v)
                }
                Event::InitDone => index.init_done(),
                Event::Apply(p) => {
                    let (k, v) = info(&p);
                    index.apply(k, v)
                }
                Event::Delete(p) => index.delete(&key(&p)),
            }
        };
        if changed.listed {
            self.pods_listed.send_replace(true);
        }
        changed.changed
    }

    /// The namespace name as the namespace index holds it, so pods share it; a new string
    /// when that namespace is not (yet) indexed.
    fn namespace_name(&self, name: &str) -> Arc<str> {
        let index = self.namespaces.read().expect("not poisoned");
        index
            .live
            .get_key_value(name)
            .or_else(|| index.relist.as_ref()?.get_key_value(name))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| name.into())
    }

    /// Completes once both watches have listed everything once.
    pub async fn listed(&self) {
        let mut namespaces = self.namespaces_listed.subscribe();
        let mut pods = self.pods_listed.subscribe();
        // The senders live as long as `self`: waiting cannot fail.
        let _ = namespaces.wait_for(|l| *l).await;
        let _ = pods.wait_for(|l| *l).await;
    }

    /// Whether namespace `name` exists and whether it is being deleted.
    pub fn namespace(&self, name: &str) -> NamespaceState {
        match self.namespaces.read().expect("not poisoned").live.get(name) {
            None => NamespaceState::Missing,
            Some(e) if e.deleting => NamespaceState::Deleting,
            Some(_) => NamespaceState::Present,
        }
    }

    /// Whether namespace `name` is enrolled in ambient mode (label
    /// `istio.io/dataplane-mode=ambient`).
    pub fn namespace_is_ambient(&self, name: &str) -> bool {
        self.namespaces
            .read()
            .expect("not poisoned")
            .live
            .get(name)
            .is_some_and(|e| e.labels.dataplane_mode.as_deref() == Some("ambient"))
    }

    /// The namespaces and relevant pods, as the in-use rules take them (tags and revisions
    /// empty).
    pub fn usage(&self) -> Usage {
        let namespaces = self
            .namespaces
            .read()
            .expect("not poisoned")
            .live
            .iter()
            .map(|(name, e)| NamespaceInfo {
                name: name.clone(),
                labels: e.labels.clone(),
            })
            .collect();
        let pods = self
            .pods
            .read()
            .expect("not poisoned")
            .live
            .values()
            .cloned()
            .collect();
        Usage {
            namespaces,
            pods,
            ..Usage::default()
        }
    }
}

/// What an event did to an [`Index`].
struct Folded {
    /// The live entries changed (or a list completed).
    changed: bool,
    /// A list completed.
    listed: bool,
}

impl Folded {
    fn changed(changed: bool) -> Self {
        Self {
            changed,
            listed: false,
        }
    }
}

/// Live entries, and while a (re)list runs, the entries it has listed so far.
#[derive(Debug)]
struct Index<K, V> {
    live: HashMap<K, V>,
    relist: Option<HashMap<K, V>>,
}

impl<K, V> Default for Index<K, V> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            relist: None,
        }
    }
}

impl<K: Hash + Eq, V: PartialEq> Index<K, V> {
    /// A list starts: the live entries stay until it completes.
    fn init(&mut self) -> Folded {
        self.relist = Some(HashMap::new());
        Folded::changed(false)
    }

    /// An object of the list (`None`: one not kept).
    fn init_apply(&mut self, key: K, value: Option<V>) -> Folded {
        if let Some(v) = value {
            self.relist.get_or_insert_default().insert(key, v);
        }
        Folded::changed(false)
    }

    /// The list is complete: it replaces the live entries.
    fn init_done(&mut self) -> Folded {
        if let Some(listed) = self.relist.take() {
            self.live = listed;
        }
        Folded {
            changed: true,
            listed: true,
        }
    }

    /// An object was added or modified (`None`: it is not, or no longer, kept).
    fn apply(&mut self, key: K, value: Option<V>) -> Folded {
        Folded::changed(match value {
            None => self.live.remove(&key).is_some(),
            Some(v) if self.live.get(&key) == Some(&v) => false,
            Some(v) => {
                self.live.insert(key, v);
                true
            }
        })
    }

    /// An object was deleted.
    fn delete(&mut self, key: &K) -> Folded {
        Folded::changed(self.live.remove(key).is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use kube::api::PartialObjectMetaExt;

    use super::*;
    use crate::inuse::{DATAPLANE_MODE, FOLLOWS_ISTIO_ANNOTATION, INJECT, INJECTION, REV};

    fn map(kv: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn pod(
        name: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> PartialObjectMeta<Pod> {
        ObjectMeta {
            namespace: Some("app".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            labels: map(labels),
            annotations: map(annotations),
            creation_timestamp: Some(Time("2026-01-01T00:10:00Z".parse().unwrap())),
            owner_references: Some(vec![Default::default()]),
            ..Default::default()
        }
        .into_response_partial()
    }

    fn ns(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        ObjectMeta {
            name: Some(name.into()),
            labels: map(labels),
            ..Default::default()
        }
        .into_response_partial()
    }

    /// Lists `pods` as one complete list; the index's change reports along the way.
    fn list_pods(w: &Workloads, pods: Vec<PartialObjectMeta<Pod>>) -> Vec<bool> {
        let mut changes = vec![w.pod_event(Event::Init)];
        changes.extend(pods.into_iter().map(|p| w.pod_event(Event::InitApply(p))));
        changes.push(w.pod_event(Event::InitDone));
        changes
    }

    fn pod_names(w: &Workloads) -> Vec<String> {
        let mut names: Vec<String> = w.usage().pods.iter().map(|p| p.name.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn irrelevant_pods_are_not_kept() {
        let w = Workloads::new();
        list_pods(
            &w,
            vec![
                pod(
                    "plain",
                    &[("app", "web"), ("tier", "front")],
                    &[("note", "x")],
                ),
                pod("injected", &[], &[(REV, "r1")]),
                pod("asks", &[(REV, "r2")], &[]),
                pod("opt-out", &[(INJECT, "false")], &[]),
                pod("ambient", &[(DATAPLANE_MODE, "ambient")], &[]),
                pod("follows", &[], &[(FOLLOWS_ISTIO_ANNOTATION, "default")]),
                pod("zt", &[("app", "ztunnel")], &[]),
            ],
        );
        assert_eq!(
            pod_names(&w),
            ["ambient", "asks", "follows", "injected", "opt-out", "zt"]
        );
        assert!(!w.pod_event(Event::Apply(pod("other", &[("app", "db")], &[]))));
        assert!(!w.pod_event(Event::Delete(pod("other", &[("app", "db")], &[]))));
        assert_eq!(w.usage().pods.len(), 6);
    }

    #[test]
    fn gaining_or_losing_a_relevant_label_inserts_or_removes_the_pod() {
        let w = Workloads::new();
        list_pods(&w, vec![pod("p", &[("app", "web")], &[])]);
        assert!(pod_names(&w).is_empty());
        assert!(w.pod_event(Event::Apply(pod(
            "p",
            &[("app", "web"), (REV, "canary")],
            &[]
        ))));
        assert_eq!(pod_names(&w), ["p"]);
        assert_eq!(w.usage().pods[0].labels.rev.as_deref(), Some("canary"));
        assert!(w.pod_event(Event::Apply(pod(
            "p",
            &[("app", "web"), (REV, "stable")],
            &[]
        ))));
        assert_eq!(w.usage().pods[0].labels.rev.as_deref(), Some("stable"));
        assert!(w.pod_event(Event::Apply(pod("p", &[("app", "web")], &[]))));
        assert!(pod_names(&w).is_empty());
        // Deleted once kept: a change; deleted while not kept: none.
        assert!(w.pod_event(Event::Apply(pod("q", &[], &[(REV, "r")]))));
        assert!(w.pod_event(Event::Delete(pod("q", &[], &[(REV, "r")]))));
        assert!(!w.pod_event(Event::Delete(pod("p", &[("app", "web")], &[]))));
    }

    #[test]
    fn other_changes_to_a_kept_pod_are_not_changes() {
        let w = Workloads::new();
        list_pods(&w, vec![pod("p", &[(REV, "r")], &[])]);
        let mut status_churn = pod("p", &[(REV, "r"), ("version", "2")], &[("note", "y")]);
        status_churn.metadata.resource_version = Some("42".into());
        status_churn.metadata.creation_timestamp =
            Some(Time("2027-01-01T00:00:00Z".parse().unwrap()));
        assert!(!w.pod_event(Event::Apply(status_churn)));
        assert!(w.usage().pods[0].created.is_none(), "not a ztunnel pod");
    }

    #[test]
    fn a_relist_replaces_the_entries_and_drops_those_that_vanished() {
        let w = Workloads::new();
        let first = list_pods(
            &w,
            vec![pod("a", &[(REV, "r")], &[]), pod("b", &[(REV, "r")], &[])],
        );
        assert_eq!(
            first,
            [false, false, false, true],
            "only the list's end reports"
        );
        assert!(!w.pod_event(Event::Init));
        assert!(!w.pod_event(Event::InitApply(pod("b", &[(REV, "r")], &[]))));
        assert!(!w.pod_event(Event::InitApply(pod("c", &[(REV, "r")], &[]))));
        assert_eq!(
            pod_names(&w),
            ["a", "b"],
            "the old entries until the list completes"
        );
        assert!(w.pod_event(Event::InitDone));
        assert_eq!(pod_names(&w), ["b", "c"]);
    }

    #[test]
    fn namespaces_keep_three_labels_and_whether_they_are_being_deleted() {
        let w = Workloads::new();
        assert!(!w.namespace_event(Event::Init));
        assert!(!w.namespace_event(Event::InitApply(ns(
            "app",
            &[
                (REV, "canary"),
                ("team", "a"),
                (INJECTION, "enabled"),
                (DATAPLANE_MODE, "ambient")
            ]
        ))));
        assert!(w.namespace_event(Event::InitDone));
        assert_eq!(w.namespace("app"), NamespaceState::Present);
        assert_eq!(w.namespace("other"), NamespaceState::Missing);
        let u = w.usage();
        assert_eq!(
            u.namespaces[0].labels,
            NamespaceLabels {
                rev: Some("canary".into()),
                injection: Some("enabled".into()),
                dataplane_mode: Some("ambient".into()),
            }
        );

        let mut deleting = ns(
            "app",
            &[
                (REV, "canary"),
                (INJECTION, "enabled"),
                (DATAPLANE_MODE, "ambient"),
            ],
        );
        assert!(
            !w.namespace_event(Event::Apply(deleting.clone())),
            "only a label that is not kept changed"
        );
        deleting.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        assert!(w.namespace_event(Event::Apply(deleting.clone())));
        assert_eq!(w.namespace("app"), NamespaceState::Deleting);
        assert!(w.namespace_event(Event::Delete(deleting)));
        assert_eq!(w.namespace("app"), NamespaceState::Missing);
    }

    #[test]
    fn pods_keep_only_the_read_keys_and_a_ztunnel_pods_start() {
        let w = Workloads::new();
        w.namespace_event(Event::Init);
        w.namespace_event(Event::InitApply(ns("app", &[])));
        w.namespace_event(Event::InitDone);
        list_pods(
            &w,
            vec![pod(
                "zt",
                &[
                    ("app", "ztunnel"),
                    (REV, "a"),
                    (INJECT, "false"),
                    (DATAPLANE_MODE, "none"),
                    ("x", "y"),
                ],
                &[
                    (REV, "b"),
                    (FOLLOWS_ISTIO_ANNOTATION, "default"),
                    ("z", "w"),
                ],
            )],
        );
        let u = w.usage();
        let p = &u.pods[0];
        assert_eq!(
            (
                p.labels.rev.as_deref(),
                p.labels.inject.as_deref(),
                p.labels.dataplane_mode.as_deref()
            ),
            (Some("a"), Some("false"), Some("none"))
        );
        assert_eq!(
            (
                p.annotations.rev.as_deref(),
                p.annotations.follows_istio.as_deref()
            ),
            (Some("b"), Some("default"))
        );
        assert!(p.ztunnel);
        assert_eq!(p.created, Some("2026-01-01T00:10:00Z".parse().unwrap()));
        assert!(
            Arc::ptr_eq(&p.namespace, &u.namespaces[0].name),
            "the namespace name is shared"
        );
    }

    #[tokio::test]
    async fn listed_once_both_watches_completed_a_list() {
        let w = Workloads::new();
        let done = || tokio::time::timeout(std::time::Duration::from_millis(50), w.listed());
        assert!(done().await.is_err());
        w.namespace_event(Event::Init);
        w.namespace_event(Event::InitDone);
        assert!(done().await.is_err());
        w.pod_event(Event::Init);
        w.pod_event(Event::InitDone);
        assert!(done().await.is_ok());
    }
}
