//! What the IstioCNI and ZTunnel controllers share: the version skew policy, DaemonSet
//! rollout readiness, and the `Reconciled`/`Ready` conditions of a data-plane component.
//!
//! # Version skew policy
//!
//! istio-cni and ztunnel 1.x work with istiod 1.x and 1.x+1 (`versions.md`, upgrade rules).
//! A data-plane component is compared with every control plane it serves (its
//! [`ControlPlane`]s: for a ZTunnel the revision it follows or is pinned to; for the IstioCNI
//! the active revision of every Istio and the revision a ZTunnel is pinned to) using
//! [`mizzen_catalog::check_dataplane`]. When a combination breaks the rule:
//!
//! - **Refused** ([`SkewVerdict::Refused`], condition reason `UpdateRefused`): the component's
//!   spec asks for a version other than the one its DaemonSet runs (label
//!   `app.kubernetes.io/version`), or nothing runs yet. Nothing is applied, the DaemonSet keeps
//!   running the old version, a Warning Event is published, and the reconcile waits for a
//!   change (of the spec or of a control plane). `Ready` is False (`SpecNotApplied`): the
//!   requested version does not run, so `kubectl wait --for=condition=Ready` keeps waiting.
//!   When the control plane later moves so that the change fits, it is applied then.
//! - **Warned** ([`SkewVerdict::Warned`], condition reason `VersionSkew`): the spec asks for
//!   the version that already runs, so the skew arose because a control plane moved. The
//!   component is applied as usual (values changes still roll out), but `Reconciled` is False
//!   so `state` shows `VersionSkew`, and the Istio's `DependenciesHealthy` (which requires the
//!   component to be `Healthy`) reflects it.
//! - No control plane found yet: nothing to compare, allowed (an IstioCNI may be installed
//!   before any Istio; a ZTunnel waits for its control plane anyway, see [`crate::ztunnel`]).
//!
//! Only minors count: any patch of the same minor, or of the minor before, is fine, whatever
//! the direction of the change.
//!
//! # Ready
//!
//! `Ready` is True when this generation of the spec was applied and the DaemonSet rollout is
//! complete: `observedGeneration` caught up, at least one node scheduled, and on every
//! scheduled node the pod updated and available ([`daemonset_rollout`]). Otherwise it is
//! False with the progress node by node (`DaemonSetNotReady`), or `SpecNotApplied` after a
//! refusal.

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use mizzen_api::condition_types::{READY, RECONCILED};
use mizzen_api::rollout::RolloutTargetKind;
use mizzen_api::{Condition, ConditionStatus, Conditions, IstioRevision, derive_state};
use mizzen_catalog::{Component, Version, check_dataplane};

use crate::Error;
use crate::context::Context;

/// A control plane (one IstioRevision) a data-plane component works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    /// The IstioRevision's name.
    pub revision: String,
    /// The version it runs.
    pub version: Version,
}

impl ControlPlane {
    /// The control plane of a revision; `None` when its version cannot be parsed.
    pub fn of(rev: &IstioRevision) -> Option<Self> {
        Some(Self {
            revision: rev.name_any(),
            version: rev.spec.version.parse().ok()?,
        })
    }
}

/// What the skew rules say about applying a data-plane version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkewVerdict {
    /// Within the rules (or no control plane to compare with).
    Allowed,
    /// The requested change would break the rules: apply nothing.
    Refused(String),
    /// The rules are broken by the control plane having moved: apply, but report it.
    Warned(String),
}

/// Decides whether `component` may be applied at `desired` (pure; see the
/// [module documentation](self) for the policy). `running` is the version its DaemonSet runs
/// now, if any; `control_planes` the revisions it serves.
pub fn skew_verdict(
    component: Component,
    desired: &Version,
    running: Option<&Version>,
    control_planes: &[ControlPlane],
) -> SkewVerdict {
    let problems: Vec<String> = control_planes
        .iter()
        .filter_map(|cp| {
            check_dataplane(component, &cp.version, desired)
                .err()
                .map(|e| format!("{e} (control plane: IstioRevision {})", cp.revision))
        })
        .collect();
    if problems.is_empty() {
        return SkewVerdict::Allowed;
    }
    let problems = problems.join("; ");
    match running {
        Some(r) if r == desired => SkewVerdict::Warned(format!(
            "{problems}. The control plane moved while {component} stayed at {desired}; \
             {component} keeps running, update it to a supported version"
        )),
        Some(r) => SkewVerdict::Refused(format!(
            "refused to move {component} from {r} to {desired}: {problems}. Nothing was \
             changed; {component} keeps running {r}"
        )),
        None => SkewVerdict::Refused(format!(
            "refused to install {component} {desired}: {problems}. Nothing was installed"
        )),
    }
}

/// What `Ready` adds for a DaemonSet with `updateStrategy: OnDelete` that nothing drives.
const ON_DELETE_HINT: &str = " (updateStrategy OnDelete: delete the old pods to update them)";

/// Whether a DaemonSet's rollout is complete on every node: the controller observed the
/// current spec, at least one node is scheduled, and on every scheduled node the pod is
/// updated and available. Otherwise the progress, node by node, e.g. `rolling out v1.26.4:
/// 1/3 nodes updated, 2/3 available`.
pub fn daemonset_rollout(ds: &DaemonSet) -> Result<(), String> {
    let name = ds.name_any();
    let version = ds
        .labels()
        .get(mizzen_render::VERSION_LABEL)
        .map_or_else(|| "the new spec".to_owned(), |v| format!("v{v}"));
    let generation = ds.metadata.generation.unwrap_or(0);
    let s = ds.status.clone().unwrap_or_default();
    if s.observed_generation.unwrap_or(0) < generation {
        return Err(format!(
            "DaemonSet {name} has not yet picked up {version} (generation {generation} not \
             observed yet)"
        ));
    }
    let desired = s.desired_number_scheduled;
    if desired <= 0 {
        return Err(format!(
            "no node runs a {name} pod (0 nodes scheduled); check the node selector, \
             tolerations and affinity"
        ));
    }
    let updated = s.updated_number_scheduled.unwrap_or(0);
    let available = s.number_available.unwrap_or(0);
    let unavailable = s.number_unavailable.unwrap_or(0);
    if updated == desired && available == desired && unavailable == 0 {
        return Ok(());
    }
    let on_delete = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    let hint = if on_delete && updated < desired {
        ON_DELETE_HINT
    } else {
        ""
    };
    Err(format!(
        "rolling out {version}: {updated}/{desired} nodes updated, {available}/{desired} \
         available{hint}"
    ))
}

/// Nodes updated, available and scheduled of a DaemonSet (for the rollout metrics).
pub fn daemonset_progress(ds: &DaemonSet) -> crate::metrics::Rollout {
    let s = ds.status.clone().unwrap_or_default();
    crate::metrics::Rollout {
        version: running_version(ds)
            .map(|v| v.to_string())
            .unwrap_or_default(),
        updated: s.updated_number_scheduled.unwrap_or(0),
        available: s.number_available.unwrap_or(0),
        desired: s.desired_number_scheduled,
    }
}

/// The version a DaemonSet runs (its `app.kubernetes.io/version` label).
pub fn running_version(ds: &DaemonSet) -> Option<Version> {
    ds.labels()
        .get(mizzen_render::VERSION_LABEL)
        .and_then(|v| format!("v{v}").parse().ok())
}

/// Reads DaemonSet `name` in `namespace`.
pub async fn daemonset(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<DaemonSet>, kube::Error> {
    ctx.children
        .get::<DaemonSet>(&ctx.client, Some(namespace), name)
        .await
}

/// `Ready` of a component whose pods are DaemonSet `name` in `namespace`, after a reconcile
/// that ended with `outcome`: True only when this spec was applied and the DaemonSet runs it,
/// updated and available, on every node. A refused spec is not Ready even though the previous
/// version may still run everywhere, so `kubectl wait --for=condition=Ready` does not return
/// on a change that was not made.
pub async fn ready_condition<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    namespace: &str,
    name: &str,
    outcome: &Outcome,
) -> Condition {
    let kind: &'static str = if K::kind(&()) == "IstioCNI" {
        "IstioCNI"
    } else {
        "ZTunnel"
    };
    let owner = &obj.meta().name.clone().unwrap_or_default();
    if let Err(m) = ctx.namespace_ready(namespace) {
        return not_ready(format!("DaemonSet {name} not found: {m}"));
    }
    match daemonset(ctx, namespace, name).await {
        Ok(Some(ds)) => {
            ctx.metrics.rollout(kind, owner, daemonset_progress(&ds));
            match outcome {
                Outcome::Refused(reason, _) => not_applied(&ds, reason),
                _ => match daemonset_rollout(&ds) {
                    Ok(()) => Condition::healthy(READY, ""),
                    Err(m) => {
                        let target = if kind == "IstioCNI" {
                            RolloutTargetKind::IstioCNI
                        } else {
                            RolloutTargetKind::ZTunnel
                        };
                        match crate::rollout::summary(&ctx.own.policies.store(), target, owner) {
                            // mizzen replaces the pods: no hint to delete them.
                            Some(waves) => {
                                not_ready(format!("{}; {waves}", m.replace(ON_DELETE_HINT, "")))
                            }
                            None => not_ready(m),
                        }
                    }
                },
            }
        }
        Ok(None) => not_ready(format!(
            "DaemonSet {name} not found in namespace {namespace}"
        )),
        Err(e) => Condition::new(
            READY,
            ConditionStatus::Unknown,
            "ReadinessCheckFailed",
            e.to_string(),
        ),
    }
}

/// `Ready` when the spec was refused: what keeps running, and why.
pub fn not_applied(ds: &DaemonSet, reason: &str) -> Condition {
    let running =
        running_version(ds).map_or_else(|| "its previous spec".to_owned(), |v| v.to_string());
    Condition::new(
        READY,
        ConditionStatus::False,
        "SpecNotApplied",
        format!(
            "DaemonSet {} keeps running {running}: this spec was not applied ({reason}, see \
             the Reconciled condition)",
            ds.name_any()
        ),
    )
}

fn not_ready(message: String) -> Condition {
    Condition::new(READY, ConditionStatus::False, "DaemonSetNotReady", message)
}

/// A Normal Event when a new version starts rolling out.
pub async fn announce_rollout<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    running: Option<&Version>,
    desired: &Version,
) {
    let kind = K::kind(&());
    let note = match running {
        Some(r) if r == desired => return,
        Some(r) => format!("rolling out {kind} {desired} (was {r}), node by node"),
        None => format!("installing {kind} {desired}"),
    };
    ctx.event(obj, EventType::Normal, "RolloutStarted", note)
        .await;
}

/// How a data-plane reconcile ended.
#[derive(Debug)]
pub enum Outcome {
    /// Applied; `Reconciled` is True.
    Applied,
    /// Applied, but the control plane moved out of the skew rules (`VersionSkew`).
    Skewed(String),
    /// Not acted on until the spec or the cluster changes: reason and message.
    Refused(&'static str, String),
    /// A failure worth retrying.
    Failed(Error),
}

impl<E: Into<Error>> From<E> for Outcome {
    fn from(e: E) -> Self {
        match e.into() {
            e if e.is_permanent() => Outcome::Refused("InvalidValues", e.to_string()),
            e => Outcome::Failed(e),
        }
    }
}

impl Outcome {
    /// The `Reconciled` condition.
    pub fn condition(&self) -> Condition {
        match self {
            Outcome::Applied => Condition::healthy(RECONCILED, ""),
            Outcome::Skewed(m) => {
                Condition::new(RECONCILED, ConditionStatus::False, "VersionSkew", m.clone())
            }
            Outcome::Refused(reason, m) => {
                Condition::new(RECONCILED, ConditionStatus::False, reason, m.clone())
            }
            Outcome::Failed(e) => Condition::new(
                RECONCILED,
                ConditionStatus::False,
                "ReconcileError",
                e.to_string(),
            ),
        }
    }

    /// Publishes a Warning Event for a refusal or a skew whose message is new (so a repeated
    /// reconcile does not repeat it).
    pub async fn announce<K: Resource<DynamicType = ()>>(
        &self,
        ctx: &Context,
        obj: &K,
        previous: Option<&Condition>,
    ) {
        let (reason, message) = match self {
            Outcome::Skewed(m) => ("VersionSkew", m),
            Outcome::Refused(reason, m) => (*reason, m),
            Outcome::Applied | Outcome::Failed(_) => return,
        };
        if previous.and_then(|c| c.message.as_deref()) != Some(message.as_str()) {
            if matches!(self, Outcome::Refused(..)) {
                ctx.metrics.refused(&K::kind(&()), reason);
            }
            ctx.event(obj, EventType::Warning, reason, message.clone())
                .await;
        }
    }
}

/// Sets `Reconciled` and `Ready` (with `observedGeneration`) and returns the derived state.
pub fn set_conditions(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reconciled: Condition,
    ready: Condition,
    now: &str,
) -> String {
    for mut c in [reconciled, ready] {
        c.observed_generation = generation;
        conditions.set_condition(c, now);
    }
    derive_state(conditions, &[RECONCILED, READY])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn cp(rev: &str, version: &str) -> ControlPlane {
        ControlPlane {
            revision: rev.into(),
            version: v(version),
        }
    }

    #[test]
    fn no_control_plane_means_no_check() {
        assert_eq!(
            skew_verdict(Component::ZTunnel, &v("v1.30.3"), None, &[]),
            SkewVerdict::Allowed
        );
    }

    #[test]
    fn same_minor_or_one_older_is_allowed_whatever_runs() {
        for (desired, running) in [
            ("v1.26.4", None),
            ("v1.26.4", Some("v1.26.3")),
            ("v1.26.3", Some("v1.26.4")),
            ("v1.25.5", Some("v1.26.4")),
            ("v1.26.8", Some("v1.26.8")),
        ] {
            let running = running.map(v);
            assert_eq!(
                skew_verdict(
                    Component::IstioCni,
                    &v(desired),
                    running.as_ref(),
                    &[cp("default", "v1.26.4")]
                ),
                SkewVerdict::Allowed,
                "{desired} over {running:?}"
            );
        }
    }

    #[test]
    fn a_newer_data_plane_is_refused_naming_both_versions_and_the_revision() {
        let verdict = skew_verdict(
            Component::ZTunnel,
            &v("v1.27.2"),
            Some(&v("v1.26.4")),
            &[cp("default", "v1.26.4")],
        );
        let SkewVerdict::Refused(m) = verdict else {
            panic!("{verdict:?}")
        };
        assert!(
            m.starts_with("refused to move ZTunnel from v1.26.4 to v1.27.2: ZTunnel v1.27.2 is newer than the control plane v1.26.4"),
            "{m}"
        );
        assert!(m.contains("IstioRevision default"), "{m}");
        assert!(
            m.contains("update the Istio control plane to v1.27.x first"),
            "{m}"
        );
        assert!(m.contains("keeps running v1.26.4"), "{m}");
    }

    #[test]
    fn a_fresh_install_outside_the_rules_is_refused() {
        let verdict = skew_verdict(
            Component::ZTunnel,
            &v("v1.28.0"),
            None,
            &[cp("default", "v1.27.0")],
        );
        assert!(
            matches!(&verdict, SkewVerdict::Refused(m) if m.starts_with("refused to install ZTunnel v1.28.0") && m.contains("Nothing was installed")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_change_that_stays_too_old_is_refused() {
        // The control plane jumped to 1.28 (RevisionBased); moving 1.26.3 -> 1.26.8 is still
        // two minors behind.
        let verdict = skew_verdict(
            Component::IstioCni,
            &v("v1.26.8"),
            Some(&v("v1.26.3")),
            &[cp("default-v1-28-1", "v1.28.1")],
        );
        assert!(
            matches!(&verdict, SkewVerdict::Refused(m) if m.contains("more than one minor version older") && m.contains("move IstioCNI to v1.27.x first")),
            "{verdict:?}"
        );
        // The step the message asks for is allowed.
        assert_eq!(
            skew_verdict(
                Component::IstioCni,
                &v("v1.27.9"),
                Some(&v("v1.26.3")),
                &[cp("default-v1-28-1", "v1.28.1")],
            ),
            SkewVerdict::Allowed
        );
    }

    #[test]
    fn a_control_plane_that_moved_under_an_unchanged_spec_is_only_warned() {
        let verdict = skew_verdict(
            Component::IstioCni,
            &v("v1.26.4"),
            Some(&v("v1.26.4")),
            &[cp("mesh", "v1.28.1")],
        );
        let SkewVerdict::Warned(m) = verdict else {
            panic!("{verdict:?}")
        };
        assert!(
            m.starts_with(
                "IstioCNI v1.26.4 is more than one minor version older than the control plane v1.28.1"
            ),
            "{m}"
        );
        assert!(
            m.contains("IstioRevision mesh") && m.contains("control plane moved"),
            "{m}"
        );
        // A control plane moved *below* the data plane (a rollback) is warned too.
        assert!(matches!(
            skew_verdict(
                Component::ZTunnel,
                &v("v1.27.1"),
                Some(&v("v1.27.1")),
                &[cp("default", "v1.26.4")]
            ),
            SkewVerdict::Warned(_)
        ));
    }

    #[test]
    fn every_control_plane_counts() {
        let planes = [cp("a", "v1.27.1"), cp("b", "v1.26.4"), cp("c", "v1.29.0")];
        let verdict = skew_verdict(
            Component::IstioCni,
            &v("v1.27.1"),
            Some(&v("v1.26.4")),
            &planes,
        );
        let SkewVerdict::Refused(m) = verdict else {
            panic!("{verdict:?}")
        };
        assert!(
            m.contains("IstioRevision b") && m.contains("IstioRevision c"),
            "{m}"
        );
        assert!(!m.contains("IstioRevision a"), "{m}");
    }

    fn ds(v: serde_json::Value) -> DaemonSet {
        serde_json::from_value(v).unwrap()
    }

    fn with_status(generation: i64, status: serde_json::Value) -> DaemonSet {
        ds(json!({
            "metadata": {"name": "ztunnel", "generation": generation,
                         "labels": {"app.kubernetes.io/version": "1.26.4"}},
            "spec": {"selector": {}, "template": {}},
            "status": status,
        }))
    }

    #[test]
    fn rollout_complete_only_when_every_node_is_updated_and_available() {
        let done = with_status(
            2,
            json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                   "numberMisscheduled": 0, "numberReady": 3, "updatedNumberScheduled": 3,
                   "numberAvailable": 3}),
        );
        assert_eq!(daemonset_rollout(&done), Ok(()));
        assert_eq!(running_version(&done), Some(v("v1.26.4")));

        let unobserved = with_status(
            3,
            json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                   "numberMisscheduled": 0, "numberReady": 3, "updatedNumberScheduled": 3,
                   "numberAvailable": 3}),
        );
        assert!(
            daemonset_rollout(&unobserved)
                .unwrap_err()
                .contains("not yet picked up v1.26.4")
        );

        let rolling = with_status(
            3,
            json!({"observedGeneration": 3, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                   "numberMisscheduled": 0, "numberReady": 2, "updatedNumberScheduled": 1,
                   "numberAvailable": 2, "numberUnavailable": 1}),
        );
        assert_eq!(
            daemonset_rollout(&rolling).unwrap_err(),
            "rolling out v1.26.4: 1/3 nodes updated, 2/3 available"
        );

        let unavailable = with_status(
            3,
            json!({"observedGeneration": 3, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                   "numberMisscheduled": 0, "numberReady": 3, "updatedNumberScheduled": 3,
                   "numberAvailable": 3, "numberUnavailable": 1}),
        );
        assert!(daemonset_rollout(&unavailable).is_err());

        let nowhere = with_status(
            1,
            json!({"observedGeneration": 1, "desiredNumberScheduled": 0, "currentNumberScheduled": 0,
                   "numberMisscheduled": 0, "numberReady": 0}),
        );
        assert!(
            daemonset_rollout(&nowhere)
                .unwrap_err()
                .contains("0 nodes scheduled")
        );

        let refused = not_applied(&done, "UpdateRefused");
        assert_eq!(refused.status, ConditionStatus::False);
        assert_eq!(refused.reason.as_deref(), Some("SpecNotApplied"));
        assert_eq!(
            refused.message.as_deref(),
            Some(
                "DaemonSet ztunnel keeps running v1.26.4: this spec was not applied \
                 (UpdateRefused, see the Reconciled condition)"
            )
        );

        let mut on_delete = rolling.clone();
        on_delete.spec.as_mut().unwrap().update_strategy =
            Some(serde_json::from_value(json!({"type": "OnDelete"})).unwrap());
        assert!(
            daemonset_rollout(&on_delete)
                .unwrap_err()
                .ends_with("(updateStrategy OnDelete: delete the old pods to update them)")
        );
    }

    #[test]
    fn state_follows_reconciled_then_ready() {
        let mut cs = Vec::new();
        let state = set_conditions(
            &mut cs,
            Some(4),
            Outcome::Skewed("m".into()).condition(),
            Condition::healthy(READY, ""),
            "t",
        );
        assert_eq!(state, "VersionSkew");
        assert!(cs.iter().all(|c| c.observed_generation == Some(4)));
        let state = set_conditions(
            &mut cs,
            Some(5),
            Outcome::Applied.condition(),
            not_ready("x".into()),
            "t2",
        );
        assert_eq!(state, "DaemonSetNotReady");
    }
}
