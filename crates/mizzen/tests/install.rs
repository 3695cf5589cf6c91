//! `mizzen manifests` is what is committed under deploy/manifests, and both ways of installing
//! mizzen work on a real API server (the local control plane, RBAC enforced, KWOK pods): the
//! Helm chart (`helm install --wait`) and the plain manifests (`kubectl apply --server-side`)
//! each give a Deployment that becomes Available.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn mizzen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mizzen"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn committed_manifests_match_the_code() {
    let out = mizzen(&["manifests"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = include_str!("../../../deploy/manifests/mizzen.yaml");
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "deploy/manifests/mizzen.yaml is stale: run `cargo run -p mizzen -- manifests > deploy/manifests/mizzen.yaml`"
    );
}

#[test]
fn manifests_options_reach_the_objects() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("versions.yaml");
    let catalog = "versions:\n  - name: v1.27-latest\n    ref: v1.27.2\n  - name: v1.27.2\n";
    std::fs::write(&file, catalog).unwrap();
    let out = mizzen(&[
        "manifests",
        "--namespace",
        "ops",
        "--image",
        "quay.io/team/mizzen:dev",
        "--replicas",
        "1",
        "--versions-file",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let docs = mizzen_install::parse_stream(&yaml).unwrap();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} missing"))
    };
    assert_eq!(find("Namespace", "ops")["kind"], "Namespace");
    let d = find("Deployment", "mizzen");
    assert_eq!(d["metadata"]["namespace"], "ops");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "quay.io/team/mizzen:dev"
    );
    assert_eq!(
        find("ConfigMap", "mizzen-catalog")["data"]["versions.yaml"],
        catalog
    );
    assert!(!docs.iter().any(|d| d["kind"] == "PodDisruptionBudget"));
    // The CRDs carry the user's catalog too.
    assert!(yaml.contains("- v1.27-latest") && !yaml.contains("v1.30.3"));

    let out = mizzen(&["manifests", "--image", "quay.io/x:"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid image reference") && !err.contains("panicked"),
        "{err}"
    );
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Waits for the Deployment to be Available, and checks that all its replicas are.
fn assert_available(cluster: &mizzen_testcluster::Cluster, namespace: &str, replicas: u32) {
    ok(
        "kubectl wait",
        cluster
            .kubectl()
            .args([
                "-n",
                namespace,
                "wait",
                "deployment/mizzen",
                "--for=condition=Available",
                "--timeout=120s",
            ])
            .output()
            .unwrap(),
    );
    let ready = ok(
        "kubectl get",
        cluster
            .kubectl()
            .args([
                "-n",
                namespace,
                "get",
                "deployment/mizzen",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(ready, replicas.to_string());
}

/// One test for both ways, in sequence: they share the cluster-scoped names (the ClusterRole
/// `mizzen` and its binding).
#[tokio::test(flavor = "multi_thread")]
async fn helm_chart_then_plain_manifests_install_an_available_operator() {
    let cluster = mizzen_testcluster::shared().await;
    let kubeconfig = cluster.kubeconfig_path();
    let helm = |args: &[&str]| {
        let home = std::env::temp_dir().join("mizzen-install-test-helm");
        Command::new(mizzen_testcluster::helm_bin())
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .unwrap()
    };
    let chart = repo().join("deploy/chart");

    let out = ok(
        "helm install",
        helm(&[
            "install",
            "mizzen",
            chart.to_str().unwrap(),
            "-n",
            "mizzen-system",
            "--create-namespace",
            "--wait",
            "--timeout",
            "180s",
        ]),
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert_available(cluster, "mizzen-system", 2);
    let crds = ok(
        "kubectl get crds",
        cluster
            .kubectl()
            .args([
                "get",
                "crd",
                "istios.sailoperator.io",
                "ztunnels.sailoperator.io",
                "-o",
                "name",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(crds.lines().count(), 2, "{crds}");
    // The ServiceAccount can do what the operator needs (RBAC is enforced here).
    let can = ok(
        "kubectl auth can-i",
        cluster
            .kubectl()
            .args([
                "auth",
                "can-i",
                "patch",
                "istios.sailoperator.io",
                "--subresource=status",
                "--as=system:serviceaccount:mizzen-system:mizzen",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(can.trim(), "yes");
    ok(
        "helm uninstall",
        helm(&["uninstall", "mizzen", "-n", "mizzen-system", "--wait"]),
    );

    let manifests = repo().join("deploy/manifests/mizzen.yaml");
    ok(
        "kubectl apply",
        cluster
            .kubectl()
            .args(["apply", "--server-side", "-f", manifests.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_available(cluster, "mizzen-system", 2);
    let out = ok(
        "kubectl get pdb",
        cluster
            .kubectl()
            .args([
                "-n",
                "mizzen-system",
                "get",
                "pdb/mizzen",
                "-o",
                "jsonpath={.spec.minAvailable}",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(out, "1");
    ok(
        "kubectl delete",
        cluster
            .kubectl()
            .args(["delete", "--wait=false", "-f", manifests.to_str().unwrap()])
            .output()
            .unwrap(),
    );
}
