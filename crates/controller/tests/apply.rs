//! Server-side apply against the real local API server: create, no-op, drift repair, prune and
//! garbage collection, with requests counted at the HTTP level; once reading live objects
//! from the API server, once from the caches of rendered kinds.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Requests, counting_client};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use mizzen_controller::Health;
use mizzen_controller::apply::{Applier, Owner};
use mizzen_controller::children::Children;
use mizzen_controller::metrics::Metrics;
use mizzen_testcluster::{TestNamespace, shared};
use serde_json::json;

#[tokio::test]
async fn apply_reading_from_the_api_server() {
    scenario(false).await;
}

#[tokio::test]
async fn apply_reading_from_the_caches() {
    scenario(true).await;
}

/// A cluster-scoped owner, like mizzen's custom resources: a ClusterRole `owner-<ns>`.
async fn cluster_owner(client: &kube::Client, ns: &str) -> Owner {
    let name = format!("owner-{ns}");
    let obj: ClusterRole = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let obj = Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    Owner {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "ClusterRole".into(),
        name,
        uid: obj.metadata.uid.clone().unwrap(),
    }
}

/// Create, no-op, drift repair, prune, garbage collection. With `cached`, live objects come
/// from watches of ConfigMaps and Services, and a no-op apply sends no request at all.
async fn scenario(cached: bool) {
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, if cached { "apply-cached" } else { "apply" })
        .await
        .unwrap();
    let client = cluster.client();
    let requests = Arc::new(Requests::default());
    let counting = counting_client(cluster.kube_config(), &requests);
    let writes = &requests.writes;

    let owner = cluster_owner(&client, ns.name()).await;
    let owner_name = owner.name.clone();
    let inventory = ("mizzen.io/owner", owner_name.as_str());
    // Rendered objects carry mizzen's managed-by label: the caches watch only those.
    let managed = json!({"app.kubernetes.io/managed-by": "mizzen"});
    let cm = |name: &str, v: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": ns.name(), "labels": managed},
               "data": {"k": v}})
    };
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istiod", "namespace": ns.name(), "labels": managed},
        "spec": {"ports": [{"name": "grpc-xds", "port": 15010}], "selector": {"app": "istiod"}}});
    let prunable = [
        GroupVersionKind::gvk("", "v1", "ConfigMap"),
        GroupVersionKind::gvk("", "v1", "Service"),
    ];
    let children = if cached {
        // Watched with the uncounted client: only the applier's own requests are counted.
        let children = Arc::new(Children::new(&prunable, Arc::new(Health::default())));
        children.start(&client, Metrics::new(&mut Default::default()), || {
            std::future::pending::<()>()
        });
        assert!(
            children
                .wait_until_ready(Duration::from_secs(30))
                .await
                .is_empty()
        );
        children
    } else {
        Children::none()
    };
    let applier = Applier::new(counting, children.clone());
    // The desired set of most steps: ConfigMaps a and b, and the Service.
    let apply_abc = || {
        applier.apply(
            &owner,
            inventory,
            vec![cm("a", "1"), cm("b", "1"), svc.clone()],
            &prunable,
        )
    };
    // Until the caches have seen an object of `kind` (with `k` = `value`, for ConfigMaps): the
    // watch events of what was just written.
    let cached_is = |kind: &str, name: &str, value: Option<&str>| {
        let children = children.clone();
        let gvk = GroupVersionKind::gvk("", "v1", kind);
        let (name, value, ns) = (
            name.to_owned(),
            value.map(str::to_owned),
            ns.name().to_owned(),
        );
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while children
                .live(&gvk, Some(&ns), &name)
                .flatten()
                .is_none_or(|o| value.as_ref().is_some_and(|v| o.data["data"]["k"] != *v))
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cache never saw {name}={value:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let first = apply_abc().await.unwrap();
    assert_eq!(first.written.len(), 3);
    if cached {
        cached_is("ConfigMap", "a", Some("1")).await;
        cached_is("ConfigMap", "b", Some("1")).await;
        cached_is("Service", "istiod", None).await;
    }

    // Nothing changed: no write request at all (and, from the caches, no read either).
    requests.take();
    let again = apply_abc().await.unwrap();
    assert_eq!(
        (again.written.len(), again.unchanged, again.pruned.len()),
        (0, 3, 0)
    );
    let (no_writes, reads) = requests.take();
    assert_eq!(no_writes, 0, "a no-op reconcile must write nothing");
    if cached {
        assert_eq!(reads, 0, "a no-op reconcile from the caches reads nothing");
    } else {
        assert!(reads >= 3, "without caches every object is read: {reads}");
    }

    // Someone edits a field mizzen owns: the next apply repairs it, with one write.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    cms.patch("a", &PatchParams::apply("someone-else").force(), &Patch::Apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "edited"}})))
        .await
        .unwrap();
    if cached {
        cached_is("ConfigMap", "a", Some("edited")).await;
    }
    writes.store(0, Ordering::SeqCst);
    let repaired = apply_abc().await.unwrap();
    assert_eq!(repaired.written, [format!("/ConfigMap/{}/a", ns.name())]);
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "1");
    if cached {
        // At once again, before the cache has seen the repair: the applier remembers what its
        // write returned, so it neither writes again nor reads.
        requests.take();
        let again = apply_abc().await.unwrap();
        assert_eq!(again.written.len(), 0, "{again:?}");
        assert_eq!(requests.take(), (0, 0));
    }

    // The render stops producing `b`: it is pruned; objects of other owners are untouched.
    let foreign = cm("foreign", "x");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(foreign).unwrap(),
    )
    .await
    .unwrap();
    let pruned = applier
        .apply(&owner, inventory, vec![cm("a", "1"), svc], &prunable)
        .await
        .unwrap();
    assert_eq!(pruned.pruned, [format!("/ConfigMap/{}/b", ns.name())]);
    assert!(
        cms.get_opt("b").await.unwrap().is_none()
            || cms
                .get("b")
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
    );
    assert!(cms.get_opt("foreign").await.unwrap().is_some());

    // Deleting the (cluster-scoped) owner garbage-collects the namespaced children.
    Api::<ClusterRole>::all(client.clone())
        .delete(&owner_name, &DeleteParams::foreground())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while cms.get_opt("a").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ConfigMap a was not garbage-collected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A validating webhook is created at `failurePolicy: Ignore`; istiod (another field manager)
/// tightens it to `Fail`. The applier keeps `Ignore` through its own repairs until then, and
/// afterwards neither reverts istiod nor writes because of it.
#[tokio::test]
async fn validating_failure_policy_is_handed_over_to_istiod() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, "handover").await.unwrap();
    let client = cluster.client();
    let requests = Arc::new(Requests::default());
    let applier = Applier::new(
        counting_client(cluster.kube_config(), &requests),
        Children::none(),
    );
    let owner = cluster_owner(&client, ns.name()).await;
    let owner_name = owner.name.clone();
    let inventory = ("mizzen.io/owner", owner_name.as_str());
    let name = format!("istio-validator-{}", ns.name());
    let validator = |label: &str| {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "mizzen", "step": label}},
            "webhooks": [{
                "name": "rev.validation.istio.io",
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": {"name": "istiod", "namespace": ns.name(), "path": "/validate"}},
                "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["networking.istio.io"],
                           "apiVersions": ["*"], "resources": ["*"]}],
            }],
        })
    };
    let api = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    let policy = || async {
        api.get(&name).await.unwrap().webhooks.unwrap()[0]
            .failure_policy
            .clone()
            .unwrap()
    };
    let apply = |label: &str| applier.apply(&owner, inventory, vec![validator(label)], &[]);

    assert_eq!(apply("1").await.unwrap().written.len(), 1);
    assert_eq!(policy().await, "Ignore");
    // A repair before istiod serves keeps Ignore (not the API server's default, Fail).
    assert_eq!(apply("2").await.unwrap().written.len(), 1);
    assert_eq!(policy().await, "Ignore");

    // istiod serves and tightens it, as its own field manager.
    api.patch(
        &name,
        &PatchParams {
            field_manager: Some("pilot-discovery".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"webhooks": [{
            "name": "rev.validation.istio.io",
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"name": "istiod", "namespace": ns.name(), "path": "/validate"}},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["networking.istio.io"],
                       "apiVersions": ["*"], "resources": ["*"]}],
        }]})),
    )
    .await
    .unwrap();
    assert_eq!(policy().await, "Fail");
    requests.take();
    // Nothing else changed: no write, no revert.
    let same = apply("2").await.unwrap();
    assert!(same.written.is_empty(), "{:?}", same.written);
    assert_eq!(requests.writes.load(Ordering::Relaxed), 0);
    assert_eq!(policy().await, "Fail");
    // A write for another reason leaves istiod's value.
    assert_eq!(apply("3").await.unwrap().written.len(), 1);
    assert_eq!(policy().await, "Fail");
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    Api::<ClusterRole>::all(client)
        .delete(&owner_name, &DeleteParams::default())
        .await
        .unwrap();
}
