//! `vX.Y-latest` under RevisionBased: when a new catalog moves the alias to a newer patch, the
//! operator creates a canary revision instead of changing the running one in place (DESIGN.md
//! decision 2; upstream bug #2080). A test binary of its own: it restarts the operator.

mod common;

use common::{eventually, install_crds, kubectl, start_operator};
use kube::api::Api;
use mizzen_api::IstioRevision;
use mizzen_catalog::Catalog;
use mizzen_testcluster::shared;

fn catalog(alias_target: &str) -> Catalog {
    Catalog::from_yaml_str(&format!(
        "versions:\n  - name: v1.26-latest\n    ref: {alias_target}\n  - name: v1.26.4\n  - name: v1.26.3\n"
    ))
    .unwrap()
}

#[tokio::test]
async fn an_alias_moving_to_a_new_patch_creates_a_new_revision() {
    let cluster = shared().await;
    install_crds(cluster, &catalog("v1.26.3")).await;
    kubectl(cluster, &["create", "namespace", "istio-system"]);
    kubectl(cluster, &["create", "namespace", "app"]);
    let operator = start_operator(cluster, catalog("v1.26.3"));
    let manifest = "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: default}\nspec: {namespace: istio-system, version: v1.26-latest, updateStrategy: {type: RevisionBased, inactiveRevisionDeletionGracePeriodSeconds: 5}}\n";
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
    // A workload keeps the first revision in use, so both can be seen side by side.
    kubectl(
        cluster,
        &["label", "namespace", "app", "istio.io/rev=default-v1-26-3"],
    );
    let revisions: Api<IstioRevision> = Api::all(cluster.client());
    let listed = || async {
        let mut v: Vec<(String, String)> = revisions
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|r| (r.metadata.name.unwrap(), r.spec.version))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        listed().await,
        [("default-v1-26-3".to_string(), "v1.26.3".to_string())]
    );

    // An operator upgrade ships a catalog whose alias points at v1.26.4.
    drop(operator);
    let _operator = start_operator(cluster, catalog("v1.26.4"));
    eventually(120, "a canary revision for v1.26.4", || async {
        let l = listed().await;
        (l == [
            ("default-v1-26-3".to_string(), "v1.26.3".to_string()),
            ("default-v1-26-4".to_string(), "v1.26.4".to_string()),
        ])
        .then_some(())
    })
    .await;
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "istios/default",
            "--timeout=2m",
        ],
    );
    let active = kubectl(
        cluster,
        &[
            "get",
            "istio",
            "default",
            "-o",
            "jsonpath={.status.activeRevisionName}",
        ],
    );
    assert_eq!(active, "default-v1-26-4");
    // Once the workload moves, the old revision goes after the grace period.
    kubectl(
        cluster,
        &[
            "label",
            "namespace",
            "app",
            "istio.io/rev=default-v1-26-4",
            "--overwrite",
        ],
    );
    eventually(120, "old revision pruned", || async {
        (listed().await.len() == 1).then_some(())
    })
    .await;
}
