//! Which revisions are in use, and by what (pure logic over metadata).
//!
//! A revision is in use when (upstream's rules) an IstioRevisionTag points at it, a namespace
//! selects it (`istio-injection=enabled` → `default`, else `istio.io/rev`), a pod was injected
//! by it (annotation `istio.io/rev`) or asks for it by label in an unlabelled namespace, or it
//! is `default` with `enableNamespacesByDefault`; and (mizzen's rule, DESIGN.md decision 2)
//! when ambient workloads exist and a running ztunnel pod is bound to it. A ztunnel pod is bound
//! to the revision it is pinned to (annotation `istio.io/rev`), or else to the revision of the
//! Istio it follows (annotation [`FOLLOWS_ISTIO_ANNOTATION`]) that was active when the pod
//! started. Pods in a terminal phase never count: the pod watch excludes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use mizzen_api::Values;

/// Label and annotation that name a revision.
pub const REV: &str = "istio.io/rev";
/// Namespace label enabling injection by the `default` revision.
pub const INJECTION: &str = "istio-injection";
/// Pod label controlling injection.
pub const INJECT: &str = "sidecar.istio.io/inject";
/// Ambient enrolment label on namespaces and pods.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Annotation on ztunnel pods: the Istio whose active revision they follow.
pub const FOLLOWS_ISTIO_ANNOTATION: &str = "mizzen.io/follows-istio";
/// Annotation on IstioRevisions: when the revision last became its Istio's active revision.
pub const ACTIVE_SINCE_ANNOTATION: &str = "mizzen.io/active-since";
/// How many users a revision's status lists before summarising.
const MAX_LISTED: usize = 5;

/// What the rules read of a namespace: its name and three labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Name.
    pub name: Arc<str>,
    /// The labels the rules read.
    pub labels: NamespaceLabels,
}

/// The labels of a namespace that select a revision or enrol it in ambient mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceLabels {
    /// [`REV`].
    pub rev: Option<Arc<str>>,
    /// [`INJECTION`].
    pub injection: Option<Arc<str>>,
    /// [`DATAPLANE_MODE`].
    pub dataplane_mode: Option<Arc<str>>,
}

/// What the rules read of a pod that is not in a terminal phase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// The labels the rules read.
    pub labels: PodLabels,
    /// The annotations the rules read.
    pub annotations: PodAnnotations,
    /// Creation time (kept for ztunnel pods only: only their binding reads it).
    pub created: Option<Timestamp>,
    /// Whether this is a ztunnel pod (label `app=ztunnel`).
    pub ztunnel: bool,
}

/// The labels of a pod that ask for a revision or enrol it in ambient mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodLabels {
    /// [`REV`].
    pub rev: Option<Arc<str>>,
    /// [`INJECT`].
    pub inject: Option<Arc<str>>,
    /// [`DATAPLANE_MODE`].
    pub dataplane_mode: Option<Arc<str>>,
}

/// The annotations of a pod that bind it to a revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAnnotations {
    /// [`REV`]: the revision that injected it, or that a ztunnel pod is pinned to.
    pub rev: Option<Arc<str>>,
    /// [`FOLLOWS_ISTIO_ANNOTATION`].
    pub follows_istio: Option<Arc<str>>,
}

/// The value of `key` in `map`, shared.
fn value(map: &BTreeMap<String, String>, key: &str) -> Option<Arc<str>> {
    map.get(key).map(|v| Arc::from(v.as_str()))
}

impl NamespaceLabels {
    /// The kept keys of a namespace's labels.
    pub fn new(labels: &BTreeMap<String, String>) -> Self {
        Self {
            rev: value(labels, REV),
            injection: value(labels, INJECTION),
            dataplane_mode: value(labels, DATAPLANE_MODE),
        }
    }
}

impl PodLabels {
    /// The kept keys of a pod's labels.
    pub fn new(labels: &BTreeMap<String, String>) -> Self {
        Self {
            rev: value(labels, REV),
            inject: value(labels, INJECT),
            dataplane_mode: value(labels, DATAPLANE_MODE),
        }
    }
}

impl PodAnnotations {
    /// The kept keys of a pod's annotations.
    pub fn new(annotations: &BTreeMap<String, String>) -> Self {
        Self {
            rev: value(annotations, REV),
            follows_istio: value(annotations, FOLLOWS_ISTIO_ANNOTATION),
        }
    }
}

/// Whether a ztunnel pod carries these labels.
fn is_ztunnel(labels: &BTreeMap<String, String>) -> bool {
    labels.get("app").is_some_and(|a| a == "ztunnel")
}

impl PodInfo {
    /// What the rules read of a pod with these labels and annotations.
    pub fn new(
        namespace: Arc<str>,
        name: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        created: Option<Timestamp>,
    ) -> Self {
        let ztunnel = is_ztunnel(labels);
        Self {
            namespace,
            name: name.into(),
            labels: PodLabels::new(labels),
            annotations: PodAnnotations::new(annotations),
            created: created.filter(|_| ztunnel),
            ztunnel,
        }
    }

    /// Whether a pod with these labels and annotations can matter to any rule: without one
    /// of the keys [`PodInfo`] keeps, and not a ztunnel pod, it uses no revision.
    pub fn matters(
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> bool {
        [REV, INJECT, DATAPLANE_MODE]
            .iter()
            .any(|k| labels.contains_key(*k))
            || [REV, FOLLOWS_ISTIO_ANNOTATION]
                .iter()
                .any(|k| annotations.contains_key(*k))
            || is_ztunnel(labels)
    }
}

/// What the in-use check needs to know about a revision.
#[derive(Clone, Debug, Default)]
pub struct RevisionInfo {
    /// Name.
    pub name: String,
    /// The Istio that owns it, if any.
    pub istio: Option<String>,
    /// When it last became the active revision of that Istio.
    pub active_since: Option<Timestamp>,
    /// `values.sidecarInjectorWebhook.enableNamespacesByDefault`.
    pub enable_namespaces_by_default: bool,
}

/// A snapshot of everything that can use a revision.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// All namespaces.
    pub namespaces: Vec<NamespaceInfo>,
    /// All non-terminal pods (ztunnel pods included).
    pub pods: Vec<PodInfo>,
    /// `(tag name, status.istioRevision)` of every IstioRevisionTag.
    pub tags: Vec<(String, String)>,
    /// All revisions.
    pub revisions: Vec<RevisionInfo>,
}

/// `values.sidecarInjectorWebhook.enableNamespacesByDefault` of a revision.
pub fn enables_namespaces_by_default(values: Option<&Values>) -> bool {
    values
        .and_then(|v| v.sidecar_injector_webhook.as_ref())
        .and_then(|s| s.get("enableNamespacesByDefault"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// The revision a namespace selects by label, if any.
fn namespace_revision(ns: &NamespaceInfo) -> Option<&str> {
    if ns.labels.injection.as_deref() == Some("enabled") {
        return Some("default");
    }
    ns.labels.rev.as_deref().filter(|r| !r.is_empty())
}

/// The revision a pod asks for by label (used only when its namespace selects none).
fn pod_label_revision(pod: &PodInfo) -> Option<&str> {
    let inject = pod.labels.inject.as_deref();
    if inject == Some("false") {
        return None;
    }
    match pod.labels.rev.as_deref() {
        Some(r) if !r.is_empty() => Some(r),
        _ if inject == Some("true") => Some("default"),
        _ => None,
    }
}

/// Whether a pod or its namespace is enrolled in ambient mode.
fn is_ambient(pod: &PodInfo, namespaces: &BTreeMap<&str, &NamespaceInfo>) -> bool {
    match pod.labels.dataplane_mode.as_deref() {
        Some("ambient") => true,
        Some(_) => false,
        None => namespaces
            .get(&*pod.namespace)
            .is_some_and(|ns| ns.labels.dataplane_mode.as_deref() == Some("ambient")),
    }
}

impl Usage {
    /// The revision a ztunnel pod is bound to: its pin, or else the revision of the Istio it
    /// follows that was activated last at or before the second the pod was created (the API
    /// server's `creationTimestamp` counts whole seconds, so a pod created in the second a
    /// revision became active is bound to it). Activations are ordered by their full
    /// `mizzen.io/active-since` time, then by name, so two in one second have one answer.
    pub fn ztunnel_binding(&self, pod: &PodInfo) -> Option<String> {
        if let Some(r) = pod.annotations.rev.as_deref().filter(|r| !r.is_empty()) {
            return Some(r.to_string());
        }
        let istio = pod.annotations.follows_istio.as_deref()?;
        let mut owned: Vec<(Timestamp, &str)> = self
            .revisions
            .iter()
            .filter(|r| r.istio.as_deref() == Some(istio))
            .filter_map(|r| Some((r.active_since?, r.name.as_str())))
            .collect();
        owned.sort();
        let started = pod.created?.as_second();
        owned
            .iter()
            .rev()
            .find(|(since, _)| since.as_second() <= started)
            .or(owned.first())
            .map(|(_, name)| name.to_string())
    }

    /// Everything that uses `revision`, as short descriptions; empty when unused.
    pub fn users_of(&self, revision: &str) -> Vec<String> {
        self.users(revision, true)
    }

    /// The workloads that use `revision`: namespaces and pods, directly, through a tag, or
    /// through the ztunnel pods bound to it. Not the references alone (a tag pointing at it,
    /// `enableNamespacesByDefault`), which make it in use but run no traffic through it: this
    /// is what keeps a revision that is being deleted (README, "Deleting a revision in use").
    pub fn workload_users_of(&self, revision: &str) -> Vec<String> {
        self.users(revision, false)
    }

    /// The users of `revision`; `references` adds the tags pointing at it and
    /// `enableNamespacesByDefault`.
    fn users(&self, revision: &str, references: bool) -> Vec<String> {
        let namespaces: BTreeMap<&str, &NamespaceInfo> =
            self.namespaces.iter().map(|n| (&*n.name, n)).collect();
        let mut users: Vec<String> = self
            .tags
            .iter()
            .filter(|(_, target)| references && target == revision)
            .map(|(tag, _)| format!("IstioRevisionTag {tag}"))
            .collect();
        users.sort();
        // A tag name used in a label stands for its target.
        let resolve = |name: &str| -> bool {
            name == revision
                || self
                    .tags
                    .iter()
                    .any(|(t, target)| t == name && target == revision)
        };
        users.extend(self.selected_by_labels(&namespaces, resolve, |pod| {
            pod.annotations.rev.as_deref() == Some(revision)
        }));
        if let Some(r) = self.revisions.iter().find(|r| r.name == revision)
            && references
            && r.name == "default"
            && r.enable_namespaces_by_default
        {
            users.push("enableNamespacesByDefault".to_string());
        }
        users.extend(self.ambient_users_of(revision, &namespaces));
        summarise(users)
    }

    /// Everything that uses revision tag `tag`, as short descriptions; empty when unused.
    /// The namespace and pod-label rules are the revisions' (so `istio-injection=enabled`
    /// counts for tag `default`); pod annotations never count, since the injector always
    /// writes the real revision there. Tag `default` whose target has
    /// `enableNamespacesByDefault` is in use, as upstream.
    pub fn tag_users(&self, tag: &str, target_enables_namespaces_by_default: bool) -> Vec<String> {
        let namespaces: BTreeMap<&str, &NamespaceInfo> =
            self.namespaces.iter().map(|n| (&*n.name, n)).collect();
        let mut users = self.selected_by_labels(&namespaces, |name| name == tag, |_| false);
        if tag == "default" && target_enables_namespaces_by_default {
            users.push("enableNamespacesByDefault".to_string());
        }
        summarise(users)
    }

    /// Namespaces whose labels select a name for which `selects` holds, then pods that are
    /// `injected`, or whose labels select such a name while their namespace selects nothing.
    fn selected_by_labels(
        &self,
        namespaces: &BTreeMap<&str, &NamespaceInfo>,
        selects: impl Fn(&str) -> bool,
        injected: impl Fn(&PodInfo) -> bool,
    ) -> Vec<String> {
        let mut users = Vec::new();
        for ns in &self.namespaces {
            if namespace_revision(ns).is_some_and(&selects) {
                users.push(format!("namespace {}", ns.name));
            }
        }
        for pod in &self.pods {
            let ns_selects = namespaces
                .get(&*pod.namespace)
                .and_then(|n| namespace_revision(n));
            let by_label = ns_selects.is_none() && pod_label_revision(pod).is_some_and(&selects);
            if injected(pod) || by_label {
                users.push(format!("pod {}/{}", pod.namespace, pod.name));
            }
        }
        // The caches hold no order: sorted, the answer (and the status written from it)
        // does not change while its inputs do not ("namespace" sorts before "pod").
        users.sort();
        users
    }

    /// Ambient workloads use the revisions their ztunnel pods are bound to.
    fn ambient_users_of(
        &self,
        revision: &str,
        namespaces: &BTreeMap<&str, &NamespaceInfo>,
    ) -> Vec<String> {
        let Some(zt) = self
            .pods
            .iter()
            .filter(|p| p.ztunnel && self.ztunnel_binding(p).as_deref() == Some(revision))
            .min_by_key(|p| (&p.namespace, &p.name))
        else {
            return Vec::new();
        };
        let via = format!("(through ztunnel pod {}/{})", zt.namespace, zt.name);
        let mut users: Vec<String> = self
            .namespaces
            .iter()
            .filter(|n| n.labels.dataplane_mode.as_deref() == Some("ambient"))
            .map(|n| format!("ambient namespace {} {via}", n.name))
            .collect();
        users.extend(
            self.pods
                .iter()
                .filter(|p| !p.ztunnel && p.labels.dataplane_mode.as_deref() == Some("ambient"))
                .filter(|p| is_ambient(p, namespaces))
                .map(|p| format!("ambient pod {}/{} {via}", p.namespace, p.name)),
        );
        users.sort();
        users
    }
}

/// At most [`MAX_LISTED`] entries, then a count of the rest.
fn summarise(mut users: Vec<String>) -> Vec<String> {
    if users.len() > MAX_LISTED {
        let rest = users.len() - MAX_LISTED;
        users.truncate(MAX_LISTED);
        users.push(format!("and {rest} more"));
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ns(name: &str, kv: &[(&str, &str)]) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            labels: NamespaceLabels::new(&labels(kv)),
        }
    }

    fn pod(ns: &str, name: &str, l: &[(&str, &str)], a: &[(&str, &str)]) -> PodInfo {
        PodInfo::new(
            ns.into(),
            name,
            &labels(l),
            &labels(a),
            Some("2026-01-01T00:10:00Z".parse().unwrap()),
        )
    }

    fn rev(name: &str, istio: &str, since: &str) -> RevisionInfo {
        RevisionInfo {
            name: name.into(),
            istio: Some(istio.into()),
            active_since: Some(since.parse().unwrap()),
            enable_namespaces_by_default: false,
        }
    }

    #[test]
    fn namespace_labels_select_revisions() {
        let u = Usage {
            namespaces: vec![
                ns(
                    "a",
                    &[("istio-injection", "enabled"), ("istio.io/rev", "canary")],
                ),
                ns("b", &[("istio.io/rev", "canary")]),
                ns("c", &[]),
            ],
            ..Default::default()
        };
        assert_eq!(u.users_of("default"), ["namespace a"]);
        assert_eq!(u.users_of("canary"), ["namespace b"]);
        assert!(u.users_of("other").is_empty());
    }

    #[test]
    fn pods_count_by_annotation_or_by_label_in_unlabelled_namespaces() {
        let u = Usage {
            namespaces: vec![ns("sel", &[("istio.io/rev", "x")]), ns("plain", &[])],
            pods: vec![
                pod("plain", "injected", &[], &[("istio.io/rev", "r1")]),
                pod("plain", "asks", &[("istio.io/rev", "r2")], &[]),
                pod("sel", "ignored-label", &[("istio.io/rev", "r3")], &[]),
                pod(
                    "plain",
                    "opt-out",
                    &[("istio.io/rev", "r4"), ("sidecar.istio.io/inject", "false")],
                    &[],
                ),
                pod(
                    "plain",
                    "default",
                    &[("sidecar.istio.io/inject", "true")],
                    &[],
                ),
            ],
            ..Default::default()
        };
        assert_eq!(u.users_of("r1"), ["pod plain/injected"]);
        assert_eq!(u.users_of("r2"), ["pod plain/asks"]);
        assert!(
            u.users_of("r3").is_empty(),
            "the namespace's selection wins"
        );
        assert!(u.users_of("r4").is_empty());
        assert_eq!(u.users_of("default"), ["pod plain/default"]);
    }

    #[test]
    fn tags_keep_their_target_in_use_and_stand_for_it_in_labels() {
        let u = Usage {
            namespaces: vec![ns("app", &[("istio.io/rev", "prod")])],
            tags: vec![("prod".into(), "default-v1-27-1".into())],
            ..Default::default()
        };
        assert_eq!(
            u.users_of("default-v1-27-1"),
            ["IstioRevisionTag prod", "namespace app"]
        );
    }

    #[test]
    fn the_answer_does_not_depend_on_the_order_of_the_caches() {
        // The caches (reflector stores) hand out their objects in no particular order; a
        // status written from the answer must not change with it.
        let zt = |name: &str| {
            pod(
                "ztunnel",
                name,
                &[("app", "ztunnel")],
                &[(FOLLOWS_ISTIO_ANNOTATION, "i")],
            )
        };
        let mut u = Usage {
            namespaces: vec![
                ns("b", &[("istio.io/rev", "r")]),
                ns("a", &[("istio.io/rev", "r")]),
                ns("m", &[("istio.io/dataplane-mode", "ambient")]),
                ns("ztunnel", &[]),
            ],
            pods: vec![zt("ztunnel-b"), zt("ztunnel-a")],
            tags: vec![("t2".into(), "r".into()), ("t1".into(), "r".into())],
            revisions: vec![rev("r", "i", "2026-01-01T00:00:00Z")],
        };
        let first = u.users_of("r");
        assert_eq!(first[..2], ["IstioRevisionTag t1", "IstioRevisionTag t2"]);
        assert_eq!(first[2..4], ["namespace a", "namespace b"]);
        assert!(
            first.contains(&"ambient namespace m (through ztunnel pod ztunnel/ztunnel-a)".into())
        );
        u.namespaces.reverse();
        u.pods.reverse();
        u.tags.reverse();
        assert_eq!(u.users_of("r"), first);
    }

    #[test]
    fn tags_are_used_by_namespace_and_pod_labels_never_by_annotations() {
        let u = Usage {
            namespaces: vec![
                ns("app", &[("istio.io/rev", "prod")]),
                ns("legacy", &[("istio-injection", "enabled")]),
                ns("other", &[("istio.io/rev", "canary")]),
                ns("plain", &[]),
            ],
            pods: vec![
                pod("plain", "asks", &[("istio.io/rev", "prod")], &[]),
                pod("plain", "injected", &[], &[("istio.io/rev", "prod")]),
                pod("other", "ignored", &[("istio.io/rev", "prod")], &[]),
                pod(
                    "plain",
                    "opt-out",
                    &[
                        ("istio.io/rev", "prod"),
                        ("sidecar.istio.io/inject", "false"),
                    ],
                    &[],
                ),
            ],
            // A tag's own status never makes the tag used.
            tags: vec![("prod".into(), "r1".into())],
            ..Default::default()
        };
        assert_eq!(
            u.tag_users("prod", false),
            ["namespace app", "pod plain/asks"]
        );
        assert_eq!(u.tag_users("default", false), ["namespace legacy"]);
        assert!(u.tag_users("unused", true).is_empty());
        let bare = Usage::default();
        assert_eq!(
            bare.tag_users("default", true),
            ["enableNamespacesByDefault"]
        );
    }

    #[test]
    fn workload_users_leave_out_references_alone() {
        let mut u = Usage {
            namespaces: vec![ns("app", &[("istio.io/rev", "prod")])],
            tags: vec![("prod".into(), "default".into())],
            revisions: vec![RevisionInfo {
                name: "default".into(),
                enable_namespaces_by_default: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            u.users_of("default"),
            [
                "IstioRevisionTag prod",
                "namespace app",
                "enableNamespacesByDefault"
            ]
        );
        assert_eq!(u.workload_users_of("default"), ["namespace app"]);
        u.namespaces.clear();
        assert_eq!(u.users_of("default").len(), 2);
        assert!(u.workload_users_of("default").is_empty());
    }

    #[test]
    fn ambient_workloads_use_the_revision_their_ztunnel_pods_are_bound_to() {
        let zt = pod(
            "ztunnel",
            "ztunnel-1",
            &[("app", "ztunnel")],
            &[(FOLLOWS_ISTIO_ANNOTATION, "default")],
        );
        assert!(zt.ztunnel && zt.created.is_some());
        let mut u = Usage {
            namespaces: vec![ns("bookinfo", &[("istio.io/dataplane-mode", "ambient")])],
            pods: vec![zt.clone()],
            revisions: vec![
                rev("default-v1-26-3", "default", "2026-01-01T00:00:00Z"),
                rev("default-v1-26-4", "default", "2026-01-01T00:20:00Z"),
            ],
            ..Default::default()
        };
        // The ztunnel pod started (00:10) while v1-26-3 was active.
        assert_eq!(
            u.users_of("default-v1-26-3"),
            ["ambient namespace bookinfo (through ztunnel pod ztunnel/ztunnel-1)"]
        );
        assert!(u.users_of("default-v1-26-4").is_empty());
        // After the ztunnel rollout the pod is newer than the activation of v1-26-4.
        u.pods[0].created = Some("2026-01-01T00:30:00Z".parse().unwrap());
        assert!(u.users_of("default-v1-26-3").is_empty());
        assert_eq!(u.users_of("default-v1-26-4").len(), 1);
        // Created in the second v1-26-4 became active: bound to v1-26-4.
        u.revisions[1].active_since = Some("2026-01-01T00:20:00.700Z".parse().unwrap());
        u.pods[0].created = Some("2026-01-01T00:20:00Z".parse().unwrap());
        assert!(u.users_of("default-v1-26-3").is_empty());
        assert_eq!(u.users_of("default-v1-26-4").len(), 1);
        // Two activations in that second: the later one, whatever the order of the cache.
        u.revisions[0].active_since = Some("2026-01-01T00:20:00.200Z".parse().unwrap());
        for _ in 0..2 {
            assert_eq!(u.users_of("default-v1-26-4").len(), 1);
            assert!(u.users_of("default-v1-26-3").is_empty());
            u.revisions.reverse();
        }
        // No ambient workloads: ztunnel alone keeps nothing in use.
        u.namespaces.clear();
        assert!(u.users_of("default-v1-26-4").is_empty());
        // A pinned ztunnel pod is bound to its pin whatever its age.
        u.pods.push(pod(
            "shop",
            "cart",
            &[("istio.io/dataplane-mode", "ambient")],
            &[],
        ));
        u.pods[0].annotations =
            PodAnnotations::new(&labels(&[("istio.io/rev", "default-v1-26-3")]));
        let users = u.users_of("default-v1-26-3");
        assert!(
            users.iter().any(|s| s.starts_with("ambient pod shop/cart")),
            "{users:?}"
        );
    }

    #[test]
    fn pod_opted_out_of_ambient_does_not_count() {
        let zt = pod(
            "ztunnel",
            "z",
            &[("app", "ztunnel")],
            &[("istio.io/rev", "r")],
        );
        let u = Usage {
            namespaces: vec![ns("plain", &[])],
            pods: vec![
                zt,
                pod("plain", "p", &[("istio.io/dataplane-mode", "none")], &[]),
            ],
            ..Default::default()
        };
        // The ztunnel pod itself carries istio.io/rev, as upstream counts it.
        assert_eq!(u.users_of("r"), ["pod ztunnel/z"]);
    }

    #[test]
    fn long_lists_are_summarised() {
        let u = Usage {
            namespaces: (0..8)
                .map(|i| ns(&format!("n{i}"), &[("istio.io/rev", "r")]))
                .collect(),
            ..Default::default()
        };
        let users = u.users_of("r");
        assert_eq!(users.len(), 6);
        assert_eq!(users[5], "and 3 more");
    }
}
