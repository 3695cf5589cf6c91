//! The committed OLM bundle and catalog (deploy/olm) are what the code generates, and follow
//! the rules of the registry+v1 bundle format and of file-based catalogs (checked here in
//! Rust: OLM's own tools are not available).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mizzen_catalog::Catalog;
use mizzen_install::olm::{self, BundleOptions};
use mizzen_install::parse_stream;
use serde_json::Value;

fn olm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/olm")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(olm_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn doc(rel: &str) -> Value {
    let mut docs = parse_stream(&read(rel)).unwrap();
    assert_eq!(docs.len(), 1, "{rel} must hold one document");
    docs.remove(0)
}

fn files_under(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, root, out);
        } else {
            out.insert(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

#[test]
fn committed_bundle_matches_the_code() {
    let files = olm::files(&Catalog::embedded().unwrap(), &BundleOptions::default());
    let mut have = BTreeSet::new();
    files_under(&olm_dir(), &olm_dir(), &mut have);
    assert_eq!(
        files.keys().cloned().collect::<BTreeSet<_>>(),
        have,
        "deploy/olm has other files than the generator writes: run `cargo run -p mizzen -- bundle --out deploy/olm`"
    );
    for (path, content) in &files {
        assert!(
            &read(path) == content,
            "deploy/olm/{path} is stale: run `cargo run -p mizzen -- bundle --out deploy/olm`"
        );
    }
}

fn csv() -> Value {
    doc("bundle/manifests/mizzen.clusterserviceversion.yaml")
}

#[test]
fn the_csv_has_the_required_fields() {
    let csv = csv();
    assert_eq!(csv["apiVersion"], "operators.coreos.com/v1alpha1");
    assert_eq!(csv["kind"], "ClusterServiceVersion");
    let version = csv["spec"]["version"].as_str().unwrap();
    assert_eq!(version, mizzen_install::VERSION);
    assert_eq!(csv["metadata"]["name"], format!("mizzen.v{version}"));
    for key in [
        "capabilities",
        "categories",
        "containerImage",
        "description",
        "repository",
        "support",
        "alm-examples",
    ] {
        assert!(
            csv["metadata"]["annotations"][key]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "metadata.annotations.{key} missing"
        );
    }
    let examples: Vec<Value> = serde_json::from_str(
        csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .unwrap(),
    )
    .expect("alm-examples is a JSON list");
    assert!(
        examples
            .iter()
            .all(|e| e["apiVersion"] == "sailoperator.io/v1")
    );
    let spec = &csv["spec"];
    for key in ["displayName", "description", "minKubeVersion", "maturity"] {
        assert!(
            spec[key].as_str().is_some_and(|v| !v.is_empty()),
            "spec.{key} missing"
        );
    }
    assert!(
        spec.get("replaces").is_none(),
        "the first version replaces nothing"
    );
    assert_eq!(
        csv["metadata"]["annotations"]["olm.skipRange"],
        format!("<{version}")
    );
    let modes: BTreeMap<&str, bool> = spec["installModes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap(),
                m["supported"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        BTreeMap::from([
            ("AllNamespaces", true),
            ("MultiNamespace", false),
            ("OwnNamespace", false),
            ("SingleNamespace", false)
        ])
    );
    let install = &spec["install"];
    assert_eq!(install["strategy"], "deployment");
    let cluster = &install["spec"]["clusterPermissions"][0];
    assert_eq!(cluster["serviceAccountName"], "mizzen");
    assert_eq!(
        cluster["rules"],
        serde_json::to_value(mizzen_controller::permissions::cluster_rules()).unwrap()
    );
    assert_eq!(
        install["spec"]["permissions"][0]["rules"],
        serde_json::to_value(mizzen_controller::permissions::namespace_rules()).unwrap()
    );
}

#[test]
fn owned_crds_are_exactly_the_bundles_crd_files() {
    let mut in_files = BTreeSet::new();
    for entry in std::fs::read_dir(olm_dir().join("bundle/manifests")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let crd = doc(&format!("bundle/manifests/{name}"));
        if crd["kind"] != "CustomResourceDefinition" {
            continue;
        }
        for v in crd["spec"]["versions"].as_array().unwrap() {
            if v["served"] == true {
                in_files.insert((
                    crd["metadata"]["name"].as_str().unwrap().to_owned(),
                    v["name"].as_str().unwrap().to_owned(),
                    crd["spec"]["names"]["kind"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    assert_eq!(
        in_files.len(),
        7,
        "six kinds, ZTunnel in two versions: {in_files:?}"
    );
    let csv = csv();
    let owned: BTreeSet<_> = csv["spec"]["customresourcedefinitions"]["owned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert!(o["displayName"].as_str().is_some_and(|d| !d.is_empty()));
            assert!(o["description"].as_str().is_some_and(|d| !d.is_empty()));
            (
                o["name"].as_str().unwrap().to_owned(),
                o["version"].as_str().unwrap().to_owned(),
                o["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(owned, in_files);
}

#[test]
fn channels_and_package_agree_between_bundle_and_catalog() {
    let annotations = &doc("bundle/metadata/annotations.yaml")["annotations"];
    let key = |k: &str| {
        annotations[format!("operators.operatorframework.io.bundle.{k}")]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(key("mediatype.v1"), "registry+v1");
    assert_eq!(key("manifests.v1"), "manifests/");
    assert_eq!(key("metadata.v1"), "metadata/");
    assert_eq!(key("package.v1"), "mizzen");
    let channels: BTreeSet<String> = key("channels.v1").split(',').map(str::to_owned).collect();
    assert_eq!(
        channels,
        BTreeSet::from(["stable".to_owned(), "stable-0.1".to_owned()])
    );
    let default = key("channel.default.v1");
    assert!(channels.contains(&default));

    let fbc = parse_stream(&read("catalog/mizzen/catalog.yaml")).unwrap();
    let of = |schema: &str| {
        fbc.iter()
            .filter(|d| d["schema"] == schema)
            .collect::<Vec<_>>()
    };
    let package = of("olm.package");
    assert_eq!(package.len(), 1);
    assert_eq!(package[0]["name"], "mizzen");
    assert_eq!(package[0]["defaultChannel"], default.as_str());
    let csv = csv();
    let csv_name = csv["metadata"]["name"].as_str().unwrap();
    let fbc_channels: BTreeSet<String> = of("olm.channel")
        .iter()
        .map(|c| {
            assert_eq!(c["package"], "mizzen");
            let entries = c["entries"].as_array().unwrap();
            assert!(entries.iter().any(|e| e["name"] == csv_name), "{c}");
            c["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(fbc_channels, channels);
    let bundles = of("olm.bundle");
    assert_eq!(bundles.len(), 1);
    let bundle = bundles[0];
    assert_eq!(bundle["name"], csv_name);
    assert_eq!(bundle["package"], "mizzen");
    assert_eq!(
        bundle["image"],
        BundleOptions::default().bundle_image.as_str()
    );
    assert!(valid_reference(bundle["image"].as_str().unwrap()));
    let props = bundle["properties"].as_array().unwrap();
    assert!(props.iter().any(|p| p["type"] == "olm.package"
        && p["value"]["packageName"] == "mizzen"
        && p["value"]["version"] == csv["spec"]["version"]));
    let gvks: BTreeSet<(String, String)> = props
        .iter()
        .filter(|p| p["type"] == "olm.gvk")
        .map(|p| {
            let group = if p["value"]["kind"] == "RolloutPolicy" {
                "mizzen.io"
            } else {
                "sailoperator.io"
            };
            assert_eq!(p["value"]["group"], group);
            (
                p["value"]["kind"].as_str().unwrap().to_owned(),
                p["value"]["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let owned: BTreeSet<(String, String)> = csv["spec"]["customresourcedefinitions"]["owned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(gvks, owned);
}

/// A container image reference: `[host[:port]/]path[:tag][@sha256:<64 hex>]`, path components
/// lower-case alphanumerics with `.`, `_`, `-` separators.
fn valid_reference(image: &str) -> bool {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let Some(hex) = d.strip_prefix("sha256:") else {
            return false;
        };
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
    {
        return false;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        parts.remove(0);
    }
    !parts.is_empty()
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && p.starts_with(|c: char| c.is_ascii_alphanumeric())
                && p.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

#[test]
fn reference_check_rejects_bad_images() {
    assert!(valid_reference("docker.io/istio/pilot:1.26.3"));
    assert!(valid_reference("localhost:5000/mizzen"));
    assert!(!valid_reference("docker.io/Istio/pilot:1.26.3"));
    assert!(!valid_reference("docker.io/istio/pilot:"));
    assert!(!valid_reference("quay.io/x@sha256:abc"));
}

#[test]
fn related_images_cover_every_image_the_catalog_renders() {
    let csv = csv();
    let related = csv["spec"]["relatedImages"].as_array().unwrap();
    let mut names = BTreeSet::new();
    let mut images = BTreeSet::new();
    for r in related {
        let image = r["image"].as_str().unwrap();
        assert!(valid_reference(image), "{image}");
        assert!(
            names.insert(r["name"].as_str().unwrap().to_owned()),
            "name twice: {r}"
        );
        assert!(images.insert(image.to_owned()), "image twice: {image}");
    }
    assert!(
        images.contains(
            csv["metadata"]["annotations"]["containerImage"]
                .as_str()
                .unwrap()
        )
    );
    let catalog = Catalog::embedded().unwrap();
    let mut expected = 0;
    for name in catalog.concrete_names() {
        let Ok(resolved) = catalog.resolve(name) else {
            continue;
        };
        let i = resolved.images;
        for image in [i.istiod, i.proxy, i.cni, i.ztunnel] {
            expected += 1;
            assert!(
                images.contains(&image.render(None)),
                "{} missing from relatedImages",
                image.render(None)
            );
        }
    }
    assert!(expected > 40, "the embedded catalog lists many versions");
}

#[test]
fn the_install_strategy_runs_the_manifests_deployment() {
    let manifests = parse_stream(include_str!("../../../deploy/manifests/mizzen.yaml")).unwrap();
    let deployment = manifests
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "mizzen")
        .expect("the manifests hold the Deployment");
    let csv = csv();
    let strategy = &csv["spec"]["install"]["spec"]["deployments"][0];
    assert_eq!(strategy["name"], "mizzen");
    assert_eq!(strategy["spec"], deployment["spec"]);
    assert_eq!(strategy["label"], deployment["metadata"]["labels"]);
}

#[test]
fn later_versions_replace_the_previous_one() {
    let opts = BundleOptions {
        version: "0.2.0".into(),
        replaces: Some("mizzen.v0.1.0".into()),
        skip_range: Some("<0.2.0".into()),
        ..Default::default()
    };
    let files = olm::files(&Catalog::embedded().unwrap(), &opts);
    let csv =
        &parse_stream(&files["bundle/manifests/mizzen.clusterserviceversion.yaml"]).unwrap()[0];
    assert_eq!(csv["metadata"]["name"], "mizzen.v0.2.0");
    assert_eq!(csv["spec"]["replaces"], "mizzen.v0.1.0");
    let fbc = parse_stream(&files["catalog/mizzen/catalog.yaml"]).unwrap();
    let channel = fbc.iter().find(|d| d["schema"] == "olm.channel").unwrap();
    assert_eq!(channel["entries"][0]["replaces"], "mizzen.v0.1.0");
    assert_eq!(channel["entries"][0]["skipRange"], "<0.2.0");
}
