//! `Istio`: the user-facing control plane, owning one or more `IstioRevision`s.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::values::Values;

/// Desired state of an Istio control plane.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "sailoperator.io",
    version = "v1",
    kind = "Istio",
    status = "IstioStatus",
    category = "istio-io",
    doc = "Istio represents an Istio Service Mesh deployment consisting of one or more control plane instances (represented by one or more IstioRevision objects).",
    printcolumn = r#"{"name":"Namespace","type":"string","description":"The namespace for the control plane components.","jsonPath":".spec.namespace","priority":1}"#,
    printcolumn = r#"{"name":"Profile","type":"string","description":"The selected profile (collection of value presets).","jsonPath":".spec.profile","priority":1}"#,
    printcolumn = r#"{"name":"Revisions","type":"string","description":"Total number of IstioRevision objects currently associated with this object.","jsonPath":".status.revisions.total"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Number of revisions that are ready.","jsonPath":".status.revisions.ready"}"#,
    printcolumn = r#"{"name":"In use","type":"string","description":"Number of revisions that are currently being used by workloads.","jsonPath":".status.revisions.inUse"}"#,
    printcolumn = r#"{"name":"Active Revision","type":"string","description":"The name of the currently active revision.","jsonPath":".status.activeRevisionName"}"#,
    printcolumn = r#"{"name":"Status","type":"string","description":"The current state of this object.","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Version","type":"string","description":"The version of the control plane installation.","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","description":"The age of the object","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IstioSpec {
    /// Istio version to install, `vX.Y.Z` or an alias such as `vX.Y-latest`.
    #[serde(default)]
    pub version: String,
    /// How the control plane is updated when the version or values change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<IstioUpdateStrategy>,
    /// Built-in set of values applied on top of the default profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = crate::PROFILES))]
    pub profile: Option<String>,
    /// Namespace of the control plane components. Immutable.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Helm-style values for the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Values>,
}

fn default_namespace() -> String {
    "istio-system".to_string()
}

/// Update strategy of an Istio.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioUpdateStrategy {
    /// `InPlace` (default) or `RevisionBased`.
    #[serde(default, rename = "type")]
    pub type_: UpdateStrategyType,
    /// Seconds an unused, inactive revision is kept before it is deleted (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub inactive_revision_deletion_grace_period_seconds: Option<i64>,
    /// Move workloads to the new revision automatically (reserved; upstream does not act on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_workloads: Option<bool>,
}

/// How revisions are created.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum UpdateStrategyType {
    /// One revision, named after the Istio, updated in place.
    #[default]
    InPlace,
    /// A new revision per version; old ones are deleted once unused.
    RevisionBased,
}

/// Observed state of an Istio.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioStatus {
    /// Generation of the spec this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Reconciled`, `Ready`, `DependenciesHealthy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Reason of the first unhealthy condition, or `Healthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Name of the active IstioRevision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_revision_name: Option<String>,
    /// Counts of the IstioRevisions this Istio owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<RevisionSummary>,
}

/// Counts of revisions (each -1 when they could not be listed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSummary {
    /// All owned revisions.
    pub total: i32,
    /// Revisions whose `Ready` is True.
    pub ready: i32,
    /// Revisions whose `InUse` is True.
    pub in_use: i32,
}
