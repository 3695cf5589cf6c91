//! istiod's RBAC: its ClusterRole (config, discovery, webhooks, Gateway API status), the
//! gateway-controller ClusterRole (waypoint and gateway Deployments), the reader
//! ClusterRole (multicluster reader account), and its Role in the control-plane namespace.

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::Revision;
use crate::RenderError;
use crate::labels::{Labels, NAME_LABEL, labels};
use crate::object::Object;
use crate::rbac::{Account, cluster_role, role, rule};
use crate::values::at_least;

/// Every Istio configuration group.
const ISTIO_GROUPS: [&str; 7] = [
    "config.istio.io",
    "security.istio.io",
    "networking.istio.io",
    "authentication.istio.io",
    "rbac.istio.io",
    "telemetry.istio.io",
    "extensions.istio.io",
];
const GATEWAY_GROUPS: [&str; 2] = ["gateway.networking.k8s.io", "gateway.networking.x-k8s.io"];
const READ: [&str; 3] = ["get", "watch", "list"];
const ALL: [&str; 7] = [
    "get", "watch", "list", "update", "patch", "create", "delete",
];
/// The ServiceAccount of multicluster remote secrets (rendered by `render_base`).
pub(crate) const READER_ACCOUNT: &str = "istio-reader-service-account";

/// Labels of the reader's ServiceAccount and RBAC.
pub(crate) fn reader_labels() -> Labels {
    labels([("app", "istio-reader"), (NAME_LABEL, "istio-reader")])
}

impl Revision<'_> {
    pub(super) fn rbac(&self) -> Result<Vec<Object>, RenderError> {
        let istiod = self.names.istiod();
        let ns = self.names.namespace();
        let own = Account {
            name: &istiod,
            namespace: ns,
        };
        let reader = Account {
            name: READER_ACCOUNT,
            namespace: ns,
        };
        let reader_labels = reader_labels();
        let labels = self.account_labels();
        let mut objects = Vec::new();
        for (base, rules, account, labels) in [
            ("istiod-clusterrole", self.istiod_rules(), &own, &labels),
            (
                "istiod-gateway-controller",
                gateway_controller_rules(),
                &own,
                &labels,
            ),
            (
                "istio-reader-clusterrole",
                self.reader_rules(),
                &reader,
                &reader_labels,
            ),
        ] {
            let name = self.names.cluster_scoped(base);
            objects.extend(cluster_role(
                &self.stamp,
                (&name, labels),
                (&name, labels),
                rules,
                account,
            )?);
        }
        objects.extend(role(
            &self.stamp,
            &istiod,
            &labels,
            namespace_rules(),
            &own,
        )?);
        Ok(objects)
    }

    fn istiod_rules(&self) -> Vec<PolicyRule> {
        // Gateway API status: the standard kinds in `gateway.networking.k8s.io` (ListenerSet
        // from 1.30, when it became standard), the experimental ones in `.x-k8s.io`
        // (XListenerSet in 1.27 to 1.29).
        let mut status = vec![
            "backendtlspolicies/status",
            "gatewayclasses/status",
            "gateways/status",
            "grpcroutes/status",
            "httproutes/status",
            "referencegrants/status",
            "tcproutes/status",
            "tlsroutes/status",
            "udproutes/status",
        ];
        if at_least(self.version(), 30) {
            status.push("listenersets/status");
        }
        let mut experimental_status = vec!["xbackendtrafficpolicies/status"];
        if at_least(self.version(), 27) && !at_least(self.version(), 30) {
            experimental_status.push("xlistenersets/status");
        }
        let mut rules = vec![
            rule(
                &["admissionregistration.k8s.io"],
                &["mutatingwebhookconfigurations"],
                &["get", "list", "watch", "update", "patch"],
            ),
            rule(
                &["admissionregistration.k8s.io"],
                &["validatingwebhookconfigurations"],
                &["get", "list", "watch", "update"],
            ),
            rule(&ISTIO_GROUPS, &["*"], &READ),
            rule(&["networking.istio.io"], &["workloadentries"], &ALL),
            rule(
                &["networking.istio.io"],
                &["workloadentries/status", "serviceentries/status"],
                &ALL,
            ),
            rule(
                &["security.istio.io"],
                &["authorizationpolicies/status"],
                &ALL,
            ),
            rule(&[""], &["services/status"], &ALL),
            rule(
                &["apiextensions.k8s.io"],
                &["customresourcedefinitions"],
                &READ,
            ),
            rule(
                &[""],
                &["pods", "nodes", "services", "namespaces", "endpoints"],
                &READ,
            ),
            rule(&["discovery.k8s.io"], &["endpointslices"], &READ),
            rule(
                &["networking.k8s.io"],
                &["ingresses", "ingressclasses"],
                &READ,
            ),
            rule(&["networking.k8s.io"], &["ingresses/status"], &["*"]),
            rule(
                &[""],
                &["configmaps"],
                &["create", "get", "list", "watch", "update"],
            ),
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
                &["create"],
            ),
            rule(&GATEWAY_GROUPS, &["*"], &READ),
            rule(
                &["gateway.networking.x-k8s.io"],
                &experimental_status,
                &["update", "patch"],
            ),
            rule(
                &["gateway.networking.k8s.io"],
                &status,
                &["update", "patch"],
            ),
            rule(
                &["gateway.networking.k8s.io"],
                &["gatewayclasses"],
                &["create", "update", "patch", "delete"],
            ),
        ];
        if let Some(group) = self.inference_group() {
            rules.push(rule(&[group], &["inferencepools"], &READ));
            rules.push(rule(
                &[group],
                &["inferencepools/status"],
                &["update", "patch"],
            ));
        }
        rules.extend([
            rule(
                &["multicluster.x-k8s.io"],
                &["serviceexports"],
                &["get", "watch", "list", "create", "delete"],
            ),
            rule(&["multicluster.x-k8s.io"], &["serviceimports"], &READ),
            rule(&[""], &["secrets"], &READ),
        ]);
        rules
    }

    /// The Gateway API inference extension group: experimental in 1.27, `k8s.io` from 1.28.
    fn inference_group(&self) -> Option<&'static str> {
        if at_least(self.version(), 28) {
            Some("inference.networking.k8s.io")
        } else if at_least(self.version(), 27) {
            Some("inference.networking.x-k8s.io")
        } else {
            None
        }
    }

    fn reader_rules(&self) -> Vec<PolicyRule> {
        let mut core = vec![
            "endpoints",
            "pods",
            "services",
            "nodes",
            "replicationcontrollers",
            "namespaces",
            "secrets",
        ];
        // The reader reads ConfigMaps up to 1.26 and again from 1.29 (multi-cluster mesh
        // configuration).
        if !at_least(self.version(), 27) || at_least(self.version(), 29) {
            core.push("configmaps");
        }
        vec![
            rule(&ISTIO_GROUPS, &["*"], &READ),
            rule(&[""], &core, &READ),
            rule(&["networking.istio.io"], &["workloadentries"], &READ),
            rule(
                &["networking.x-k8s.io", "gateway.networking.k8s.io"],
                &["gateways"],
                &READ,
            ),
            rule(
                &["apiextensions.k8s.io"],
                &["customresourcedefinitions"],
                &READ,
            ),
            rule(&["discovery.k8s.io"], &["endpointslices"], &READ),
            rule(
                &["multicluster.x-k8s.io"],
                &["serviceexports"],
                &["get", "list", "watch", "create", "delete"],
            ),
            rule(&["multicluster.x-k8s.io"], &["serviceimports"], &READ),
            rule(&["apps"], &["replicasets"], &READ),
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
                &["create"],
            ),
        ]
    }
}

/// What istiod needs to deploy waypoints and gateways.
fn gateway_controller_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["apps"], &["deployments"], &ALL),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &ALL),
        rule(&["policy"], &["poddisruptionbudgets"], &ALL),
        rule(&[""], &["services"], &ALL),
        rule(&[""], &["serviceaccounts"], &ALL),
    ]
}

/// What istiod needs in its own namespace: the validation dry-run, its CA secret, leader
/// election.
fn namespace_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["networking.istio.io"], &["gateways"], &["create"]),
        rule(
            &[""],
            &["secrets"],
            &["create", "get", "watch", "list", "update", "delete"],
        ),
        rule(&[""], &["configmaps"], &["delete"]),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "update", "patch", "create"],
        ),
    ]
}
