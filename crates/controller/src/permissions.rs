//! The permissions the operator itself needs: the one source of its RBAC.
//!
//! The install manifests, the Helm chart and the OLM bundle take the operator's ClusterRole
//! and Role from [`cluster_rules`] and [`namespace_rules`]. The lists are built from what the
//! controllers touch: every kind a render can produce (the controllers' `prunable_kinds`),
//! the kinds they watch, the `sailoperator.io` kinds with their `status` and `finalizers`
//! subresources, Events, and the leader-election Lease. No rule uses `*`.
//!
//! istiod's own ClusterRoles hold wildcard rules (`resources: ["*"]` on the Istio and Gateway
//! API groups, as upstream's charts do), which nobody can grant without holding them, or
//! without the `escalate` verb; their names derive from revision names, so `resourceNames`
//! cannot narrow it. The operator therefore holds `escalate` and `bind` on `clusterroles` and
//! `roles` (Sail holds the same), and nothing else beyond what it uses.
//!
//! [`allows`] evaluates rules the way the API server's RBAC authorizer does, for tests that
//! check every request the operator sent against the role it ships with.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::core::GroupVersionKind;

/// Verbs on an object kind the operator renders, applies (server-side apply may create),
/// prunes and watches.
const CHILD: &[&str] = &["create", "delete", "get", "list", "patch", "watch"];
/// Verbs on a kind the operator only watches.
const WATCH: &[&str] = &["get", "list", "watch"];

/// The name of the leader-election Lease in the operator's namespace.
pub const LEASE_NAME: &str = "mizzen-leader";

/// The lower-case plural resource name of a kind (every kind mizzen touches follows the
/// regular English rule).
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    }
}

/// Every kind any controller renders and prunes.
pub fn rendered_kinds() -> Vec<GroupVersionKind> {
    let mut kinds = crate::revision::prunable_kinds();
    kinds.extend(crate::cni::prunable_kinds(true));
    kinds.extend(crate::ztunnel::prunable_kinds());
    kinds.extend(crate::tag::prunable_kinds(crate::tag::DEFAULT_TAG));
    kinds.sort_by(|a, b| (&a.group, &a.kind).cmp(&(&b.group, &b.kind)));
    kinds.dedup();
    kinds
}

#[derive(Default)]
struct Rules(BTreeMap<(String, String), BTreeSet<String>>);

impl Rules {
    fn add(&mut self, group: &str, resource: &str, verbs: &[&str]) {
        self.0
            .entry((group.to_owned(), resource.to_owned()))
            .or_default()
            .extend(verbs.iter().map(|v| v.to_string()));
    }

    /// One rule per API group and verb set, resources sorted.
    fn into_policy_rules(self) -> Vec<PolicyRule> {
        let mut grouped: BTreeMap<(String, Vec<String>), Vec<String>> = BTreeMap::new();
        for ((group, resource), verbs) in self.0 {
            grouped
                .entry((group, verbs.into_iter().collect()))
                .or_default()
                .push(resource);
        }
        grouped
            .into_iter()
            .map(|((group, verbs), resources)| PolicyRule {
                api_groups: Some(vec![group]),
                resources: Some(resources),
                verbs,
                ..Default::default()
            })
            .collect()
    }
}

/// The operator's ClusterRole rules.
pub fn cluster_rules() -> Vec<PolicyRule> {
    let mut r = Rules::default();
    for gvk in rendered_kinds() {
        r.add(&gvk.group, &plural(&gvk.kind), CHILD);
    }
    // istiod's roles carry wildcard rules: see the module documentation.
    for resource in ["clusterroles", "roles"] {
        r.add("rbac.authorization.k8s.io", resource, &["bind", "escalate"]);
    }
    // Istio's CRDs are applied (never pruned, never deleted) and cached; mizzen's own are
    // read to see an uninstall.
    r.add(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["create", "get", "list", "patch", "watch"],
    );
    // The in-use index: metadata of namespaces and pods.
    r.add("", "namespaces", &["list", "watch"]);
    r.add("", "pods", &["list", "watch"]);
    for kind in [
        "Istio",
        "IstioRevision",
        "IstioRevisionTag",
        "IstioCNI",
        "ZTunnel",
    ] {
        let resource = plural(kind);
        r.add("sailoperator.io", &resource, WATCH);
        r.add("sailoperator.io", &format!("{resource}/status"), &["patch"]);
        // Owner references with blockOwnerDeletion need `update` on the owner's finalizers
        // where the OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift).
        r.add(
            "sailoperator.io",
            &format!("{resource}/finalizers"),
            &["update"],
        );
    }
    // The Istio controller writes and prunes IstioRevisions.
    r.add(
        "sailoperator.io",
        "istiorevisions",
        &["create", "delete", "patch"],
    );
    // Rollout policies (mizzen.io): watched, their status written, their finalizer applied.
    r.add(
        "mizzen.io",
        "rolloutpolicies",
        &["get", "list", "patch", "watch"],
    );
    r.add("mizzen.io", "rolloutpolicies/status", &["patch"]);
    r.add("mizzen.io", "rolloutpolicies/finalizers", &["update"]);
    // DrainWaves: nodes watched, cordoned and marked; the ambient workloads on a node listed
    // and evicted (the Eviction API, so PodDisruptionBudgets hold); the agent pods replaced;
    // the DaemonSet's current revision read; the evicted workloads' availability read.
    r.add("", "nodes", &["get", "list", "patch", "watch"]);
    r.add("", "pods", &["delete", "get", "list", "watch"]);
    r.add("", "pods/eviction", &["create"]);
    r.add("apps", "controllerrevisions", &["list"]);
    r.add("apps", "replicasets", &["get"]);
    r.add("apps", "statefulsets", &["get"]);
    // Events on mizzen's (cluster-scoped) resources land in namespace `default`.
    r.add("events.k8s.io", "events", &["create", "patch"]);
    r.into_policy_rules()
}

/// The operator's Role rules in its own namespace: the leader-election Lease.
pub fn namespace_rules() -> Vec<PolicyRule> {
    let mut r = Rules::default();
    r.add(
        "coordination.k8s.io",
        "leases",
        &["create", "get", "list", "update", "watch"],
    );
    r.into_policy_rules()
}

/// One request, as the RBAC authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Request {
    /// The verb (`get`, `list`, `watch`, `create`, `patch`, `update`, `delete`, ...).
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// Resource, plural.
    pub resource: String,
    /// Subresource (`status`, `finalizers`), if any.
    pub subresource: Option<String>,
    /// Object name, if the request names one.
    pub name: Option<String>,
}

/// Whether `rules` allow `req` (RBAC semantics: any rule matching group, resource (with
/// subresource as `resource/sub`), verb and, where the rule lists names, the name).
pub fn allows(rules: &[PolicyRule], req: &Request) -> bool {
    let resource = match &req.subresource {
        Some(sub) => format!("{}/{sub}", req.resource),
        None => req.resource.clone(),
    };
    let has = |list: &Option<Vec<String>>, value: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == "*" || x == value))
    };
    rules.iter().any(|rule| {
        rule.verbs.iter().any(|v| v == "*" || v == &req.verb)
            && has(&rule.api_groups, &req.group)
            && has(&rule.resources, &resource)
            && match &rule.resource_names {
                Some(names) if !names.is_empty() => {
                    req.name.as_ref().is_some_and(|n| names.contains(n))
                }
                _ => true,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(verb: &str, group: &str, resource: &str, sub: Option<&str>) -> Request {
        Request {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.map(String::from),
            name: None,
        }
    }

    #[test]
    fn plurals_of_the_kinds_mizzen_touches() {
        assert_eq!(plural("NetworkPolicy"), "networkpolicies");
        assert_eq!(plural("PodDisruptionBudget"), "poddisruptionbudgets");
        assert_eq!(plural("ConfigMap"), "configmaps");
        assert_eq!(
            plural("NetworkAttachmentDefinition"),
            "networkattachmentdefinitions"
        );
    }

    #[test]
    fn no_wildcards_anywhere() {
        for rule in cluster_rules().into_iter().chain(namespace_rules()) {
            let all = rule
                .verbs
                .iter()
                .chain(rule.resources.iter().flatten())
                .chain(rule.api_groups.iter().flatten());
            for v in all {
                assert_ne!(v, "*", "{rule:?}");
            }
        }
    }

    #[test]
    fn the_role_covers_children_status_and_events_but_not_secrets() {
        let rules = cluster_rules();
        assert!(allows(&rules, &req("patch", "apps", "daemonsets", None)));
        assert!(allows(&rules, &req("create", "apps", "deployments", None)));
        assert!(allows(
            &rules,
            &req("patch", "sailoperator.io", "istios", Some("status"))
        ));
        assert!(allows(
            &rules,
            &req(
                "escalate",
                "rbac.authorization.k8s.io",
                "clusterroles",
                None
            )
        ));
        assert!(allows(
            &rules,
            &req("create", "events.k8s.io", "events", None)
        ));
        assert!(!allows(&rules, &req("get", "", "secrets", None)));
        assert!(!allows(
            &rules,
            &req("delete", "sailoperator.io", "istios", None)
        ));
        assert!(!allows(&rules, &req("patch", "", "pods", None)));
        assert!(!allows(
            &rules,
            &req("update", "coordination.k8s.io", "leases", None)
        ));
        assert!(!allows(
            &namespace_rules(),
            &req("delete", "coordination.k8s.io", "leases", None)
        ));
        assert!(allows(
            &namespace_rules(),
            &req("update", "coordination.k8s.io", "leases", None)
        ));
    }

    #[test]
    fn names_narrow_a_rule() {
        let rules = vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec!["a".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }];
        let mut r = req("get", "", "configmaps", None);
        assert!(!allows(&rules, &r));
        r.name = Some("a".into());
        assert!(allows(&rules, &r));
    }
}
