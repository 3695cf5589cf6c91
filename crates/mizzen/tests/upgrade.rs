//! An operator upgrade (seed §1.3.1), shown with the Helm chart: the chart's Deployment is
//! rolled to a new version catalog in which `v1.26-latest` moves from v1.26.3 to v1.26.4. The
//! operator process (a host process started with the Deployment's own arguments and the
//! catalog from the chart's ConfigMap, since KWOK runs no containers) then updates an InPlace
//! Istio that uses the alias, creates a canary revision for a RevisionBased one, and leaves an
//! Istio with a concrete version alone.

mod common;

use std::time::Duration;

use common::*;
use mizzen_testcluster::{Cluster, shared};

const CATALOG_OLD: &str = "versions:
  - name: v1.26-latest
    ref: v1.26.3
  - name: v1.26.3
";

const CATALOG_NEW: &str = "versions:
  - name: v1.26-latest
    ref: v1.26.4
  - name: v1.26.4
  - name: v1.26.3
";

/// Starts the operator the way the chart's Deployment would: its container's arguments, with
/// the addresses on 127.0.0.1 and the catalog ConfigMap materialised to a file.
fn operator_as_deployed(cluster: &Cluster, dir: &std::path::Path, name: &str) -> Operator {
    let args = kubectl(
        cluster,
        &[
            "get",
            "deployment",
            "mizzen",
            "-n",
            "mizzen-system",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ],
    );
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let catalog = kubectl(
        cluster,
        &[
            "get",
            "configmap",
            "mizzen-catalog",
            "-n",
            "mizzen-system",
            "-o",
            "jsonpath={.data.versions\\.yaml}",
        ],
    );
    let file = dir.join(format!("{name}-versions.yaml"));
    std::fs::write(&file, catalog).unwrap();
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    let mut local: Vec<String> = Vec::new();
    for a in &args[1..] {
        if a.starts_with("--health-addr") || a.starts_with("--metrics-addr") {
            continue; // Operator::start lets the kernel pick local ports
        }
        if a.starts_with("--versions-file") {
            local.push(format!("--versions-file={}", file.display()));
        } else {
            local.push(a.clone());
        }
    }
    assert!(
        local.iter().any(|a| a.starts_with("--versions-file")),
        "the Deployment passes the catalog: {args:?}"
    );
    let refs: Vec<&str> = local.iter().map(String::as_str).collect();
    Operator::start_with(
        name,
        &cluster.kubeconfig_path(),
        dir,
        &refs,
        &[("POD_NAMESPACE", "mizzen-system")],
    )
}

fn deployment_generation(cluster: &Cluster) -> String {
    kubectl(
        cluster,
        &[
            "get",
            "deployment",
            "mizzen",
            "-n",
            "mizzen-system",
            "-o",
            "jsonpath={.metadata.generation}",
        ],
    )
}

fn revision_version(cluster: &Cluster, name: &str) -> Option<String> {
    let out = kubectl_output(
        cluster,
        &[
            "get",
            "istiorevision",
            name,
            "-o",
            "jsonpath={.spec.version} {.metadata.generation}",
        ],
        None,
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn a_new_catalog_moves_alias_users_only() {
    let cluster = shared().await;
    install_crds(cluster);
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yaml");
    let new = dir.path().join("new.yaml");
    std::fs::write(&old, CATALOG_OLD).unwrap();
    std::fs::write(&new, CATALOG_NEW).unwrap();
    let chart = root().join("deploy/chart");
    let chart = chart.to_str().unwrap();
    helm(
        cluster,
        &[
            "install",
            "mizzen",
            chart,
            "-n",
            "mizzen-system",
            "--create-namespace",
            "--set-file",
            &format!("catalog={}", old.display()),
            "--wait",
            "--timeout=2m",
        ],
    );
    let mut op = operator_as_deployed(cluster, dir.path(), "mizzen-old");
    until(60, "the operator to lead", || op.leads().then_some(()));

    for (name, strategy, version) in [
        ("inplace", "InPlace", "v1.26-latest"),
        ("canary", "RevisionBased", "v1.26-latest"),
        ("pinned", "InPlace", "v1.26.3"),
    ] {
        kubectl(cluster, &["create", "namespace", &format!("istio-{name}")]);
        let manifest = format!(
            "apiVersion: sailoperator.io/v1
kind: Istio
metadata:
  name: {name}
spec:
  namespace: istio-{name}
  version: {version}
  updateStrategy:
    type: {strategy}
    inactiveRevisionDeletionGracePeriodSeconds: 600
"
        );
        kubectl_stdin(cluster, &["apply", "-f", "-"], Some(manifest.as_bytes()));
    }
    for name in ["inplace", "canary", "pinned"] {
        kubectl(
            cluster,
            &[
                "wait",
                "--for=condition=Ready",
                &format!("istios/{name}"),
                "--timeout=3m",
            ],
        );
    }
    let pinned_before = revision_version(cluster, "pinned").unwrap();
    assert!(
        revision_version(cluster, "inplace")
            .unwrap()
            .starts_with("v1.26.3 ")
    );
    assert!(revision_version(cluster, "canary-v1-26-3").is_some());

    // The operator upgrade: the chart with the new catalog rolls the Deployment.
    let before = deployment_generation(cluster);
    helm(
        cluster,
        &[
            "upgrade",
            "mizzen",
            chart,
            "-n",
            "mizzen-system",
            "--set-file",
            &format!("catalog={}", new.display()),
            "--wait",
            "--timeout=2m",
        ],
    );
    let after = deployment_generation(cluster);
    assert_ne!(before, after, "a new catalog rolls the Deployment");
    kubectl(
        cluster,
        &[
            "rollout",
            "status",
            "deployment/mizzen",
            "-n",
            "mizzen-system",
            "--timeout=2m",
        ],
    );
    // The old pod stops (SIGTERM: it hands the lease over), the new one starts.
    op.signal("TERM");
    assert!(op.wait_exit(30).success(), "{}", op.log());
    let op = operator_as_deployed(cluster, dir.path(), "mizzen-new");
    until(30, "the new operator to lead", || op.leads().then_some(()));

    until(120, "the InPlace alias user to move to v1.26.4", || {
        revision_version(cluster, "inplace")
            .filter(|v| v.starts_with("v1.26.4 "))
            .map(|_| ())
    });
    until(
        120,
        "a canary revision for the RevisionBased alias user",
        || revision_version(cluster, "canary-v1-26-4").map(|_| ()),
    );
    for name in ["inplace", "canary"] {
        kubectl(
            cluster,
            &[
                "wait",
                "--for=condition=Ready",
                &format!("istios/{name}"),
                "--timeout=3m",
            ],
        );
    }
    assert!(
        revision_version(cluster, "canary-v1-26-3").is_some(),
        "the old revision stays until unused for the grace period"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        revision_version(cluster, "pinned").unwrap(),
        pinned_before,
        "a concrete version is left alone (same version, same generation)"
    );
    let table = kubectl(cluster, &["get", "istio,istiorevision"]);
    println!("{table}");
}
