//! The `IstioRevision` controller: renders and applies one istiod revision, reports `Ready`
//! only when the istiod rollout is complete, checks the data-plane dependencies, and computes
//! `InUse` (and what keeps the revision in use) from the in-use index.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use mizzen_api::condition_types::{DEPENDENCIES_HEALTHY, IN_USE, READY, RECONCILED};
use mizzen_api::{
    Condition, ConditionStatus, Conditions, IstioCNI, IstioRevision, IstioRevisionTag, Values,
    ZTunnel, derive_state,
};
use mizzen_catalog::Version;
use mizzen_render::{Object, Platform, helm_revision};

use crate::context::{Context, now, patch_status};
use crate::inuse::{ACTIVE_SINCE_ANNOTATION, RevisionInfo, Usage, enables_namespaces_by_default};
use crate::wiring::{Wiring, all_of};
use crate::{Error, owner_of};
use futures::future::BoxFuture;
use kube::runtime::Controller;

/// Every kind a revision may render; objects of these kinds that a render no longer produces
/// are pruned.
pub fn prunable_kinds() -> Vec<GroupVersionKind> {
    [
        ("", "v1", "ServiceAccount"),
        ("", "v1", "Service"),
        ("", "v1", "ConfigMap"),
        ("apps", "v1", "Deployment"),
        ("autoscaling", "v2", "HorizontalPodAutoscaler"),
        ("policy", "v1", "PodDisruptionBudget"),
        ("networking.k8s.io", "v1", "NetworkPolicy"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        (
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        ),
    ]
    .into_iter()
    .map(|(g, v, k)| GroupVersionKind::gvk(g, v, k))
    .collect()
}

/// The IstioRevision controller: revisions, their children, and everything that changes
/// their readiness, dependencies or usage.
pub fn controller(w: &Wiring) -> BoxFuture<'static, ()> {
    let own = &w.ctx.own;
    let store = own.revisions.store();
    let controller = Controller::for_shared_stream(own.revisions.changes(), store.clone())
        .reconcile_on(w.ctx.children.owned_by(store.clone()))
        .watches_shared_stream(own.cnis.changes(), all_of(store.clone()))
        .watches_shared_stream(own.ztunnels.changes(), all_of(store.clone()))
        .watches_shared_stream(own.tags.changes(), all_of(store.clone()))
        .reconcile_on(w.usage_changes_of(store, usage_fingerprints));
    w.start("IstioRevision", controller, reconcile)
}

/// Reconciles one IstioRevision.
pub async fn reconcile(rev: Arc<IstioRevision>, ctx: Arc<Context>) -> Result<Action, Error> {
    if rev.metadata.deletion_timestamp.is_some() {
        return finalize(&rev, &ctx).await;
    }
    protect(&rev, &ctx).await?;
    let applied = apply(&rev, &ctx).await;
    let now = now();
    let generation = rev.meta().generation;
    let mut status = rev.status.clone().unwrap_or_default();
    let mut set = |mut c: Condition| {
        c.observed_generation = generation;
        status.conditions.set_condition(c, &now);
    };
    let mut requeue = None;
    match &applied {
        Ok(()) => set(Condition::healthy(RECONCILED, "")),
        Err(Failure::Invalid(reason, message)) => {
            let previous = rev
                .status
                .as_ref()
                .and_then(|s| s.conditions.get_condition(RECONCILED))
                .and_then(|c| c.message.as_deref());
            if previous != Some(message.as_str()) {
                ctx.event(rev.as_ref(), EventType::Warning, reason, message.clone())
                    .await;
            }
            set(Condition::new(
                RECONCILED,
                ConditionStatus::False,
                reason,
                message.clone(),
            ));
        }
        Err(Failure::Transient(e)) => {
            set(Condition::new(
                RECONCILED,
                ConditionStatus::False,
                "ReconcileError",
                e.to_string(),
            ));
            requeue = Some(Duration::from_secs(5));
        }
    }
    set(ready(&rev, &ctx).await);
    set(dependencies(&rev, &ctx).await);
    let users = usage(&ctx).await.map(|u| u.users_of(&rev.name_any()));
    set(match &users {
        Ok(u) if !u.is_empty() => Condition::new(
            IN_USE,
            ConditionStatus::True,
            "ReferencedByWorkloads",
            format!("in use by {}", u.join(", ")),
        ),
        Ok(_) => Condition::new(
            IN_USE,
            ConditionStatus::False,
            "NotReferencedByAnything",
            "Not referenced by any pod, namespace, tag or ambient workload",
        ),
        Err(e) => Condition::new(
            IN_USE,
            ConditionStatus::Unknown,
            "UsageCheckFailed",
            e.to_string(),
        ),
    });
    status.in_use_by = users.unwrap_or_default();
    status.state = Some(derive_state(
        &status.conditions,
        &[RECONCILED, READY, DEPENDENCIES_HEALTHY],
    ));
    status.observed_generation = generation;
    status.type_ = Some(
        if is_remote(rev.spec.values.as_ref()) {
            "Remote"
        } else {
            "Local"
        }
        .into(),
    );
    let old_in_use = rev
        .status
        .as_ref()
        .and_then(|s| s.conditions.get_condition(IN_USE))
        .map(|c| c.status);
    let new_in_use = status.conditions.get_condition(IN_USE).map(|c| c.status);
    if old_in_use.is_some()
        && old_in_use != new_in_use
        && new_in_use == Some(ConditionStatus::False)
    {
        ctx.event(
            rev.as_ref(),
            EventType::Normal,
            "NoLongerInUse",
            "nothing uses this revision any more".into(),
        )
        .await;
    }
    patch_status(&ctx.client, rev.as_ref(), rev.status.as_ref(), &status).await?;
    if let Err(Failure::Transient(e)) = applied {
        return Err(e);
    }
    // No periodic resync: every input has a watch (children of every rendered kind, the
    // IstioCNI, ZTunnel and tags, namespaces and pods through the usage fingerprints).
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The finalizer that keeps a revision (and so its istiod) while something uses it.
pub const IN_USE_FINALIZER: &str = "mizzen.io/in-use-protection";
/// The field manager of that finalizer (not `mizzen`, whose applies of the whole revision
/// would otherwise drop it).
const PROTECTION_MANAGER: &str = "mizzen-in-use-protection";

/// Applies the finalizer's entry, as its own field manager; `keep` false removes it.
async fn set_finalizer(rev: &IstioRevision, ctx: &Context, keep: bool) -> Result<(), Error> {
    // Applying without the entry gives up this manager's ownership of it, which removes it.
    let mut patch = serde_json::json!({
        "apiVersion": "sailoperator.io/v1",
        "kind": "IstioRevision",
        "metadata": { "name": rev.name_any() },
    });
    if keep {
        patch["metadata"]["finalizers"] = serde_json::json!([IN_USE_FINALIZER]);
    }
    Api::<IstioRevision>::all(ctx.client.clone())
        .patch(
            &rev.name_any(),
            &kube::api::PatchParams::apply(PROTECTION_MANAGER).force(),
            &kube::api::Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Whether the IstioRevision CRD is gone or being deleted.
async fn crd_deleted(ctx: &Context) -> Result<bool, Error> {
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(ctx.client.clone());
    Ok(crds
        .get_opt("istiorevisions.sailoperator.io")
        .await?
        .is_none_or(|c| c.metadata.deletion_timestamp.is_some()))
}

/// Adds the in-use finalizer to a revision that lacks it.
async fn protect(rev: &IstioRevision, ctx: &Context) -> Result<(), Error> {
    if rev.finalizers().iter().any(|f| f == IN_USE_FINALIZER) {
        return Ok(());
    }
    set_finalizer(rev, ctx, true).await
}

/// A revision being deleted: it goes once nothing uses it; until then its istiod keeps
/// running and the status and a Warning Event name what holds it.
async fn finalize(rev: &IstioRevision, ctx: &Context) -> Result<Action, Error> {
    if !rev.finalizers().iter().any(|f| f == IN_USE_FINALIZER) {
        return Ok(Action::await_change());
    }
    // Removing the IstioRevision CRD (uninstalling mizzen) deletes every revision: that is
    // the user's explicit intent, and blocking it would hang the uninstall.
    let crd_deleted = crd_deleted(ctx).await?;
    let users = if crd_deleted {
        Vec::new()
    } else {
        usage(ctx).await?.workload_users_of(&rev.name_any())
    };
    if users.is_empty() {
        tracing::info!(
            revision = rev.name_any(),
            crd_deleted,
            "nothing uses the revision (or its CRD is being deleted): letting the deletion proceed"
        );
        return set_finalizer(rev, ctx, false)
            .await
            .map(|()| Action::await_change());
    }
    let message = format!(
        "deletion waits until nothing uses this revision; in use by {}",
        users.join(", ")
    );
    let mut status = rev.status.clone().unwrap_or_default();
    let old = status
        .conditions
        .get_condition(RECONCILED)
        .and_then(|c| c.message.clone());
    if old.as_deref() != Some(message.as_str()) {
        ctx.event(rev, EventType::Warning, "DeletionBlocked", message.clone())
            .await;
    }
    let mut c = Condition::new(
        RECONCILED,
        ConditionStatus::False,
        "DeletionBlocked",
        message,
    );
    c.observed_generation = rev.meta().generation;
    status.conditions.set_condition(c, &now());
    status.in_use_by = users;
    status.state = Some(derive_state(
        &status.conditions,
        &[RECONCILED, READY, DEPENDENCIES_HEALTHY],
    ));
    patch_status(&ctx.client, rev, rev.status.as_ref(), &status).await?;
    // Usage changes (pods, namespaces, tags) bring the revision back here.
    Ok(Action::await_change())
}

/// Why applying did not happen.
pub(crate) enum Failure {
    /// The spec cannot be acted on until it (or the cluster) changes: reason and message.
    Invalid(&'static str, String),
    /// A failure worth retrying.
    Transient(Error),
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        match e.into() {
            e if e.is_permanent() => Failure::Invalid("InvalidValues", e.to_string()),
            e => Failure::Transient(e),
        }
    }
}

async fn apply(rev: &IstioRevision, ctx: &Context) -> Result<(), Failure> {
    let name = rev.name_any();
    let namespace = &rev.spec.namespace;
    ctx.namespace_ready(namespace)
        .map_err(|m| Failure::Invalid("NamespaceNotFound", m))?;
    let resolved = ctx
        .catalog
        .resolve(&rev.spec.version)
        .map_err(|e| Failure::Invalid("VersionNotSupported", e.to_string()))?;
    check_tag_clash(rev, ctx).await?;
    let owner = mizzen_render::Owner::istio_revision(&name);
    let objects = crate::desired::revision_objects(rev, &resolved, ctx.platform)
        .map_err(|e| Failure::Invalid("InvalidValues", e.to_string()))?;
    let inventory = owner.label();
    ctx.applier
        .apply(
            &owner_of(rev),
            (inventory.0, &inventory.1),
            json_of(objects),
            &prunable_kinds(),
        )
        .await?;
    // After istiod's objects: a version change updates about 20 CRDs, and istiod's new pods
    // take far longer to start than these writes, so nothing waits on them (docs/scale.md).
    apply_crds(ctx, &owner, &resolved.version).await?;
    Ok(())
}

fn json_of(objects: Vec<Object>) -> Vec<serde_json::Value> {
    objects.into_iter().map(Object::into_json).collect()
}

/// Istio's CRDs are cluster-wide and shared: they are applied without an owner (so pruning a
/// revision never deletes users' configuration), and only moved forward: a revision older
/// than the installed CRDs leaves them alone.
async fn apply_crds(
    ctx: &Context,
    owner: &mizzen_render::Owner,
    version: &Version,
) -> Result<(), Failure> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let installed = ctx
        .children
        .get::<CustomResourceDefinition>(&ctx.client, None, "virtualservices.networking.istio.io")
        .await?
        .and_then(|c| {
            c.labels()
                .get(mizzen_render::VERSION_LABEL)
                .and_then(|v| format!("v{v}").parse::<Version>().ok())
        });
    if installed.is_some_and(|i| &i > version) {
        return Ok(());
    }
    let objects = crate::desired::istio_crds(owner, version)
        .map_err(|e| Failure::Invalid("InvalidValues", e.to_string()))?;
    ctx.applier.apply_unowned(objects).await?;
    Ok(())
}

/// Upstream's name-clash rule: an IstioRevisionTag of the same name that is older (or, at the
/// same age, has the smaller UID) wins.
async fn check_tag_clash(rev: &IstioRevision, ctx: &Context) -> Result<(), Failure> {
    if let Some(tag) = ctx.own.tags.get(&ctx.client, &rev.name_any()).await?
        && takes_precedence(tag.meta(), rev.meta())
    {
        return Err(Failure::Invalid(
            "NameAlreadyExists",
            format!(
                "an IstioRevisionTag named {} exists and is older; rename one of them",
                rev.name_any()
            ),
        ));
    }
    Ok(())
}

/// Whether object `a` wins a name clash against `b`.
pub fn takes_precedence(
    a: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    b: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    (a.creation_timestamp.as_ref().map(|t| t.0), a.uid.as_deref())
        < (b.creation_timestamp.as_ref().map(|t| t.0), b.uid.as_deref())
}

/// The Istio that owns this revision, if any.
pub(crate) fn istio_owner(rev: &IstioRevision) -> Option<String> {
    rev.owner_references()
        .iter()
        .find(|o| o.kind == "Istio")
        .map(|o| o.name.clone())
}

/// Whether a revision's values describe a remote control plane (no istiod in this cluster).
pub(crate) fn is_remote(values: Option<&Values>) -> bool {
    values.and_then(|v| v.profile.as_deref()) == Some("remote")
}

/// `Ready`: the istiod Deployment has rolled out completely (observed, every replica updated
/// and available).
async fn ready(rev: &IstioRevision, ctx: &Context) -> Condition {
    let name = match helm_revision(&rev.name_any()) {
        "" => "istiod".to_string(),
        r => format!("istiod-{r}"),
    };
    match ctx
        .children
        .get::<Deployment>(&ctx.client, Some(&rev.spec.namespace), &name)
        .await
    {
        Ok(Some(d)) => {
            ctx.metrics
                .rollout("IstioRevision", &rev.name_any(), deployment_progress(&d));
            match rollout_state(&d) {
                Ok(()) => Condition::healthy(READY, ""),
                Err(m) => Condition::new(READY, ConditionStatus::False, "IstiodNotReady", m),
            }
        }
        Ok(None) => Condition::new(
            READY,
            ConditionStatus::False,
            "IstiodNotReady",
            "istiod Deployment not found",
        ),
        Err(e) => Condition::new(
            READY,
            ConditionStatus::Unknown,
            "ReadinessCheckFailed",
            e.to_string(),
        ),
    }
}

/// Replicas updated, available and wanted of istiod's Deployment (for the rollout metrics).
fn deployment_progress(d: &Deployment) -> crate::metrics::Rollout {
    let s = d.status.clone().unwrap_or_default();
    crate::metrics::Rollout {
        version: d
            .labels()
            .get(mizzen_render::VERSION_LABEL)
            .map(|v| format!("v{v}"))
            .unwrap_or_default(),
        updated: s.updated_replicas.unwrap_or(0),
        available: s.available_replicas.unwrap_or(0),
        desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
    }
}

/// Whether a Deployment's rollout is complete; otherwise what it waits for.
pub fn rollout_state(d: &Deployment) -> Result<(), String> {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    if s.observed_generation.unwrap_or(0) < generation {
        return Err("the istiod Deployment change has not been observed yet".into());
    }
    if want == 0 {
        return Err("istiod Deployment is scaled to zero replicas".into());
    }
    let updated = s.updated_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    let total = s.replicas.unwrap_or(0);
    if updated < want || total > updated || available < want {
        return Err(format!(
            "istiod rollout in progress: {updated}/{want} updated, {available}/{want} available"
        ));
    }
    Ok(())
}

/// `DependenciesHealthy`: the IstioCNI and ZTunnel named `default` this revision needs are
/// Healthy.
async fn dependencies(rev: &IstioRevision, ctx: &Context) -> Condition {
    let values = rev.spec.values.clone().unwrap_or_default();
    let ambient = values.profile.as_deref() == Some("ambient")
        || values
            .pilot
            .as_ref()
            .and_then(|p| p.env.as_ref())
            .and_then(|e| e.get("PILOT_ENABLE_AMBIENT"))
            .is_some_and(|v| v == "true");
    let cni_enabled = values
        .pilot
        .as_ref()
        .and_then(|p| p.cni.as_ref())
        .and_then(|c| c.enabled);
    let needs_cni = ambient
        || cni_enabled == Some(true)
        || (ctx.platform == Platform::OpenShift && cni_enabled != Some(false));
    if needs_cni
        && let Err(c) = dependency(ctx, &ctx.own.cnis, |c: &IstioCNI| {
            c.status.as_ref()?.state.clone()
        })
        .await
    {
        return c;
    }
    if ambient
        && let Err(c) = dependency(ctx, &ctx.own.ztunnels, |z: &ZTunnel| {
            z.status.as_ref()?.state.clone()
        })
        .await
    {
        return c;
    }
    Condition::healthy(DEPENDENCIES_HEALTHY, "")
}

/// Whether the singleton `default` of kind `K` exists and is Healthy; otherwise the
/// `DependenciesHealthy` condition saying why (reasons `<Kind>NotFound`, `<Kind>NotHealthy`).
async fn dependency<K>(
    ctx: &Context,
    shared: &crate::own::Shared<K>,
    state: impl Fn(&K) -> Option<String>,
) -> Result<(), Condition>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&());
    let unhealthy = |reason: String, message: String| {
        Condition::new(
            DEPENDENCIES_HEALTHY,
            ConditionStatus::False,
            &reason,
            message,
        )
    };
    match shared.get(&ctx.client, "default").await {
        Ok(None) => Err(unhealthy(
            format!("{kind}NotFound"),
            format!("{kind} default not found"),
        )),
        Ok(Some(obj)) => match state(&obj) {
            Some(s) if s == "Healthy" => Ok(()),
            s => Err(unhealthy(
                format!("{kind}NotHealthy"),
                format!(
                    "{kind} default is {}",
                    s.as_deref().unwrap_or("not yet reconciled")
                ),
            )),
        },
        Err(e) => Err(Condition::new(
            DEPENDENCIES_HEALTHY,
            ConditionStatus::Unknown,
            "DependencyCheckFailed",
            e.to_string(),
        )),
    }
}

/// The namespaces and the non-terminal pods that can use a revision, from the operator's index.
pub(crate) fn cached_workloads(ctx: &Context) -> Usage {
    ctx.workloads.usage()
}

/// [`cached_workloads`] with the given tags and revisions.
fn usage_with<'a>(
    ctx: &Context,
    tags: impl IntoIterator<Item = &'a IstioRevisionTag>,
    revisions: impl IntoIterator<Item = &'a IstioRevision>,
) -> Usage {
    let tags = tags
        .into_iter()
        .filter_map(|t| {
            let target = t.status.as_ref()?.istio_revision.clone();
            Some((t.name_any(), target)).filter(|(_, r)| !r.is_empty())
        })
        .collect();
    let revisions = revisions
        .into_iter()
        .map(|r| RevisionInfo {
            istio: istio_owner(r),
            active_since: r
                .annotations()
                .get(ACTIVE_SINCE_ANNOTATION)
                .and_then(|t| t.parse().ok()),
            enable_namespaces_by_default: enables_namespaces_by_default(r.spec.values.as_ref()),
            name: r.name_any(),
        })
        .collect();
    Usage {
        tags,
        revisions,
        ..cached_workloads(ctx)
    }
}

/// A snapshot of what can use revisions, from the caches.
async fn usage(ctx: &Context) -> Result<Usage, kube::Error> {
    // Without the IstioRevisionTag kind (its CRD removed) there are no tags.
    let tags = match ctx.own.tags.list(&ctx.client).await {
        Ok(tags) => tags,
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => return Err(e),
    };
    let revisions = ctx.own.revisions.list(&ctx.client).await?;
    Ok(usage_with(
        ctx,
        tags.iter().map(AsRef::as_ref),
        revisions.iter().map(AsRef::as_ref),
    ))
}

/// What a revision's reconcile reads from namespaces and pods, as a fingerprint per revision
/// (its users and whether its namespace is ready), from the caches only: a namespace or pod
/// change reconciles just the revisions whose fingerprint it changes.
fn usage_fingerprints(ctx: &Context, revisions: &[Arc<IstioRevision>]) -> Vec<u64> {
    let tags = ctx.own.tags.store().state();
    let usage = usage_with(
        ctx,
        tags.iter().map(AsRef::as_ref),
        revisions.iter().map(AsRef::as_ref),
    );
    revisions
        .iter()
        .map(|r| {
            crate::wiring::fingerprint(&(
                usage.users_of(&r.name_any()),
                ctx.namespace_ready(&r.spec.namespace).is_ok(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ready_only_when_the_rollout_is_complete() {
        let done = deployment(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}),
        );
        assert!(rollout_state(&done).is_ok());
        let unobserved = deployment(
            json!({"metadata": {"generation": 3}, "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}),
        );
        assert!(rollout_state(&unobserved).is_err());
        let surging = deployment(
            json!({"metadata": {"generation": 3}, "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1}}),
        );
        assert!(rollout_state(&surging).unwrap_err().contains("in progress"));
        let zero = deployment(
            json!({"metadata": {"generation": 1}, "spec": {"replicas": 0, "selector": {}, "template": {}},
            "status": {"observedGeneration": 1}}),
        );
        assert!(rollout_state(&zero).unwrap_err().contains("zero"));
    }
}
