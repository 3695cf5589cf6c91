//! The upgrade companion end to end (issue 11): `mizzen status`, `plan`, `upgrade` and
//! `rollback` run as a user runs them, against the local control plane with the operator
//! running as a host process, and checked with kubectl. One test, in phases, because the
//! IstioCNI and ZTunnel are singletons of the cluster.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Operator, install_crds, kubectl, kubectl_stdin, seed, until};
use mizzen_testcluster::{Cluster, shared};

/// `mizzen <args>` (this build) as a user runs it, with the cluster's kubeconfig.
fn cli(cluster: &Cluster, args: &[&str]) -> Output {
    cli_with(&cluster.kubeconfig_path(), cluster, args)
}

fn cli_with(kubeconfig: &Path, cluster: &Cluster, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mizzen"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", path(cluster, None))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `PATH` with the cluster's kubectl first (and `extra` before it).
fn path(cluster: &Cluster, extra: Option<&Path>) -> String {
    let mut p = String::new();
    if let Some(e) = extra {
        p += &format!("{}:", e.display());
    }
    format!(
        "{p}{}:{}",
        cluster.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `mizzen <args>`, which must succeed; returns stdout and stderr.
fn ok(cluster: &Cluster, args: &[&str]) -> (String, String) {
    let o = cli(cluster, args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "mizzen {args:?} failed:\n{out}\n{err}");
    (out, err)
}

/// Runs `mizzen <args>`, which must fail with a one-line message; returns it.
fn refused(cluster: &Cluster, args: &[&str]) -> String {
    let o = cli(cluster, args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "mizzen {args:?}:\n{out}\n{err}");
    let last = err
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(last.starts_with("mizzen: "), "{err}");
    last
}

/// The `kubectl get istio,istiorevision,istiocni,ztunnel` rows, without AGE.
fn tables(cluster: &Cluster) -> Vec<String> {
    kubectl(cluster, &["get", "istio,istiorevision,istiocni,ztunnel"])
        .lines()
        .filter(|l| l.contains(".sailoperator.io/"))
        .map(|l| {
            let mut cols: Vec<&str> = l.split_whitespace().collect();
            cols.pop();
            cols.join(" ")
        })
        .collect()
}

/// `metadata.generation` of each of the mesh's resources.
fn generations(cluster: &Cluster) -> String {
    kubectl(
        cluster,
        &[
            "get",
            "istio/default",
            "istiocni/default",
            "ztunnel/default",
            "-o",
            "jsonpath={.items[*].metadata.generation}",
        ],
    )
}

fn healthy(cluster: &Cluster) {
    kubectl(
        cluster,
        &[
            "wait",
            "--for=jsonpath={.status.state}=Healthy",
            "istios/default",
            "--timeout=2m",
        ],
    );
}

fn remove_mesh(cluster: &Cluster) {
    kubectl(
        cluster,
        &["delete", "istio,istiocni,ztunnel", "--all", "--wait=true"],
    );
    revisions_gone(cluster, &[]);
}

/// Waits until the IstioRevisions `names` (all of them when empty) are gone.
fn revisions_gone(cluster: &Cluster, names: &[&str]) {
    let mut args = vec!["get", "istiorevision", "--ignore-not-found", "-o", "name"];
    args.extend(names);
    until(120, &format!("IstioRevisions {names:?} gone"), || {
        kubectl(cluster, &args).trim().is_empty().then_some(())
    });
}

const RB_MESH: &str = "apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: default}
spec:
  namespace: istio-system
  version: v1.26.3
  profile: ambient
  updateStrategy: {type: RevisionBased, inactiveRevisionDeletionGracePeriodSeconds: 30}
  values: {pilot: {trustedZtunnelNamespace: ztunnel}}
---
apiVersion: sailoperator.io/v1
kind: IstioCNI
metadata: {name: default}
spec: {namespace: istio-cni, version: v1.26.3, profile: ambient}
---
apiVersion: sailoperator.io/v1
kind: ZTunnel
metadata: {name: default}
spec: {namespace: ztunnel, version: v1.26.3}
";

#[tokio::test(flavor = "multi_thread")]
async fn the_companion_runs_the_seed_procedures() {
    let cluster = shared().await;
    let dir = tempfile::tempdir().unwrap();

    // Bad input before anything is installed: no CRDs.
    let e = refused(cluster, &["status"]);
    assert!(
        e.contains("mizzen's CRDs are not installed") && e.contains("mizzen crds"),
        "{e}"
    );
    let e = refused(cluster, &["status", "--context", "no-such-context"]);
    assert!(e.contains("no-such-context"), "{e}");

    install_crds(cluster);
    let operator = Operator::start("companion", &cluster.kubeconfig_path(), dir.path(), &[]);
    let (out, _) = ok(cluster, &["status"]);
    assert!(out.contains("Next: no Istio"), "{out}");

    // §1.5.2, InPlace: `mizzen upgrade` performs the procedure and leaves the seed's tables
    // (the README's demo ends with the same ones).
    seed(cluster, "install-ambient", &["v1.26.3"]);
    kubectl(cluster, &["create", "namespace", "bookinfo"]);
    kubectl(
        cluster,
        &[
            "label",
            "namespace",
            "bookinfo",
            "istio.io/dataplane-mode=ambient",
        ],
    );
    kubectl(
        cluster,
        &[
            "create",
            "deployment",
            "ratings",
            "-n",
            "bookinfo",
            "--image=example.invalid/bookinfo/ratings:1",
        ],
    );
    healthy(cluster);
    let (status, _) = ok(cluster, &["status"]);
    for want in [
        "default  istio-system  InPlace",
        "ambient namespace bookinfo",
        "IstioCNI   default  istio-cni  v1.26.3  Healthy  3/3",
        "ZTunnel    default  ztunnel    v1.26.3  Healthy  3/3",
        "Next: v1.26.",
    ] {
        assert!(status.contains(want), "{want:?} missing from:\n{status}");
    }
    let (json, _) = ok(cluster, &["status", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["istios"][0]["revisions"][0]["inUse"], "True");
    assert_eq!(json["ztunnel"]["nodesTotal"], 3);
    assert_eq!(json["skew"].as_array().unwrap().len(), 2);

    // Bad input: nothing is patched.
    let before = generations(cluster);
    let e = refused(cluster, &["upgrade", "--to", "v1.99.9", "--yes"]);
    assert!(
        e.contains("v1.99.9") && e.contains("installable versions are"),
        "{e}"
    );
    let e = refused(cluster, &["upgrade", "--to", "v1.25.5", "--yes"]);
    assert!(e.contains("end-of-life"), "{e}");
    let e = refused(cluster, &["upgrade", "--to", "v1.26.2", "--yes"]);
    assert!(e.contains("mizzen rollback --to v1.26.2"), "{e}");
    let e = refused(cluster, &["upgrade", "--to", "v1.26.4"]);
    assert!(e.contains("--yes"), "without --yes and no terminal: {e}");
    let e = refused(cluster, &["plan", "--to", "v1.26.4", "--istio", "other"]);
    assert!(e.contains("\"other\"") && e.contains("default"), "{e}");
    assert_eq!(
        generations(cluster),
        before,
        "a refused command patched something"
    );
    // Two Istios and no --istio.
    kubectl(cluster, &["create", "namespace", "second-system"]);
    kubectl_stdin(
        cluster,
        &["apply", "-f", "-"],
        Some(
            b"apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: second}\nspec: {namespace: second-system, version: v1.26.3}\n",
        ),
    );
    let e = refused(cluster, &["plan", "--to", "v1.26.4"]);
    assert!(
        e.contains("2 Istios (default, second): choose one with --istio NAME"),
        "{e}"
    );
    let (plan, _) = ok(cluster, &["plan", "--to", "v1.26.4", "--istio", "second"]);
    assert!(plan.contains("Plan for Istio second (InPlace)"), "{plan}");
    kubectl(cluster, &["delete", "istio", "second", "--wait=true"]);
    revisions_gone(cluster, &["second"]);

    // `plan` across two minors, InPlace: the two-hop path, every step checked.
    let (plan, _) = ok(cluster, &["plan", "--to", "v1.28.1"]);
    assert!(plan.contains("through v1.27."), "{plan}");
    assert!(
        plan.contains("InPlace moves one minor version at a time"),
        "{plan}"
    );
    assert_eq!(
        plan.matches("control-plane  Istio default").count(),
        2,
        "{plan}"
    );
    let (json, _) = ok(cluster, &["plan", "--to", "v1.28.1", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["steps"].as_array().unwrap().len(), 6);
    assert!(json["steps"].as_array().unwrap().iter().all(|s| {
        s["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true)
    }));
    // What each step does, from the operator's render against the live objects.
    let effects = |i: usize| json["steps"][i]["effects"].to_string();
    assert!(
        effects(0).contains("IstioRevision default: spec.version v1.26.3 -> v1.27.")
            && effects(0).contains("Deployment istio-system/istiod")
            && effects(0).contains("1 pod(s) replaced"),
        "{}",
        effects(0)
    );
    assert!(
        effects(1).contains("DaemonSet istio-cni/istio-cni-node")
            && effects(1).contains("restarts on 3 node(s)"),
        "{}",
        effects(1)
    );
    assert!(
        effects(2).contains("DaemonSet ztunnel/ztunnel"),
        "{}",
        effects(2)
    );

    let (out, err) = ok(cluster, &["upgrade", "--to", "v1.26.4", "--yes"]);
    assert!(
        out.contains("done: everything runs v1.26.4"),
        "{out}\n{err}"
    );
    for step in [
        "step 1/3: Istio default",
        "step 2/3: IstioCNI default",
        "step 3/3: ZTunnel default",
    ] {
        assert!(err.contains(step), "{step:?} missing from:\n{err}");
    }
    healthy(cluster);
    assert_eq!(
        tables(cluster),
        [
            "istio.sailoperator.io/default 1 1 1 default Healthy v1.26.4",
            "istiorevision.sailoperator.io/default Local True Healthy True v1.26.4",
            "istiocni.sailoperator.io/default True Healthy v1.26.4",
            "ztunnel.sailoperator.io/default True Healthy v1.26.4",
        ]
    );

    // An upgrade killed once it has patched the ZTunnel (its rollout under way) and started
    // again finishes without repeating a step.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mizzen"))
        .args(["upgrade", "--to", "v1.26.5", "--yes"])
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until(120, "the ZTunnel patched to v1.26.5", || {
        (kubectl(
            cluster,
            &[
                "get",
                "ztunnel",
                "default",
                "-o",
                "jsonpath={.spec.version}",
            ],
        ) == "v1.26.5")
            .then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let patched = generations(cluster);
    let (out, err) = ok(cluster, &["upgrade", "--to", "v1.26.5", "--yes"]);
    assert!(
        out.contains("done: everything runs v1.26.5"),
        "{out}\n{err}"
    );
    assert!(!err.contains("step "), "a step was repeated:\n{err}");
    assert_eq!(
        generations(cluster),
        patched,
        "the second run patched again"
    );
    healthy(cluster);
    assert!(
        tables(cluster).iter().all(|r| r.ends_with("v1.26.5")),
        "{:?}",
        tables(cluster)
    );

    // An operator that is not running: status says so, and upgrade stops with the reason.
    drop(operator);
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    let (status, _) = ok(cluster, &["status"]);
    assert!(
        status.contains("has not observed Istio default's change yet; is mizzen running?"),
        "{status}"
    );
    let operator = Operator::start("companion-2", &cluster.kubeconfig_path(), dir.path(), &[]);
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.5"}}"#,
        ],
    );
    healthy(cluster);

    // A user who may read but not patch: a one-line refusal naming the verb.
    let viewer = viewer_kubeconfig(cluster, dir.path());
    let o = cli_with(&viewer, cluster, &["upgrade", "--to", "v1.26.6", "--yes"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("forbidden") && err.contains("patch"), "{err}");
    assert!(cli_with(&viewer, cluster, &["status"]).status.success());

    // `kubectl mizzen` through kubectl's plugin lookup.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mizzen"), plugins.join("kubectl-mizzen"))
        .unwrap();
    let o = Command::new(cluster.bin_dir().join("kubectl"))
        .args(["mizzen", "status"])
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("PATH", path(cluster, Some(&plugins)))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "kubectl mizzen status:\n{out}\n{err}");
    assert!(
        out.contains("ACTIVE REVISION") && out.contains("Next: "),
        "{out}"
    );
    remove_mesh(cluster);

    // §1.6.2, RevisionBased, paused before the pruning; then §1.6.3, the rollback; then the
    // whole upgrade, which waits for the operator to prune the old revision.
    kubectl_stdin(cluster, &["apply", "-f", "-"], Some(RB_MESH.as_bytes()));
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "istios/default",
            "istiocnis/default",
            "ztunnels/default",
            "--timeout=5m",
        ],
    );
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=InUse",
            "istiorevision/default-v1-26-3",
            "--timeout=2m",
        ],
    );
    let (out, err) = ok(
        cluster,
        &[
            "upgrade",
            "--to",
            "v1.26.4",
            "--yes",
            "--pause-after",
            "ztunnel",
        ],
    );
    assert!(
        out.contains("paused after the ztunnel step"),
        "{out}\n{err}"
    );
    assert!(
        err.contains("creates IstioRevision default-v1-26-4")
            && err.contains("a second istiod (Deployment istiod-default-v1-26-4)")
            && err.contains("the operator deletes IstioRevision default-v1-26-3"),
        "{err}"
    );
    until(60, "the old revision unused, the new one in use", || {
        (tables(cluster)[1..3]
            == [
                "istiorevision.sailoperator.io/default-v1-26-3 Local True Healthy False v1.26.3",
                "istiorevision.sailoperator.io/default-v1-26-4 Local True Healthy True v1.26.4",
            ])
        .then_some(())
    });
    let (status, _) = ok(cluster, &["status"]);
    assert!(status.contains("pruned in"), "{status}");

    let (out, err) = ok(cluster, &["rollback", "--yes", "--pause-after", "ztunnel"]);
    assert!(out.contains("to v1.26.3"), "{out}\n{err}");
    for step in [
        "Istio default v1.26.4 -> v1.26.3",
        "IstioCNI default v1.26.4 -> v1.26.3",
        "ZTunnel default v1.26.4 -> v1.26.3",
    ] {
        assert!(err.contains(step), "{step:?} missing from:\n{err}");
    }
    let rows = tables(cluster);
    assert!(rows[0].contains(" default-v1-26-3 "), "{rows:?}");
    assert!(
        rows[3].ends_with("v1.26.3") && rows[4].ends_with("v1.26.3"),
        "{rows:?}"
    );

    let (out, err) = ok(cluster, &["upgrade", "--to", "v1.26.4", "--yes"]);
    assert!(
        out.contains("done: everything runs v1.26.4"),
        "{out}\n{err}"
    );
    assert!(err.contains("the previous revision is pruned"), "{err}");
    healthy(cluster);
    assert_eq!(
        tables(cluster),
        [
            "istio.sailoperator.io/default 1 1 1 default-v1-26-4 Healthy v1.26.4",
            "istiorevision.sailoperator.io/default-v1-26-4 Local True Healthy True v1.26.4",
            "istiocni.sailoperator.io/default True Healthy v1.26.4",
            "ztunnel.sailoperator.io/default True Healthy v1.26.4",
        ]
    );
    remove_mesh(cluster);
    drop(operator);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A kubeconfig for a ServiceAccount that may read mizzen's kinds and DaemonSets, not write.
fn viewer_kubeconfig(cluster: &Cluster, dir: &Path) -> std::path::PathBuf {
    let rbac = "apiVersion: v1
kind: ServiceAccount
metadata: {name: mesh-viewer, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: mesh-viewer}
rules:
- {apiGroups: [sailoperator.io, mizzen.io], resources: ['*'], verbs: [get, list, watch]}
- {apiGroups: [apps], resources: [daemonsets], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: mesh-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: mesh-viewer}
subjects: [{kind: ServiceAccount, name: mesh-viewer, namespace: default}]
";
    kubectl_stdin(cluster, &["apply", "-f", "-"], Some(rbac.as_bytes()));
    common::account_kubeconfig(
        cluster,
        "default",
        "mesh-viewer",
        &dir.join("viewer.kubeconfig"),
    )
}
