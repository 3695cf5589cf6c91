//! The shipped RBAC is what the operator needs: `mizzen run` authenticated as the install
//! manifests' ServiceAccount (a token from the TokenRequest API), with leader election in the
//! manifests' namespace, performs the seed's InPlace and RevisionBased procedures with zero
//! `forbidden` answers, and every request it sent is allowed by the shipped roles.

mod common;

use common::*;
use mizzen_controller::permissions::{Request, allows};
use mizzen_testcluster::shared;

#[tokio::test]
async fn seed_procedures_as_the_shipped_service_account() {
    let cluster = shared().await;
    install_crds(cluster);
    let identity = ShippedIdentity::create(cluster, |_| {});
    let (namespace, sa_name, rules) = (&identity.namespace, &identity.account, &identity.rules);
    let kc = identity.kubeconfig();
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::start_with(
        "mizzen-0",
        &kc,
        dir.path(),
        &["--leader-elect"],
        &[("POD_NAMESPACE", namespace)],
    );
    until(60, "the operator to lead", || op.leads().then_some(()));

    let inplace = seed(cluster, "inplace", &["v1.26.3", "v1.26.4"]);
    println!("{inplace}");
    kubectl(
        cluster,
        &["delete", "istio,istiocni,ztunnel", "--all", "--wait"],
    );
    let revision_based = seed(cluster, "revisionbased", &["v1.26.3", "v1.26.4"]);
    println!("{revision_based}");

    let m = op.scrape().unwrap();
    let sent = m.select("mizzen_kube_requests_total", &[]);
    let total: f64 = sent.iter().map(|s| s.value).sum();
    let forbidden: Vec<_> = sent
        .iter()
        .filter(|s| s.labels["code"] == "403")
        .map(|s| &s.labels)
        .collect();
    println!(
        "{total} requests as ServiceAccount {namespace}/{sa_name}; forbidden: {}",
        forbidden.len()
    );
    assert!(forbidden.is_empty(), "forbidden: {forbidden:?}");
    assert!(!op.log().contains("forbidden"), "{}", op.log());
    let mut unlisted = Vec::new();
    for s in &sent {
        let l = &s.labels;
        if l["resource"].is_empty() {
            continue; // discovery, allowed to every authenticated user
        }
        let req = Request {
            verb: l["verb"].clone(),
            group: l["group"].clone(),
            resource: l["resource"].clone(),
            subresource: Some(l["subresource"].clone()).filter(|s| !s.is_empty()),
            name: None,
        };
        if !allows(rules, &req) {
            unlisted.push(req);
        }
    }
    assert!(
        unlisted.is_empty(),
        "requests the shipped roles do not allow: {unlisted:?}"
    );
}
