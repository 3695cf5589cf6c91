//! A value the API server rejects when mizzen applies a child (issue 10, defect 5: an invalid
//! toleration operator) is the user's error: a condition naming the field, a Warning Event,
//! and no further attempts until the spec changes. A test binary of its own, so writes can be
//! counted.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{apply, eventually, install_crds, kubectl, start_operator_counting, wait_ready};
use kube::Api;
use mizzen_api::IstioCNI;
use mizzen_catalog::Catalog;
use mizzen_testcluster::shared;

fn cni(tolerations: &str) -> String {
    format!(
        "apiVersion: sailoperator.io/v1
kind: IstioCNI
metadata:
  name: default
spec:
  namespace: istio-cni
  version: v1.26.3
  profile: ambient
  values:
    cni:
      tolerations: {tolerations}
"
    )
}

#[tokio::test]
async fn rejected_values_are_reported_once_and_not_retried() {
    let cluster = shared().await;
    install_crds(cluster, &Catalog::embedded().unwrap()).await;
    let (_operator, requests) = start_operator_counting(cluster, Catalog::embedded().unwrap());
    kubectl(cluster, &["create", "namespace", "istio-cni"]);
    apply(cluster, &cni(r#"[{"operator": "Bogus", "key": "k"}]"#));
    let cnis: Api<IstioCNI> = Api::all(cluster.client());
    let message = eventually(90, "Reconciled=False InvalidValues", || async {
        let s = cnis.get("default").await.ok()?.status?;
        let c = s.conditions.into_iter().find(|c| c.type_ == "Reconciled")?;
        (c.reason.as_deref() == Some("InvalidValues")).then_some(c.message.unwrap_or_default())
    })
    .await;
    println!("{message}");
    assert!(
        message.contains("rejected by the API server") && message.contains("operator"),
        "the condition names the field: {message}"
    );
    let events = kubectl(
        cluster,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=InvalidValues,involvedObject.kind=IstioCNI",
        ],
    );
    assert!(events.contains("Warning"), "{events}");
    // Nothing more is sent: no retry of the rejected apply, no status churn.
    let settled = requests.writes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let later = requests.writes.load(Ordering::SeqCst);
    println!(
        "writes while the spec stayed rejected for 15 s: {}",
        later - settled
    );
    assert_eq!(later, settled, "a rejected spec is not retried");

    // The spec changes: applied at once.
    apply(cluster, &cni("[]"));
    wait_ready(cluster, "istiocnis/default", "2m");
}
