//! The `ZTunnel` controller: renders and applies ztunnel (the singleton `default`), decides
//! which control plane it talks to, enforces the version skew rules (see
//! [`crate::dataplane`]), and reports `Ready` only when the ztunnel DaemonSet runs the new
//! version on every node. `v1alpha1` ZTunnels are the same stored objects and are reconciled
//! through `v1`.
//!
//! # Which control plane ztunnel talks to
//!
//! - `targetRef: {kind: Istio, name: X}`, or neither `targetRef` nor `values.ztunnel.revision`
//!   and X is the Istio named `default` (else the only Istio): ztunnel **follows** Istio X.
//!   It reaches istiod through the Service [`crate::istio::stable_host`] that the Istio
//!   controller points at the active revision, so a control-plane canary does not restart
//!   ztunnel: the pod template names no revision, only the Istio (annotation
//!   [`FOLLOWS_ISTIO_ANNOTATION`], read by the in-use index). `status.istioRevision` is X's
//!   active revision; ztunnel takes the `global` values and mesh settings of that revision.
//! - `targetRef: {kind: IstioRevision, name: R}` or `values.ztunnel.revision: R`: ztunnel is
//!   **pinned** to R: `istiod{-R}.<namespace>.svc:15012` and pod annotation `istio.io/rev: R`.
//!   `targetRef` wins over `values.ztunnel.revision`.
//! - No Istio, several without one named `default`, or a target that does not exist (yet):
//!   `Reconciled=False` (`NoControlPlane`, `AmbiguousControlPlane`, `TargetNotFound`), nothing
//!   is applied, and the ZTunnel is reconciled again when Istios or IstioRevisions change.

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::core::GroupVersionKind;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use mizzen_api::condition_types::RECONCILED;
use mizzen_api::{Conditions, Istio, IstioRevision, TargetKind, ZTunnel, ZTunnelValues};
use mizzen_catalog::{Component, Resolved};
use mizzen_render::{
    MeshSettings, Object, Platform, RenderError, ZTunnelInput, ZTunnelValuesInput, istiod_address,
};

use crate::context::{Context, now, patch_status};
use crate::dataplane::{
    ControlPlane, Outcome, SkewVerdict, daemonset, ready_condition, running_version,
    set_conditions, skew_verdict,
};
use crate::inuse::{FOLLOWS_ISTIO_ANNOTATION, REV};
use crate::istio::{Refusal, stable_host};
use crate::wiring::{Wiring, namespace_fingerprints};
use crate::{Error, owner_of};

/// The name of the only ZTunnel (enforced by the CRD).
pub const NAME: &str = "default";
/// The default name of the DaemonSet and ServiceAccount.
pub const DAEMONSET: &str = "ztunnel";
/// istiod's xDS and CA port.
const XDS_PORT: u16 = 15012;

/// Every kind [`mizzen_render::render_ztunnel`] can produce.
pub fn prunable_kinds() -> Vec<GroupVersionKind> {
    [
        ("", "v1", "ServiceAccount"),
        ("apps", "v1", "DaemonSet"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
    ]
    .into_iter()
    .map(|(g, v, k)| GroupVersionKind::gvk(g, v, k))
    .collect()
}

/// The ZTunnel controller: the ZTunnel, its children, the control planes it may follow, and
/// namespaces (its namespace may appear later).
pub fn controller(w: &Wiring) -> BoxFuture<'static, ()> {
    let own = &w.ctx.own;
    let store = own.ztunnels.store();
    let controller = Controller::for_shared_stream(own.ztunnels.changes(), store.clone())
        .reconcile_on(w.ctx.children.owned_by(store.clone()))
        .watches_shared_stream(own.istios.changes(), singleton)
        .watches_shared_stream(own.revisions.changes(), singleton)
        .watches_shared_stream(own.policies.changes(), singleton)
        .reconcile_on(w.usage_changes_of(store, |ctx, objects| {
            namespace_fingerprints(ctx, objects, |o: &ZTunnel| &o.spec.namespace)
        }));
    w.start("ZTunnel", controller, reconcile)
}

/// Reconciles the ZTunnel.
pub async fn reconcile(zt: Arc<ZTunnel>, ctx: Arc<Context>) -> Result<Action, Error> {
    if zt.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ctx.report_unknown_values(zt.as_ref(), &zt.spec.values, None)
        .await;
    let mut revision = None;
    let outcome = apply(&zt, &ctx, &mut revision).await;
    let previous = zt
        .status
        .as_ref()
        .and_then(|s| s.conditions.get_condition(RECONCILED));
    outcome.announce(&ctx, zt.as_ref(), previous).await;
    let ready = ready_condition(
        &ctx,
        zt.as_ref(),
        &zt.spec.namespace,
        &daemonset_name(&zt),
        &outcome,
    )
    .await;
    let generation = zt.meta().generation;
    let mut status = zt.status.clone().unwrap_or_default();
    status.state = Some(set_conditions(
        &mut status.conditions,
        generation,
        outcome.condition(),
        ready,
        &now(),
    ));
    status.observed_generation = generation;
    status.istio_revision = revision;
    patch_status(&ctx.client, zt.as_ref(), zt.status.as_ref(), &status).await?;
    match outcome {
        Outcome::Failed(e) => Err(e),
        _ => Ok(Action::await_change()),
    }
}

/// Applies ztunnel; `revision` receives the revision it follows or is pinned to, once known.
async fn apply(zt: &ZTunnel, ctx: &Context, revision: &mut Option<String>) -> Outcome {
    if let Some(m) = crate::context::paused(zt) {
        return Outcome::Refused(crate::context::PAUSED_REASON, m);
    }
    let namespace = &zt.spec.namespace;
    if let Err(m) = ctx.namespace_ready(namespace) {
        return Outcome::Refused("NamespaceNotFound", m);
    }
    let resolved = match ctx
        .catalog
        .resolve_for(Component::ZTunnel, &zt.spec.version)
    {
        Ok(r) => r,
        Err(e) => return Outcome::Refused("VersionNotSupported", e.to_string()),
    };
    let (istios, revisions) = match control_plane_objects(ctx).await {
        Ok(lists) => lists,
        Err(e) => return e.into(),
    };
    let target = match resolve(zt, &istios, &revisions) {
        Ok(t) => t,
        Err(r) => return Outcome::Refused(r.reason, r.message),
    };
    *revision = Some(target.revision.name_any());
    let running = match daemonset(ctx, namespace, &daemonset_name(zt)).await {
        Ok(ds) => ds.as_ref().and_then(running_version),
        Err(e) => return e.into(),
    };
    let planes: Vec<ControlPlane> = ControlPlane::of(&target.revision).into_iter().collect();
    let verdict = skew_verdict(
        Component::ZTunnel,
        &resolved.version,
        running.as_ref(),
        &planes,
    );
    if let SkewVerdict::Refused(m) = verdict {
        return Outcome::Refused("UpdateRefused", m);
    }
    let objects = match render(zt, &target, &resolved, ctx.platform) {
        Ok(o) => o,
        Err(e) => return Outcome::Refused("InvalidValues", e.to_string()),
    };
    let inventory = mizzen_render::Owner::ztunnel(NAME).label();
    if let Err(e) = ctx
        .applier
        .apply(
            &owner_of(zt),
            (inventory.0, &inventory.1),
            crate::desired::with_rollout(
                objects,
                crate::rollout::drives(
                    ctx.own.policies.store().state().iter().map(AsRef::as_ref),
                    mizzen_api::rollout::RolloutTargetKind::ZTunnel,
                    NAME,
                ),
            ),
            &prunable_kinds(),
        )
        .await
    {
        return e.into();
    }
    crate::dataplane::announce_rollout(ctx, zt, running.as_ref(), &resolved.version).await;
    match verdict {
        SkewVerdict::Warned(m) => Outcome::Skewed(m),
        _ => Outcome::Applied,
    }
}

async fn control_plane_objects(
    ctx: &Context,
) -> Result<(Vec<Istio>, Vec<IstioRevision>), kube::Error> {
    let istios = crate::own::unshared(ctx.own.istios.list(&ctx.client).await?);
    let revisions = crate::own::unshared(ctx.own.revisions.list(&ctx.client).await?);
    Ok((istios, revisions))
}

/// The name of the ztunnel DaemonSet: `values.ztunnel.resourceName`, else `ztunnel`.
pub fn daemonset_name(zt: &ZTunnel) -> String {
    zt.spec
        .values
        .as_ref()
        .and_then(|v| v.ztunnel.as_ref())
        .and_then(|z| z.resource_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DAEMONSET.to_owned())
}

/// The revision a ZTunnel is pinned to (`targetRef` of kind IstioRevision, else
/// `values.ztunnel.revision` when there is no `targetRef`), if any.
pub fn pinned_revision(zt: &ZTunnel) -> Option<String> {
    match &zt.spec.target_ref {
        Some(t) if t.kind == TargetKind::IstioRevision => Some(t.name.clone()),
        Some(_) => None,
        None => zt
            .spec
            .values
            .as_ref()
            .and_then(|v| v.ztunnel.as_ref())
            .and_then(|z| z.revision.clone())
            .filter(|r| !r.is_empty()),
    }
}

/// The control plane a ZTunnel asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Follow the active revision of this Istio.
    Follow(String),
    /// Stay on this IstioRevision.
    Pin(String),
}

/// Which control plane a ZTunnel asks for (pure; see the [module documentation](self)).
pub fn binding(zt: &ZTunnel, istios: &[Istio]) -> Result<Binding, Refusal> {
    if let Some(r) = pinned_revision(zt) {
        return Ok(Binding::Pin(r));
    }
    if let Some(t) = &zt.spec.target_ref {
        return Ok(Binding::Follow(t.name.clone()));
    }
    let names: Vec<String> = istios.iter().map(ResourceExt::name_any).collect();
    match names.as_slice() {
        _ if names.iter().any(|n| n == "default") => Ok(Binding::Follow("default".into())),
        [only] => Ok(Binding::Follow(only.clone())),
        [] => Err(Refusal {
            reason: "NoControlPlane",
            message: "no Istio exists for ztunnel to connect to; create one (mizzen continues \
                      when it exists), or set spec.targetRef"
                .into(),
        }),
        several => Err(Refusal {
            reason: "AmbiguousControlPlane",
            message: format!(
                "{} Istios exist ({}) and none is named default; set spec.targetRef to the one \
                 ztunnel should follow",
                several.len(),
                several.join(", ")
            ),
        }),
    }
}

/// Where ztunnel connects, resolved against the cluster's Istios and IstioRevisions.
#[derive(Debug, Clone)]
pub struct Target {
    /// The revision followed (the Istio's active one) or pinned.
    pub revision: IstioRevision,
    /// The Istio followed, if following.
    pub follows: Option<String>,
    /// `XDS_ADDRESS` and `CA_ADDRESS`.
    pub address: String,
    /// The control-plane namespace.
    pub istio_namespace: String,
}

/// Resolves a [`Binding`] (pure). A missing Istio or IstioRevision, or an Istio without an
/// active revision yet, is `TargetNotFound`.
pub fn target(
    binding: &Binding,
    istios: &[Istio],
    revisions: &[IstioRevision],
) -> Result<Target, Refusal> {
    let not_found = |message: String| Refusal {
        reason: "TargetNotFound",
        message,
    };
    let find = |name: &str| revisions.iter().find(|r| r.name_any() == name).cloned();
    match binding {
        Binding::Follow(istio) => {
            let Some(i) = istios.iter().find(|i| i.name_any() == *istio) else {
                return Err(not_found(format!(
                    "Istio {istio} not found; mizzen continues when it exists"
                )));
            };
            let active = i
                .status
                .as_ref()
                .and_then(|s| s.active_revision_name.clone())
                .filter(|a| !a.is_empty());
            let Some(revision) = active.as_deref().and_then(find) else {
                return Err(not_found(format!(
                    "Istio {istio} has no active IstioRevision yet; mizzen continues when it has"
                )));
            };
            Ok(Target {
                revision,
                follows: Some(istio.clone()),
                address: format!("{}:{XDS_PORT}", stable_host(istio, &i.spec.namespace)),
                istio_namespace: i.spec.namespace.clone(),
            })
        }
        Binding::Pin(name) => {
            let Some(revision) = find(name) else {
                return Err(not_found(format!(
                    "IstioRevision {name} not found; mizzen continues when it exists"
                )));
            };
            let namespace = revision.spec.namespace.clone();
            Ok(Target {
                address: istiod_address(name, &namespace),
                follows: None,
                istio_namespace: namespace,
                revision,
            })
        }
    }
}

/// Where `zt` connects (pure): its [`binding`] resolved with [`target`].
pub fn resolve(
    zt: &ZTunnel,
    istios: &[Istio],
    revisions: &[IstioRevision],
) -> Result<Target, Refusal> {
    binding(zt, istios).and_then(|b| target(&b, istios, revisions))
}

/// Renders ztunnel for `target` (pure). The user's values are completed with the target
/// revision's `global` values and mesh settings; the revision is named in the pod template
/// only when pinned (following pods name the Istio instead, so a canary restarts nothing).
pub fn render(
    zt: &ZTunnel,
    target: &Target,
    resolved: &Resolved,
    platform: Platform,
) -> Result<Vec<Object>, RenderError> {
    let mut user: ZTunnelValues = zt.spec.values.clone().unwrap_or_default();
    let config = user.ztunnel.get_or_insert_default();
    config.revision = None;
    let annotations = config.pod_annotations.get_or_insert_default();
    let pinned = match &target.follows {
        Some(istio) => {
            annotations.insert(FOLLOWS_ISTIO_ANNOTATION.into(), istio.clone());
            None
        }
        None => {
            let name = target.revision.name_any();
            // The renderer names non-default revisions itself; name `default` too, so the
            // in-use index sees what every ztunnel pod is bound to.
            annotations.insert(REV.into(), name.clone());
            Some(name)
        }
    };
    let revision_values = target.revision.spec.values.as_ref();
    let values = mizzen_render::ztunnel_values(&ZTunnelValuesInput {
        values: Some(&user),
        platform,
        version: &resolved.version,
        revision_values,
    })?;
    let mesh = revision_values
        .map(MeshSettings::from_values)
        .transpose()?
        .unwrap_or_default();
    mizzen_render::render_ztunnel(&ZTunnelInput {
        owner: mizzen_render::Owner::ztunnel(NAME),
        namespace: zt.spec.namespace.clone(),
        version: resolved.version.clone(),
        values,
        images: resolved.images.clone(),
        platform,
        xds_address: target.address.clone(),
        ca_address: target.address.clone(),
        revision: pinned,
        istio_namespace: target.istio_namespace.clone(),
        mesh,
    })
}

/// A watch mapper: any change of another kind concerns the singleton.
fn singleton<T>(_: T) -> Option<ObjectRef<ZTunnel>> {
    Some(ObjectRef::new(NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_api::{
        IstioRevisionSpec, IstioSpec, IstioStatus, TargetReference, Values, ZTunnelSpec,
    };
    use mizzen_catalog::Catalog;
    use serde_json::{Value, json};

    fn istio(name: &str, namespace: &str, active: Option<&str>) -> Istio {
        let mut i = Istio::new(
            name,
            IstioSpec {
                namespace: namespace.into(),
                ..Default::default()
            },
        );
        i.status = active.map(|a| IstioStatus {
            active_revision_name: Some(a.into()),
            ..Default::default()
        });
        i
    }

    fn revision(name: &str, version: &str, values: Value) -> IstioRevision {
        IstioRevision::new(
            name,
            IstioRevisionSpec {
                version: version.into(),
                namespace: "mesh".into(),
                values: Some(serde_json::from_value::<Values>(values).unwrap()),
            },
        )
    }

    fn ztunnel(target: Option<(TargetKind, &str)>, values: Value) -> ZTunnel {
        ZTunnel::new(
            NAME,
            ZTunnelSpec {
                version: "v1.26.4".into(),
                namespace: "ztunnel".into(),
                values: Some(serde_json::from_value(values).unwrap()),
                target_ref: target.map(|(kind, name)| TargetReference {
                    kind,
                    name: name.into(),
                }),
            },
        )
    }

    #[test]
    fn binding_prefers_target_ref_then_revision_then_the_default_istio() {
        let istios = [istio("a", "x", None), istio("default", "y", None)];
        let pinned_by_value = ztunnel(None, json!({"ztunnel": {"revision": "r1"}}));
        assert_eq!(
            binding(&pinned_by_value, &istios),
            Ok(Binding::Pin("r1".into()))
        );
        let follow = ztunnel(
            Some((TargetKind::Istio, "a")),
            json!({"ztunnel": {"revision": "r1"}}),
        );
        assert_eq!(binding(&follow, &istios), Ok(Binding::Follow("a".into())));
        assert_eq!(pinned_revision(&follow), None, "targetRef wins");
        let pin = ztunnel(Some((TargetKind::IstioRevision, "r2")), json!({}));
        assert_eq!(binding(&pin, &[]), Ok(Binding::Pin("r2".into())));
        let plain = ztunnel(None, json!({}));
        assert_eq!(
            binding(&plain, &istios),
            Ok(Binding::Follow("default".into()))
        );
        assert_eq!(
            binding(&plain, &istios[..1]),
            Ok(Binding::Follow("a".into()))
        );
    }

    #[test]
    fn without_a_clear_control_plane_nothing_is_chosen() {
        let plain = ztunnel(None, json!({}));
        let none = binding(&plain, &[]).unwrap_err();
        assert_eq!(none.reason, "NoControlPlane");
        assert!(none.message.contains("targetRef"), "{}", none.message);
        let two = binding(&plain, &[istio("a", "x", None), istio("b", "y", None)]).unwrap_err();
        assert_eq!(two.reason, "AmbiguousControlPlane");
        assert!(
            two.message.contains("a, b") && two.message.contains("spec.targetRef"),
            "{}",
            two.message
        );
    }

    #[test]
    fn targets_resolve_or_are_not_found() {
        let istios = [istio("mesh", "mesh-ns", Some("mesh-v1-26-4")), {
            istio("fresh", "f", None)
        }];
        let revisions = [revision("mesh-v1-26-4", "v1.26.4", json!({}))];
        let t = target(&Binding::Follow("mesh".into()), &istios, &revisions).unwrap();
        assert_eq!(t.revision.name_any(), "mesh-v1-26-4");
        assert_eq!(t.address, "istiod-active-mesh.mesh-ns.svc:15012");
        assert_eq!(t.istio_namespace, "mesh-ns");
        assert_eq!(t.follows.as_deref(), Some("mesh"));

        let t = target(&Binding::Pin("mesh-v1-26-4".into()), &istios, &revisions).unwrap();
        assert_eq!(t.address, "istiod-mesh-v1-26-4.mesh.svc:15012");
        assert_eq!(t.follows, None);

        for (b, text) in [
            (Binding::Follow("gone".into()), "Istio gone not found"),
            (
                Binding::Follow("fresh".into()),
                "Istio fresh has no active IstioRevision yet",
            ),
            (Binding::Pin("r9".into()), "IstioRevision r9 not found"),
        ] {
            let r = target(&b, &istios, &revisions).unwrap_err();
            assert_eq!(r.reason, "TargetNotFound");
            assert!(r.message.starts_with(text), "{}", r.message);
        }
    }

    fn rendered(zt: &ZTunnel, target: &Target) -> Value {
        let resolved = Catalog::embedded()
            .unwrap()
            .resolve(&zt.spec.version)
            .unwrap();
        let objects = render(zt, target, &resolved, Platform::Kubernetes).unwrap();
        objects
            .into_iter()
            .find(|o| o.kind() == "DaemonSet")
            .unwrap()
            .into_json()
    }

    fn env(ds: &Value, name: &str) -> String {
        ds["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn following_pods_name_the_istio_not_the_revision() {
        let values = json!({
            "profile": "ambient",
            "global": {"variant": "distroless"},
            "meshConfig": {"trustDomain": "td.example",
                "defaultConfig": {"proxyMetadata": {"ISTIO_META_ENABLE_HBONE": "true"}}},
        });
        let istios = [istio("mesh", "mesh-ns", Some("mesh-v1-26-3"))];
        let zt = ztunnel(
            Some((TargetKind::Istio, "mesh")),
            json!({"ztunnel": {"revision": "stale", "podAnnotations": {"team": "a"}}}),
        );
        let before = target(
            &Binding::Follow("mesh".into()),
            &istios,
            &[revision("mesh-v1-26-3", "v1.26.3", values.clone())],
        )
        .unwrap();
        let ds = rendered(&zt, &before);
        let meta = &ds["spec"]["template"]["metadata"];
        assert_eq!(meta["annotations"][FOLLOWS_ISTIO_ANNOTATION], "mesh");
        assert_eq!(meta["annotations"]["team"], "a");
        assert!(meta["annotations"].get(REV).is_none(), "{meta}");
        assert_eq!(meta["labels"]["app"], "ztunnel");
        assert_eq!(
            env(&ds, "XDS_ADDRESS"),
            "istiod-active-mesh.mesh-ns.svc:15012"
        );
        assert_eq!(env(&ds, "CA_ADDRESS"), env(&ds, "XDS_ADDRESS"));
        assert_eq!(env(&ds, "TRUST_DOMAIN"), "td.example");
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][0]["image"],
            "docker.io/istio/ztunnel:1.26.4-distroless"
        );
        assert!(!ds.to_string().contains("mesh-v1-26-3"));

        // The Istio moves to a new revision of the same values: nothing in the DaemonSet changes.
        let istios = [istio("mesh", "mesh-ns", Some("mesh-v1-26-4"))];
        let after = target(
            &Binding::Follow("mesh".into()),
            &istios,
            &[revision("mesh-v1-26-4", "v1.26.4", values)],
        )
        .unwrap();
        assert_eq!(rendered(&zt, &after), ds);
    }

    #[test]
    fn pinned_pods_name_their_revision_even_default() {
        let revisions = [
            revision("canary", "v1.26.4", json!({})),
            revision("default", "v1.26.4", json!({})),
        ];
        for (name, xds) in [
            ("canary", "istiod-canary.mesh.svc:15012"),
            ("default", "istiod.mesh.svc:15012"),
        ] {
            let zt = ztunnel(Some((TargetKind::IstioRevision, name)), json!({}));
            let t = target(&Binding::Pin(name.into()), &[], &revisions).unwrap();
            let ds = rendered(&zt, &t);
            let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(annotations[REV], name);
            assert!(annotations.get(FOLLOWS_ISTIO_ANNOTATION).is_none());
            assert_eq!(env(&ds, "XDS_ADDRESS"), xds);
        }
    }

    #[test]
    fn daemonset_name_follows_resource_name() {
        assert_eq!(daemonset_name(&ztunnel(None, json!({}))), "ztunnel");
        assert_eq!(
            daemonset_name(&ztunnel(None, json!({"ztunnel": {"resourceName": "zt"}}))),
            "zt"
        );
    }
}
