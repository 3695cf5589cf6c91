//! The values pipeline: what `spec.values` of an `IstioRevision`, `IstioCNI` or `ZTunnel`
//! amounts to once defaults, profiles and platform settings are applied.
//!
//! Layers, each merged onto the previous one (maps merge recursively, scalars and lists
//! replace, `null` deletes a key):
//!
//! 1. built-in defaults of the component at the Istio minor;
//! 2. profiles: always `default`, then the user's profile, or when there is none the
//!    platform's default profile (`openshift` on OpenShift); ztunnel always uses `ambient`;
//! 3. platform settings (OpenShift: CNI directories, multus, SELinux `spc_t`, …), with
//!    `global.platform` set when the user did not set it;
//! 4. for ztunnel, the `global` values of the revision it follows;
//! 5. the user's values;
//! 6. for a revision, overrides: `revision` (empty for the revision named `default`),
//!    `global.istioNamespace` = the namespace, and no `defaultRevision`.
//!
//! The renderers complete the values they are given the same way (steps 1–3, with the
//! profile the values name), so a hand-written `IstioRevision` renders like a computed one.
//! Values mizzen keeps but the API types do not name (the `other` maps) pass through.

mod layers;

pub(crate) use layers::{
    CNI_GRACE_SECONDS, CNI_LOG_LEVEL, CNI_MAX_UNAVAILABLE, ISTIOD_AUTOSCALE_MAX,
    ISTIOD_AUTOSCALE_MIN, ISTIOD_CPU_UTILIZATION, ISTIOD_REPLICAS, LOG_LEVEL,
    ZTUNNEL_GRACE_SECONDS, ZTUNNEL_LOG_LEVEL, ZTUNNEL_NAME, at_least,
};

use mizzen_api::values::{CniValues, Values, ZTunnelValues};
use mizzen_catalog::Version;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::json::{get, merge, set};
use crate::{Platform, RenderError, names};

/// The component whose values are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Component {
    Istiod,
    Cni,
    ZTunnel,
}

/// Inputs of [`revision_values`]: what an `Istio` says about its revision.
#[derive(Debug, Clone, Copy)]
pub struct RevisionValuesInput<'a> {
    /// The Istio's `spec.values`.
    pub values: Option<&'a Values>,
    /// The Istio's `spec.profile`.
    pub profile: Option<&'a str>,
    /// The platform the operator runs on.
    pub platform: Platform,
    /// The IstioRevision's name (`default`, `default-v1-27-3`, …).
    pub revision: &'a str,
    /// The control-plane namespace (`spec.namespace`).
    pub namespace: &'a str,
    /// The resolved Istio version.
    pub version: &'a Version,
}

/// The `spec.values` of an IstioRevision computed from its Istio (all layers, see the
/// module documentation).
pub fn revision_values(input: &RevisionValuesInput<'_>) -> Result<Values, RenderError> {
    let user = to_json(&input.values)?;
    let chain = profile_chain(input.profile, input.platform);
    let mut tree = layered(
        Component::Istiod,
        input.version,
        &chain,
        input.platform,
        &user,
    )?;
    merge(&mut tree, &user);
    set(
        &mut tree,
        &["revision"],
        names::helm_revision(input.revision).into(),
    );
    set(
        &mut tree,
        &["global", "istioNamespace"],
        input.namespace.into(),
    );
    if let Some(map) = tree.as_object_mut() {
        map.remove("defaultRevision");
    }
    from_json(tree, "values")
}

/// Inputs of [`cni_values`].
#[derive(Debug, Clone, Copy)]
pub struct CniValuesInput<'a> {
    /// The IstioCNI's `spec.values`.
    pub values: Option<&'a CniValues>,
    /// The IstioCNI's `spec.profile`.
    pub profile: Option<&'a str>,
    /// The platform the operator runs on.
    pub platform: Platform,
    /// The resolved Istio version.
    pub version: &'a Version,
}

/// The effective values of an IstioCNI.
pub fn cni_values(input: &CniValuesInput<'_>) -> Result<CniValues, RenderError> {
    let user = to_json(&input.values)?;
    let chain = profile_chain(input.profile, input.platform);
    let mut tree = layered(Component::Cni, input.version, &chain, input.platform, &user)?;
    merge(&mut tree, &user);
    from_json(tree, "values")
}

/// Inputs of [`ztunnel_values`].
#[derive(Debug, Clone, Copy)]
pub struct ZTunnelValuesInput<'a> {
    /// The ZTunnel's `spec.values`.
    pub values: Option<&'a ZTunnelValues>,
    /// The platform the operator runs on.
    pub platform: Platform,
    /// The resolved Istio version.
    pub version: &'a Version,
    /// The values of the IstioRevision ztunnel follows, if any: its `global` section
    /// (hub, tag, variant, pull secrets, …) becomes a layer below the user's values.
    pub revision_values: Option<&'a Values>,
}

/// The effective values of a ZTunnel (profiles `default` and `ambient`, always).
pub fn ztunnel_values(input: &ZTunnelValuesInput<'_>) -> Result<ZTunnelValues, RenderError> {
    let user = to_json(&input.values)?;
    let mut tree = layered(
        Component::ZTunnel,
        input.version,
        &["default", "ambient"],
        input.platform,
        &user,
    )?;
    if let Some(global) = input.revision_values.and_then(|v| v.global.as_ref()) {
        let global = to_json(global)?;
        merge(&mut tree, &serde_json::json!({ "global": global }));
    }
    merge(&mut tree, &user);
    from_json(tree, "values")
}

/// Completes values given to a renderer: defaults, the profile the values name, platform
/// settings, then the values themselves.
pub(crate) fn complete<T>(
    component: Component,
    version: &Version,
    platform: Platform,
    values: &T,
) -> Result<T, RenderError>
where
    T: Serialize + DeserializeOwned,
{
    let given = to_json(values)?;
    let profiles: Vec<&str> = match component {
        Component::ZTunnel => vec!["default", "ambient"],
        _ => get(&given, &["profile"])
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .into_iter()
            .collect(),
    };
    let mut tree = layered(component, version, &profiles, platform, &given)?;
    merge(&mut tree, &given);
    from_json(tree, "values")
}

/// `default`, then the user's profile, or else the platform's default profile.
fn profile_chain(profile: Option<&str>, platform: Platform) -> Vec<&str> {
    let chosen = profile
        .filter(|p| !p.is_empty() && *p != "default")
        .or(platform.default_profile());
    std::iter::once("default").chain(chosen).collect()
}

/// Steps 1–3: defaults, profiles and platform settings. The platform is the one `user`
/// names in `global.platform`, else the one the profiles name, else `platform`'s.
fn layered(
    component: Component,
    version: &Version,
    profiles: &[&str],
    platform: Platform,
    user: &Value,
) -> Result<Value, RenderError> {
    let mut tree = layers::defaults(component, version);
    for profile in profiles {
        merge(&mut tree, &layers::profile(component, profile, version)?);
    }
    let named = |v: &Value| {
        get(v, &["global", "platform"])
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
    };
    let platform_name = named(user)
        .or_else(|| named(&tree))
        .or_else(|| platform.value_name().map(str::to_owned));
    if let Some(name) = platform_name {
        if named(&tree).is_none() {
            set(&mut tree, &["global", "platform"], name.clone().into());
        }
        merge(&mut tree, &layers::platform(component, &name, version));
    }
    // An older minor's behaviour, below the user's own values (as the charts' profiles).
    if component == Component::Istiod
        && let Some(wanted) = get(user, &["compatibilityVersion"])
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
    {
        merge(&mut tree, &layers::compatibility(version, wanted)?);
    }
    Ok(tree)
}

fn to_json<T: Serialize>(values: &T) -> Result<Value, RenderError> {
    let value = serde_json::to_value(values).map_err(|e| RenderError::serialize("values", e))?;
    Ok(if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    })
}

fn from_json<T: DeserializeOwned>(tree: Value, path: &str) -> Result<T, RenderError> {
    serde_json::from_value(tree).map_err(|e| RenderError::value(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_chains() {
        assert_eq!(profile_chain(None, Platform::Kubernetes), ["default"]);
        assert_eq!(
            profile_chain(None, Platform::OpenShift),
            ["default", "openshift"]
        );
        assert_eq!(
            profile_chain(Some("ambient"), Platform::OpenShift),
            ["default", "ambient"]
        );
        assert_eq!(
            profile_chain(Some("default"), Platform::OpenShift),
            ["default", "openshift"]
        );
        assert_eq!(profile_chain(Some(""), Platform::Kubernetes), ["default"]);
    }
}
