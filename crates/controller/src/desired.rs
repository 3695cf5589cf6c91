//! What the operator applies for a spec (pure): the one place that turns an Istio, an
//! IstioRevision or an IstioCNI into the objects the reconcilers apply, shared with the
//! companion's `mizzen plan`, which compares them with the live objects before anything
//! changes. (ZTunnel's is `crate::ztunnel::render`, which needs the control plane it targets.)

use mizzen_api::{Istio, IstioCNI, IstioRevision, Values};
use mizzen_catalog::{Resolved, Version};
use mizzen_render::{CniInput, CniValuesInput, Object, Platform, RenderError, RevisionInput};
use serde_json::{Value, json};

use crate::istio::stable_host;

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
