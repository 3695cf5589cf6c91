//! `IstioRevisionTag`: a stable name for a revision.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// Desired state of a revision tag.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "sailoperator.io",
    version = "v1",
    kind = "IstioRevisionTag",
    status = "IstioRevisionTagStatus",
    category = "istio-io",
    shortname = "istiorevtag",
    doc = "IstioRevisionTag references an Istio or IstioRevision object and serves as an alias for sidecar injection.",
    printcolumn = r#"{"name":"Status","type":"string","description":"The current state of this object.","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"In use","type":"string","description":"Whether the tag is being used by workloads.","jsonPath":".status.conditions[?(@.type==\"InUse\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","description":"The IstioRevision this object is referencing.","jsonPath":".status.istioRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","description":"The age of the object","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IstioRevisionTagSpec {
    /// The Istio (floating tag) or IstioRevision (pinned tag) this tag points at.
    pub target_ref: TargetReference,
}

/// A reference to an Istio or an IstioRevision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetReference {
    /// `Istio` or `IstioRevision`.
    pub kind: TargetKind,
    /// Name of the referenced object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kinds a [`TargetReference`] may point at.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TargetKind {
    /// Follows the Istio's active revision.
    #[default]
    Istio,
    /// A fixed revision.
    IstioRevision,
}

/// Observed state of a revision tag.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioRevisionTagStatus {
    /// Generation of the spec this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Reconciled`, `InUse`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Reason of the first unhealthy condition, or `Healthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Namespace of the istiod the tag points at.
    #[serde(default)]
    pub istiod_namespace: String,
    /// Name of the IstioRevision the tag points at.
    #[serde(default)]
    pub istio_revision: String,
}
