//! Running the controllers: wait for the CRDs, fill the metadata caches, run every controller
//! until shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{Controller, WatchStreamExt, watcher as watch_objects};
use kube::{Client, ResourceExt};
use mizzen_api::{Istio, IstioCNI, IstioRevision, IstioRevisionTag, ZTunnel};
use mizzen_catalog::Catalog;
use mizzen_render::Platform;
use tokio::sync::{mpsc, watch};

use crate::inuse::{DATAPLANE_MODE, FOLLOWS_ISTIO_ANNOTATION, INJECT, INJECTION, REV};
use crate::{Context, Error, istio, revision};

/// How the operator runs.
#[derive(Clone)]
pub struct RunOptions {
    /// The version catalog.
    pub catalog: Arc<Catalog>,
    /// Kubernetes or OpenShift.
    pub platform: Platform,
    /// Set once the caches are filled and the controllers run (for `/readyz`).
    pub ready: Arc<AtomicBool>,
}

/// Runs every controller until `shutdown` completes.
pub async fn run(
    client: Client,
    opts: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    if !wait_for_crds(&client, stopped()).await {
        return Ok(());
    }

    let (ns_store, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let (pod_store, pod_writer) = reflector::store::<PartialObjectMeta<Pod>>();
    let (trigger_tx, trigger_rx) = mpsc::channel::<()>(1);

    // Namespaces and non-terminal pods, metadata only, without managedFields.
    let namespaces = watch_objects(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|n| n.managed_fields_mut().clear())
    .reflect(ns_writer);
    let pods = watch_objects(
        Api::<PartialObjectMeta<Pod>>::all(client.clone()),
        watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
    )
    .default_backoff()
    .modify(|p| p.managed_fields_mut().clear())
    .reflect(pod_writer);
    tokio::spawn(forward_relevant_changes(
        namespaces,
        trigger_tx.clone(),
        stopped(),
    ));
    tokio::spawn(forward_relevant_changes(pods, trigger_tx, stopped()));

    let ctx = Arc::new(Context::new(
        client.clone(),
        opts.catalog.clone(),
        opts.platform,
        ns_store.clone(),
        pod_store.clone(),
    ));
    ns_store.wait_until_ready().await.ok();
    pod_store.wait_until_ready().await.ok();

    let config = ControllerConfig::default()
        .debounce(Duration::from_millis(300))
        .concurrency(4);
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=mizzen");

    let istios = Controller::new(
        Api::<Istio>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<IstioRevision>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Service>::all(client.clone()), managed.clone())
    .with_config(config.clone())
    .graceful_shutdown_on(stopped())
    .run(istio::reconcile, error_policy, ctx.clone())
    .for_each(|r| async move { log_result("Istio", r) });

    let revisions = Controller::new(
        Api::<IstioRevision>::all(client.clone()),
        watcher::Config::default(),
    );
    let all = revisions.store();
    let everything = move || all_revisions(&all);
    let (e1, e2, e3) = (everything.clone(), everything.clone(), everything.clone());
    let revisions = revisions
        .owns(Api::<Deployment>::all(client.clone()), managed.clone())
        .owns(Api::<Service>::all(client.clone()), managed.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), managed.clone())
        .owns(
            Api::<MutatingWebhookConfiguration>::all(client.clone()),
            managed.clone(),
        )
        .owns(
            Api::<ValidatingWebhookConfiguration>::all(client.clone()),
            managed.clone(),
        )
        .watches(
            Api::<IstioCNI>::all(client.clone()),
            watcher::Config::default(),
            move |_| e1(),
        )
        .watches(
            Api::<ZTunnel>::all(client.clone()),
            watcher::Config::default(),
            move |_| e2(),
        )
        .watches(
            Api::<IstioRevisionTag>::all(client.clone()),
            watcher::Config::default(),
            move |_| e3(),
        )
        .reconcile_all_on(tokio_stream(trigger_rx))
        .with_config(config)
        .graceful_shutdown_on(stopped())
        .run(revision::reconcile, error_policy, ctx.clone())
        .for_each(|r| async move { log_result("IstioRevision", r) });

    opts.ready.store(true, Ordering::SeqCst);
    tracing::info!("controllers running");
    tokio::join!(istios, revisions);
    opts.ready.store(false, Ordering::SeqCst);
    tracing::info!("controllers stopped");
    Ok(())
}

fn all_revisions(store: &Store<IstioRevision>) -> Vec<ObjectRef<IstioRevision>> {
    store
        .state()
        .iter()
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

fn tokio_stream(mut rx: mpsc::Receiver<()>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Waits until mizzen's CRDs are served; false when shut down first.
async fn wait_for_crds(client: &Client, stopped: impl Future<Output = ()>) -> bool {
    let mut stopped = Box::pin(stopped.fuse());
    let mut logged = false;
    loop {
        let mut ok = true;
        for probe in [
            Api::<Istio>::all(client.clone())
                .list(&ListParams::default().limit(1))
                .await
                .err(),
            Api::<IstioRevision>::all(client.clone())
                .list(&ListParams::default().limit(1))
                .await
                .err(),
        ]
        .into_iter()
        .flatten()
        {
            ok = false;
            if !logged {
                tracing::info!(error = %probe, "waiting for the sailoperator.io CRDs (install them with `mizzen crds | kubectl apply --server-side -f -`)");
                logged = true;
            }
        }
        if ok {
            return true;
        }
        tokio::select! {
            _ = &mut stopped => return false,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Drives a metadata reflector stream and signals when a change can affect revision usage
/// (labels and annotations that select revisions, enrolment, ztunnel pods): pod status churn
/// does not cause reconciles.
async fn forward_relevant_changes<K, S>(
    stream: S,
    tx: mpsc::Sender<()>,
    stopped: impl Future<Output = ()>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + Send + 'static,
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut fingerprints: HashMap<String, u64> = HashMap::new();
    let mut stream = Box::pin(stream.take_until(stopped));
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(Event::Apply(o) | Event::InitApply(o)) => {
                let key = o.uid().unwrap_or_default();
                let fp = fingerprint(&o);
                fingerprints.insert(key, fp) != Some(fp)
            }
            Ok(Event::Delete(o)) => fingerprints.remove(&o.uid().unwrap_or_default()).is_some(),
            Ok(Event::InitDone) => true,
            Ok(Event::Init) => false,
            Err(e) => {
                tracing::warn!(error = %e, "watch error");
                false
            }
        };
        if changed {
            let _ = tx.try_send(());
        }
    }
}

fn fingerprint<K: kube::Resource>(o: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for key in [REV, INJECTION, INJECT, DATAPLANE_MODE, "app"] {
        o.labels().get(key).hash(&mut h);
    }
    for key in [REV, FOLLOWS_ISTIO_ANNOTATION] {
        o.annotations().get(key).hash(&mut h);
    }
    o.meta().deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

fn error_policy<K>(obj: Arc<K>, err: &Error, _ctx: Arc<Context>) -> Action
where
    K: kube::Resource,
{
    tracing::warn!(name = obj.name_any(), error = %err, "reconcile failed; retrying in 10s");
    Action::requeue(Duration::from_secs(10))
}

fn log_result<K, E: std::fmt::Display>(kind: &str, r: Result<(ObjectRef<K>, Action), E>)
where
    K: kube::Resource,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    match r {
        Ok((o, _)) => tracing::debug!(kind, name = o.name, "reconciled"),
        Err(e) => tracing::debug!(kind, error = %e, "controller event"),
    }
}
