//! `ZTunnel`: the per-node L4 proxy (singleton named `default`). `v1` is stored; `v1alpha1`
//! is still served, deprecated, and round-trips through the same stored object.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::tag::TargetReference;
use crate::values::ZTunnelValues;

fn default_namespace() -> String {
    "ztunnel".to_string()
}

/// Desired state of ztunnel.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "sailoperator.io",
    version = "v1",
    kind = "ZTunnel",
    status = "ZTunnelStatus",
    category = "istio-io",
    doc = "ZTunnel represents a deployment of the Istio ztunnel component.",
    printcolumn = r#"{"name":"Namespace","type":"string","description":"The namespace for the ztunnel component.","jsonPath":".spec.namespace","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether the ztunnel pods are ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","description":"The current state of this object.","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Version","type":"string","description":"The version of the ztunnel installation.","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","description":"The IstioRevision ztunnel is bound to.","jsonPath":".status.istioRevision","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","description":"The age of the object","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ZTunnelSpec {
    /// Istio version, `vX.Y.Z` or an alias (1.24 or newer).
    #[serde(default)]
    pub version: String,
    /// Namespace of the DaemonSet.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Helm-style values for ztunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<ZTunnelValues>,
    /// The Istio or IstioRevision whose settings and control plane ztunnel follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetReference>,
}

/// Observed state of ztunnel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZTunnelStatus {
    /// Generation of the spec this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Reconciled`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Reason of the first unhealthy condition, or `Healthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The IstioRevision ztunnel is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio_revision: Option<String>,
}

/// The deprecated `v1alpha1` version of ZTunnel.
pub mod v1alpha1 {
    use super::*;

    /// Desired state of ztunnel (v1alpha1).
    #[derive(
        CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema,
    )]
    #[kube(
        group = "sailoperator.io",
        version = "v1alpha1",
        kind = "ZTunnel",
        status = "ZTunnelStatus",
        category = "istio-io",
        storage = false,
        served = true,
        deprecated = "sailoperator.io/v1alpha1 ZTunnel is deprecated; use sailoperator.io/v1 ZTunnel",
        doc = "ZTunnel represents a deployment of the Istio ztunnel component.",
        printcolumn = r#"{"name":"Namespace","type":"string","description":"The namespace for the ztunnel component.","jsonPath":".spec.namespace","priority":1}"#,
        printcolumn = r#"{"name":"Profile","type":"string","description":"The selected profile (collection of value presets).","jsonPath":".spec.values.profile","priority":1}"#,
        printcolumn = r#"{"name":"Ready","type":"string","description":"Whether the ztunnel pods are ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Status","type":"string","description":"The current state of this object.","jsonPath":".status.state"}"#,
        printcolumn = r#"{"name":"Version","type":"string","description":"The version of the ztunnel installation.","jsonPath":".spec.version"}"#,
        printcolumn = r#"{"name":"Age","type":"date","description":"The age of the object","jsonPath":".metadata.creationTimestamp"}"#
    )]
    #[serde(rename_all = "camelCase")]
    pub struct ZTunnelSpec {
        /// Istio version, `vX.Y.Z` or an alias (1.24 or newer).
        #[serde(default)]
        pub version: String,
        /// Built-in set of values (default `ambient`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("enum" = crate::PROFILES))]
        pub profile: Option<String>,
        /// Namespace of the DaemonSet.
        #[serde(default = "default_namespace")]
        pub namespace: String,
        /// Helm-style values for ztunnel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub values: Option<ZTunnelValues>,
    }
}
