//! Issue 10, defect 7: a namespace or pod change reconciles only the revisions whose usage
//! it changes. Five control planes run; a namespace that selects one of them and eight pods
//! in it are created, one by one; the operator's debug log says which revisions were reconciled.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use mizzen_testcluster::shared;

const PLANES: usize = 5;
const PODS: usize = 8;

/// `(kind, name)` of every finished reconcile (the "reconciled" and "reconcile failed" lines)
/// of a JSON log.
fn reconciles(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "reconciled" || v["message"] == "reconcile failed")
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or_default().to_owned(),
                v["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Revision reconciles per revision name in `lines`.
fn per_revision(lines: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (kind, name) in lines {
        if kind == "IstioRevision" {
            *counts.entry(name.clone()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn pod_and_namespace_changes_reconcile_only_the_revisions_they_affect() {
    let cluster = shared().await;
    install_crds(cluster);
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::start_with(
        "mizzen",
        &cluster.kubeconfig_path(),
        dir.path(),
        &["--log-format=json"],
        &[("RUST_LOG", "info,mizzen_controller::wiring=debug")],
    );
    let mut manifests = String::new();
    for i in 0..PLANES {
        manifests.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scope-cp-{i}\n---\n\
             apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata:\n  name: scope-{i}\n\
             spec:\n  namespace: scope-cp-{i}\n  version: v1.26.3\n---\n"
        ));
    }
    kubectl_stdin(cluster, &["apply", "-f", "-"], Some(manifests.as_bytes()));
    let istios: Vec<String> = (0..PLANES).map(|i| format!("istios/scope-{i}")).collect();
    let mut wait = vec!["wait", "--for=condition=Ready", "--timeout=3m"];
    wait.extend(istios.iter().map(String::as_str));
    kubectl(cluster, &wait);

    // Quiet: no revision reconcile for 2 s (the 30 s resync aside, which the window below
    // is too short to see twice per revision).
    let quiet_since = until(60, "the revisions to settle", || {
        let n = reconciles(&op.log()).len();
        std::thread::sleep(Duration::from_secs(2));
        (reconciles(&op.log()).len() == n).then_some(n)
    });

    let started = Instant::now();
    kubectl_stdin(
        cluster,
        &["apply", "-f", "-"],
        Some(
            b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scope-apps\n  labels:\n    istio.io/rev: scope-0\n",
        ),
    );
    // One pod at a time, 500 ms apart, so that each change is reconciled on its own.
    for i in 0..PODS {
        kubectl(
            cluster,
            &[
                "run",
                &format!("app-{i}"),
                "-n",
                "scope-apps",
                "--image=example.invalid/app:1",
            ],
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    until(30, "scope-0 in use by scope-apps", || {
        let out = kubectl(
            cluster,
            &[
                "get",
                "istiorevision",
                "scope-0",
                "-o",
                "jsonpath={.status.inUseBy}",
            ],
        );
        out.contains("namespace scope-apps").then_some(())
    });
    // Let every trigger the pods caused run out.
    std::thread::sleep(Duration::from_secs(3));
    let window = started.elapsed();
    let lines = reconciles(&op.log());
    let counts = per_revision(&lines[quiet_since..]);
    println!(
        "revision reconciles in {:.1} s after a namespace and {PODS} pods for scope-0: {counts:?}",
        window.as_secs_f64()
    );
    assert!(
        counts.get("scope-0").is_some_and(|n| *n >= 1),
        "the revision the namespace selects is reconciled: {counts:?}"
    );
    // The 30 s resync reconciles each revision at most once in a window this short; the
    // namespace and the pods must not reconcile the others (before the fix each of the
    // PODS + 1 changes reconciled every revision).
    assert!(window < Duration::from_secs(30), "window {window:?}");
    for i in 1..PLANES {
        let n = counts.get(&format!("scope-{i}")).copied().unwrap_or(0);
        assert!(
            n <= 1,
            "scope-{i}, which the change cannot affect, was reconciled {n} times: {counts:?}"
        );
    }
    for i in 0..PLANES {
        kubectl(cluster, &["delete", "istio", &format!("scope-{i}")]);
    }
}
