//! Snapshot tests: the full output for Istio 1.26, 1.27 and 1.28 on Kubernetes and
//! OpenShift (ambient profile, no user values), compared with `tests/snapshots/*.yaml`.
//! Update with `MIZZEN_UPDATE_SNAPSHOTS=1 cargo test -p mizzen-render --test snapshots`.

mod common;

use common::{assert_snapshot, cni, revision, ztunnel};
use mizzen_render::{Platform, render_cni, render_revision, render_ztunnel, to_yaml};

const VERSIONS: [(&str, &str); 3] = [
    ("1.26", "v1.26.3"),
    ("1.27", "v1.27.3"),
    ("1.28", "v1.28.3"),
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

#[test]
#[should_panic(expected = "MIZZEN_UPDATE_SNAPSHOTS=1 cargo test")]
fn a_missing_snapshot_fails_and_says_how_to_create_it() {
    if std::env::var("MIZZEN_UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        panic!("not checked while MIZZEN_UPDATE_SNAPSHOTS=1 cargo test rewrites snapshots");
    }
    assert_snapshot("no-such-snapshot", "");
}
