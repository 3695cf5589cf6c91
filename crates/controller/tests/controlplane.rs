//! The control-plane lifecycle of the OSSM procedure (§1.5–1.6) on the local control plane,
//! with the operator running in-process and the steps done with kubectl as a user would.

mod common;

use common::{cluster_with_operator, eventually, kubectl, table};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
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

fn apply(cluster: &Cluster, manifest: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.yaml");
    std::fs::write(&f, manifest).unwrap();
    kubectl(cluster, &["apply", "-f", f.to_str().unwrap()]);
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
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("istios/{name}"),
            "--timeout=2m",
        ],
    );
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
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("istios/{name}"),
            "--timeout=5m",
        ],
    );
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
    let msg = eventually(30, "UpdateRefused", || async {
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
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("istios/{name}"),
            "--timeout=5m",
        ],
    );
    let d = deployments.get(&format!("istiod-{name}")).await.unwrap();
    assert_eq!(image(&d), "docker.io/istio/pilot:1.27.2");
    kubectl(cluster, &["delete", "istio", name]);
}
