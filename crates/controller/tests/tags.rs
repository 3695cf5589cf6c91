//! IstioRevisionTags on the local control plane, with the operator running in-process: tags
//! floating with an Istio and pinned to a revision, their usage, name clashes, dangling
//! targets, retargeting, the `default` tag's validator and the 1.28 tag Service.
//!
//! Every test has its own Istio names and namespaces; tags are cluster-scoped, so their names
//! are unique too. Only `default_tag_owns_the_default_validator` uses the name `default`.

mod common;

use std::collections::BTreeMap;

use common::{apply, cluster_with_operator, eventually, kubectl, next_second, table};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use mizzen_api::{Condition, ConditionStatus, IstioRevision, IstioRevisionTag};
use mizzen_testcluster::Cluster;

const WAIT: u64 = 90;

async fn namespace(cluster: &Cluster, name: &str, labels: &[(&str, &str)]) {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}}))
            .unwrap();
    Api::<Namespace>::all(cluster.client())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn istio(cluster: &Cluster, name: &str, ns: &str, version: &str, strategy: &str) {
    apply(
        cluster,
        &format!(
            "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata:\n  name: {name}\nspec:\n  namespace: {ns}\n  version: {version}\n  updateStrategy:\n    type: {strategy}\n    inactiveRevisionDeletionGracePeriodSeconds: 5\n"
        ),
    );
}

fn tag(cluster: &Cluster, name: &str, kind: &str, target: &str) {
    apply(
        cluster,
        &format!(
            "apiVersion: sailoperator.io/v1\nkind: IstioRevisionTag\nmetadata:\n  name: {name}\nspec:\n  targetRef:\n    kind: {kind}\n    name: {target}\n"
        ),
    );
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until tag `name` has status `Reconciled` = `reconciled` with `reason`, and returns it.
async fn tag_reconciled(
    cluster: &Cluster,
    name: &str,
    reconciled: ConditionStatus,
    reason: &str,
) -> IstioRevisionTag {
    let api: Api<IstioRevisionTag> = Api::all(cluster.client());
    eventually(
        WAIT,
        &format!("tag {name}: Reconciled={reconciled:?} {reason}"),
        || async {
            let t = api.get_opt(name).await.ok()??;
            let s = t.status.as_ref()?;
            let c = condition(&s.conditions, "Reconciled")?;
            (c.status == reconciled
                && c.reason.as_deref() == Some(reason)
                && s.observed_generation == t.meta().generation)
                .then_some(t)
        },
    )
    .await
}

/// Waits until tag `name` points at `revision`.
async fn tag_points_at(cluster: &Cluster, name: &str, revision: &str) -> IstioRevisionTag {
    let api: Api<IstioRevisionTag> = Api::all(cluster.client());
    eventually(WAIT, &format!("tag {name} -> {revision}"), || async {
        let t = api.get_opt(name).await.ok()??;
        let s = t.status.as_ref()?;
        let ok = condition(&s.conditions, "Reconciled")?.status == ConditionStatus::True;
        (ok && s.istio_revision == revision && s.observed_generation == t.meta().generation)
            .then_some(t)
    })
    .await
}

/// Waits until the `InUse` condition of tag `name` is `in_use`; returns its message.
async fn tag_in_use(cluster: &Cluster, name: &str, in_use: ConditionStatus) -> String {
    let api: Api<IstioRevisionTag> = Api::all(cluster.client());
    eventually(WAIT, &format!("tag {name}: InUse={in_use:?}"), || async {
        let t = api.get_opt(name).await.ok()??;
        let c = condition(&t.status?.conditions, "InUse")?.clone();
        (c.status == in_use).then(|| c.message.unwrap_or_default())
    })
    .await
}

/// Waits until IstioRevision `name` has condition `type_` = `status`; returns its message.
async fn revision_condition(
    cluster: &Cluster,
    name: &str,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
) -> String {
    let api: Api<IstioRevision> = Api::all(cluster.client());
    eventually(
        WAIT,
        &format!("revision {name}: {type_}={status:?} {reason}"),
        || async {
            let r = api.get_opt(name).await.ok()??;
            let c = condition(&r.status?.conditions, type_)?.clone();
            (c.status == status && c.reason.as_deref() == Some(reason))
                .then(|| c.message.unwrap_or_default())
        },
    )
    .await
}

/// Waits until IstioRevision `name` is in use with exactly `message`.
async fn revision_in_use_by(cluster: &Cluster, name: &str, message: &str) {
    let api: Api<IstioRevision> = Api::all(cluster.client());
    eventually(WAIT, &format!("revision {name}: {message}"), || async {
        let r = api.get_opt(name).await.ok()??;
        let c = condition(&r.status?.conditions, "InUse")?.clone();
        (c.status == ConditionStatus::True && c.message.as_deref() == Some(message)).then_some(())
    })
    .await
}

/// Waits until the MutatingWebhookConfiguration `name` exists with `istio.io/rev` = `rev`.
async fn tag_webhook(cluster: &Cluster, name: &str, rev: &str) -> MutatingWebhookConfiguration {
    let api: Api<MutatingWebhookConfiguration> = Api::all(cluster.client());
    eventually(
        WAIT,
        &format!("MWC {name} with istio.io/rev={rev}"),
        || async {
            let m = api.get_opt(name).await.ok()??;
            (m.labels().get("istio.io/rev").map(String::as_str) == Some(rev)).then_some(m)
        },
    )
    .await
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(WAIT, &format!("{name} deleted"), || async {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
}

/// The `(kind, name)` of an object's controller owner.
fn owner<K: Resource>(o: &K) -> (String, String) {
    let r = &o.owner_references()[0];
    (r.kind.clone(), r.name.clone())
}

fn events(cluster: &Cluster, reason: &str, name: &str) -> String {
    kubectl(
        cluster,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("reason={reason},involvedObject.name={name}"),
        ],
    )
}

async fn has_event(cluster: &Cluster, reason: &str, name: &str) {
    eventually(30, &format!("event {reason} on {name}"), || async {
        events(cluster, reason, name).contains(reason).then_some(())
    })
    .await
}

/// A pod, created as soon as the namespace's service account exists.
async fn pod(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }))
    .unwrap();
    let api: Api<Pod> = Api::namespaced(cluster.client(), ns);
    eventually(WAIT, &format!("pod {ns}/{name} created"), || async {
        api.create(&PostParams::default(), &p)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn floating_tag_follows_a_revision_based_update_and_a_pinned_tag_stays() {
    let cluster = cluster_with_operator().await;
    let ns = "tag-float";
    namespace(cluster, ns, &[]).await;
    istio(cluster, "tfloat", ns, "v1.26.3", "RevisionBased");
    revision_condition(
        cluster,
        "tfloat-v1-26-3",
        "InUse",
        ConditionStatus::False,
        "NotReferencedByAnything",
    )
    .await;
    tag(cluster, "fl-prod", "Istio", "tfloat");
    tag(cluster, "fl-pin", "IstioRevision", "tfloat-v1-26-3");

    let t = tag_points_at(cluster, "fl-prod", "tfloat-v1-26-3").await;
    let s = t.status.unwrap();
    assert_eq!(s.istiod_namespace, ns);
    assert_eq!(s.state.as_deref(), Some("NotReferencedByAnything"));
    let mwc = tag_webhook(
        cluster,
        "istio-revision-tag-fl-prod-tag-float",
        "tfloat-v1-26-3",
    )
    .await;
    assert_eq!(mwc.labels()["istio.io/tag"], "fl-prod");
    assert_eq!(mwc.labels()["mizzen.io/owner"], "istiorevisiontag.fl-prod");
    assert_eq!(owner(&mwc), ("IstioRevisionTag".into(), "fl-prod".into()));
    let service = &mwc.webhooks.as_ref().unwrap()[0].client_config.service;
    assert_eq!(
        service
            .as_ref()
            .map(|s| (s.name.as_str(), s.namespace.as_str())),
        Some(("istiod-tfloat-v1-26-3", ns))
    );
    // 1.26 has no tag Service.
    let services: Api<Service> = Api::namespaced(cluster.client(), ns);
    assert!(
        services
            .get_opt("istiod-revision-tag-fl-prod")
            .await
            .unwrap()
            .is_none()
    );
    has_event(cluster, "Created", "fl-prod").await;
    // The kubectl columns: NAME, STATUS, IN USE, REVISION, AGE.
    let rows = table(cluster, &["get", "istiorevtag", "fl-prod"]);
    assert_eq!(
        rows[0][..4],
        [
            "fl-prod",
            "NotReferencedByAnything",
            "False",
            "tfloat-v1-26-3"
        ]
    );

    // The tags keep their target in use.
    tag_points_at(cluster, "fl-pin", "tfloat-v1-26-3").await;
    revision_in_use_by(
        cluster,
        "tfloat-v1-26-3",
        "in use by IstioRevisionTag fl-pin, IstioRevisionTag fl-prod",
    )
    .await;

    // A RevisionBased update: the floating tag moves, the pinned one stays.
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            "tfloat",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"v1.26.4"}}"#,
        ],
    );
    tag_points_at(cluster, "fl-prod", "tfloat-v1-26-4").await;
    tag_webhook(
        cluster,
        "istio-revision-tag-fl-prod-tag-float",
        "tfloat-v1-26-4",
    )
    .await;
    has_event(cluster, "Retargeted", "fl-prod").await;
    revision_condition(
        cluster,
        "tfloat-v1-26-4",
        "InUse",
        ConditionStatus::True,
        "ReferencedByWorkloads",
    )
    .await;
    let pinned = tag_points_at(cluster, "fl-pin", "tfloat-v1-26-3").await;
    assert_eq!(pinned.status.unwrap().istio_revision, "tfloat-v1-26-3");
    tag_webhook(
        cluster,
        "istio-revision-tag-fl-pin-tag-float",
        "tfloat-v1-26-3",
    )
    .await;
    // Only the pinned tag keeps the old revision now.
    revision_in_use_by(
        cluster,
        "tfloat-v1-26-3",
        "in use by IstioRevisionTag fl-pin",
    )
    .await;

    // Without the pinned tag, the old revision is pruned after the grace period.
    kubectl(cluster, &["delete", "istiorevisiontag", "fl-pin"]);
    let revisions: Api<IstioRevision> = Api::all(cluster.client());
    gone(&revisions, "tfloat-v1-26-3").await;
    assert!(revisions.get_opt("tfloat-v1-26-4").await.unwrap().is_some());
    tag_points_at(cluster, "fl-prod", "tfloat-v1-26-4").await;
    kubectl(cluster, &["delete", "istiorevisiontag", "fl-prod"]);
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(cluster.client());
    gone(&webhooks, "istio-revision-tag-fl-prod-tag-float").await;
    kubectl(cluster, &["delete", "istio", "tfloat"]);
}

#[tokio::test]
async fn tag_is_in_use_by_labelled_namespaces_and_pods_never_by_annotations() {
    let cluster = cluster_with_operator().await;
    namespace(cluster, "tag-use", &[]).await;
    istio(cluster, "tuse", "tag-use", "v1.26.3", "InPlace");
    tag(cluster, "use-prod", "Istio", "tuse");
    let t = tag_points_at(cluster, "use-prod", "tuse").await;
    assert_eq!(
        t.status.unwrap().state.as_deref(),
        Some("NotReferencedByAnything")
    );
    tag_in_use(cluster, "use-prod", ConditionStatus::False).await;

    // A namespace labelled with the tag uses it, and through it the revision.
    namespace(cluster, "tag-use-app", &[("istio.io/rev", "use-prod")]).await;
    let msg = tag_in_use(cluster, "use-prod", ConditionStatus::True).await;
    assert_eq!(msg, "in use by namespace tag-use-app");
    let rows = table(cluster, &["get", "istiorevtag", "use-prod"]);
    assert_eq!(rows[0][..4], ["use-prod", "Healthy", "True", "tuse"]);
    // The revision is already in use through the tag itself; wait until its message also
    // names the namespace (its reconcile for the label may come a moment later).
    let revisions: Api<IstioRevision> = Api::all(cluster.client());
    eventually(
        WAIT,
        "revision tuse in use by namespace tag-use-app",
        || async {
            let r = revisions.get_opt("tuse").await.ok()??;
            let c = condition(&r.status?.conditions, "InUse")?.clone();
            (c.status == ConditionStatus::True
                && c.message
                    .as_deref()
                    .unwrap_or("")
                    .contains("namespace tag-use-app"))
            .then_some(())
        },
    )
    .await;
    kubectl(
        cluster,
        &["label", "namespace", "tag-use-app", "istio.io/rev-"],
    );
    tag_in_use(cluster, "use-prod", ConditionStatus::False).await;

    // Pods in an unlabelled namespace: the label counts, the annotation does not.
    namespace(cluster, "tag-use-pods", &[]).await;
    pod(
        cluster,
        "tag-use-pods",
        "annotated",
        &[],
        &[("istio.io/rev", "use-prod")],
    )
    .await;
    pod(
        cluster,
        "tag-use-pods",
        "labelled",
        &[("istio.io/rev", "use-prod")],
        &[],
    )
    .await;
    let msg = tag_in_use(cluster, "use-prod", ConditionStatus::True).await;
    assert_eq!(msg, "in use by pod tag-use-pods/labelled");
    kubectl(
        cluster,
        &[
            "delete",
            "pod",
            "-n",
            "tag-use-pods",
            "labelled",
            "--wait=false",
        ],
    );
    tag_in_use(cluster, "use-prod", ConditionStatus::False).await;

    // A change that makes every tag reconcile but changes nothing writes nothing: neither the
    // tag's status nor its webhook (watched for 3 s).
    let tags: Api<IstioRevisionTag> = Api::all(cluster.client());
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(cluster.client());
    let versions = || async {
        let t = tags.get("use-prod").await.unwrap();
        let m = webhooks
            .get("istio-revision-tag-use-prod-tag-use")
            .await
            .unwrap();
        (t.resource_version(), m.resource_version())
    };
    let before = versions().await;
    namespace(cluster, "tag-use-other", &[("istio.io/rev", "use-other")]).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(versions().await, before);

    kubectl(cluster, &["delete", "istiorevisiontag", "use-prod"]);
    kubectl(cluster, &["delete", "istio", "tuse"]);
}

#[tokio::test]
async fn name_clash_both_ways() {
    let cluster = cluster_with_operator().await;
    let ns = "tag-clash";
    namespace(cluster, ns, &[]).await;

    // The revision is older: the tag renders nothing.
    istio(cluster, "clash-a", ns, "v1.26.3", "InPlace");
    revision_condition(
        cluster,
        "clash-a",
        "Reconciled",
        ConditionStatus::True,
        "Reconciled",
    )
    .await;
    next_second().await;
    tag(cluster, "clash-a", "IstioRevision", "clash-a");
    let t = tag_reconciled(
        cluster,
        "clash-a",
        ConditionStatus::False,
        "NameAlreadyExists",
    )
    .await;
    let s = t.status.unwrap();
    assert_eq!(s.state.as_deref(), Some("NameAlreadyExists"));
    assert_eq!(s.istio_revision, "");
    has_event(cluster, "NameAlreadyExists", "clash-a").await;
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(cluster.client());
    assert!(
        webhooks
            .get_opt("istio-revision-tag-clash-a-tag-clash")
            .await
            .unwrap()
            .is_none()
    );
    revision_condition(
        cluster,
        "clash-a",
        "Reconciled",
        ConditionStatus::True,
        "Reconciled",
    )
    .await;

    // The tag is older: the revision renders nothing, the tag keeps working.
    tag(cluster, "clash-b", "Istio", "clash-a");
    tag_points_at(cluster, "clash-b", "clash-a").await;
    next_second().await;
    istio(cluster, "clash-b", ns, "v1.26.3", "InPlace");
    let msg = revision_condition(
        cluster,
        "clash-b",
        "Reconciled",
        ConditionStatus::False,
        "NameAlreadyExists",
    )
    .await;
    assert!(msg.contains("IstioRevisionTag named clash-b"), "{msg}");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), ns);
    assert!(
        deployments
            .get_opt("istiod-clash-b")
            .await
            .unwrap()
            .is_none()
    );
    tag_points_at(cluster, "clash-b", "clash-a").await;
    tag_webhook(cluster, "istio-revision-tag-clash-b-tag-clash", "clash-a").await;

    // The clash is re-evaluated when the revision goes: the tag is then only missing its
    // target.
    kubectl(cluster, &["delete", "istio", "clash-a"]);
    let t = tag_reconciled(cluster, "clash-a", ConditionStatus::False, "RefNotFound").await;
    let msg = condition(&t.status.unwrap().conditions, "Reconciled")
        .unwrap()
        .message
        .clone();
    assert_eq!(msg.as_deref(), Some("IstioRevision clash-a not found"));
    kubectl(
        cluster,
        &["delete", "istiorevisiontag", "clash-a", "clash-b"],
    );
    kubectl(cluster, &["delete", "istio", "clash-b"]);
}

#[tokio::test]
async fn dangling_targets_recover_when_they_appear() {
    let cluster = cluster_with_operator().await;
    tag(cluster, "dangle-float", "Istio", "tdangle");
    tag(cluster, "dangle-pin", "IstioRevision", "tdangle");
    let t = tag_reconciled(
        cluster,
        "dangle-float",
        ConditionStatus::False,
        "RefNotFound",
    )
    .await;
    let c = condition(&t.status.as_ref().unwrap().conditions, "Reconciled")
        .unwrap()
        .clone();
    assert_eq!(c.message.as_deref(), Some("Istio tdangle not found"));
    assert_eq!(t.status.unwrap().state.as_deref(), Some("RefNotFound"));
    let t = tag_reconciled(cluster, "dangle-pin", ConditionStatus::False, "RefNotFound").await;
    let c = condition(&t.status.unwrap().conditions, "Reconciled")
        .unwrap()
        .clone();
    assert_eq!(
        c.message.as_deref(),
        Some("IstioRevision tdangle not found")
    );
    has_event(cluster, "RefNotFound", "dangle-float").await;

    namespace(cluster, "tag-dangle", &[]).await;
    istio(cluster, "tdangle", "tag-dangle", "v1.26.3", "InPlace");
    for name in ["dangle-float", "dangle-pin"] {
        let t = tag_points_at(cluster, name, "tdangle").await;
        assert_eq!(t.status.unwrap().istiod_namespace, "tag-dangle");
        tag_webhook(
            cluster,
            &format!("istio-revision-tag-{name}-tag-dangle"),
            "tdangle",
        )
        .await;
    }
    kubectl(
        cluster,
        &["delete", "istiorevisiontag", "dangle-float", "dangle-pin"],
    );
    kubectl(cluster, &["delete", "istio", "tdangle"]);
}

#[tokio::test]
async fn retarget_across_namespaces_cleans_up_the_old_namespace() {
    let cluster = cluster_with_operator().await;
    namespace(cluster, "tag-ra", &[]).await;
    namespace(cluster, "tag-rb", &[]).await;
    istio(cluster, "tra", "tag-ra", "v1.28.1", "InPlace");
    istio(cluster, "trb", "tag-rb", "v1.28.1", "InPlace");
    tag(cluster, "move", "Istio", "tra");
    tag_points_at(cluster, "move", "tra").await;
    tag_webhook(cluster, "istio-revision-tag-move-tag-ra", "tra").await;
    let in_a: Api<Service> = Api::namespaced(cluster.client(), "tag-ra");
    let in_b: Api<Service> = Api::namespaced(cluster.client(), "tag-rb");
    let svc = in_a.get("istiod-revision-tag-move").await.unwrap();
    assert_eq!(owner(&svc), ("IstioRevisionTag".into(), "move".into()));

    kubectl(
        cluster,
        &[
            "patch",
            "istiorevisiontag",
            "move",
            "--type=merge",
            "-p",
            r#"{"spec":{"targetRef":{"name":"trb"}}}"#,
        ],
    );
    let t = tag_points_at(cluster, "move", "trb").await;
    assert_eq!(t.status.unwrap().istiod_namespace, "tag-rb");
    tag_webhook(cluster, "istio-revision-tag-move-tag-rb", "trb").await;
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(cluster.client());
    gone(&webhooks, "istio-revision-tag-move-tag-ra").await;
    gone(&in_a, "istiod-revision-tag-move").await;
    let svc = in_b.get("istiod-revision-tag-move").await.unwrap();
    assert_eq!(svc.labels()["istio.io/rev"], "trb");
    has_event(cluster, "Retargeted", "move").await;
    kubectl(cluster, &["delete", "istiorevisiontag", "move"]);
    kubectl(cluster, &["delete", "istio", "tra", "trb"]);
}

#[tokio::test]
async fn tag_service_of_1_28_is_pruned_when_the_tag_moves_to_1_26() {
    let cluster = cluster_with_operator().await;
    let ns = "tag-svc";
    namespace(cluster, ns, &[]).await;
    istio(cluster, "t28", ns, "v1.28.1", "InPlace");
    istio(cluster, "t26", ns, "v1.26.3", "InPlace");
    tag(cluster, "svc", "IstioRevision", "t28");
    tag_points_at(cluster, "svc", "t28").await;
    let services: Api<Service> = Api::namespaced(cluster.client(), ns);
    let svc = eventually(WAIT, "tag Service", || async {
        services.get_opt("istiod-revision-tag-svc").await.ok()?
    })
    .await;
    assert_eq!(svc.labels()["istio.io/tag"], "svc");
    let selector = svc.spec.unwrap().selector.unwrap();
    assert_eq!(selector["istio.io/rev"], "t28");
    tag_webhook(cluster, "istio-revision-tag-svc-tag-svc", "t28").await;

    kubectl(
        cluster,
        &[
            "patch",
            "istiorevisiontag",
            "svc",
            "--type=merge",
            "-p",
            r#"{"spec":{"targetRef":{"name":"t26"}}}"#,
        ],
    );
    tag_points_at(cluster, "svc", "t26").await;
    tag_webhook(cluster, "istio-revision-tag-svc-tag-svc", "t26").await;
    gone(&services, "istiod-revision-tag-svc").await;
    kubectl(cluster, &["delete", "istiorevisiontag", "svc"]);
    kubectl(cluster, &["delete", "istio", "t28", "t26"]);
}

/// Waits until `istiod-default-validator` is owned by `kind/name` and calls
/// `istiod{-rev}` in `ns`.
async fn default_validator(
    cluster: &Cluster,
    kind: &str,
    name: &str,
    rev: &str,
    ns: &str,
) -> ValidatingWebhookConfiguration {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(cluster.client());
    let service = if rev == "default" {
        "istiod".to_string()
    } else {
        format!("istiod-{rev}")
    };
    eventually(
        WAIT,
        &format!("istiod-default-validator owned by {kind}/{name}, calling {ns}/{service}"),
        || async {
            let v = api.get_opt("istiod-default-validator").await.ok()??;
            let s = v.webhooks.as_ref()?[0].client_config.service.clone()?;
            (v.owner_references().len() == 1
                && owner(&v) == (kind.to_string(), name.to_string())
                && v.labels().get("istio.io/rev").map(String::as_str) == Some(rev)
                && (s.name.as_str(), s.namespace.as_str()) == (service.as_str(), ns))
                .then_some(v)
        },
    )
    .await
}

#[tokio::test]
async fn default_tag_owns_the_default_validator() {
    let cluster = cluster_with_operator().await;
    namespace(cluster, "tag-def", &[]).await;
    istio(cluster, "tdef", "tag-def", "v1.26.3", "RevisionBased");
    tag(cluster, "default", "Istio", "tdef");
    tag_points_at(cluster, "default", "tdef-v1-26-3").await;
    let v = default_validator(
        cluster,
        "IstioRevisionTag",
        "default",
        "tdef-v1-26-3",
        "tag-def",
    )
    .await;
    assert_eq!(v.labels()["mizzen.io/owner"], "istiorevisiontag.default");
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client(), "tag-def");
    let reader = accounts.get("istio-reader-service-account").await.unwrap();
    assert_eq!(
        owner(&reader),
        ("IstioRevisionTag".into(), "default".into())
    );
    let mwc = tag_webhook(
        cluster,
        "istio-revision-tag-default-tag-def",
        "tdef-v1-26-3",
    )
    .await;
    let names: Vec<&str> = mwc
        .webhooks
        .as_ref()
        .unwrap()
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    assert!(
        names.contains(&"namespace.sidecar-injector.istio.io"),
        "{names:?}"
    );

    // istio-injection=enabled uses tag default.
    namespace(cluster, "tag-def-app", &[("istio-injection", "enabled")]).await;
    let msg = tag_in_use(cluster, "default", ConditionStatus::True).await;
    assert_eq!(msg, "in use by namespace tag-def-app");

    // A newer revision named default loses the clash: the validator stays the tag's.
    namespace(cluster, "tag-def2", &[]).await;
    next_second().await;
    istio(cluster, "default", "tag-def2", "v1.26.3", "InPlace");
    revision_condition(
        cluster,
        "default",
        "Reconciled",
        ConditionStatus::False,
        "NameAlreadyExists",
    )
    .await;
    default_validator(
        cluster,
        "IstioRevisionTag",
        "default",
        "tdef-v1-26-3",
        "tag-def",
    )
    .await;

    // Without the tag, the revision named default takes the validator over.
    kubectl(cluster, &["delete", "istiorevisiontag", "default"]);
    revision_condition(
        cluster,
        "default",
        "Reconciled",
        ConditionStatus::True,
        "Reconciled",
    )
    .await;
    let v = default_validator(cluster, "IstioRevision", "default", "default", "tag-def2").await;
    assert_eq!(v.labels()["mizzen.io/owner"], "istiorevision.default");
    gone(&accounts, "istio-reader-service-account").await;
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(cluster.client());
    gone(&webhooks, "istio-revision-tag-default-tag-def").await;

    // A tag named default that is newer than the revision loses, and touches nothing.
    next_second().await;
    tag(cluster, "default", "Istio", "tdef");
    tag_reconciled(
        cluster,
        "default",
        ConditionStatus::False,
        "NameAlreadyExists",
    )
    .await;
    default_validator(cluster, "IstioRevision", "default", "default", "tag-def2").await;
    assert!(
        webhooks
            .get_opt("istio-revision-tag-default-tag-def")
            .await
            .unwrap()
            .is_none()
    );
    revision_condition(
        cluster,
        "default",
        "Reconciled",
        ConditionStatus::True,
        "Reconciled",
    )
    .await;

    kubectl(cluster, &["delete", "istiorevisiontag", "default"]);
    kubectl(cluster, &["delete", "istio", "default", "tdef"]);
}
