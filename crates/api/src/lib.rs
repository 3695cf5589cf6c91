//! The `sailoperator.io` API as mizzen serves it: the five kinds `Istio`, `IstioRevision`,
//! `IstioRevisionTag`, `IstioCNI` and `ZTunnel` (v1, plus the deprecated ZTunnel v1alpha1),
//! their `values` trees and status conditions, and the CustomResourceDefinitions that publish
//! them. This crate knows nothing of versions of Istio: the version enums and defaults of the
//! CRDs come from the catalog, passed in as [`crds::VersionEnums`].

pub mod cni;
pub mod condition;
pub mod crds;
pub mod istio;
pub mod revision;
pub mod rollout;
pub mod tag;
pub mod values;
pub mod ztunnel;

pub use cni::{IstioCNI, IstioCNISpec, IstioCNIStatus};
pub use condition::{Condition, ConditionStatus, Conditions, derive_state};
pub use istio::{
    Istio, IstioSpec, IstioStatus, IstioUpdateStrategy, RevisionSummary, UpdateStrategyType,
};
pub use revision::{IstioRevision, IstioRevisionSpec, IstioRevisionStatus};
pub use rollout::{RolloutPolicy, RolloutPolicySpec, RolloutPolicyStatus};
pub use tag::{
    IstioRevisionTag, IstioRevisionTagSpec, IstioRevisionTagStatus, TargetKind, TargetReference,
};
pub use values::{CniValues, Values, ZTunnelValues};
pub use ztunnel::{ZTunnel, ZTunnelSpec, ZTunnelStatus};

/// The API group.
pub const GROUP: &str = "sailoperator.io";

/// Profiles accepted by `spec.profile` (the same list as upstream).
pub const PROFILES: [&str; 10] = [
    "ambient",
    "default",
    "demo",
    "empty",
    "external",
    "openshift",
    "openshift-ambient",
    "preview",
    "remote",
    "stable",
];

/// Condition types.
pub mod condition_types {
    /// The last reconcile succeeded.
    pub const RECONCILED: &str = "Reconciled";
    /// The component runs at the desired version everywhere.
    pub const READY: &str = "Ready";
    /// IstioCNI/ZTunnel the revision depends on are healthy.
    pub const DEPENDENCIES_HEALTHY: &str = "DependenciesHealthy";
    /// Something uses the revision or tag.
    pub const IN_USE: &str = "InUse";
}
