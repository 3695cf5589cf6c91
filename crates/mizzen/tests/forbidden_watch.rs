//! Bad input for the caches (docs/scale.md): the operator's role allows reading
//! PodDisruptionBudgets but not watching them. The operator says so (`/readyz` names the
//! failing watch and its 403, the log warns) and still installs and repairs istiod's
//! PodDisruptionBudget, reading that one kind from the API server instead of serving stale
//! data from a cache that cannot be kept up to date.

mod common;

use common::*;
use mizzen_testcluster::shared;

#[tokio::test]
async fn a_forbidden_watch_is_reported_and_its_kind_read_directly() {
    let cluster = shared().await;
    install_crds(cluster);
    // The shipped roles without `watch` on poddisruptionbudgets.
    let identity = ShippedIdentity::create(cluster, |role| {
        for rule in role["rules"].as_array_mut().into_iter().flatten() {
            if rule["resources"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == "poddisruptionbudgets"))
            {
                rule["verbs"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|v| v != "watch");
            }
        }
    });
    assert!(
        !identity.rules.is_empty(),
        "the adjusted roles were applied"
    );
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::start_with(
        "mizzen-0",
        &identity.kubeconfig(),
        dir.path(),
        &[],
        &[("POD_NAMESPACE", identity.namespace.as_str())],
    );

    // Reported: /readyz is 503 and names the watch and the API server's answer.
    let body = until(60, "/readyz to name the forbidden watch", || {
        op.readyz()
            .filter(|(code, body)| *code == 503 && body.contains("poddisruptionbudgets"))
            .map(|(_, body)| body)
    });
    println!("/readyz: {body}");
    assert!(body.contains("forbidden"), "{body}");

    // And still working: the ambient mesh installs, istiod's PodDisruptionBudget included.
    let out = seed(cluster, "install-ambient", &["v1.26.3"]);
    println!("{out}");
    let pdb = || {
        kubectl(
            cluster,
            &[
                "get",
                "pdb",
                "istiod",
                "-n",
                "istio-system",
                "--ignore-not-found",
                "-o",
                "jsonpath={.metadata.uid}",
            ],
        )
    };
    let uid = pdb();
    assert!(
        !uid.trim().is_empty(),
        "istiod's PodDisruptionBudget exists"
    );

    // A change to the PodDisruptionBudget's owner re-applies it: read from the API server
    // (GET and LIST answered 200), never from the cache that is not allowed to watch.
    let m = op.scrape().unwrap();
    let reads = |m: &Metrics| -> f64 {
        m.select("mizzen_kube_requests_total", &[])
            .iter()
            .filter(|s| {
                s.labels["resource"] == "poddisruptionbudgets"
                    && s.labels["code"] == "200"
                    && matches!(s.labels["verb"].as_str(), "get" | "list")
            })
            .map(|s| s.value)
            .sum()
    };
    let before = reads(&m);
    kubectl(cluster, &["delete", "pdb", "-n", "istio-system", "istiod"]);
    kubectl(
        cluster,
        &[
            "annotate",
            "istiorevision",
            "default",
            "poke=1",
            "--overwrite",
        ],
    );
    until(60, "the PodDisruptionBudget to be recreated", || {
        let now = pdb();
        (!now.trim().is_empty() && now != uid).then_some(())
    });
    let after = reads(&op.scrape().unwrap());
    println!("reads of poddisruptionbudgets from the API server: {before} then {after}");
    assert!(
        before > 0.0 && after > before,
        "the kind is read from the API server"
    );
    assert!(
        op.log().contains("watch failing"),
        "the log warns:\n{}",
        op.log_tail(30)
    );
}
