//! What the operator applies for a spec (pure): the one place that turns an Istio, an
//! IstioRevision or an IstioCNI into the objects the reconcilers apply, shared with the
//! companion's `mizzen plan`, which compares them with the live objects before anything
//! changes. (ZTunnel's is `crate::ztunnel::render`, which needs the control plane it targets.)

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use mizzen_api::{Istio, IstioCNI, IstioRevision, IstioRevisionSpec, Values};
use mizzen_catalog::{Resolved, Version};
use mizzen_render::{CniInput, CniValuesInput, Object, Platform, RenderError, RevisionInput};
use serde_json::{Value, json};

use crate::istio::{stable_host, stable_service_name};

/// The `spec.values` of the revision `revision` (at `version`) of `istio`: its values with the
/// profile's and the platform's defaults.
pub fn revision_values(
    istio: &Istio,
    revision: &str,
    version: &Version,
    platform: Platform,
) -> Result<Values, RenderError> {
    mizzen_render::revision_values(&mizzen_render::RevisionValuesInput {
        values: istio.spec.values.as_ref(),
        profile: istio.spec.profile.as_deref(),
        platform,
        revision,
        namespace: &istio.spec.namespace,
        version,
    })
}

/// The IstioRevision named `name` at `version` that `istio` owns: the spec the Istio
/// controller writes (values with the profile's and the platform's defaults) and the owner
/// reference it carries.
pub fn revision_of(
    istio: &Istio,
    name: &str,
    version: &Version,
    platform: Platform,
) -> Result<IstioRevision, RenderError> {
    let mut rev = IstioRevision::new(
        name,
        IstioRevisionSpec {
            version: version.to_string(),
            namespace: istio.spec.namespace.clone(),
            values: Some(revision_values(istio, name, version, platform)?),
        },
    );
    rev.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "sailoperator.io/v1".into(),
        kind: "Istio".into(),
        name: istio.name_any(),
        uid: istio.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    Ok(rev)
}

/// The Service that follows the active revision `revision` of `istio` (same ports as
/// istiod's own Service; docs/DESIGN.md decision 2).
pub fn stable_service(istio: &Istio, revision: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": stable_service_name(&istio.name_any()),
            "namespace": istio.spec.namespace,
            "labels": {
                "app": "istiod",
                "istio.io/rev": revision,
                (mizzen_render::MANAGED_BY_LABEL): mizzen_render::MANAGED_BY,
            },
        },
        "spec": {
            "selector": { "app": "istiod", "istio.io/rev": revision },
            "ports": [
                { "name": "grpc-xds", "port": 15010, "protocol": "TCP" },
                { "name": "https-dns", "port": 15012, "protocol": "TCP" },
                { "name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP" },
                { "name": "http-monitoring", "port": 15014, "protocol": "TCP" },
            ],
        },
    })
}

/// Istio's CRDs at `version`, as applied: shared by every revision, so without the inventory
/// label of `owner` (pruning a revision never deletes users' configuration).
pub fn istio_crds(
    owner: &mizzen_render::Owner,
    version: &Version,
) -> Result<Vec<Value>, RenderError> {
    Ok(mizzen_render::render_istio_crds(owner, version)?
        .into_iter()
        .map(Object::into_json)
        .map(|mut o| {
            if let Some(l) = o["metadata"]["labels"].as_object_mut() {
                l.remove(mizzen_render::INVENTORY_LABEL);
            }
            o
        })
        .collect())
}

/// The objects of the IstioRevisionTag `tag` that points at revision `rev`: the tag's
/// webhooks and Service, and for the tag named `default` the default validator and the
/// reader account.
pub fn tag_objects(
    tag: &str,
    rev: &IstioRevision,
    resolved: &Resolved,
) -> Result<Vec<Object>, RenderError> {
    let revision = rev.name_any();
    let namespace = &rev.spec.namespace;
    let owner = mizzen_render::Owner::istio_revision_tag(tag);
    let values = rev.spec.values.clone().unwrap_or_default();
    let mut objects = mizzen_render::render_tag(
        &owner,
        tag,
        &revision,
        namespace,
        &resolved.version,
        &values,
    )?;
    if tag == crate::tag::DEFAULT_TAG {
        objects.extend(mizzen_render::render_base(
            &owner,
            &revision,
            namespace,
            &resolved.version,
        )?);
    }
    Ok(objects)
}

/// The objects of revision `rev` at its resolved version: istiod and everything it needs, and
/// for the revision named `default` the default validator and the reader account.
pub fn revision_objects(
    rev: &IstioRevision,
    resolved: &Resolved,
    platform: Platform,
) -> Result<Vec<Object>, RenderError> {
    let name = kube::ResourceExt::name_any(rev);
    let namespace = &rev.spec.namespace;
    let owner = mizzen_render::Owner::istio_revision(&name);
    let custom_hosts = crate::revision::istio_owner(rev)
        .map(|istio| vec![stable_host(&istio, namespace)])
        .unwrap_or_default();
    let mut objects = mizzen_render::render_revision(&RevisionInput {
        owner: owner.clone(),
        revision: name.clone(),
        namespace: namespace.clone(),
        version: resolved.version.clone(),
        values: rev.spec.values.clone().unwrap_or_default(),
        images: resolved.images.clone(),
        platform,
        custom_hosts,
    })?;
    // The default validator and the reader account. An IstioRevisionTag named `default`
    // renders them too, but never at the same time: a tag and a revision of the same name
    // clash, and the loser (see `check_tag_clash` and the tag controller) renders nothing.
    if name == "default" {
        objects.extend(mizzen_render::render_base(
            &owner,
            &name,
            namespace,
            &resolved.version,
        )?);
    }
    Ok(objects)
}

/// The objects of istio-cni for `cni` at its resolved version.
pub fn cni_objects(
    cni: &IstioCNI,
    resolved: &Resolved,
    platform: Platform,
) -> Result<Vec<Object>, RenderError> {
    let values = mizzen_render::cni_values(&CniValuesInput {
        values: cni.spec.values.as_ref(),
        profile: cni.spec.profile.as_deref(),
        platform,
        version: &resolved.version,
    })?;
    mizzen_render::render_cni(&CniInput {
        owner: mizzen_render::Owner::istio_cni(crate::cni::NAME),
        namespace: cni.spec.namespace.clone(),
        version: resolved.version.clone(),
        values,
        images: resolved.images.clone(),
        platform,
    })
}

/// A data-plane component's objects as applied: with `drain_waves` (a `DrainWaves`
/// RolloutPolicy drives it, `crate::rollout`) its DaemonSet is set to
/// `updateStrategy: OnDelete`, so that mizzen replaces the pods node by node.
pub fn with_rollout(objects: Vec<Object>, drain_waves: bool) -> Vec<Value> {
    objects
        .into_iter()
        .map(Object::into_json)
        .map(|mut o| {
            if drain_waves && o["kind"] == "DaemonSet" {
                o["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
            }
            o
        })
        .collect()
}
