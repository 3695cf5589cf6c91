//! Container images of the Istio components.

use std::fmt;

use serde::Deserialize;

/// One container image: either hub, name and tag, or a full reference used verbatim
/// (for example a Red Hat image pinned by digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// Rendered as `<hub>/<name>:<tag>[-<variant>]`.
    Parts {
        /// Registry and repository, e.g. `docker.io/istio`.
        hub: String,
        /// Image name, e.g. `pilot`.
        name: String,
        /// Tag, the bare version, e.g. `1.26.3`.
        tag: String,
    },
    /// A complete reference, rendered verbatim; the variant does not apply.
    Full(String),
}

impl ImageRef {
    /// Whether a user-supplied image value is a full reference (it contains `/`), to be used
    /// verbatim instead of being combined with a hub and a tag.
    pub fn is_full_reference(value: &str) -> bool {
        value.contains('/')
    }

    /// The image for `value`: a full reference as is, otherwise the image name `value` under
    /// `hub` with `tag`.
    pub fn from_value(value: &str, hub: &str, tag: &str) -> Self {
        if Self::is_full_reference(value) {
            Self::Full(value.to_owned())
        } else {
            Self::Parts {
                hub: hub.to_owned(),
                name: value.to_owned(),
                tag: tag.to_owned(),
            }
        }
    }

    /// Applies user overrides as Istio's Helm values spell them (`hub`, `image`, `tag`; an
    /// empty string counts as unset). An `image` that is a full reference replaces everything;
    /// otherwise the overrides replace the matching parts, and a full reference from the
    /// catalog stays as it is.
    pub fn with_overrides(
        &self,
        hub: Option<&str>,
        image: Option<&str>,
        tag: Option<&str>,
    ) -> Self {
        match (self, non_empty(image)) {
            (_, Some(image)) if Self::is_full_reference(image) => Self::Full(image.to_owned()),
            (Self::Full(_), _) => self.clone(),
            (
                Self::Parts {
                    hub: h,
                    name,
                    tag: t,
                },
                image,
            ) => Self::Parts {
                hub: non_empty(hub).unwrap_or(h).to_owned(),
                name: image.unwrap_or(name).to_owned(),
                tag: non_empty(tag).unwrap_or(t).to_owned(),
            },
        }
    }

    /// The final reference: `<hub>/<name>:<tag>-<variant>` (no suffix when the variant is
    /// absent or empty); a full reference verbatim.
    pub fn render(&self, variant: Option<&str>) -> String {
        match (self, non_empty(variant)) {
            (Self::Full(full), _) => full.clone(),
            (Self::Parts { hub, name, tag }, None) => format!("{hub}/{name}:{tag}"),
            (Self::Parts { hub, name, tag }, Some(variant)) => {
                format!("{hub}/{name}:{tag}-{variant}")
            }
        }
    }
}

/// Helm's notion of a set value: present and not empty.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// Renders without variant.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(None))
    }
}

/// The images of one Istio version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// istiod (upstream image `pilot`).
    pub istiod: ImageRef,
    /// Envoy proxy of gateways and waypoints (upstream `proxyv2`).
    pub proxy: ImageRef,
    /// istio-cni node agent (upstream `install-cni`).
    pub cni: ImageRef,
    /// ztunnel node proxy (upstream `ztunnel`).
    pub ztunnel: ImageRef,
}

impl Images {
    /// The upstream images `<hub>/{pilot,proxyv2,install-cni,ztunnel}:<tag>`.
    pub fn upstream(hub: &str, tag: &str) -> Self {
        ImagesSpec::default().build(hub, tag)
    }
}

/// Whether a hub or image value from a catalog file can be used: non-empty, no whitespace.
pub(crate) fn valid_part(value: &str) -> bool {
    !value.is_empty() && !value.contains(char::is_whitespace)
}

/// The `images` map of a catalog entry: per component an image name or a full reference.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImagesSpec {
    istiod: Option<String>,
    proxy: Option<String>,
    cni: Option<String>,
    ztunnel: Option<String>,
}

impl ImagesSpec {
    /// The first given value that cannot be part of an image reference.
    pub(crate) fn invalid_value(&self) -> Option<&str> {
        [&self.istiod, &self.proxy, &self.cni, &self.ztunnel]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .find(|v| !valid_part(v))
    }

    pub(crate) fn build(&self, hub: &str, tag: &str) -> Images {
        let image = |value: &Option<String>, default| {
            ImageRef::from_value(value.as_deref().unwrap_or(default), hub, tag)
        };
        Images {
            istiod: image(&self.istiod, "pilot"),
            proxy: image(&self.proxy, "proxyv2"),
            cni: image(&self.cni, "install-cni"),
            ztunnel: image(&self.ztunnel, "ztunnel"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str =
        "registry.redhat.io/openshift-service-mesh/istio-pilot-rhel9@sha256:0123abcd";

    fn pilot() -> ImageRef {
        ImageRef::from_value("pilot", "docker.io/istio", "1.26.3")
    }

    #[test]
    fn renders_parts_with_and_without_variant() {
        assert_eq!(pilot().render(None), "docker.io/istio/pilot:1.26.3");
        assert_eq!(pilot().render(Some("")), "docker.io/istio/pilot:1.26.3");
        assert_eq!(
            pilot().render(Some("distroless")),
            "docker.io/istio/pilot:1.26.3-distroless"
        );
        assert_eq!(pilot().to_string(), "docker.io/istio/pilot:1.26.3");
    }

    #[test]
    fn full_references_are_verbatim() {
        assert!(ImageRef::is_full_reference(DIGEST));
        assert!(!ImageRef::is_full_reference("pilot"));
        let full = ImageRef::from_value(DIGEST, "docker.io/istio", "1.26.3");
        assert_eq!(full, ImageRef::Full(DIGEST.to_owned()));
        assert_eq!(full.render(Some("distroless")), DIGEST);
        assert_eq!(
            full.with_overrides(Some("quay.io/x"), Some("pilot"), Some("1.0.0")),
            full
        );
    }

    #[test]
    fn overrides_replace_parts() {
        let custom = pilot().with_overrides(Some("gcr.io/istio-release"), None, Some(""));
        assert_eq!(custom.render(None), "gcr.io/istio-release/pilot:1.26.3");
        let renamed = pilot().with_overrides(Some(""), Some("pilot-fips"), Some("1.26.4"));
        assert_eq!(
            renamed.render(Some("distroless")),
            "docker.io/istio/pilot-fips:1.26.4-distroless"
        );
        assert_eq!(
            pilot()
                .with_overrides(Some("quay.io/x"), Some(DIGEST), None)
                .render(None),
            DIGEST
        );
    }

    #[test]
    fn upstream_images() {
        let images = Images::upstream("docker.io/istio", "1.27.2");
        let rendered = [images.istiod, images.proxy, images.cni, images.ztunnel]
            .map(|image| image.render(Some("distroless")));
        assert_eq!(
            rendered,
            [
                "docker.io/istio/pilot:1.27.2-distroless",
                "docker.io/istio/proxyv2:1.27.2-distroless",
                "docker.io/istio/install-cni:1.27.2-distroless",
                "docker.io/istio/ztunnel:1.27.2-distroless",
            ]
        );
    }
}
