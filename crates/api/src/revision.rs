//! `IstioRevision`: one concrete control-plane instance.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::values::Values;

/// Desired state of one control-plane instance (normally created by an Istio).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "sailoperator.io",
    version = "v1",
    kind = "IstioRevision",
    status = "IstioRevisionStatus",
    category = "istio-io",
    shortname = "istiorev",
    doc = "IstioRevision represents a single revision of an Istio Service Mesh deployment.",
    printcolumn = r#"{"name":"Namespace","type":"string","description":"The namespace for the control plane components.","jsonPath":".spec.namespace","priority":1}"#,
    printcolumn = r#"{"name":"Profile","type":"string","description":"The selected profile (collection of value presets).","jsonPath":".spec.values.profile","priority":1}"#,
    printcolumn = r#"{"name":"Type","type":"string","description":"Local or Remote: whether this revision runs istiod in this cluster.","jsonPath":".status.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether the control plane installation is ready to handle requests.","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","description":"The current state of this object.","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"In use","type":"string","description":"Whether the revision is being used by workloads.","jsonPath":".status.conditions[?(@.type==\"InUse\")].status"}"#,
    printcolumn = r#"{"name":"Version","type":"string","description":"The version of the control plane installation.","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","description":"The age of the object","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IstioRevisionSpec {
    /// Concrete Istio version `vX.Y.Z` (no aliases).
    pub version: String,
    /// Namespace of the control plane components. Immutable.
    pub namespace: String,
    /// Fully merged values of this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Values>,
}

/// Observed state of an IstioRevision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioRevisionStatus {
    /// Generation of the spec this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Reconciled`, `Ready`, `DependenciesHealthy`, `InUse`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Reason of the first unhealthy condition, or `Healthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `Local` (istiod runs here) or `Remote` (mizzen extension, shown in the TYPE column).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<String>,
    /// What keeps this revision in use (mizzen extension), e.g. `namespace/bookinfo (ambient)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_use_by: Vec<String>,
}
