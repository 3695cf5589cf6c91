//! Server-side apply against the real local API server: create, no-op, drift repair, prune and
//! garbage collection, with write requests counted at the HTTP level.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::client::ClientBuilder;
use kube::core::GroupVersionKind;
use mizzen_controller::apply::{Applier, Owner};
use mizzen_testcluster::{TestNamespace, shared};
use serde_json::json;

/// Counts requests that are not reads (anything but GET).
#[derive(Clone)]
struct CountWrites<S> {
    inner: S,
    writes: Arc<AtomicUsize>,
}

impl<S, B> tower::Service<http::Request<B>> for CountWrites<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.method() != http::Method::GET {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.call(req)
    }
}

fn counting_client(config: kube::Config) -> (kube::Client, Arc<AtomicUsize>) {
    let writes = Arc::new(AtomicUsize::new(0));
    let w = writes.clone();
    let layer = tower::layer::layer_fn(move |inner| CountWrites {
        inner,
        writes: w.clone(),
    });
    let client = ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&layer)
        .build();
    (client, writes)
}

#[tokio::test]
async fn apply_is_idempotent_repairs_drift_prunes_and_is_garbage_collected() {
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, "apply").await.unwrap();
    let client = cluster.client();
    let (counting, writes) = counting_client(cluster.kube_config());

    // A cluster-scoped owner, like mizzen's custom resources.
    let owner_name = format!("owner-{}", ns.name());
    let owner_obj: ClusterRole =
        serde_json::from_value(json!({"metadata": {"name": owner_name}})).unwrap();
    let owner_obj = Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &owner_obj)
        .await
        .unwrap();
    let owner = Owner {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "ClusterRole".into(),
        name: owner_name.clone(),
        uid: owner_obj.metadata.uid.clone().unwrap(),
    };
    let inventory = ("mizzen.io/owner", owner_name.as_str());
    let cm = |name: &str, v: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": ns.name()}, "data": {"k": v}})
    };
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istiod", "namespace": ns.name()},
        "spec": {"ports": [{"name": "grpc-xds", "port": 15010}], "selector": {"app": "istiod"}}});
    let prunable = [
        GroupVersionKind::gvk("", "v1", "ConfigMap"),
        GroupVersionKind::gvk("", "v1", "Service"),
    ];
    let applier = Applier::new(counting);

    let first = applier
        .apply(
            &owner,
            inventory,
            vec![cm("a", "1"), cm("b", "1"), svc.clone()],
            &prunable,
        )
        .await
        .unwrap();
    assert_eq!(first.written.len(), 3);

    // Nothing changed: no write request at all.
    writes.store(0, Ordering::SeqCst);
    let again = applier
        .apply(
            &owner,
            inventory,
            vec![cm("a", "1"), cm("b", "1"), svc.clone()],
            &prunable,
        )
        .await
        .unwrap();
    assert_eq!(
        (again.written.len(), again.unchanged, again.pruned.len()),
        (0, 3, 0)
    );
    assert_eq!(
        writes.load(Ordering::SeqCst),
        0,
        "a no-op reconcile must write nothing"
    );

    // Someone edits a field mizzen owns: the next apply repairs it, with one write.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    cms.patch("a", &PatchParams::apply("someone-else").force(), &Patch::Apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "edited"}})))
        .await
        .unwrap();
    writes.store(0, Ordering::SeqCst);
    let repaired = applier
        .apply(
            &owner,
            inventory,
            vec![cm("a", "1"), cm("b", "1"), svc.clone()],
            &prunable,
        )
        .await
        .unwrap();
    assert_eq!(repaired.written, [format!("/ConfigMap/{}/a", ns.name())]);
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "1");

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
