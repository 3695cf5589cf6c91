//! In steady state the operator writes nothing, however often it reconciles (DESIGN.md
//! decision 3: "a no-op reconcile writes nothing"), and reads nothing either: it compares
//! with its caches (docs/scale.md). Requests are counted at the HTTP layer of the operator's
//! own client. A test binary of its own, so no other test's changes cause requests.

mod common;

use std::time::Duration;

use common::{install_crds, kubectl, start_operator_counting};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams};
use mizzen_catalog::Catalog;
use mizzen_testcluster::shared;

/// Changes that make every controller reconcile without changing anything it renders:
/// annotations on the Istio, the revision and the mesh ConfigMap, a label on istiod's
/// Deployment and on a namespace, all set to `value`.
fn touch_everything(cluster: &mizzen_testcluster::Cluster, value: &str) {
    let touched = format!("touched={value}");
    // A label on the Deployment, not an annotation: the API server counts a Deployment's
    // annotations in its generation, and istiod's Ready rightly waits until a new generation
    // is observed.
    for args in [
        &["annotate", "istio", "default"][..],
        &["annotate", "istiorevision", "default"],
        &["label", "deployment", "-n", "istio-system", "istiod"],
        &["annotate", "configmap", "-n", "istio-system", "istio"],
        &["label", "namespace", "apps"],
    ] {
        let mut args = args.to_vec();
        args.extend([touched.as_str(), "--overwrite"]);
        kubectl(cluster, &args);
    }
}

#[tokio::test]
async fn reconciles_without_changes_send_no_writes() {
    let cluster = shared().await;
    install_crds(cluster, &Catalog::embedded().unwrap()).await;
    let (_operator, requests) = start_operator_counting(cluster, Catalog::embedded().unwrap());
    kubectl(cluster, &["create", "namespace", "istio-system"]);
    kubectl(cluster, &["create", "namespace", "apps"]);
    let manifest = "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: default}\nspec: {namespace: istio-system, version: v1.27.3, profile: ambient}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("istio.yaml"), manifest).unwrap();
    kubectl(
        cluster,
        &[
            "apply",
            "-f",
            dir.path().join("istio.yaml").to_str().unwrap(),
        ],
    );
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "istios/default",
            "--timeout=2m",
        ],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (installed, reads) = requests.take();
    println!("requests to install the control plane: {installed} writes, {reads} reads");

    touch_everything(cluster, "1");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let paths = requests.read_paths.lock().unwrap().clone();
    let written = requests.write_paths.lock().unwrap().clone();
    let (idle, reads) = requests.take();
    println!("requests during 5 s of no-op reconciles: {idle} writes, {reads} reads");
    assert_eq!(idle, 0, "no-op reconciles must not write: {written:?}");
    assert_eq!(
        reads, 0,
        "no-op reconciles read from the caches, not the API server: {paths:?}"
    );

    // Another manager adds an entry to a list mizzen renders (an env var on istiod): it is
    // theirs under server-side apply, so mizzen leaves it and sends nothing to its children,
    // however often it reconciles (README, "Differences from upstream"). The new entry
    // changes istiod's pod template, so istiod really rolls out: the revision's and the
    // Istio's status say so, and that is all mizzen writes.
    kubectl(
        cluster,
        &[
            "set",
            "env",
            "deployment/istiod",
            "-n",
            "istio-system",
            "FOREIGN=1",
        ],
    );
    kubectl(
        cluster,
        &["label", "namespace", "apps", "team=b", "--overwrite"],
    );
    kubectl(
        cluster,
        &[
            "rollout",
            "status",
            "deployment/istiod",
            "-n",
            "istio-system",
            "--timeout=60s",
        ],
    );
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "istios/default",
            "--timeout=60s",
        ],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written = requests.write_paths.lock().unwrap().clone();
    let (during, _) = requests.take();
    println!("requests while istiod rolled out for the foreign env var: {during} writes");
    assert!(
        written
            .iter()
            .all(|w| w.starts_with("PATCH /apis/sailoperator.io/") && w.contains("/status?")),
        "only status is written while istiod rolls out: {written:?}"
    );
    // With the foreign entry in place, reconciles send nothing at all.
    touch_everything(cluster, "2");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let paths = requests.read_paths.lock().unwrap().clone();
    let written = requests.write_paths.lock().unwrap().clone();
    let (foreign, reads) = requests.take();
    println!("requests after a foreign env var was added: {foreign} writes, {reads} reads");
    assert_eq!(
        foreign, 0,
        "a foreign list entry must not cause writes: {written:?}"
    );
    assert_eq!(reads, 0, "nor reads: {paths:?}");
    let env = kubectl(
        cluster,
        &[
            "get",
            "deployment/istiod",
            "-n",
            "istio-system",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[*].name}",
        ],
    );
    assert!(env.contains("FOREIGN"), "{env}");

    // Children deleted behind mizzen's back come back at once, through the watch on their
    // kind, not a periodic resync (there is none): a ServiceAccount (a kind no controller
    // watched before issue 13) and istiod's Deployment.
    let client = cluster.client();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "istio-system");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "istio-system");
    let dp = DeleteParams::background();
    for (what, seconds) in [
        (
            "ServiceAccount istiod",
            recreated(&accounts, "istiod", &dp).await,
        ),
        (
            "Deployment istiod",
            recreated(&deployments, "istiod", &dp).await,
        ),
    ] {
        println!("{what} deleted behind mizzen's back: recreated after {seconds:.3} s");
        assert!(seconds < 3.0, "{what} took {seconds:.3} s to come back");
    }

    // A real change is written (the counter can count).
    requests.take();
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"values":{"pilot":{"env":{"EXTRA":"1"}}}}}"#,
        ],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(requests.take().0 > 0);
}

/// Deletes `name` and returns the seconds until an object of that name with another UID
/// exists again (polled every 20 ms, for at most 30 s).
async fn recreated<K>(api: &Api<K>, name: &str, dp: &DeleteParams) -> f64
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let old = api.get(name).await.unwrap().meta().uid.clone();
    api.delete(name, dp).await.unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(o) = api.get_opt(name).await.unwrap()
            && o.meta().uid != old
        {
            return started.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} was not recreated within 30 s");
}
