//! Uninstalling and reinstalling the CRDs under a running operator (what removing and
//! reinstalling the chart or bundle does; issue 10, defect 2): `/readyz` says not-ready while
//! the kinds are gone, and every controller works again in the same process once they are
//! back: the mesh is Healthy again within 30 s.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mizzen_testcluster::shared;

#[tokio::test]
async fn controllers_recover_when_the_crds_come_back() {
    let cluster = shared().await;
    install_crds(cluster);
    let dir = tempfile::tempdir().unwrap();
    let mut op = Operator::start("mizzen", &cluster.kubeconfig_path(), dir.path(), &[]);
    seed(cluster, "install-ambient", &["v1.26.3"]);

    kubectl(
        cluster,
        &[
            "delete",
            "crd",
            "istios.sailoperator.io",
            "istiorevisions.sailoperator.io",
            "istiorevisiontags.sailoperator.io",
            "istiocnis.sailoperator.io",
            "ztunnels.sailoperator.io",
            "--wait",
        ],
    );
    let (code, body) = until(60, "/readyz to say not-ready", || {
        op.readyz().filter(|(c, _)| *c == 503)
    });
    println!("/readyz {code} while the CRDs are gone:\n{body}");

    install_crds(cluster);
    let back = Instant::now();
    let ambient = std::fs::read(root().join("deploy/examples/ambient.yaml")).unwrap();
    kubectl_stdin(cluster, &["apply", "-f", "-"], Some(&ambient));
    while !["istios/default", "istiocnis/default", "ztunnels/default"]
        .iter()
        .all(|r| kubectl(cluster, &["get", r, "-o", "jsonpath={.status.state}"]) == "Healthy")
    {
        if back.elapsed() > Duration::from_secs(90) {
            let state = kubectl(cluster, &["get", "istio,istiorevision,istiocni,ztunnel"]);
            let log = op.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "not Healthy 90 s after the CRDs came back:\n{state}\noperator log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let healthy = back.elapsed();
    println!("Healthy again {healthy:.1?} after the CRDs came back");
    assert!(healthy < Duration::from_secs(30), "{healthy:?}");
    until(60, "/readyz ok again", || {
        op.readyz().filter(|(c, _)| *c == 200)
    });
    assert!(op.child_alive(), "the same process: {}", op.log());
}
