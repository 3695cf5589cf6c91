//! Two `mizzen run --leader-elect` processes on one cluster: exactly one writes; `kill -9` of
//! the leader during a ztunnel rollout hands over within the lease duration and the standby
//! converges the mesh; SIGTERM of the leader hands over in under 2 s.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mizzen_testcluster::shared;

#[tokio::test]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let cluster = shared().await;
    install_crds(cluster);
    kubectl(cluster, &["create", "namespace", "mizzen-system"]);
    let dir = tempfile::tempdir().unwrap();
    let kc = cluster.kubeconfig_path();
    let le = [
        "--leader-elect",
        "--leader-election-namespace=mizzen-system",
    ];
    let a = Operator::start("mizzen-a", &kc, dir.path(), &le);
    let b = Operator::start("mizzen-b", &kc, dir.path(), &le);
    let a_leads = until(60, "a leader", || {
        if a.leads() {
            Some(true)
        } else if b.leads() {
            Some(false)
        } else {
            None
        }
    });
    let (l, mut s) = if a_leads { (a, b) } else { (b, a) };
    println!("leader: {}, standby: {}", l.name, s.name);

    let out = seed(cluster, "install-ambient", &["v1.26.3"]);
    println!("{out}");
    let (l_writes, _) = l.scrape().unwrap().writes();
    let (s_writes, s_lease) = s.scrape().unwrap().writes();
    println!(
        "writes (leases apart) after the install: leader {l_writes}, standby {s_writes} \
         (standby lease writes: {s_lease})"
    );
    assert!(l_writes > 10.0, "the leader installed the mesh");
    assert_eq!(s_writes, 0.0, "the standby wrote nothing but leases");
    assert!(!s.leads());

    // kill -9 of the leader during a ztunnel rollout.
    set_version(cluster, "ztunnel/default", "v1.26.4");
    until(30, "the ztunnel rollout to start", || {
        let v = kubectl(
            cluster,
            &[
                "get",
                "ds",
                "ztunnel",
                "-n",
                "ztunnel",
                "-o",
                "jsonpath={.metadata.labels.app\\.kubernetes\\.io/version}",
            ],
        );
        (v == "1.26.4").then_some(())
    });
    let mut l = l;
    l.signal("KILL");
    l.wait_exit(10);
    let killed = Instant::now();
    until(40, "the standby to lead after kill -9", || {
        s.leads().then_some(())
    });
    let handover = killed.elapsed();
    println!("handover after kill -9 of the leader: {handover:.1?}");
    assert!(
        handover < Duration::from_secs(20),
        "within the lease duration (15 s) plus a little: {handover:?}"
    );
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "ztunnels/default",
            "--timeout=120s",
        ],
    );
    let (s_writes, _) = s.scrape().unwrap().writes();
    println!("the new leader converged the mesh with {s_writes} writes");
    assert!(s_writes > 0.0);

    // A fresh standby, then SIGTERM of the leader: it releases the lease, the standby takes
    // over at once.
    let c = Operator::start("mizzen-c", &kc, dir.path(), &le);
    until(30, "the new standby's metrics", || c.scrape());
    std::thread::sleep(Duration::from_secs(2));
    assert!(!c.leads());
    s.signal("TERM");
    let termed = Instant::now();
    until(10, "mizzen-c to lead after SIGTERM", || {
        c.leads().then_some(())
    });
    let handover = termed.elapsed();
    println!("handover after SIGTERM of the leader: {handover:.2?}");
    let status = s.wait_exit(20);
    assert!(status.success(), "{status:?}: {}", s.log());
    assert!(s.log().contains("released the lease"), "{}", s.log());
    assert!(handover < Duration::from_secs(2), "{handover:?}");
}

#[tokio::test]
async fn a_lease_namespace_that_does_not_exist_is_reported_not_crashed_on() {
    let cluster = shared().await;
    install_crds(cluster);
    let dir = tempfile::tempdir().unwrap();
    let mut op = Operator::start(
        "mizzen-lost",
        &cluster.kubeconfig_path(),
        dir.path(),
        &[
            "--leader-elect",
            "--leader-election-namespace=no-such-namespace",
        ],
    );
    let (code, body) = until(60, "/readyz to name the lease", || {
        op.readyz().filter(|(_, b)| b.contains("lease"))
    });
    println!("/readyz {code}: {body}");
    assert_eq!(code, 503);
    assert!(body.contains("no-such-namespace"), "{body}");
    let m = op.scrape().unwrap();
    assert!(m.value("mizzen_watch_errors_total", &[("watch", "lease")]) >= Some(1.0));
    assert_eq!(m.value("mizzen_leader", &[]), Some(0.0));
    assert!(op.child.try_wait().unwrap().is_none(), "still running");
    assert!(op.log().contains("no-such-namespace"), "{}", op.log());
    op.signal("TERM");
    assert!(op.wait_exit(20).success());
}
