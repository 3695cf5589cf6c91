//! The shipped RBAC is what the operator needs: `mizzen run` authenticated as the install
//! manifests' ServiceAccount (a token from the TokenRequest API), with leader election in the
//! manifests' namespace, performs the seed's InPlace and RevisionBased procedures with zero
//! `forbidden` answers, and every request it sent is allowed by the shipped roles.

mod common;

use common::*;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use mizzen_controller::permissions::{Request, allows};
use mizzen_testcluster::shared;

/// The objects of `mizzen manifests`, as JSON.
fn manifests() -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(&String::from_utf8(mizzen(&["manifests"])).unwrap()).unwrap()
}

#[tokio::test]
async fn seed_procedures_as_the_shipped_service_account() {
    let cluster = shared().await;
    install_crds(cluster);
    let objects = manifests();
    let kind = |o: &serde_json::Value| o["kind"].as_str().unwrap_or_default().to_owned();
    let rbac: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| {
            matches!(
                kind(o).as_str(),
                "Namespace"
                    | "ServiceAccount"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
                    | "Role"
                    | "RoleBinding"
            )
        })
        .collect();
    let stream: String = rbac
        .iter()
        .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
        .collect();
    kubectl_stdin(
        cluster,
        &["apply", "--server-side", "-f", "-"],
        Some(stream.as_bytes()),
    );
    let sa = rbac
        .iter()
        .find(|o| kind(o) == "ServiceAccount")
        .expect("the manifests have a ServiceAccount");
    let (sa_name, namespace) = (
        sa["metadata"]["name"].as_str().unwrap(),
        sa["metadata"]["namespace"].as_str().unwrap(),
    );
    let mut rules = Vec::new();
    for o in &rbac {
        match kind(o).as_str() {
            "ClusterRole" => rules.extend(
                serde_json::from_value::<ClusterRole>((*o).clone())
                    .unwrap()
                    .rules
                    .unwrap_or_default(),
            ),
            "Role" => rules.extend(
                serde_json::from_value::<Role>((*o).clone())
                    .unwrap()
                    .rules
                    .unwrap_or_default(),
            ),
            _ => {}
        }
    }

    // A kubeconfig with the ServiceAccount's token instead of the admin's certificate.
    let token = kubectl(
        cluster,
        &["create", "token", sa_name, "-n", namespace, "--duration=2h"],
    );
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::copy(cluster.kubeconfig_path(), &kc).unwrap();
    let kc_arg = format!("--kubeconfig={}", kc.display());
    kubectl(
        cluster,
        &[
            &kc_arg,
            "config",
            "set-credentials",
            "operator",
            &format!("--token={}", token.trim()),
        ],
    );
    kubectl(
        cluster,
        &[
            &kc_arg,
            "config",
            "set-context",
            "--current",
            "--user=operator",
        ],
    );
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
        if !allows(&rules, &req) {
            unlisted.push(req);
        }
    }
    assert!(
        unlisted.is_empty(),
        "requests the shipped roles do not allow: {unlisted:?}"
    );
}
