//! Snapshot tests: the full output for every Istio minor the catalog installs, on Kubernetes
//! and OpenShift (ambient profile, no user values), compared with `tests/snapshots/*.yaml`.
//! Update with `MIZZEN_UPDATE_SNAPSHOTS=1 cargo test -p mizzen-render --test snapshots`.

mod common;

use common::{assert_snapshot, cni, revision, ztunnel};
use mizzen_render::{Platform, render_cni, render_revision, render_ztunnel, to_yaml};

const VERSIONS: [(&str, &str); 6] = [
    ("1.26", "v1.26.3"),
    ("1.27", "v1.27.3"),
    ("1.28", "v1.28.3"),
    ("1.29", "v1.29.6"),
    ("1.30", "v1.30.3"),
    ("1.31", "v1.31.4"),
];
const PLATFORMS: [(&str, Platform); 2] = [
    ("kubernetes", Platform::Kubernetes),
    ("openshift", Platform::OpenShift),
];

fn each(component: &str, render: impl Fn(&str, Platform) -> String) {
    for (minor, version) in VERSIONS {
        for (platform_name, platform) in PLATFORMS {
            let name = format!("{minor}-{platform_name}-{component}");
            assert_snapshot(&name, &render(version, platform));
        }
    }
}

#[test]
fn istiod_default_revision() {
    each("istiod-default", |version, platform| {
        to_yaml(&render_revision(&revision(version, "default", platform, None)).unwrap()).unwrap()
    });
}

#[test]
fn istiod_revision_based() {
    each("istiod-default-v1-27-3", |version, platform| {
        let input = revision(version, "default-v1-27-3", platform, None);
        to_yaml(&render_revision(&input).unwrap()).unwrap()
    });
}

#[test]
fn istio_cni() {
    each("cni", |version, platform| {
        to_yaml(&render_cni(&cni(version, platform, None)).unwrap()).unwrap()
    });
}

#[test]
fn ztunnel_daemonset() {
    each("ztunnel", |version, platform| {
        to_yaml(&render_ztunnel(&ztunnel(version, platform, None)).unwrap()).unwrap()
    });
}

/// A minor added to the catalog needs its snapshots (and the fidelity harness run on it).
#[test]
fn every_installable_minor_of_the_catalog_has_snapshots() {
    let catalog = mizzen_catalog::Catalog::embedded().unwrap();
    let mut minors: Vec<String> = catalog
        .concrete_names()
        .into_iter()
        .filter(|n| !catalog.is_eol(n))
        .map(|n| {
            let v: mizzen_catalog::Version = n.parse().unwrap();
            format!("{}.{}", v.major, v.minor)
        })
        .collect();
    minors.dedup();
    minors.sort();
    minors.dedup();
    let covered: Vec<&str> = VERSIONS.iter().map(|(m, _)| *m).collect();
    for minor in &minors {
        assert!(
            covered.contains(&minor.as_str()),
            "Istio {minor} is in the catalog but has no render snapshots: add it to VERSIONS"
        );
    }
}

#[test]
#[should_panic(expected = "MIZZEN_UPDATE_SNAPSHOTS=1 cargo test")]
fn a_missing_snapshot_fails_and_says_how_to_create_it() {
    if std::env::var("MIZZEN_UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        panic!("not checked while MIZZEN_UPDATE_SNAPSHOTS=1 cargo test rewrites snapshots");
    }
    assert_snapshot("no-such-snapshot", "");
}
