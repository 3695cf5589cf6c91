//! Image resolution: the catalog's image of a component, overridden by values.

use mizzen_api::values::GlobalValues;
use mizzen_catalog::ImageRef;

use crate::RenderError;

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
    section: &str,
) -> Result<String, RenderError> {
    // Each value that takes part, with the field it comes from, so a bad one is named.
    let pick = |own: Option<&str>,
                global_value: Option<&String>,
                field: &str|
     -> Result<Option<String>, RenderError> {
        let (value, path) = match non_empty(own) {
            Some(v) => (Some(v.to_owned()), format!("{section}.{field}")),
            None => (
                global_value.filter(|g| !g.is_empty()).cloned(),
                format!("global.{field}"),
            ),
        };
        if let Some(v) = &value {
            check_part(field, v).map_err(|m| RenderError::value(path, m))?;
        }
        Ok(value)
    };
    let hub = pick(component.hub, global.and_then(|g| g.hub.as_ref()), "hub")?;
    let tag = pick(component.tag, global.and_then(|g| g.tag.as_ref()), "tag")?;
    let variant = pick(
        component.variant,
        global.and_then(|g| g.variant.as_ref()),
        "variant",
    )?;
    if let Some(image) = non_empty(component.image) {
        let check = if image.contains('/') {
            check_reference(image)
        } else {
            check_part("image", image)
        };
        check.map_err(|m| RenderError::value(format!("{section}.image"), m))?;
    }
    let reference = catalog
        .with_overrides(hub.as_deref(), component.image, tag.as_deref())
        .render(variant.as_deref());
    check_reference(&reference).map_err(|m| {
        RenderError::value(
            format!("{section}.image"),
            format!("the image reference {reference:?} it gives is invalid: {m}"),
        )
    })?;
    Ok(reference)
}

/// Checks one part of an image reference (`hub`, `image` name, `tag`, `variant`).
fn check_part(field: &str, value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{value:?} contains {c:?}; image references have no spaces"
        ));
    }
    match field {
        "tag" | "variant" => check_tag(value),
        "image" if value.contains(':') || value.contains('@') => Err(format!(
            "{value:?} is an image name: give the tag in the tag value, or a full reference \
             (with a registry/repository) in image"
        )),
        "hub" => check_hub(value),
        _ => Ok(()),
    }
}

/// A hub is `host[:port][/path]`: a tag or digest in it would give the image two.
fn check_hub(hub: &str) -> Result<(), String> {
    let path = hub.split_once('/').map_or("", |(_, path)| path);
    if hub.contains('@') || path.contains(':') {
        return Err(format!(
            "{hub:?} carries a tag or digest: a hub is a registry and repository path; give \
             the tag in the tag value"
        ));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok
        || tag.len() > 128
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "{tag:?} is not a valid tag (letters, digits, '_', '.', '-'; at most 128; not \
             starting with '.' or '-')"
        ));
    }
    Ok(())
}

/// Checks a full image reference: `[host[:port]/]path[:tag][@algorithm:hex]`, path components
/// in lower case, at most one tag, as the container runtimes parse it (anything else stalls a
/// rollout with InvalidImageName).
pub(crate) fn check_reference(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err("empty image reference".into());
    }
    if let Some(c) = reference
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("contains {c:?}"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err(format!("{d:?} is not a digest (algorithm:hex)"));
        }
    }
    let last = rest.rsplit('/').next().unwrap_or(rest);
    let (name_end, tag) = match last.matches(':').count() {
        0 => (rest.len(), None),
        1 => {
            let (_, t) = last.split_once(':').expect("one colon");
            (rest.len() - t.len() - 1, Some(t))
        }
        _ => return Err(format!("{last:?} has more than one tag")),
    };
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let name = &rest[..name_end];
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    let has_host = components.len() > 1
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host {
        let (host, port) = first.split_once(':').unwrap_or((first, ""));
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !host_ok || (!port.is_empty() && !port.chars().all(|c| c.is_ascii_digit())) {
            return Err(format!("{first:?} is not a registry host[:port]"));
        }
        components.remove(0);
    }
    for c in components {
        let ok = !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch));
        if !ok {
            return Err(format!(
                "repository path component {c:?} must be lower-case letters, digits and \
                 separators"
            ));
        }
    }
    Ok(())
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

    const DIGEST: &str = "registry.redhat.io/openshift-service-mesh/istio-pilot-rhel9@sha256:0000000000000000000000000000000000000000000000000000000000000000";

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
            resolve(&pilot(), ImageValues::default(), Some(&g), "pilot").unwrap(),
            "docker.io/istio/pilot:1.27.3-distroless"
        );
        assert_eq!(
            resolve(&pilot(), ImageValues::default(), None, "pilot").unwrap(),
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
            resolve(&pilot(), own, Some(&g), "pilot").unwrap(),
            "quay.io/own/pilot-fips:2.0.0-debug"
        );
        assert_eq!(
            resolve(
                &pilot(),
                ImageValues {
                    hub: Some(""),
                    ..ImageValues::default()
                },
                Some(&g),
                "pilot"
            )
            .unwrap(),
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
        assert_eq!(resolve(&pilot(), own, Some(&g), "pilot").unwrap(), DIGEST);
        let catalog = ImageRef::Full(DIGEST.into());
        assert_eq!(
            resolve(&catalog, ImageValues::default(), Some(&g), "pilot").unwrap(),
            DIGEST
        );
    }

    #[test]
    fn invalid_references_are_refused_naming_the_field() {
        let err = |own: ImageValues<'_>, g: Option<&GlobalValues>| {
            resolve(&pilot(), own, g, "pilot").unwrap_err().to_string()
        };
        let spaced = global("quay.io/my hub", "", "");
        assert!(err(ImageValues::default(), Some(&spaced)).contains("`global.hub`"));
        let tagged = global("registry.example/istio:1.0", "", "");
        assert!(err(ImageValues::default(), Some(&tagged)).contains("`global.hub`"));
        let digest = global("registry.example/istio@sha256:00", "", "");
        assert!(err(ImageValues::default(), Some(&digest)).contains("`global.hub`"));
        let e = err(
            ImageValues {
                image: Some(" pilot"),
                ..ImageValues::default()
            },
            None,
        );
        assert!(e.contains("`pilot.image`") && e.contains("' '"), "{e}");
        let e = err(
            ImageValues {
                image: Some("pilot:1.2"),
                ..ImageValues::default()
            },
            None,
        );
        assert!(e.contains("`pilot.image`"), "two tags: {e}");
        let e = err(
            ImageValues {
                tag: Some("1.2:3"),
                ..ImageValues::default()
            },
            None,
        );
        assert!(e.contains("`pilot.tag`"), "{e}");
        let e = err(
            ImageValues {
                image: Some("quay.io/X/Pilot:1"),
                ..ImageValues::default()
            },
            None,
        );
        assert!(e.contains("lower-case"), "{e}");
    }

    #[test]
    fn hubs_with_a_port_pass() {
        for hub in ["localhost:5000", "localhost:5000/istio", "quay.io/a/b"] {
            assert_eq!(check_hub(hub), Ok(()), "{hub}");
        }
    }

    #[test]
    fn valid_references_pass() {
        for r in [
            "docker.io/istio/pilot:1.26.3",
            "localhost:5000/pilot",
            "pilot",
            "quay.io/a_b/c-d.e:1.0-distroless",
            DIGEST,
            "quay.io/x/y:1@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_reference(r), Ok(()), "{r}");
        }
        for r in ["", "a b", "quay.io/x/y:1:2", "Quay.io:x/y", "x/y@sha256:12"] {
            assert!(check_reference(r).is_err(), "{r}");
        }
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
