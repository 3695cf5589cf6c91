//! `RolloutPolicy` (`mizzen.io/v1alpha1`, mizzen's own API group): how the DaemonSet of the
//! ZTunnel or the IstioCNI rolls out a new version. Opt-in: without a policy, or with mode
//! `RollingUpdate`, the DaemonSet rolls as its `updateStrategy` says (the upstream behaviour).
//! With `DrainWaves`, the DaemonSet is set to `OnDelete` and mizzen drives the nodes in waves:
//! cordon, evict the ambient workloads through the Eviction API, replace the agent pod, wait
//! until the new one is Ready, uncordon (`docs/rollout.md`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// The component whose DaemonSet a policy drives.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RolloutTargetKind {
    /// The ZTunnel named in `name`.
    #[default]
    ZTunnel,
    /// The IstioCNI named in `name`.
    IstioCNI,
}

/// The ZTunnel or IstioCNI a policy drives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    /// `ZTunnel` or `IstioCNI`.
    pub kind: RolloutTargetKind,
    /// Its name (both are singletons named `default`).
    #[serde(default = "default_name")]
    pub name: String,
}

fn default_name() -> String {
    "default".into()
}

/// How the DaemonSet rolls out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RolloutMode {
    /// The DaemonSet's own rolling update, as without a policy.
    #[default]
    RollingUpdate,
    /// Node by node, in waves, each node drained before its agent pod is replaced.
    DrainWaves,
}

/// The settings of `DrainWaves`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DrainWaves {
    /// Nodes per wave: a count (`3`) or a percentage of the nodes driven (`"20%"`, rounded
    /// up). Default `10%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_size: Option<IntOrString>,
    /// Nodes drained at the same time within a wave: a count or a percentage of the wave
    /// (rounded down, at least 1). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// The nodes that are drained; the agent pods of the other nodes are replaced without
    /// draining, after them. Default: every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// A node label whose value groups the waves: the nodes of one value (a zone, say) go
    /// before those of the next, in the order of the values; a wave never mixes two values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by_label: Option<String>,
    /// Seconds to wait after a wave passed its gate, before the next one starts. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub soak_seconds: Option<i64>,
    /// Seconds a node may take to be drained and to run the new agent pod. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub node_timeout_seconds: Option<i64>,
    /// Seconds the workloads evicted by a wave may take to be Available again. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub workload_timeout_seconds: Option<i64>,
}

/// A rollout policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "mizzen.io",
    version = "v1alpha1",
    kind = "RolloutPolicy",
    status = "RolloutPolicyStatus",
    shortname = "rollout",
    category = "mizzen",
    doc = "RolloutPolicy says how the DaemonSet of a ZTunnel or IstioCNI rolls out a new version.",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetRef.kind"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Wave","type":"string","jsonPath":".status.wave"}"#,
    printcolumn = r#"{"name":"Updated","type":"string","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicySpec {
    /// The ZTunnel or IstioCNI whose DaemonSet this policy drives.
    pub target_ref: RolloutTarget,
    /// `RollingUpdate` (default) or `DrainWaves`.
    #[serde(default)]
    pub mode: RolloutMode,
    /// The settings of `DrainWaves`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_waves: Option<DrainWaves>,
    /// Halt between nodes (never in the middle of one).
    #[serde(default)]
    pub paused: bool,
}

/// Where one node stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRollout {
    /// The node.
    pub name: String,
    /// `Pending`, `Draining`, `Replacing`, `Updated` or `Failed`.
    pub state: String,
    /// Why it is stuck or failed (e.g. the PodDisruptionBudget an eviction waits for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The wave it belongs to (1-based).
    pub wave: i32,
}

/// Observed state of a rollout policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicyStatus {
    /// Generation of the spec this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the rollout is complete), `Paused`, `Progressing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `Idle`, `RollingOut`, `Paused`, `Complete` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The version being rolled out (the DaemonSet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `current/total`, e.g. `2/5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// Nodes updated / nodes, e.g. `12/30`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Nodes updated.
    #[serde(default)]
    pub updated: i32,
    /// Nodes being drained or replaced.
    #[serde(default)]
    pub draining: i32,
    /// Nodes not started.
    #[serde(default)]
    pub pending: i32,
    /// Nodes that failed.
    #[serde(default)]
    pub failed: i32,
    /// When this rollout started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the rollout should be done, from the pace so far (moves only when a node finishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_completion_time: Option<String>,
    /// The wave under way (1-based; 0 before the first).
    #[serde(default)]
    pub current_wave: i32,
    /// When the last wave's nodes were all updated (the soak and the gate count from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_completed_time: Option<String>,
    /// The workloads (`namespace/Kind/name` of the evicted pods' owners) evicted in the
    /// current wave, which must be Available again before the next wave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evicted: Vec<String>,
    /// Every node not yet updated, and those that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeRollout>,
}
