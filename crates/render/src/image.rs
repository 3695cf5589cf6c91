//! Image resolution: the catalog's image of a component, overridden by values.

use mizzen_api::values::GlobalValues;
use mizzen_catalog::ImageRef;

/// The image values of one component (`pilot.*`, `cni.*`, `ztunnel.*`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ImageValues<'a> {
    /// Image name, or a full reference (contains `/`) used verbatim.
    pub image: Option<&'a str>,
    pub hub: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub variant: Option<&'a str>,
}

/// The final image reference of a component.
///
/// - A component `image` containing `/` is used verbatim.
/// - Otherwise the catalog image is overridden part by part: hub from the component or
///   `global.hub`, name from the component `image`, tag from the component or `global.tag`,
///   and the variant suffix from the component or `global.variant`. Empty strings count as
///   unset.
/// - A full reference from the catalog (e.g. a digest) stays as it is, and takes no variant.
pub(crate) fn resolve(
    catalog: &ImageRef,
    component: ImageValues<'_>,
    global: Option<&GlobalValues>,
) -> String {
    let pick = |own: Option<&str>, global: Option<&String>| -> Option<String> {
        non_empty(own)
            .map(str::to_owned)
            .or_else(|| global.filter(|g| !g.is_empty()).cloned())
    };
    let hub = pick(component.hub, global.and_then(|g| g.hub.as_ref()));
    let tag = pick(component.tag, global.and_then(|g| g.tag.as_ref()));
    let variant = pick(component.variant, global.and_then(|g| g.variant.as_ref()));
    catalog
        .with_overrides(hub.as_deref(), component.image, tag.as_deref())
        .render(variant.as_deref())
}

/// The pull policy: the component's, else `global.imagePullPolicy`; empty counts as unset.
pub(crate) fn pull_policy(own: Option<&str>, global: Option<&GlobalValues>) -> Option<String> {
    non_empty(own)
        .or_else(|| non_empty(global.and_then(|g| g.image_pull_policy.as_deref())))
        .map(str::to_owned)
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "registry.redhat.io/openshift-service-mesh/istio-pilot-rhel9@sha256:0abc";

    fn pilot() -> ImageRef {
        ImageRef::from_value("pilot", "docker.io/istio", "1.27.3")
    }

    fn global(hub: &str, tag: &str, variant: &str) -> GlobalValues {
        GlobalValues {
            hub: Some(hub.into()),
            tag: Some(tag.into()),
            variant: Some(variant.into()),
            ..GlobalValues::default()
        }
    }

    #[test]
    fn catalog_image_with_global_variant() {
        let g = global("", "", "distroless");
        assert_eq!(
            resolve(&pilot(), ImageValues::default(), Some(&g)),
            "docker.io/istio/pilot:1.27.3-distroless"
        );
        assert_eq!(
            resolve(&pilot(), ImageValues::default(), None),
            "docker.io/istio/pilot:1.27.3"
        );
    }

    #[test]
    fn component_values_win_over_global_values() {
        let g = global("quay.io/g", "1.0.0", "distroless");
        let own = ImageValues {
            hub: Some("quay.io/own"),
            tag: Some("2.0.0"),
            variant: Some("debug"),
            image: Some("pilot-fips"),
        };
        assert_eq!(
            resolve(&pilot(), own, Some(&g)),
            "quay.io/own/pilot-fips:2.0.0-debug"
        );
        assert_eq!(
            resolve(
                &pilot(),
                ImageValues {
                    hub: Some(""),
                    ..ImageValues::default()
                },
                Some(&g)
            ),
            "quay.io/g/pilot:1.0.0-distroless"
        );
    }

    #[test]
    fn full_references_are_verbatim() {
        let g = global("quay.io/g", "1.0.0", "distroless");
        let own = ImageValues {
            image: Some(DIGEST),
            ..ImageValues::default()
        };
        assert_eq!(resolve(&pilot(), own, Some(&g)), DIGEST);
        let catalog = ImageRef::Full(DIGEST.into());
        assert_eq!(resolve(&catalog, ImageValues::default(), Some(&g)), DIGEST);
    }

    #[test]
    fn pull_policy_falls_back_to_global() {
        let g = GlobalValues {
            image_pull_policy: Some("Always".into()),
            ..GlobalValues::default()
        };
        assert_eq!(pull_policy(None, Some(&g)).as_deref(), Some("Always"));
        assert_eq!(
            pull_policy(Some("Never"), Some(&g)).as_deref(),
            Some("Never")
        );
        assert_eq!(pull_policy(Some(""), None), None);
    }
}
