//! Running the controllers: wait for the CRDs, fill the index of namespaces and pods, run every
//! controller until shutdown. Leases, the health and metrics endpoints and signals are the
//! runtime's (`mizzen-runtime`); this module only composes the controllers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::core::GroupVersionKind;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_objects};
use mizzen_api::{Istio, IstioRevision};
use mizzen_catalog::Catalog;
use mizzen_render::Platform;
use tokio::sync::{broadcast, watch};

use crate::metrics::Metrics;
use crate::wiring::{Health, WatchBackoff, Wiring};
use crate::workloads::Workloads;
use crate::{Context, Error, cni, istio, revision, rollout, tag, ztunnel};

/// How long running reconciles may take to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long start-up waits for the caches of rendered kinds to list; a kind not listed by
/// then is read from the API server until its cache catches up.
const CACHE_START: Duration = Duration::from_secs(10);

/// How the operator runs.
#[derive(Clone)]
pub struct RunOptions {
    /// The version catalog.
    pub catalog: Arc<Catalog>,
    /// Kubernetes or OpenShift.
    pub platform: Platform,
    /// Started, and the watches' health (for `/readyz`).
    pub health: Arc<Health>,
    /// Where the controllers' metrics go.
    pub metrics: Arc<Metrics>,
    /// Whether this process leads: only the leader reconciles (always true without leader
    /// election).
    pub leader: watch::Receiver<bool>,
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
    let stop_for = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_for.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    if !wait_for_crds(&client, stopped()).await {
        return Ok(());
    }

    let workloads = Arc::new(Workloads::new());
    let (trigger_tx, _) = broadcast::channel::<()>(16);

    // Namespaces and non-terminal pods, metadata only, folded into the index.
    let namespaces = watch_objects(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        crate::wiring::watch_config(),
    )
    .backoff(WatchBackoff::default());
    let pods = watch_objects(
        Api::<PartialObjectMeta<Pod>>::all(client.clone()),
        crate::wiring::watch_config().fields("status.phase!=Succeeded,status.phase!=Failed"),
    )
    .backoff(WatchBackoff::default());
    let index = workloads.clone();
    tokio::spawn(forward_relevant_changes(
        "namespaces",
        namespaces,
        move |e| index.namespace_event(e),
        trigger_tx.clone(),
        opts.health.clone(),
        opts.metrics.clone(),
        stopped(),
    ));
    let index = workloads.clone();
    tokio::spawn(forward_relevant_changes(
        "pods",
        pods,
        move |e| index.pod_event(e),
        trigger_tx.clone(),
        opts.health.clone(),
        opts.metrics.clone(),
        stopped(),
    ));

    let ctx = Arc::new(Context::new(
        client.clone(),
        opts.catalog.clone(),
        opts.platform,
        workloads.clone(),
        opts.metrics.clone(),
        opts.health.clone(),
    ));
    // The controllers never see the index before both watches listed everything once.
    tokio::select! {
        _ = workloads.listed() => {}
        _ = stopped() => return Ok(()),
    }
    ctx.children
        .start(&client, opts.metrics.clone(), stopped.clone());
    let late = ctx.children.wait_until_ready(CACHE_START).await;
    if !late.is_empty() {
        tracing::warn!(watches = ?late, "caches not listed yet; reading those kinds from the API server");
    }

    let wiring = Wiring {
        client,
        ctx,
        triggers: trigger_tx,
        stop: stop_rx,
        leader: opts.leader.clone(),
    };
    let controllers = vec![
        istio::controller(&wiring),
        revision::controller(&wiring),
        tag::controller(&wiring),
        cni::controller(&wiring),
        ztunnel::controller(&wiring),
        rollout::controller(&wiring),
    ];
    // The controllers subscribed to their kinds' changes above; now the watches may list.
    wiring
        .ctx
        .own
        .start(&wiring.client, opts.metrics.clone(), stopped.clone());
    if !wiring.ctx.own.wait_until_ready(CACHE_START).await {
        tracing::warn!("mizzen's own kinds not listed yet; reading them from the API server");
    }
    opts.health.set_started(true);
    tracing::info!("controllers running");
    // kube-runtime holds a controller's runner until its cache is first filled, even after a
    // graceful shutdown began; a shutdown right after start would wait forever. Running
    // reconciles get this long to finish.
    let deadline = {
        let stopped = wiring.stopped();
        async move {
            stopped.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        _ = deadline => tracing::warn!("controllers did not stop within {SHUTDOWN_GRACE:?} of shutdown"),
    }
    opts.health.set_started(false);
    tracing::info!("controllers stopped");
    Ok(())
}

/// The kinds whose objects mizzen caches: every kind it renders, and the Istio CRDs it
/// applies. Not the NetworkAttachmentDefinition, which only OpenShift (multus) serves: it is
/// read from the API server.
pub fn cached_kinds() -> Vec<GroupVersionKind> {
    let mut kinds: Vec<GroupVersionKind> = crate::permissions::rendered_kinds()
        .into_iter()
        .filter(|k| k.kind != "NetworkAttachmentDefinition")
        .collect();
    kinds.push(GroupVersionKind::gvk(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    ));
    kinds
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

/// Drives a metadata watch into the index (`fold`, true when the index changed) and signals
/// when a change can affect revision usage (what the index keeps: labels and annotations that
/// select revisions, enrolment, ztunnel pods, namespaces being deleted), and at the end of each
/// list: pod status churn does not cause reconciles.
async fn forward_relevant_changes<K, S>(
    name: &'static str,
    stream: S,
    fold: impl Fn(Event<K>) -> bool,
    tx: broadcast::Sender<()>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stopped: impl Future<Output = ()>,
) where
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut stream = Box::pin(stream.take_until(stopped));
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(event) => {
                health.watch_ok(name);
                fold(event)
            }
            Err(e) => {
                health.watch_error(name, &e, &metrics);
                false
            }
        };
        if changed {
            let _ = tx.send(());
        }
    }
}
