//! The cluster-wide objects: CRDs, the default validator, the reader account.

mod common;

use common::{ISTIO_NS, find, resolve};
use mizzen_render::{Owner, render_base, render_istio_crds};

fn storage(objects: &[mizzen_render::Object], name: &str) -> String {
    let crd = find(objects, "CustomResourceDefinition", name);
    let versions = crd.pointer("/spec/versions").unwrap().as_array().unwrap();
    let stored: Vec<&str> = versions
        .iter()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(stored.len(), 1, "{name}");
    assert!(versions.iter().all(|v| v["served"] == true), "{name}");
    stored[0].to_owned()
}

#[test]
fn fourteen_permissive_namespaced_crds() {
    let (version, _) = resolve("v1.27.3");
    let crds = render_istio_crds(&Owner::istio("default"), &version).unwrap();
    assert_eq!(crds.len(), 14);
    for crd in &crds {
        assert_eq!(crd.pointer("/spec/scope").unwrap(), "Namespaced");
        assert!(crd.pointer("/spec/conversion").is_none());
        for v in crd.pointer("/spec/versions").unwrap().as_array().unwrap() {
            let schema = &v["schema"]["openAPIV3Schema"];
            assert_eq!(schema["type"], "object");
            assert_eq!(schema["x-kubernetes-preserve-unknown-fields"], true);
            assert!(v["subresources"]["status"].is_object());
        }
    }
    let dr = find(
        &crds,
        "CustomResourceDefinition",
        "destinationrules.networking.istio.io",
    );
    assert_eq!(dr.pointer("/spec/names/kind").unwrap(), "DestinationRule");
    assert_eq!(dr.pointer("/spec/names/shortNames/0").unwrap(), "dr");
    assert_eq!(dr.pointer("/spec/group").unwrap(), "networking.istio.io");
}

#[test]
fn storage_versions_per_minor() {
    let table = [
        ("v1.26.3", "v1beta1", "v1beta1"),
        ("v1.27.3", "v1", "v1beta1"),
        ("v1.28.3", "v1", "v1"),
    ];
    for (version, networking, security) in table {
        let (v, _) = resolve(version);
        let crds = render_istio_crds(&Owner::istio("default"), &v).unwrap();
        assert_eq!(
            storage(&crds, "virtualservices.networking.istio.io"),
            networking,
            "{version}"
        );
        assert_eq!(
            storage(&crds, "gateways.networking.istio.io"),
            networking,
            "{version}"
        );
        assert_eq!(
            storage(&crds, "authorizationpolicies.security.istio.io"),
            security,
            "{version}"
        );
        assert_eq!(
            storage(&crds, "peerauthentications.security.istio.io"),
            security,
            "{version}"
        );
        assert_eq!(
            storage(&crds, "envoyfilters.networking.istio.io"),
            "v1alpha3"
        );
        assert_eq!(storage(&crds, "telemetries.telemetry.istio.io"), "v1alpha1");
        assert_eq!(
            storage(&crds, "wasmplugins.extensions.istio.io"),
            "v1alpha1"
        );
        assert_eq!(
            storage(&crds, "proxyconfigs.networking.istio.io"),
            "v1beta1"
        );
    }
}

#[test]
fn default_validator_points_at_the_default_revision() {
    let (version, _) = resolve("v1.28.3");
    let owner = Owner::istio_revision_tag("default");
    for (revision, service) in [
        ("default", "istiod"),
        ("default-v1-28-3", "istiod-default-v1-28-3"),
    ] {
        let objects = render_base(&owner, revision, ISTIO_NS, &version).unwrap();
        let vwc = find(
            &objects,
            "ValidatingWebhookConfiguration",
            "istiod-default-validator",
        );
        assert_eq!(vwc.label("istio.io/rev"), Some(revision));
        let webhook = vwc.pointer("/webhooks/0").unwrap();
        assert_eq!(webhook["name"], "validation.istio.io");
        assert_eq!(webhook["clientConfig"]["service"]["name"], service);
        assert_eq!(webhook["clientConfig"]["service"]["path"], "/validate");
        assert!(webhook.get("objectSelector").is_none());
        // Created at Ignore; istiod tightens it once it serves.
        assert_eq!(webhook["failurePolicy"], "Ignore");
        let sa = find(&objects, "ServiceAccount", "istio-reader-service-account");
        assert_eq!(sa.namespace(), Some(ISTIO_NS));
    }
    assert!(render_base(&owner, "", ISTIO_NS, &version).is_err());
}
