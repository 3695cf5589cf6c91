//! `IstioCNI`: the istio-cni node agent (singleton named `default`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::values::CniValues;

/// Desired state of the istio-cni node agent.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "sailoperator.io",
    version = "v1",
    kind = "IstioCNI",
    status = "IstioCNIStatus",
    category = "istio-io",
    doc = "IstioCNI represents a deployment of the Istio CNI component.",
    printcolumn = r#"{"name":"Namespace","type":"string","description":"The namespace of the istio-cni-node DaemonSet.","jsonPath":".spec.namespace","priority":1}"#,
    printcolumn = r#"{"name":"Profile","type":"string","description":"The selected profile (collection of value presets).","jsonPath":".spec.profile","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether the istio-cni-node pods are ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","description":"The current state of this object.","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Version","type":"string","description":"The version of the Istio CNI installation.","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","description":"The age of the object","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IstioCNISpec {
    /// Istio version, `vX.Y.Z` or an alias.
    #[serde(default)]
    pub version: String,
    /// Built-in set of values, e.g. `ambient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = crate::PROFILES))]
    pub profile: Option<String>,
    /// Namespace of the DaemonSet. Immutable.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Helm-style values for istio-cni.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<CniValues>,
}

fn default_namespace() -> String {
    "istio-cni".to_string()
}

/// Observed state of an IstioCNI (also used by ZTunnel v1alpha1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioCNIStatus {
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
}
