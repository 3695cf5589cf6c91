//! The CRDs of `mizzen crds` on a real API server (the local control plane): they become
//! Established, accept the seed document's manifests, apply defaults, enforce the CEL rules,
//! and `kubectl get` prints the documented columns. Driven with kubectl, as a user would.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use mizzen_testcluster::{Cluster, shared};
use tokio::sync::OnceCell;

fn mizzen_crds() -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_mizzen"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `command` with `stdin` on its standard input.
fn with_stdin(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `mizzen render -f -` with `yaml` on its standard input.
fn render_stdin(yaml: &[u8]) -> Output {
    with_stdin(
        Command::new(env!("CARGO_BIN_EXE_mizzen")).args(["render", "-f", "-"]),
        yaml,
    )
}

/// Runs kubectl with `stdin` piped in.
fn kubectl(cluster: &Cluster, args: &[&str], stdin: &[u8]) -> Output {
    with_stdin(cluster.kubectl().args(args), stdin)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(out: Output) -> String {
    assert!(
        !out.status.success(),
        "expected a rejection, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

static CRDS: OnceCell<()> = OnceCell::const_new();

/// Serialises the tests that touch the cluster-wide singletons (IstioCNI/ZTunnel `default`).
static SINGLETONS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The shared cluster with the CRDs installed and Established.
async fn cluster() -> &'static Cluster {
    let cluster = shared().await;
    CRDS.get_or_init(|| async {
        // Client-side apply, as most users do: it also proves that every CRD fits the
        // 256 KiB last-applied-configuration annotation.
        ok(kubectl(cluster, &["apply", "-f", "-"], &mizzen_crds()));
        ok(kubectl(
            cluster,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd",
                "istios.sailoperator.io",
                "istiorevisions.sailoperator.io",
                "istiorevisiontags.sailoperator.io",
                "istiocnis.sailoperator.io",
                "ztunnels.sailoperator.io",
            ],
            b"",
        ));
    })
    .await;
    cluster
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test]
async fn client_dry_run_of_the_crds_succeeds() {
    let c = cluster().await;
    let crds = mizzen_crds();
    let documents = String::from_utf8_lossy(&crds)
        .lines()
        .filter(|l| *l == "kind: CustomResourceDefinition")
        .count();
    // Five sailoperator.io kinds and mizzen.io's RolloutPolicy.
    assert_eq!(documents, 6);
    let out = ok(kubectl(c, &["apply", "--dry-run=client", "-f", "-"], &crds));
    assert_eq!(
        out.lines().filter(|l| l.ends_with("(dry run)")).count(),
        documents,
        "{out}"
    );
}

#[tokio::test]
async fn seed_manifests_are_accepted() {
    let c = cluster().await;
    // ambient.yaml holds the singletons another test creates for real.
    let _guard = SINGLETONS.lock().await;
    for file in [
        "istio-inplace.yaml",
        "istio-revisionbased.yaml",
        "ambient.yaml",
    ] {
        let yaml = std::fs::read(format!(
            "{}/../../deploy/examples/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        // Server-side dry run: full validation (schema, defaults, CEL) without creating the
        // cluster-wide singletons other tests use.
        let out = ok(kubectl(c, &["apply", "--dry-run=server", "-f", "-"], &yaml));
        assert!(out.contains("(server dry run)"), "{file}: {out}");
    }
}

#[tokio::test]
async fn defaults_are_applied_by_the_api_server() {
    let c = cluster().await;
    let manifest = format!(
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {{name: {}}}\nspec: {{}}\n",
        unique("defaults")
    );
    let out = ok(kubectl(
        c,
        &[
            "create",
            "--dry-run=server",
            "-o",
            "jsonpath={.spec}",
            "-f",
            "-",
        ],
        manifest.as_bytes(),
    ));
    let spec: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        spec,
        serde_json::json!({"namespace": "istio-system", "updateStrategy": {"type": "InPlace"}, "version": mizzen_catalog::Catalog::embedded().unwrap().default_version().to_string()})
    );
    let _guard = SINGLETONS.lock().await;
    let zt = "apiVersion: sailoperator.io/v1alpha1\nkind: ZTunnel\nmetadata: {name: default}\nspec: {}\n";
    let out = kubectl(
        c,
        &[
            "create",
            "--dry-run=server",
            "-o",
            "jsonpath={.spec}",
            "-f",
            "-",
        ],
        zt.as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let spec: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    // As upstream, v1 (the stored version) has no `profile`, so it does not survive storage.
    assert_eq!(spec["namespace"], "ztunnel");
    assert!(
        stderr.contains("deprecated"),
        "v1alpha1 must warn: {stderr}"
    );
}

#[tokio::test]
async fn singletons_must_be_named_default() {
    let c = cluster().await;
    for kind in ["IstioCNI", "ZTunnel"] {
        let m = format!(
            "apiVersion: sailoperator.io/v1\nkind: {kind}\nmetadata: {{name: other}}\nspec: {{}}\n"
        );
        let err = refused(kubectl(
            c,
            &["create", "--dry-run=server", "-f", "-"],
            m.as_bytes(),
        ));
        assert!(
            err.contains("metadata.name must be 'default'"),
            "{kind}: {err}"
        );
    }
}

#[tokio::test]
async fn revision_name_must_match_values_revision() {
    let c = cluster().await;
    let name = unique("rev");
    let m = |rev: &str| {
        format!(
            "apiVersion: sailoperator.io/v1\nkind: IstioRevision\nmetadata: {{name: {name}}}\nspec: {{version: v1.26.3, namespace: istio-system, values: {{revision: {rev}, global: {{istioNamespace: istio-system}}}}}}\n"
        )
    };
    let err = refused(kubectl(
        c,
        &["create", "--dry-run=server", "-f", "-"],
        m("something-else").as_bytes(),
    ));
    assert!(
        err.contains("spec.values.revision must match metadata.name"),
        "{err}"
    );
    ok(kubectl(
        c,
        &["create", "--dry-run=server", "-f", "-"],
        m(&name).as_bytes(),
    ));
    let alias = format!(
        "apiVersion: sailoperator.io/v1\nkind: IstioRevision\nmetadata: {{name: {name}}}\nspec: {{version: v1.26-latest, namespace: istio-system, values: {{revision: {name}, global: {{istioNamespace: istio-system}}}}}}\n"
    );
    let err = refused(kubectl(
        c,
        &["create", "--dry-run=server", "-f", "-"],
        alias.as_bytes(),
    ));
    assert!(
        err.contains("spec.version: Unsupported value"),
        "an IstioRevision takes concrete versions only: {err}"
    );
}

#[tokio::test]
async fn values_without_global_are_checked_without_error_and_replicas_are_not_negative() {
    let c = cluster().await;
    let name = unique("rev");
    // No values.global: the namespace rule holds trivially (it used to fail with "no such
    // key: global").
    let without_global = format!(
        "apiVersion: sailoperator.io/v1\nkind: IstioRevision\nmetadata: {{name: {name}}}\nspec: {{version: v1.26.3, namespace: istio-system, values: {{revision: {name}}}}}\n"
    );
    ok(kubectl(
        c,
        &["create", "--dry-run=server", "-f", "-"],
        without_global.as_bytes(),
    ));
    let negative = format!(
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {{name: {name}}}\nspec: {{version: v1.26.3, namespace: istio-system, values: {{pilot: {{replicaCount: -1}}}}}}\n"
    );
    let err = refused(kubectl(
        c,
        &["create", "--dry-run=server", "-f", "-"],
        negative.as_bytes(),
    ));
    assert!(err.contains("replicaCount"), "{err}");
}

#[tokio::test]
async fn namespace_is_immutable_and_must_match_istio_namespace() {
    let c = cluster().await;
    let name = unique("immutable");
    let m = format!(
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {{name: {name}}}\nspec: {{version: v1.26.3}}\n"
    );
    ok(kubectl(c, &["create", "-f", "-"], m.as_bytes()));
    let err = refused(kubectl(
        c,
        &[
            "patch",
            "istio",
            &name,
            "--type=merge",
            "-p",
            r#"{"spec":{"namespace":"elsewhere"}}"#,
        ],
        b"",
    ));
    assert!(err.contains("Value is immutable"), "{err}");
    let err = refused(kubectl(
        c,
        &[
            "patch",
            "istio",
            &name,
            "--type=merge",
            "-p",
            r#"{"spec":{"values":{"global":{"istioNamespace":"elsewhere"}}}}"#,
        ],
        b"",
    ));
    assert!(err.contains("must match spec.namespace"), "{err}");
    let err = refused(kubectl(
        c,
        &[
            "patch",
            "istio",
            &name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"1.26"}}"#,
        ],
        b"",
    ));
    assert!(err.contains("Unsupported value: \"1.26\""), "{err}");
    ok(kubectl(c, &["delete", "istio", &name], b""));
}

#[tokio::test]
async fn unknown_values_keys_are_kept_by_the_api_server() {
    let c = cluster().await;
    let m = format!(
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {{name: {}}}\nspec: {{values: {{pilot: {{replicaCuont: 3}}, futureKey: {{a: 1}}}}}}\n",
        unique("keep")
    );
    let out = ok(kubectl(
        c,
        &[
            "create",
            "--dry-run=server",
            "-o",
            "jsonpath={.spec.values}",
            "-f",
            "-",
        ],
        m.as_bytes(),
    ));
    let values: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        values,
        serde_json::json!({"futureKey": {"a": 1}, "pilot": {"replicaCuont": 3}})
    );
}

/// The first line kubectl prints for one object of a kind, whitespace-normalised.
fn headers(c: &Cluster, resource: &str, name: &str, wide: bool) -> String {
    let mut args = vec!["get", resource, name];
    if wide {
        args.extend(["-o", "wide"]);
    }
    let out = ok(kubectl(c, &args, b""));
    out.lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn kubectl_get_prints_the_documented_columns() {
    let c = cluster().await;
    let istio = unique("columns");
    let rev = unique("columns-rev");
    let manifests = format!(
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {{name: {istio}}}\nspec: {{version: v1.26.3}}\n---\n\
         apiVersion: sailoperator.io/v1\nkind: IstioRevision\nmetadata: {{name: {rev}}}\nspec: {{version: v1.26.3, namespace: istio-system, values: {{revision: {rev}, global: {{istioNamespace: istio-system}}}}}}\n---\n\
         apiVersion: sailoperator.io/v1\nkind: IstioRevisionTag\nmetadata: {{name: {istio}}}\nspec: {{targetRef: {{kind: Istio, name: {istio}}}}}\n"
    );
    ok(kubectl(c, &["create", "-f", "-"], manifests.as_bytes()));
    assert_eq!(
        headers(c, "istio", &istio, false),
        "NAME REVISIONS READY IN USE ACTIVE REVISION STATUS VERSION AGE"
    );
    assert_eq!(
        headers(c, "istio", &istio, true),
        "NAME NAMESPACE PROFILE REVISIONS READY IN USE ACTIVE REVISION STATUS VERSION AGE"
    );
    assert_eq!(
        headers(c, "istiorevision", &rev, false),
        "NAME TYPE READY STATUS IN USE VERSION AGE"
    );
    assert_eq!(
        headers(c, "istiorev", &rev, false),
        "NAME TYPE READY STATUS IN USE VERSION AGE"
    );
    assert_eq!(
        headers(c, "istiorevtag", &istio, false),
        "NAME STATUS IN USE REVISION AGE"
    );
    ok(kubectl(
        c,
        &[
            "delete",
            "istio,istiorevision,istiorevisiontag",
            &istio,
            &rev,
            "--ignore-not-found",
        ],
        b"",
    ));

    // The singletons: created only here, removed again at the end.
    let _guard = SINGLETONS.lock().await;
    let singletons = "apiVersion: sailoperator.io/v1\nkind: IstioCNI\nmetadata: {name: default}\nspec: {version: v1.26.3}\n---\n\
                      apiVersion: sailoperator.io/v1\nkind: ZTunnel\nmetadata: {name: default}\nspec: {version: v1.26.3}\n";
    ok(kubectl(c, &["create", "-f", "-"], singletons.as_bytes()));
    assert_eq!(
        headers(c, "istiocni", "default", false),
        "NAME READY STATUS VERSION AGE"
    );
    assert_eq!(
        headers(c, "istiocni", "default", true),
        "NAME NAMESPACE PROFILE READY STATUS VERSION AGE"
    );
    assert_eq!(
        headers(c, "ztunnel", "default", false),
        "NAME READY STATUS VERSION AGE"
    );
    assert_eq!(
        headers(c, "ztunnel", "default", true),
        "NAME NAMESPACE READY STATUS VERSION REVISION AGE"
    );
    assert_eq!(
        headers(c, "ztunnels.v1alpha1.sailoperator.io", "default", false),
        "NAME READY STATUS VERSION AGE"
    );
    let all = ok(kubectl(c, &["get", "istio-io"], b""));
    assert!(
        all.contains("istiocni.sailoperator.io/default")
            && all.contains("ztunnel.sailoperator.io/default"),
        "category istio-io: {all}"
    );
    ok(kubectl(c, &["delete", "istiocni,ztunnel", "default"], b""));
}

/// `mizzen render -f`: every object it prints for the example mesh (both strategies) is
/// accepted by the API server as it stands (server-side dry-run apply), and a file it cannot
/// render is a one-line error with a non-zero exit.
#[tokio::test]
async fn rendered_objects_are_accepted_by_the_api_server() {
    let c = cluster().await;
    for strategy in ["InPlace", "RevisionBased"] {
        let [cp, cni, zt] = ["cp", "cni", "zt"].map(unique);
        for ns in [&cp, &cni, &zt] {
            ok(kubectl(c, &["create", "namespace", ns], b""));
        }
        let spec = format!(
            "apiVersion: sailoperator.io/v1
kind: Istio
metadata: {{name: default}}
spec: {{namespace: {cp}, version: v1.26.4, profile: ambient, updateStrategy: {{type: {strategy}}}}}
---
apiVersion: sailoperator.io/v1
kind: IstioCNI
metadata: {{name: default}}
spec: {{namespace: {cni}, version: v1.26.4, profile: ambient}}
---
apiVersion: sailoperator.io/v1
kind: ZTunnel
metadata: {{name: default}}
spec: {{namespace: {zt}, version: v1.26.4}}
"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mesh.yaml");
        std::fs::write(&file, spec).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_mizzen"))
            .args(["render", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let documents = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("kind: "))
            .count();
        assert!(documents > 30, "{documents} objects");
        let applied = ok(kubectl(
            c,
            &[
                "apply",
                "--server-side",
                "--field-manager=api-test",
                "--dry-run=server",
                "-f",
                "-",
            ],
            &out.stdout,
        ));
        assert_eq!(
            applied
                .lines()
                .filter(|l| l.ends_with("(server dry run)"))
                .count(),
            documents,
            "{strategy}: {applied}"
        );
    }
    let out = render_stdin(b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("document 1 (Pod p): v1 Pod is not rendered"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Istio's CRDs as mizzen renders them for 1.30: `kubectl get` prints upstream's columns, and
/// a TrafficExtension (new in 1.30) can be created.
#[tokio::test]
async fn istio_crds_print_upstreams_columns() {
    let c = cluster().await;
    let spec = "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: default}\n\
                spec: {namespace: istio-system, version: v1.30.8}\n";
    let out = render_stdin(spec.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crds: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let crds: Vec<String> = crds
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| serde_json::to_string(&o).unwrap())
        .collect();
    assert_eq!(crds.len(), 15);
    // The manager `rendered_objects_are_accepted_by_the_api_server` dry-runs its CRDs with.
    ok(kubectl(
        c,
        &[
            "apply",
            "--server-side",
            "--field-manager=api-test",
            "-f",
            "-",
        ],
        crds.join("\n").as_bytes(),
    ));
    ok(kubectl(
        c,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "virtualservices.networking.istio.io",
            "trafficextensions.extensions.istio.io",
        ],
        b"",
    ));
    let ns = unique("crds");
    ok(kubectl(c, &["create", "namespace", &ns], b""));
    let config = format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {ns}}}
spec: {{hosts: [reviews], gateways: [mesh], http: [{{route: [{{destination: {{host: reviews}}}}]}}]}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {ns}}}
spec: {{host: reviews}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: {ns}}}
spec: {{selector: {{istio: ingress}}}}
---
apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: {{name: ext, namespace: {ns}}}
spec: {{}}
"
    );
    ok(kubectl(c, &["apply", "-f", "-"], config.as_bytes()));
    let header = |resource: &str| {
        let out = ok(kubectl(c, &["get", resource, "-n", &ns], b""));
        let first = out.lines().next().unwrap_or_default().to_owned();
        first
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        header("virtualservices"),
        ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    );
    assert_eq!(header("vs"), ["NAME", "GATEWAYS", "HOSTS", "AGE"]);
    assert_eq!(header("destinationrules"), ["NAME", "HOST", "AGE"]);
    assert_eq!(header("gateways.networking.istio.io"), ["NAME", "AGE"]);
    assert_eq!(header("trafficextensions"), ["NAME", "AGE"]);
    let row = ok(kubectl(
        c,
        &["get", "vs", "reviews", "-n", &ns, "--no-headers"],
        b"",
    ));
    assert!(
        row.contains("[\"mesh\"]") && row.contains("[\"reviews\"]"),
        "{row}"
    );
}
