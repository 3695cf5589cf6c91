//! The `IstioCNI` controller: renders and applies the istio-cni node agent (the singleton
//! `default`), enforces the version skew rules against every control plane (see
//! [`crate::dataplane`]), and reports `Ready` only when the `istio-cni-node` DaemonSet runs
//! the new version on every node.
//!
//! Children carry an owner reference to the IstioCNI, so deleting it lets the garbage
//! collector remove them.

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::core::GroupVersionKind;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use mizzen_api::condition_types::RECONCILED;
use mizzen_api::{Conditions, Istio, IstioCNI, IstioRevision, ZTunnel};
use mizzen_catalog::Component;

use crate::context::{Context, now, patch_status};
use crate::dataplane::{
    ControlPlane, Outcome, SkewVerdict, daemonset, ready_condition, running_version,
    set_conditions, skew_verdict,
};
use crate::wiring::{Wiring, namespace_fingerprints};
use crate::{Error, owner_of, ztunnel};

/// The name of the only IstioCNI (enforced by the CRD).
pub const NAME: &str = "default";
/// The istio-cni DaemonSet (a fixed name: the plugin looks for it).
pub const DAEMONSET: &str = "istio-cni-node";

/// The multus NetworkAttachmentDefinition kind, rendered on OpenShift.
fn network_attachment_kind() -> GroupVersionKind {
    GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition")
}

/// Every kind [`mizzen_render::render_cni`] can produce; the NetworkAttachmentDefinition only
/// when the cluster serves it (`nad_served`), since pruning lists every prunable kind.
pub fn prunable_kinds(nad_served: bool) -> Vec<GroupVersionKind> {
    let mut kinds: Vec<GroupVersionKind> = [
        ("", "v1", "ServiceAccount"),
        ("", "v1", "ConfigMap"),
        ("apps", "v1", "DaemonSet"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
    ]
    .into_iter()
    .map(|(g, v, k)| GroupVersionKind::gvk(g, v, k))
    .collect();
    if nad_served {
        kinds.push(network_attachment_kind());
    }
    kinds
}

/// The IstioCNI controller: the IstioCNI, its children, the control planes it is checked
/// against, and namespaces (its namespace may appear later).
pub fn controller(w: &Wiring) -> BoxFuture<'static, ()> {
    let own = &w.ctx.own;
    let store = own.cnis.store();
    let controller = Controller::for_shared_stream(own.cnis.changes(), store.clone())
        .reconcile_on(w.ctx.children.owned_by(store.clone()))
        .watches_shared_stream(own.istios.changes(), singleton)
        .watches_shared_stream(own.revisions.changes(), singleton)
        .watches_shared_stream(own.ztunnels.changes(), singleton)
        .reconcile_on(w.usage_changes_of(store, |ctx, objects| {
            namespace_fingerprints(ctx, objects, |o: &IstioCNI| &o.spec.namespace)
        }));
    w.start("IstioCNI", controller, reconcile)
}

/// Reconciles the IstioCNI.
pub async fn reconcile(cni: Arc<IstioCNI>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cni.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ctx.report_unknown_values(cni.as_ref(), &cni.spec.values, cni.spec.profile.as_deref())
        .await;
    let outcome = apply(&cni, &ctx).await;
    let previous = cni
        .status
        .as_ref()
        .and_then(|s| s.conditions.get_condition(RECONCILED));
    outcome.announce(&ctx, cni.as_ref(), previous).await;
    let ready = ready_condition(&ctx, cni.as_ref(), &cni.spec.namespace, DAEMONSET, &outcome).await;
    let generation = cni.meta().generation;
    let mut status = cni.status.clone().unwrap_or_default();
    status.state = Some(set_conditions(
        &mut status.conditions,
        generation,
        outcome.condition(),
        ready,
        &now(),
    ));
    status.observed_generation = generation;
    patch_status(&ctx.client, cni.as_ref(), cni.status.as_ref(), &status).await?;
    match outcome {
        Outcome::Failed(e) => Err(e),
        _ => Ok(Action::await_change()),
    }
}

async fn apply(cni: &IstioCNI, ctx: &Context) -> Outcome {
    if let Some(m) = crate::context::paused(cni) {
        return Outcome::Refused(crate::context::PAUSED_REASON, m);
    }
    let namespace = &cni.spec.namespace;
    if let Err(m) = ctx.namespace_ready(namespace) {
        return Outcome::Refused("NamespaceNotFound", m);
    }
    let resolved = match ctx
        .catalog
        .resolve_for(Component::IstioCni, &cni.spec.version)
    {
        Ok(r) => r,
        Err(e) => return Outcome::Refused("VersionNotSupported", e.to_string()),
    };
    let running = match daemonset(ctx, namespace, DAEMONSET).await {
        Ok(ds) => ds.as_ref().and_then(running_version),
        Err(e) => return e.into(),
    };
    let planes = match control_planes(ctx).await {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    let verdict = skew_verdict(
        Component::IstioCni,
        &resolved.version,
        running.as_ref(),
        &planes,
    );
    if let SkewVerdict::Refused(m) = verdict {
        return Outcome::Refused("UpdateRefused", m);
    }
    let objects = match crate::desired::cni_objects(cni, &resolved, ctx.platform) {
        Ok(o) => o,
        Err(e) => return Outcome::Refused("InvalidValues", e.to_string()),
    };
    let nad_served = ctx.applier.served(&network_attachment_kind()).await;
    let inventory = mizzen_render::Owner::istio_cni(NAME).label();
    if let Err(e) = ctx
        .applier
        .apply(
            &owner_of(cni),
            (inventory.0, &inventory.1),
            crate::desired::with_rollout(
                objects,
                crate::rollout::drives(
                    ctx.own.policies.store().state().iter().map(AsRef::as_ref),
                    mizzen_api::rollout::RolloutTargetKind::IstioCNI,
                    NAME,
                ),
            ),
            &prunable_kinds(nad_served),
        )
        .await
    {
        return e.into();
    }
    crate::dataplane::announce_rollout(ctx, cni, running.as_ref(), &resolved.version).await;
    match verdict {
        SkewVerdict::Warned(m) => Outcome::Skewed(m),
        _ => Outcome::Applied,
    }
}

/// The control planes istio-cni serves.
async fn control_planes(ctx: &Context) -> Result<Vec<ControlPlane>, kube::Error> {
    let istios = crate::own::unshared(ctx.own.istios.list(&ctx.client).await?);
    let revisions = crate::own::unshared(ctx.own.revisions.list(&ctx.client).await?);
    let ztunnel = ctx.own.ztunnels.get(&ctx.client, ztunnel::NAME).await?;
    Ok(cni_control_planes(&istios, &revisions, ztunnel.as_deref()))
}

/// The control planes istio-cni serves (pure): the active revision of every Istio, and the
/// revision the ZTunnel is pinned to, if any. Revisions that do not exist (yet) are skipped.
pub fn cni_control_planes(
    istios: &[Istio],
    revisions: &[IstioRevision],
    ztunnel: Option<&ZTunnel>,
) -> Vec<ControlPlane> {
    let mut names: Vec<String> = istios
        .iter()
        .filter_map(|i| i.status.as_ref()?.active_revision_name.clone())
        .collect();
    names.extend(ztunnel.and_then(ztunnel::pinned_revision));
    names.sort();
    names.dedup();
    names
        .iter()
        .filter_map(|n| revisions.iter().find(|r| r.name_any() == *n))
        .filter_map(ControlPlane::of)
        .collect()
}

/// A watch mapper: any change of another kind concerns the singleton.
fn singleton<T>(_: T) -> Option<ObjectRef<IstioCNI>> {
    Some(ObjectRef::new(NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_api::{IstioRevisionSpec, IstioSpec, IstioStatus, TargetKind, TargetReference};

    fn istio(name: &str, active: Option<&str>) -> Istio {
        let mut i = Istio::new(name, IstioSpec::default());
        i.status = active.map(|a| IstioStatus {
            active_revision_name: Some(a.into()),
            ..Default::default()
        });
        i
    }

    fn revision(name: &str, version: &str) -> IstioRevision {
        IstioRevision::new(
            name,
            IstioRevisionSpec {
                version: version.into(),
                namespace: "istio-system".into(),
                values: None,
            },
        )
    }

    #[test]
    fn cni_serves_every_active_revision_and_the_ztunnel_pin() {
        let istios = [
            istio("a", Some("a-v1-27-1")),
            istio("b", Some("b")),
            istio("fresh", None),
            istio("dangling", Some("missing")),
        ];
        let revisions = [
            revision("a-v1-26-4", "v1.26.4"),
            revision("a-v1-27-1", "v1.27.1"),
            revision("b", "v1.28.0"),
            revision("pinned", "v1.26.8"),
        ];
        let names = |planes: Vec<ControlPlane>| -> Vec<String> {
            planes
                .into_iter()
                .map(|p| format!("{} {}", p.revision, p.version))
                .collect()
        };
        assert_eq!(
            names(cni_control_planes(&istios, &revisions, None)),
            ["a-v1-27-1 v1.27.1", "b v1.28.0"],
            "inactive revisions do not count"
        );
        let mut zt = ZTunnel::new("default", Default::default());
        zt.spec.target_ref = Some(TargetReference {
            kind: TargetKind::IstioRevision,
            name: "pinned".into(),
        });
        assert_eq!(
            names(cni_control_planes(&istios, &revisions, Some(&zt))),
            ["a-v1-27-1 v1.27.1", "b v1.28.0", "pinned v1.26.8"]
        );
        assert!(cni_control_planes(&[], &revisions, None).is_empty());
    }

    #[test]
    fn prunable_kinds_include_the_attachment_only_when_served() {
        assert!(!prunable_kinds(false).contains(&network_attachment_kind()));
        assert!(prunable_kinds(true).contains(&network_attachment_kind()));
        assert!(
            prunable_kinds(false)
                .iter()
                .any(|k| k.kind == "DaemonSet" && k.group == "apps")
        );
    }
}
