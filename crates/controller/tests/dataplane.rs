//! The data plane of the OSSM ambient procedure (§1.5.2 "Update IstioCNI", "Update ZTunnel",
//! §1.7, §1.8) on the local control plane (3 fake nodes), with the operator running
//! in-process and the steps done with kubectl as a user would.
//!
//! `IstioCNI` and `ZTunnel` are cluster-wide singletons named `default`, so the tests take
//! [`SINGLETONS`] and remove what they created before releasing it.

mod common;

use std::collections::BTreeSet;

use common::{apply, cluster_with_operator, eventually, kubectl, table};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use mizzen_api::{Condition, ConditionStatus, Istio, IstioCNI, ZTunnel};
use mizzen_testcluster::{Cluster, TestNamespace};
use serde_json::Value;

/// Held by every test that creates the singletons.
static SINGLETONS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FOLLOWS: &str = "mizzen.io/follows-istio";

fn patch_version(cluster: &Cluster, resource: &str, version: &str) {
    kubectl(
        cluster,
        &[
            "patch",
            resource,
            "default",
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"version":"{version}"}}}}"#),
        ],
    );
}

fn patch_istio(cluster: &Cluster, name: &str, version: &str) {
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"version":"{version}"}}}}"#),
        ],
    );
}

fn wait_ready(cluster: &Cluster, what: &str, timeout: &str) {
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            what,
            &format!("--timeout={timeout}"),
        ],
    );
}

fn istio_manifest(name: &str, ns: &str, version: &str, strategy: &str) -> String {
    format!(
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata:\n  name: {name}\nspec:\n  namespace: {ns}\n  version: {version}\n  profile: ambient\n  updateStrategy:\n    type: {strategy}\n    inactiveRevisionDeletionGracePeriodSeconds: 30\n  values:\n    pilot:\n      trustedZtunnelNamespace: ztunnel\n"
    )
}

fn cni_manifest(ns: &str, version: &str) -> String {
    format!(
        "apiVersion: sailoperator.io/v1\nkind: IstioCNI\nmetadata:\n  name: default\nspec:\n  namespace: {ns}\n  profile: ambient\n  version: {version}\n"
    )
}

/// A v1 ZTunnel; `extra` is appended to `spec` (already indented by two spaces).
fn ztunnel_manifest(ns: &str, version: &str, extra: &str) -> String {
    format!(
        "apiVersion: sailoperator.io/v1\nkind: ZTunnel\nmetadata:\n  name: default\nspec:\n  namespace: {ns}\n  version: {version}\n{extra}"
    )
}

/// Deletes the singletons and the given Istios, and waits until they are gone.
async fn clean(cluster: &Cluster, istios: &[&str]) {
    let mut targets = vec!["ztunnel/default".to_owned(), "istiocni/default".to_owned()];
    targets.extend(istios.iter().map(|i| format!("istio/{i}")));
    for t in &targets {
        kubectl(
            cluster,
            &[
                "delete",
                t,
                "--ignore-not-found",
                "--wait=true",
                "--timeout=60s",
            ],
        );
    }
}

/// Removes whatever an earlier, failed test left behind, so each test starts clean.
async fn clean_leftovers(cluster: &Cluster) {
    let istios: Vec<String> = Api::<Istio>::all(cluster.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let names: Vec<&str> = istios.iter().map(String::as_str).collect();
    clean(cluster, &names).await;
}

async fn create_namespace(cluster: &Cluster, name: &str) {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(cluster.client())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The ZTunnel's condition of `type_`, once it was computed for the current generation.
async fn zt_condition(cluster: &Cluster, type_: &str) -> Option<Condition> {
    let zt = Api::<ZTunnel>::all(cluster.client())
        .get("default")
        .await
        .ok()?;
    let c = condition(&zt.status?.conditions, type_)?.clone();
    (c.observed_generation == zt.metadata.generation).then_some(c)
}

async fn cni_condition(cluster: &Cluster, type_: &str) -> Option<Condition> {
    let cni = Api::<IstioCNI>::all(cluster.client())
        .get("default")
        .await
        .ok()?;
    let c = condition(&cni.status?.conditions, type_)?.clone();
    (c.observed_generation == cni.metadata.generation).then_some(c)
}

async fn istio_condition(cluster: &Cluster, name: &str, type_: &str) -> Option<Condition> {
    let istio = Api::<Istio>::all(cluster.client()).get(name).await.ok()?;
    condition(&istio.status?.conditions, type_).cloned()
}

/// `(pod name, node, image)` of every pod in `ns` matching `selector`.
async fn pods(cluster: &Cluster, ns: &str, selector: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = Api::<Pod>::namespaced(cluster.client(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            let spec = p.spec.clone().unwrap();
            (
                p.name_any(),
                spec.node_name.unwrap_or_default(),
                spec.containers[0].image.clone().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn node_count(cluster: &Cluster) -> usize {
    Api::<Node>::all(cluster.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

/// Every pod of the DaemonSet runs `image`, one on every node.
async fn assert_every_node_runs(cluster: &Cluster, ns: &str, selector: &str, image: &str) {
    let nodes = node_count(cluster).await;
    assert!(nodes >= 3, "the tests need at least 3 nodes, found {nodes}");
    let pods = pods(cluster, ns, selector).await;
    assert_eq!(pods.len(), nodes, "one pod per node: {pods:?}");
    let on: BTreeSet<&str> = pods.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(on.len(), nodes, "one pod per node: {pods:?}");
    for (name, node, img) in &pods {
        assert_eq!(img, image, "pod {name} on {node}");
    }
}

async fn daemonset(cluster: &Cluster, ns: &str, name: &str) -> DaemonSet {
    Api::<DaemonSet>::namespaced(cluster.client(), ns)
        .get(name)
        .await
        .unwrap()
}

fn env(ds: &DaemonSet, name: &str) -> Option<String> {
    ds.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

fn pod_annotations(ds: &DaemonSet) -> std::collections::BTreeMap<String, String> {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

fn events(cluster: &Cluster, reason: &str, kind: &str) -> String {
    kubectl(
        cluster,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("reason={reason},involvedObject.kind={kind},involvedObject.name=default"),
        ],
    )
}

/// §1.5.2 end to end: install Istio, IstioCNI and ZTunnel at v1.26.3, then update them in the
/// documented order to v1.26.4 with the documented commands, checking the documented output.
#[tokio::test]
async fn ossm_inplace_ambient_update_procedure() {
    let cluster = cluster_with_operator().await;
    let _guard = SINGLETONS.lock().await;
    clean_leftovers(cluster).await;
    for ns in ["istio-system", "istio-cni", "ztunnel"] {
        create_namespace(cluster, ns).await;
    }
    apply(
        cluster,
        &istio_manifest("default", "istio-system", "v1.26.3", "InPlace"),
    );
    apply(cluster, &cni_manifest("istio-cni", "v1.26.3"));
    apply(cluster, &ztunnel_manifest("ztunnel", "v1.26.3", ""));
    wait_ready(cluster, "istios/default", "3m");
    wait_ready(cluster, "istiocnis/default", "3m");
    wait_ready(cluster, "ztunnel/default", "3m");
    eventually(60, "Istio default Healthy", || async {
        let rows = table(cluster, &["get", "istio", "-n", "istio-system"]);
        (rows[0][5] == "Healthy").then_some(())
    })
    .await;
    assert_eq!(
        table(cluster, &["get", "istiocni"])[0][..4],
        ["default", "True", "Healthy", "v1.26.3"]
    );
    assert_eq!(
        table(cluster, &["get", "ztunnel"])[0][..4],
        ["default", "True", "Healthy", "v1.26.3"]
    );
    // Without targetRef, ztunnel follows the Istio named default through its stable Service.
    let zt = Api::<ZTunnel>::all(cluster.client())
        .get("default")
        .await
        .unwrap();
    assert_eq!(
        zt.status.unwrap().istio_revision.as_deref(),
        Some("default")
    );
    let ds = daemonset(cluster, "ztunnel", "ztunnel").await;
    assert_eq!(
        env(&ds, "XDS_ADDRESS").as_deref(),
        Some("istiod-active-default.istio-system.svc:15012")
    );

    // Update the Istio control plane.
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            "default",
            "-n",
            "istio-system",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    wait_ready(cluster, "istios/default", "5m");

    // Update IstioCNI.
    kubectl(
        cluster,
        &[
            "patch",
            "istiocni",
            "-n",
            "istio-cni",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    wait_ready(cluster, "istiocnis/default", "5m");
    // When wait returns, every node runs the new version.
    assert_every_node_runs(
        cluster,
        "istio-cni",
        "k8s-app=istio-cni-node",
        "docker.io/istio/install-cni:1.26.4-distroless",
    )
    .await;
    assert_eq!(
        table(cluster, &["get", "istiocni"])[0][..4],
        ["default", "True", "Healthy", "v1.26.4"]
    );

    // Update ZTunnel.
    kubectl(
        cluster,
        &[
            "patch",
            "ztunnel",
            "-n",
            "ztunnel",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    kubectl(
        cluster,
        &[
            "rollout",
            "status",
            "daemonset/ztunnel",
            "-n",
            "ztunnel",
            "--timeout=5m",
        ],
    );
    wait_ready(cluster, "ztunnel/default", "10m");
    assert_every_node_runs(
        cluster,
        "ztunnel",
        "app=ztunnel",
        "docker.io/istio/ztunnel:1.26.4-distroless",
    )
    .await;
    assert_eq!(
        table(cluster, &["get", "ztunnel"])[0][..4],
        ["default", "True", "Healthy", "v1.26.4"]
    );
    let wide = kubectl(cluster, &["get", "pods", "-n", "ztunnel", "-o", "wide"]);
    assert_eq!(
        wide.lines()
            .skip(1)
            .filter(|l| l.contains("Running"))
            .count(),
        3,
        "{wide}"
    );
    eventually(60, "Istio default Healthy at v1.26.4", || async {
        let rows = table(cluster, &["get", "istio", "-n", "istio-system"]);
        (rows[0][5..7] == ["Healthy", "v1.26.4"]).then_some(())
    })
    .await;
    let rollouts = events(cluster, "RolloutStarted", "ZTunnel");
    assert!(
        rollouts.contains("installing ZTunnel v1.26.3")
            && rollouts.contains("rolling out ZTunnel v1.26.4 (was v1.26.3), node by node"),
        "{rollouts}"
    );

    // Deleting the IstioCNI removes its children (owner references, garbage collection).
    kubectl(cluster, &["delete", "istiocni", "default", "--wait=true"]);
    eventually(60, "istio-cni children collected", || async {
        let ds = Api::<DaemonSet>::namespaced(cluster.client(), "istio-cni")
            .get_opt("istio-cni-node")
            .await
            .unwrap();
        let roles = kubectl(
            cluster,
            &[
                "get",
                "clusterroles,clusterrolebindings,configmaps,serviceaccounts",
                "-A",
                "-l",
                "mizzen.io/owner=istiocni.default",
                "-o",
                "name",
            ],
        );
        (ds.is_none() && roles.trim().is_empty()).then_some(())
    })
    .await;
    clean(cluster, &["default"]).await;
    for ns in ["istio-system", "istio-cni", "ztunnel"] {
        kubectl(cluster, &["delete", "namespace", ns, "--wait=false"]);
    }
}

/// `Ready` is False while a DaemonSet rollout is in progress, with the progress node by node,
/// and True once every node runs the new version (observed with `updateStrategy: OnDelete`,
/// which replaces a pod only when it is deleted).
#[tokio::test]
async fn ready_waits_for_every_node() {
    let cluster = cluster_with_operator().await;
    let _guard = SINGLETONS.lock().await;
    clean_leftovers(cluster).await;
    let cp = TestNamespace::new(cluster, "cp-ondelete").await.unwrap();
    let zns = TestNamespace::new(cluster, "zt-ondelete").await.unwrap();
    apply(
        cluster,
        &istio_manifest("ondelete", cp.name(), "v1.26.3", "InPlace"),
    );
    apply(
        cluster,
        &ztunnel_manifest(
            zns.name(),
            "v1.26.3",
            "  targetRef:\n    kind: Istio\n    name: ondelete\n  values:\n    ztunnel:\n      updateStrategy:\n        type: OnDelete\n",
        ),
    );
    wait_ready(cluster, "ztunnel/default", "3m");
    let old = pods(cluster, zns.name(), "app=ztunnel").await;
    assert_eq!(old.len(), 3, "{old:?}");

    patch_version(cluster, "ztunnel", "v1.26.4");
    let c = eventually(60, "Ready False with progress", || async {
        let c = zt_condition(cluster, "Ready").await?;
        (c.status == ConditionStatus::False
            && c.message.as_deref().unwrap_or("").contains("0/3 nodes"))
        .then_some(c)
    })
    .await;
    assert_eq!(c.reason.as_deref(), Some("DaemonSetNotReady"));
    assert_eq!(
        c.message.as_deref(),
        Some(
            "rolling out v1.26.4: 0/3 nodes updated, 3/3 available (updateStrategy OnDelete: \
             delete the old pods to update them)"
        )
    );
    assert_eq!(
        table(cluster, &["get", "ztunnel"])[0][..4],
        ["default", "False", "DaemonSetNotReady", "v1.26.4"]
    );

    for (i, (pod, node, image)) in old.iter().enumerate() {
        assert!(image.ends_with(":1.26.3-distroless"), "{image}");
        kubectl(cluster, &["delete", "pod", "-n", zns.name(), pod]);
        let updated = i + 1;
        if updated < old.len() {
            let c = eventually(60, &format!("{updated}/3 updated"), || async {
                let c = zt_condition(cluster, "Ready").await?;
                c.message
                    .as_deref()?
                    .contains(&format!("{updated}/3 nodes updated, 3/3 available"))
                    .then_some(c)
            })
            .await;
            assert_eq!(
                c.status,
                ConditionStatus::False,
                "after replacing on {node}"
            );
            // `kubectl wait` must not return yet.
            let out = cluster
                .kubectl()
                .args([
                    "wait",
                    "--for=condition=Ready",
                    "ztunnel/default",
                    "--timeout=1s",
                ])
                .output()
                .unwrap();
            assert!(
                !out.status.success(),
                "kubectl wait returned during rollout"
            );
        }
    }
    wait_ready(cluster, "ztunnel/default", "2m");
    assert_every_node_runs(
        cluster,
        zns.name(),
        "app=ztunnel",
        "docker.io/istio/ztunnel:1.26.4-distroless",
    )
    .await;
    assert_eq!(
        table(cluster, &["get", "ztunnel"])[0][..4],
        ["default", "True", "Healthy", "v1.26.4"]
    );
    clean(cluster, &["ondelete"]).await;
}

/// A ZTunnel that follows a RevisionBased Istio moves to the new active revision without
/// restarting: it reaches istiod through the stable Service, and its pod template names no
/// revision.
#[tokio::test]
async fn following_ztunnel_is_not_restarted_by_a_control_plane_canary() {
    let cluster = cluster_with_operator().await;
    let _guard = SINGLETONS.lock().await;
    clean_leftovers(cluster).await;
    let cp = TestNamespace::new(cluster, "cp-follow").await.unwrap();
    let zns = TestNamespace::new(cluster, "zt-follow").await.unwrap();
    apply(
        cluster,
        &istio_manifest("rb", cp.name(), "v1.26.3", "RevisionBased"),
    );
    apply(
        cluster,
        &ztunnel_manifest(
            zns.name(),
            "v1.26.3",
            "  targetRef:\n    kind: Istio\n    name: rb\n",
        ),
    );
    wait_ready(cluster, "ztunnel/default", "3m");
    let zts: Api<ZTunnel> = Api::all(cluster.client());
    let revision = |z: ZTunnel| z.status.and_then(|s| s.istio_revision);
    assert_eq!(
        revision(zts.get("default").await.unwrap()).as_deref(),
        Some("rb-v1-26-3")
    );
    let wide = table(cluster, &["get", "ztunnel", "-o", "wide"]);
    assert!(wide[0].contains(&"rb-v1-26-3".to_owned()), "{wide:?}");

    let before = daemonset(cluster, zns.name(), "ztunnel").await;
    let stable = format!("istiod-active-rb.{}.svc:15012", cp.name());
    assert_eq!(
        env(&before, "XDS_ADDRESS").as_deref(),
        Some(stable.as_str())
    );
    assert_eq!(env(&before, "CA_ADDRESS").as_deref(), Some(stable.as_str()));
    let annotations = pod_annotations(&before);
    assert_eq!(annotations.get(FOLLOWS).map(String::as_str), Some("rb"));
    assert!(!annotations.contains_key("istio.io/rev"), "{annotations:?}");
    let pods_before = pods(cluster, zns.name(), "app=ztunnel").await;

    patch_istio(cluster, "rb", "v1.26.4");
    wait_ready(cluster, "istios/rb", "5m");
    // Once the status names the new revision, the reconcile that noticed it has applied.
    eventually(60, "istioRevision rb-v1-26-4", || async {
        let z = zts.get("default").await.ok()?;
        (revision(z).as_deref() == Some("rb-v1-26-4")).then_some(())
    })
    .await;
    let after = daemonset(cluster, zns.name(), "ztunnel").await;
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "no rollout"
    );
    assert_eq!(
        serde_json::to_value(&after.spec.as_ref().unwrap().template).unwrap(),
        serde_json::to_value(&before.spec.as_ref().unwrap().template).unwrap()
    );
    assert_eq!(pods(cluster, zns.name(), "app=ztunnel").await, pods_before);
    // The stable Service now selects the new revision's istiod.
    let selector: Value = serde_json::from_str(&kubectl(
        cluster,
        &[
            "get",
            "service",
            "istiod-active-rb",
            "-n",
            cp.name(),
            "-o",
            "jsonpath={.spec.selector}",
        ],
    ))
    .unwrap();
    assert_eq!(selector["istio.io/rev"], "rb-v1-26-4");
    assert_eq!(
        table(cluster, &["get", "ztunnel"])[0][..4],
        ["default", "True", "Healthy", "v1.26.3"]
    );
    clean(cluster, &["rb"]).await;
}

/// The skew rules: a ZTunnel newer than its control plane is refused (nothing changes, the
/// Istio's dependencies turn unhealthy) until the control plane moves; an IstioCNI left two
/// minors behind by a control-plane update is warned about.
#[tokio::test]
async fn version_skew_is_refused_or_reported() {
    let cluster = cluster_with_operator().await;
    let _guard = SINGLETONS.lock().await;
    clean_leftovers(cluster).await;
    let cp = TestNamespace::new(cluster, "cp-skew").await.unwrap();
    let cni_ns = TestNamespace::new(cluster, "cni-skew").await.unwrap();
    let zns = TestNamespace::new(cluster, "zt-skew").await.unwrap();
    apply(
        cluster,
        &istio_manifest("skew", cp.name(), "v1.26.4", "InPlace"),
    );
    apply(cluster, &cni_manifest(cni_ns.name(), "v1.26.4"));
    apply(
        cluster,
        &ztunnel_manifest(
            zns.name(),
            "v1.26.4",
            "  targetRef:\n    kind: Istio\n    name: skew\n",
        ),
    );
    wait_ready(cluster, "ztunnel/default", "3m");
    eventually(90, "Istio skew Healthy", || async {
        let c = istio_condition(cluster, "skew", "DependenciesHealthy").await?;
        (c.status == ConditionStatus::True).then_some(())
    })
    .await;
    let before = daemonset(cluster, zns.name(), "ztunnel").await;

    // ZTunnel newer than the control plane: refused, nothing applied.
    patch_version(cluster, "ztunnel", "v1.27.2");
    let c = eventually(60, "UpdateRefused", || async {
        let c = zt_condition(cluster, "Reconciled").await?;
        (c.reason.as_deref() == Some("UpdateRefused")).then_some(c)
    })
    .await;
    let msg = c.message.unwrap();
    assert!(
        msg.contains("ZTunnel v1.27.2 is newer than the control plane v1.26.4")
            && msg.contains("IstioRevision skew")
            && msg.contains("keeps running v1.26.4"),
        "{msg}"
    );
    assert_eq!(
        table(cluster, &["get", "ztunnel"])[0][..4],
        ["default", "False", "UpdateRefused", "v1.27.2"]
    );
    // The old version still runs everywhere, but the requested one does not: not Ready, so
    // `kubectl wait` does not report a change that was not made.
    let ready = zt_condition(cluster, "Ready").await.unwrap();
    assert_eq!(ready.reason.as_deref(), Some("SpecNotApplied"));
    assert_eq!(
        ready.message.as_deref(),
        Some(
            "DaemonSet ztunnel keeps running v1.26.4: this spec was not applied (UpdateRefused, \
             see the Reconciled condition)"
        )
    );
    let waited = cluster
        .kubectl()
        .args([
            "wait",
            "--for=condition=Ready",
            "ztunnel/default",
            "--timeout=2s",
        ])
        .output()
        .unwrap();
    assert!(
        !waited.status.success(),
        "kubectl wait returned on a refused update"
    );
    let still = daemonset(cluster, zns.name(), "ztunnel").await;
    assert_eq!(still.metadata.generation, before.metadata.generation);
    assert_eq!(still.labels()["app.kubernetes.io/version"], "1.26.4");
    assert_every_node_runs(
        cluster,
        zns.name(),
        "app=ztunnel",
        "docker.io/istio/ztunnel:1.26.4-distroless",
    )
    .await;
    assert!(events(cluster, "UpdateRefused", "ZTunnel").contains("v1.27.2"));
    let dep = eventually(60, "Istio DependenciesHealthy False", || async {
        let c = istio_condition(cluster, "skew", "DependenciesHealthy").await?;
        (c.status == ConditionStatus::False).then_some(c)
    })
    .await;
    assert_eq!(dep.reason.as_deref(), Some("ZTunnelNotHealthy"));
    assert!(
        dep.message
            .as_deref()
            .unwrap_or("")
            .contains("UpdateRefused"),
        "{dep:?}"
    );

    // The control plane moves to 1.27: the refused change goes through.
    patch_istio(cluster, "skew", "v1.27.2");
    wait_ready(cluster, "istios/skew", "5m");
    eventually(120, "ZTunnel Healthy at 1.27.2", || async {
        let zt = Api::<ZTunnel>::all(cluster.client())
            .get("default")
            .await
            .ok()?;
        (zt.status?.state.as_deref() == Some("Healthy")).then_some(())
    })
    .await;
    assert_every_node_runs(
        cluster,
        zns.name(),
        "app=ztunnel",
        "docker.io/istio/ztunnel:1.27.2-distroless",
    )
    .await;

    // The control plane moves to 1.28: IstioCNI 1.26.4 is now two minors behind. It keeps
    // running, and says so.
    patch_istio(cluster, "skew", "v1.28.1");
    wait_ready(cluster, "istios/skew", "5m");
    let c = eventually(60, "IstioCNI VersionSkew", || async {
        let c = cni_condition(cluster, "Reconciled").await?;
        (c.reason.as_deref() == Some("VersionSkew")).then_some(c)
    })
    .await;
    let msg = c.message.unwrap();
    assert!(
        msg.contains(
            "IstioCNI v1.26.4 is more than one minor version older than the control plane v1.28.1"
        ) && msg.contains("move IstioCNI to v1.27.x first"),
        "{msg}"
    );
    assert_eq!(
        table(cluster, &["get", "istiocni"])[0][..4],
        ["default", "True", "VersionSkew", "v1.26.4"]
    );
    assert!(events(cluster, "VersionSkew", "IstioCNI").contains("v1.28.1"));
    let dep = eventually(60, "Istio sees the skew", || async {
        let c = istio_condition(cluster, "skew", "DependenciesHealthy").await?;
        (c.reason.as_deref() == Some("IstioCNINotHealthy")).then_some(c)
    })
    .await;
    assert!(dep.message.unwrap().contains("VersionSkew"));
    // The step the message asks for is accepted.
    patch_version(cluster, "istiocni", "v1.27.9");
    wait_ready(cluster, "istiocnis/default", "5m");
    eventually(60, "IstioCNI Healthy", || async {
        let c = cni_condition(cluster, "Reconciled").await?;
        (c.status == ConditionStatus::True).then_some(())
    })
    .await;
    assert_every_node_runs(
        cluster,
        cni_ns.name(),
        "k8s-app=istio-cni-node",
        "docker.io/istio/install-cni:1.27.9-distroless",
    )
    .await;
    clean(cluster, &["skew"]).await;
}

/// Missing prerequisites are reported and picked up when they appear; a v1alpha1 manifest is
/// reconciled like v1.
#[tokio::test]
async fn missing_targets_recover_and_v1alpha1_works() {
    let cluster = cluster_with_operator().await;
    let _guard = SINGLETONS.lock().await;
    clean_leftovers(cluster).await;
    let cp = TestNamespace::new(cluster, "cp-late").await.unwrap();
    let zns = format!("zt-late-{}", std::process::id());
    apply(
        cluster,
        &ztunnel_manifest(
            &zns,
            "v1.26.3",
            "  targetRef:\n    kind: Istio\n    name: late\n",
        ),
    );
    let c = eventually(60, "NamespaceNotFound", || async {
        let c = zt_condition(cluster, "Reconciled").await?;
        (c.reason.as_deref() == Some("NamespaceNotFound")).then_some(c)
    })
    .await;
    assert!(c.message.unwrap().contains(&zns));

    create_namespace(cluster, &zns).await;
    let c = eventually(60, "TargetNotFound", || async {
        let c = zt_condition(cluster, "Reconciled").await?;
        (c.reason.as_deref() == Some("TargetNotFound")).then_some(c)
    })
    .await;
    assert_eq!(
        c.message.as_deref(),
        Some("Istio late not found; mizzen continues when it exists")
    );
    assert_eq!(
        table(cluster, &["get", "ztunnel"])[0][..4],
        ["default", "False", "TargetNotFound", "v1.26.3"]
    );

    apply(
        cluster,
        &istio_manifest("late", cp.name(), "v1.26.3", "InPlace"),
    );
    wait_ready(cluster, "ztunnel/default", "3m");
    let zt = Api::<ZTunnel>::all(cluster.client())
        .get("default")
        .await
        .unwrap();
    let status = zt.status.unwrap();
    assert_eq!(status.state.as_deref(), Some("Healthy"));
    assert_eq!(status.istio_revision.as_deref(), Some("late"));
    kubectl(cluster, &["delete", "ztunnel", "default", "--wait=true"]);

    // The deprecated v1alpha1 (with `profile`, without targetRef), pinned by value.
    let zns2 = TestNamespace::new(cluster, "zt-alpha").await.unwrap();
    let alpha = format!(
        "apiVersion: sailoperator.io/v1alpha1\nkind: ZTunnel\nmetadata:\n  name: default\nspec:\n  namespace: {}\n  profile: ambient\n  version: v1.26.3\n  values:\n    ztunnel:\n      revision: late\n",
        zns2.name()
    );
    apply(cluster, &alpha);
    wait_ready(cluster, "ztunnels.v1alpha1.sailoperator.io/default", "3m");
    let rows = table(
        cluster,
        &["get", "ztunnels.v1alpha1.sailoperator.io", "default"],
    );
    assert_eq!(rows[0][..4], ["default", "True", "Healthy", "v1.26.3"]);
    let zt = Api::<ZTunnel>::all(cluster.client())
        .get("default")
        .await
        .unwrap();
    assert_eq!(
        zt.status.as_ref().unwrap().istio_revision.as_deref(),
        Some("late")
    );
    let ds = daemonset(cluster, zns2.name(), "ztunnel").await;
    let annotations = pod_annotations(&ds);
    assert_eq!(
        annotations.get("istio.io/rev").map(String::as_str),
        Some("late")
    );
    assert!(!annotations.contains_key(FOLLOWS));
    assert_eq!(
        env(&ds, "XDS_ADDRESS"),
        Some(format!("istiod-late.{}.svc:15012", cp.name()))
    );
    let owner = &ds.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("ZTunnel", zt.meta().uid.as_deref().unwrap())
    );
    assert_every_node_runs(
        cluster,
        zns2.name(),
        "app=ztunnel",
        "docker.io/istio/ztunnel:1.26.3-distroless",
    )
    .await;
    clean(cluster, &["late"]).await;
    kubectl(cluster, &["delete", "namespace", &zns, "--wait=false"]);
}
