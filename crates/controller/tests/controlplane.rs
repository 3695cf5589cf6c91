//! The control-plane lifecycle of the OSSM procedure (§1.5–1.6) on the local control plane,
//! with the operator running in-process and the steps done with kubectl as a user would.

mod common;

use common::{
    AMBIENT, apply, cluster_with_operator, eventually, kubectl, next_second, table, wait_ready,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use mizzen_api::{Istio, IstioRevision};
use mizzen_testcluster::Cluster;

/// Creates namespace `name` (the control plane's) and returns it.
async fn namespace(cluster: &Cluster, name: &str) -> String {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(cluster.client())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name.to_string()
}

fn istio_manifest(name: &str, ns: &str, version: &str, strategy: &str, grace: u32) -> String {
    format!(
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata:\n  name: {name}\nspec:\n  namespace: {ns}\n  version: {version}\n  updateStrategy:\n    type: {strategy}\n    inactiveRevisionDeletionGracePeriodSeconds: {grace}\n"
    )
}

fn image(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test]
async fn inplace_patch_update_rolls_istiod_and_kubectl_wait_waits_for_it() {
    let cluster = cluster_with_operator().await;
    let ns = namespace(cluster, "cp-inplace").await;
    let name = "inplace";
    apply(
        cluster,
        &istio_manifest(name, &ns, "v1.26.3", "InPlace", 30),
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    let rows = table(cluster, &["get", "istio", name]);
    assert_eq!(
        rows[0][..7],
        [name, "1", "1", "0", name, "Healthy", "v1.26.3"]
    );

    // The documented update: patch the version, then wait for Ready.
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    wait_ready(cluster, &format!("istios/{name}"), "5m");
    // When wait returns, istiod runs 1.26.4 everywhere.
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), &ns);
    let d = deployments.get(&format!("istiod-{name}")).await.unwrap();
    assert_eq!(image(&d), "docker.io/istio/pilot:1.26.4");
    let s = d.status.clone().unwrap();
    assert_eq!(
        (s.updated_replicas, s.available_replicas, s.replicas),
        (Some(1), Some(1), Some(1))
    );
    let rows = table(cluster, &["get", "istio", name]);
    assert_eq!(
        rows[0][..7],
        [name, "1", "1", "0", name, "Healthy", "v1.26.4"]
    );
    let revs: Vec<String> = Api::<IstioRevision>::all(cluster.client())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.spec.namespace == ns)
        .map(|r| format!("{} {}", r.metadata.name.unwrap(), r.spec.version))
        .collect();
    assert_eq!(revs, [format!("{name} v1.26.4")]);

    // More than one minor at once is refused; the running revision stays as it is.
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.28.1"}}"#,
        ],
    );
    let istios: Api<Istio> = Api::all(cluster.client());
    let msg = eventually(90, "UpdateRefused", || async {
        let i = istios.get(name).await.ok()?;
        let s = i.status?;
        (s.state.as_deref() == Some("UpdateRefused"))
            .then(|| {
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "Reconciled")?
                    .message
            })
            .flatten()
    })
    .await;
    assert!(
        msg.contains("v1.26.4") && msg.contains("v1.28.1") && msg.contains("v1.27.x first"),
        "{msg}"
    );
    let d = deployments.get(&format!("istiod-{name}")).await.unwrap();
    assert_eq!(image(&d), "docker.io/istio/pilot:1.26.4");
    // The seed's "patch, then wait for Ready" must not return on a refused change.
    let waited = cluster
        .kubectl()
        .args([
            "wait",
            "--for=condition=Ready",
            &format!("istios/{name}"),
            "--timeout=5s",
        ])
        .output()
        .unwrap();
    assert!(
        !waited.status.success(),
        "kubectl wait returned on a refused update: {}",
        String::from_utf8_lossy(&waited.stdout)
    );
    let events = kubectl(
        cluster,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("reason=UpdateRefused,involvedObject.name={name}"),
        ],
    );
    assert!(events.contains("UpdateRefused"), "{events}");

    // The same through another minor's alias.
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.28-latest"}}"#,
        ],
    );
    eventually(90, "the alias jump refused", || async {
        let s = istios.get(name).await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (s.state.as_deref() == Some("UpdateRefused")
            && ready.status == mizzen_api::ConditionStatus::False
            && ready.reason.as_deref() == Some("SpecNotApplied")
            && ready.observed_generation == istios.get(name).await.ok()?.metadata.generation)
            .then_some(())
    })
    .await;
    // A second, different refusal is a new Event, not folded into the first one.
    eventually(30, "an Event for the second refusal", || async {
        let events = kubectl(
            cluster,
            &[
                "get",
                "events",
                "-A",
                "--field-selector",
                &format!("reason=UpdateRefused,involvedObject.name={name}"),
            ],
        );
        // One row per distinct Event (a folded series would be one row).
        (events.lines().skip(1).count() >= 2 && events.contains("v1.28.10")).then_some(())
    })
    .await;

    // One minor is accepted.
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.27.2"}}"#,
        ],
    );
    wait_ready(cluster, &format!("istios/{name}"), "5m");
    let d = deployments.get(&format!("istiod-{name}")).await.unwrap();
    assert_eq!(image(&d), "docker.io/istio/pilot:1.27.2");
    kubectl(cluster, &["delete", "istio", name]);
}

/// A pod that KWOK runs, in namespace `ns`, with the given labels and annotations.
async fn pod(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) {
    let p: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/app:1"}]}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(cluster.client(), ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

/// `kubectl get istiorevision` rows of the revisions of Istio `istio` (selected by mizzen's
/// inventory label), as (NAME, READY, STATUS, IN USE, VERSION).
async fn revision_rows(
    cluster: &Cluster,
    istio: &str,
) -> Vec<(String, String, String, String, String)> {
    let selector = format!("mizzen.io/owner=istio.{istio}");
    // The printer columns' JSONPaths, as custom columns so that empty cells read `<none>`.
    let columns = "custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type==\"Ready\")].status,\
        STATUS:.status.state,INUSE:.status.conditions[?(@.type==\"InUse\")].status,VERSION:.spec.version";
    kubectl(
        cluster,
        &["get", "istiorevision", "-l", &selector, "-o", columns],
    )
    .lines()
    .skip(1)
    .map(|l| {
        let c: Vec<&str> = l.split_whitespace().collect();
        (
            c[0].into(),
            c[1].into(),
            c[2].into(),
            c[3].into(),
            c[4].into(),
        )
    })
    .collect()
}

fn row(
    name: &str,
    ready: &str,
    status: &str,
    in_use: &str,
    version: &str,
) -> (String, String, String, String, String) {
    (
        name.into(),
        ready.into(),
        status.into(),
        in_use.into(),
        version.into(),
    )
}

#[tokio::test]
async fn revision_based_update_runs_side_by_side_prunes_the_unused_one_and_rolls_back() {
    let _ambient = AMBIENT.lock().await;
    let cluster = cluster_with_operator().await;
    let ns = namespace(cluster, "cp-canary").await;
    let app = namespace(cluster, "cp-canary-bookinfo").await;
    let zt = namespace(cluster, "cp-canary-ztunnel").await;
    let name = "canary";
    apply(
        cluster,
        &istio_manifest(name, &ns, "v1.26.3", "RevisionBased", 30),
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    // Ambient workloads and a ztunnel pod following this Istio (what the ZTunnel controller
    // renders): the ztunnel pod started while v1-26-3 was active.
    kubectl(
        cluster,
        &[
            "label",
            "namespace",
            &app,
            "istio.io/dataplane-mode=ambient",
        ],
    );
    pod(
        cluster,
        &zt,
        "ztunnel-a",
        serde_json::json!({"app": "ztunnel"}),
        serde_json::json!({"mizzen.io/follows-istio": name}),
    )
    .await;
    let old = format!("{name}-v1-26-3");
    let new = format!("{name}-v1-26-4");
    eventually(90, "old revision in use", || async {
        (revision_rows(cluster, name).await == [row(&old, "True", "Healthy", "True", "v1.26.3")])
            .then_some(())
    })
    .await;

    // The ztunnel pod clearly started before the update (a pod created in the second of an
    // activation is bound to the revision activated).
    next_second().await;
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    wait_ready(cluster, &format!("istios/{name}"), "5m");
    // Seed §1.6.2 step 4–5: two revisions, the old one in use, the new one active but unused.
    let rows = table(cluster, &["get", "istio", name]);
    assert_eq!(
        rows[0][..7],
        [name, "2", "2", "1", &new, "Healthy", "v1.26.4"]
    );
    eventually(90, "both revisions listed", || async {
        (revision_rows(cluster, name).await
            == [
                row(&old, "True", "Healthy", "True", "v1.26.3"),
                row(&new, "True", "Healthy", "False", "v1.26.4"),
            ])
        .then_some(())
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), &ns);
    assert_eq!(
        image(&deployments.get(&format!("istiod-{old}")).await.unwrap()),
        "docker.io/istio/pilot:1.26.3"
    );
    assert_eq!(
        image(&deployments.get(&format!("istiod-{new}")).await.unwrap()),
        "docker.io/istio/pilot:1.26.4"
    );
    let why = kubectl(
        cluster,
        &[
            "get",
            "istiorevision",
            &old,
            "-o",
            "jsonpath={.status.inUseBy}",
        ],
    );
    assert!(
        why.contains(&format!("ambient namespace {app}")) && why.contains("ztunnel-a"),
        "{why}"
    );
    // The stable Service now selects the new revision's istiod.
    let svc = kubectl(
        cluster,
        &[
            "get",
            "service",
            "-n",
            &ns,
            &format!("istiod-active-{name}"),
            "-o",
            "jsonpath={.spec.selector}",
        ],
    );
    assert!(svc.contains(&new), "{svc}");

    // Rolling back while the old revision exists makes it active again.
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.3"}}"#,
        ],
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    let rows = table(cluster, &["get", "istio", name]);
    assert_eq!(rows[0][4], old);
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");

    // The ztunnel rollout: the pod is replaced after v1-26-4 became active. Now the new
    // revision is in use and the old one not; after the 30 s grace period it is deleted.
    kubectl(
        cluster,
        &["delete", "pod", "-n", &zt, "ztunnel-a", "--wait=true"],
    );
    pod(
        cluster,
        &zt,
        "ztunnel-b",
        serde_json::json!({"app": "ztunnel"}),
        serde_json::json!({"mizzen.io/follows-istio": name}),
    )
    .await;
    eventually(90, "usage moves to the new revision", || async {
        (revision_rows(cluster, name).await
            == [
                row(&old, "True", "Healthy", "False", "v1.26.3"),
                row(&new, "True", "Healthy", "True", "v1.26.4"),
            ])
        .then_some(())
    })
    .await;
    let unused_at = std::time::Instant::now();
    eventually(120, "old revision pruned", || async {
        (revision_rows(cluster, name).await == [row(&new, "True", "Healthy", "True", "v1.26.4")])
            .then_some(())
    })
    .await;
    let waited = unused_at.elapsed().as_secs();
    assert!(
        waited >= 25,
        "pruned after {waited}s, before the 30 s grace period"
    );
    // The Istio's counts follow the revision's removal (its finalizer goes first).
    eventually(30, "the Istio to count one revision", || async {
        let rows = table(cluster, &["get", "istio", name]);
        (rows[0][..7] == [name, "1", "1", "1", &new, "Healthy", "v1.26.4"]).then_some(())
    })
    .await;
    let events = kubectl(
        cluster,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ],
    );
    assert!(
        events.contains("RevisionCreated") && events.contains("RevisionPruned"),
        "{events}"
    );
    kubectl(
        cluster,
        &["label", "namespace", &app, "istio.io/dataplane-mode-"],
    );
    kubectl(cluster, &["delete", "istio", name]);
}

#[tokio::test]
async fn ambient_enrolment_keeps_a_revision_and_failed_pods_do_not() {
    let _ambient = AMBIENT.lock().await;
    let cluster = cluster_with_operator().await;
    let ns = namespace(cluster, "cp-usage").await;
    let app = namespace(cluster, "cp-usage-app").await;
    let zt = namespace(cluster, "cp-usage-ztunnel").await;
    let name = "usage";
    apply(
        cluster,
        &istio_manifest(name, &ns, "v1.27.1", "RevisionBased", 5),
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    let old = format!("{name}-v1-27-1");
    // Used only through ambient enrolment (ztunnel pod bound to it, namespace enrolled).
    kubectl(
        cluster,
        &[
            "label",
            "namespace",
            &app,
            "istio.io/dataplane-mode=ambient",
        ],
    );
    pod(
        cluster,
        &zt,
        "ztunnel-x",
        serde_json::json!({"app": "ztunnel"}),
        serde_json::json!({"mizzen.io/follows-istio": name}),
    )
    .await;
    // And a pod injected by it that will fail.
    pod(
        cluster,
        &app,
        "job",
        serde_json::json!({}),
        serde_json::json!({"istio.io/rev": old}),
    )
    .await;
    eventually(90, "in use", || async {
        (revision_rows(cluster, name).await == [row(&old, "True", "Healthy", "True", "v1.27.1")])
            .then_some(())
    })
    .await;
    next_second().await;
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.27.2"}}"#,
        ],
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    // Well past the 5 s grace period the old revision is still there: ambient workloads use it.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let rows = revision_rows(cluster, name).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].3, "True");

    // Ambient use ends (the namespace leaves ambient mode); only the injected pod remains.
    kubectl(
        cluster,
        &["label", "namespace", &app, "istio.io/dataplane-mode-"],
    );
    let why = eventually(90, "only the pod keeps it", || async {
        let why = kubectl(
            cluster,
            &[
                "get",
                "istiorevision",
                &old,
                "-o",
                "jsonpath={.status.inUseBy}",
            ],
        );
        (!why.contains("ambient")).then_some(why)
    })
    .await;
    assert!(why.contains(&format!("pod {app}/job")), "{why}");
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert_eq!(
        revision_rows(cluster, name).await.len(),
        2,
        "a running pod keeps its revision"
    );

    // The pod fails: a terminal pod keeps nothing in use, and the revision is pruned.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(cluster.client(), &app);
    pods.patch_status(
        "job",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"status": {"phase": "Failed"}})),
    )
    .await
    .unwrap();
    eventually(120, "revision used only by a Failed pod pruned", || async {
        (revision_rows(cluster, name).await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        revision_rows(cluster, name).await[0].0,
        format!("{name}-v1-27-2")
    );
    kubectl(cluster, &["delete", "istio", name]);
}

#[tokio::test]
async fn bad_input_gives_conditions_and_recovers() {
    let cluster = cluster_with_operator().await;
    let istios: Api<Istio> = Api::all(cluster.client());
    let state = |n: &'static str| {
        let istios = istios.clone();
        move || {
            let istios = istios.clone();
            async move { istios.get(n).await.ok()?.status?.state }
        }
    };

    // The control-plane namespace does not exist yet: a condition, then picked up.
    let name = "late-ns";
    apply(
        cluster,
        &istio_manifest(name, "cp-late", "v1.26.3", "InPlace", 30),
    );
    let s = eventually(90, "NamespaceNotFound", || {
        let f = state(name);
        async move { f().await.filter(|s| s == "NamespaceNotFound") }
    })
    .await;
    assert_eq!(s, "NamespaceNotFound");
    let rev_msg = kubectl(
        cluster,
        &[
            "get",
            "istiorevision",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Reconciled\")].message}",
        ],
    );
    assert!(rev_msg.contains("cp-late"), "{rev_msg}");
    namespace(cluster, "cp-late").await;
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    kubectl(cluster, &["delete", "istio", name]);

    // An end-of-life version: a clear condition naming the supported versions, no revision
    // written, and pruning of other revisions still works.
    let ns = namespace(cluster, "cp-eol").await;
    let name = "eol";
    apply(
        cluster,
        &istio_manifest(name, &ns, "v1.26.3", "RevisionBased", 3),
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.24.3"}}"#,
        ],
    );
    eventually(90, "VersionNotSupported", || {
        let f = state(name);
        async move { f().await.filter(|s| s == "VersionNotSupported") }
    })
    .await;
    let msg = kubectl(
        cluster,
        &[
            "get",
            "istio",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Reconciled\")].message}",
        ],
    );
    assert!(
        msg.contains("v1.24.3") && msg.contains("end-of-life") && msg.contains("v1.26"),
        "{msg}"
    );
    // The never-used v1-26-3 revision is pruned after 3 s although the spec is refused; the
    // active one stays.
    eventually(90, "pruning continues", || async {
        let rows = revision_rows(cluster, name).await;
        (rows.len() == 1 && rows[0].0 == format!("{name}-v1-26-4")).then_some(())
    })
    .await;
    kubectl(cluster, &["delete", "istio", name]);

    // An invalid image reference (a hub with a space) is refused naming the field; istiod
    // keeps its image.
    let ns = namespace(cluster, "cp-image").await;
    let name = "bad-image";
    apply(
        cluster,
        &istio_manifest(name, &ns, "v1.26.3", "InPlace", 30),
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"values":{"global":{"hub":"quay.io/my hub"}}}}"#,
        ],
    );
    let msg = eventually(90, "InvalidValues on the revision", || async {
        let msg = kubectl(
            cluster,
            &[
                "get",
                "istiorevision",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.reason==\"InvalidValues\")].message}",
            ],
        );
        (!msg.is_empty()).then_some(msg)
    })
    .await;
    assert!(msg.contains("`global.hub`"), "{msg}");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), &ns);
    let d = deployments.get(&format!("istiod-{name}")).await.unwrap();
    assert_eq!(image(&d), "docker.io/istio/pilot:1.26.3");
    kubectl(cluster, &["delete", "istio", name]);
}

#[tokio::test]
async fn strategy_switches_both_ways_create_the_other_revision_and_prune_the_old() {
    let cluster = cluster_with_operator().await;
    let ns = namespace(cluster, "cp-switch").await;
    let name = "switch";
    apply(cluster, &istio_manifest(name, &ns, "v1.28.2", "InPlace", 2));
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    apply(
        cluster,
        &istio_manifest(name, &ns, "v1.28.2", "RevisionBased", 2),
    );
    let based = format!("{name}-v1-28-2");
    eventually(120, "InPlace -> RevisionBased", || async {
        let rows = revision_rows(cluster, name).await;
        (rows.len() == 1 && rows[0].0 == based).then_some(())
    })
    .await;
    apply(cluster, &istio_manifest(name, &ns, "v1.28.2", "InPlace", 2));
    eventually(120, "RevisionBased -> InPlace", || async {
        let rows = revision_rows(cluster, name).await;
        (rows.len() == 1 && rows[0].0 == name).then_some(())
    })
    .await;
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    kubectl(cluster, &["delete", "istio", name]);
}

#[tokio::test]
async fn values_keys_mizzen_does_not_act_on_are_reported() {
    let cluster = cluster_with_operator().await;
    let ns = namespace(cluster, "cp-unknown").await;
    let name = "unknown-values";
    let manifest = format!(
        "{}  profile: stable\n  values:\n    revisionTags: [canary]\n    pilot:\n      replicaCuont: 2\n      replicaCount: 2\n    meshConfig:\n      anything: true\n",
        istio_manifest(name, &ns, "v1.26.3", "InPlace", 30)
    );
    apply(cluster, &manifest);
    let note = eventually(90, "an UnknownValues event", || async {
        let events = kubectl(
            cluster,
            &[
                "get",
                "events",
                "-A",
                "--field-selector",
                &format!("reason=UnknownValues,involvedObject.name={name}"),
                "-o",
                "jsonpath={.items[*].note}",
            ],
        );
        let e2 = kubectl(
            cluster,
            &[
                "get",
                "events",
                "-A",
                "--field-selector",
                &format!("reason=UnknownValues,involvedObject.name={name}"),
                "-o",
                "jsonpath={.items[*].message}",
            ],
        );
        let all = format!("{events}{e2}");
        (!all.is_empty()).then_some(all)
    })
    .await;
    assert!(note.contains("pilot.replicaCuont"), "{note}");
    assert!(
        note.contains("pilot.replicaCount (no effect while pilot.autoscaleEnabled"),
        "a value without effect is reported too: {note}"
    );
    assert!(
        !note.contains("meshConfig"),
        "meshConfig is passed through, so acted upon: {note}"
    );
    // Accepted by the schema but not acted on: named with the reason.
    assert!(
        note.contains("revisionTags (mizzen renders tags from IstioRevisionTag resources"),
        "{note}"
    );
    assert!(
        note.contains("profile stable (its ValidatingAdmissionPolicy is not rendered yet)"),
        "{note}"
    );
    kubectl(cluster, &["delete", "istio", name]);
}

/// `compatibilityVersion` is acted on (istiod gets the older minor's settings) or, when it
/// names no older minor the version can restore, refused with `InvalidValues` naming the key
/// and the accepted values; fixing it recovers.
#[tokio::test]
async fn compatibility_version_is_acted_on_or_refused() {
    let cluster = cluster_with_operator().await;
    let ns = namespace(cluster, "cp-compat").await;
    let name = "compat";
    let manifest = |compat: &str| {
        format!(
            "{}  values:\n    compatibilityVersion: \"{compat}\"\n",
            istio_manifest(name, &ns, "v1.26.3", "InPlace", 30)
        )
    };
    apply(cluster, &manifest("1.26"));
    let condition = |field: &str| {
        kubectl(
            cluster,
            &[
                "get",
                "istio",
                name,
                "-o",
                &format!("jsonpath={{.status.conditions[?(@.type==\"Reconciled\")].{field}}}"),
            ],
        )
    };
    eventually(60, "InvalidValues", || async {
        (condition("reason") == "InvalidValues").then_some(())
    })
    .await;
    let message = condition("message");
    assert!(
        message.contains("compatibilityVersion") && message.contains("one of 1.23 … 1.25"),
        "{message}"
    );
    apply(cluster, &manifest("1.24"));
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    let env = kubectl(
        cluster,
        &[
            "get",
            "deployment",
            // The revision is named after the Istio: istiod-<revision>.
            &format!("istiod-{name}"),
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[?(@.name==\"PILOT_ENABLE_IP_AUTOALLOCATE\")].value}",
        ],
    );
    assert_eq!(env, "false");
    kubectl(cluster, &["delete", "istio", name]);
}

#[tokio::test]
async fn a_revision_in_use_is_kept_until_nothing_uses_it() {
    let cluster = cluster_with_operator().await;
    let ns = namespace(cluster, "cp-guard").await;
    let name = "guarded";
    apply(
        cluster,
        &istio_manifest(name, &ns, "v1.26.3", "RevisionBased", 30),
    );
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    let rev = format!("{name}-v1-26-3");
    let users = namespace(cluster, "cp-guard-apps").await;
    kubectl(
        cluster,
        &["label", "namespace", &users, &format!("istio.io/rev={rev}")],
    );
    let revisions: Api<IstioRevision> = Api::all(cluster.client());
    eventually(60, "the revision in use", || async {
        let r = revisions.get(&rev).await.ok()?;
        (r.finalizers()
            .iter()
            .any(|f| f == "mizzen.io/in-use-protection")
            && r.status?.in_use_by.iter().any(|u| u.contains(&users)))
        .then_some(())
    })
    .await;

    // Deleting it while a namespace uses it: it stays, istiod keeps running, the status and
    // an Event name the user.
    kubectl(cluster, &["delete", "istiorevision", &rev, "--wait=false"]);
    let msg = eventually(60, "DeletionBlocked", || async {
        let r = revisions.get(&rev).await.ok()?;
        r.metadata.deletion_timestamp.as_ref()?;
        let c = r
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Reconciled")?;
        (c.reason.as_deref() == Some("DeletionBlocked")).then_some(c.message.unwrap_or_default())
    })
    .await;
    assert!(msg.contains(&format!("namespace {users}")), "{msg}");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), &ns);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        deployments
            .get_opt(&format!("istiod-{rev}"))
            .await
            .unwrap()
            .is_some(),
        "istiod keeps running while the revision is in use"
    );
    let events = kubectl(
        cluster,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("reason=DeletionBlocked,involvedObject.name={rev}"),
        ],
    );
    assert!(events.contains("Warning"), "{events}");

    // Nothing uses it any more: the deletion goes through, and the Istio, whose active
    // revision it is, writes it anew.
    kubectl(cluster, &["label", "namespace", &users, "istio.io/rev-"]);
    eventually(60, "the old revision object gone", || async {
        match revisions.get_opt(&rev).await.ok()? {
            None => Some(()),
            Some(r) => r.metadata.deletion_timestamp.is_none().then_some(()),
        }
    })
    .await;
    wait_ready(cluster, &format!("istios/{name}"), "2m");
    kubectl(cluster, &["delete", "istio", name]);
}
