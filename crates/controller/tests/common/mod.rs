//! The operator running in-process against the shared local control plane of a test binary.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use mizzen_catalog::Catalog;
use mizzen_controller::metrics::Metrics;
use mizzen_controller::{Health, RunOptions, crd_versions, run};
use mizzen_render::Platform;
use mizzen_testcluster::{Cluster, shared};

/// A running operator; stops when dropped (or when the test binary exits).
pub struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Installs mizzen's CRDs (for `catalog`) on `cluster` and waits until they are Established.
pub async fn install_crds(cluster: &Cluster, catalog: &Catalog) {
    let client = cluster.client();
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in mizzen_api::crds::crds(&crd_versions(catalog)) {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("mizzen-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .unwrap();
    }
}

/// Starts the operator with `catalog` in a thread of its own (its own runtime, so it outlives
/// each test's runtime) and waits until its controllers run.
pub fn start_operator(cluster: &Cluster, catalog: Catalog) -> Operator {
    start_operator_counting(cluster, catalog).0
}

/// Like [`start_operator`], also counting the operator's requests.
pub fn start_operator_counting(cluster: &Cluster, catalog: Catalog) -> (Operator, Arc<Requests>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let counts = Arc::new(Requests::default());
    let counted = counts.clone();
    let config = cluster.kube_config();
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let h = health.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = counting_client(config, &counted);
            let (_leader_tx, leader) = tokio::sync::watch::channel(true);
            let opts = RunOptions {
                catalog: Arc::new(catalog),
                platform: Platform::Kubernetes,
                health: h,
                metrics: Metrics::new(&mut Default::default()),
                leader,
            };
            run(client, opts, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Some(why) = health.not_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "operator did not start: {why}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        Operator {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
        counts,
    )
}

/// Requests a client sent, counted at its HTTP layer.
#[derive(Debug, Default)]
pub struct Requests {
    /// Anything but GET.
    pub writes: AtomicUsize,
    /// GETs that are not watches (gets and lists).
    pub reads: AtomicUsize,
    /// The paths of the reads since the last [`Requests::take`], for messages.
    pub read_paths: Mutex<Vec<String>>,
    /// The methods and paths of the writes since the last [`Requests::take`], for messages.
    pub write_paths: Mutex<Vec<String>>,
}

impl Requests {
    /// Both counts, then zeroes them.
    pub fn take(&self) -> (usize, usize) {
        self.read_paths.lock().unwrap().clear();
        self.write_paths.lock().unwrap().clear();
        (
            self.writes.swap(0, Ordering::SeqCst),
            self.reads.swap(0, Ordering::SeqCst),
        )
    }
}

/// A tower service that counts requests into [`Requests`].
#[derive(Clone)]
pub struct CountRequests<S> {
    inner: S,
    counts: Arc<Requests>,
}

impl<S, B> tower::Service<http::Request<B>> for CountRequests<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
        if req.method() != http::Method::GET {
            self.counts.writes.fetch_add(1, Ordering::SeqCst);
            self.counts
                .write_paths
                .lock()
                .unwrap()
                .push(format!("{} {}", req.method(), req.uri()));
        } else if !watch {
            self.counts.reads.fetch_add(1, Ordering::SeqCst);
            self.counts
                .read_paths
                .lock()
                .unwrap()
                .push(req.uri().to_string());
        }
        self.inner.call(req)
    }
}

/// A client of `config` whose requests are counted into `counts`. Build it on the runtime
/// that uses it: the client's request buffer runs there.
pub fn counting_client(config: kube::Config, counts: &Arc<Requests>) -> kube::Client {
    let c = counts.clone();
    let layer = tower::layer::layer_fn(move |inner| CountRequests {
        inner,
        counts: c.clone(),
    });
    kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&layer)
        .build()
}

static SHARED_OPERATOR: OnceLock<Mutex<Option<Operator>>> = OnceLock::new();
static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// The shared cluster with CRDs installed and one operator (embedded catalog) running for the
/// whole test binary.
pub async fn cluster_with_operator() -> &'static Cluster {
    let cluster = shared().await;
    CRDS.get_or_init(|| async { install_crds(cluster, &Catalog::embedded().unwrap()).await })
        .await;
    SHARED_OPERATOR
        .get_or_init(|| Mutex::new(Some(start_operator(cluster, Catalog::embedded().unwrap()))));
    cluster
}

/// Ambient enrolment is cluster-wide: an ambient namespace uses every revision that any
/// ztunnel pod is bound to, as on a real cluster with one ztunnel per node. Tests that enrol
/// namespaces in ambient mode or create ztunnel pods hold this lock, so that one test's
/// ambient namespaces do not keep another test's revisions in use.
pub static AMBIENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits long enough that the next object is created in a later second than every object
/// before it. The API server's creationTimestamp counts whole seconds: within one second the
/// UIDs decide which of two clashing names wins, and a ztunnel pod created in the second a
/// revision became active is bound to that revision.
pub async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// Polls `f` until it returns `Some`, up to `secs` seconds; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs kubectl against `cluster`, returning stdout; panics on failure.
pub fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kubectl().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl apply -f` of `manifest` (written to a temporary file, as a user's would be).
pub fn apply(cluster: &Cluster, manifest: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("manifest.yaml");
    std::fs::write(&f, manifest).unwrap();
    kubectl(cluster, &["apply", "-f", f.to_str().unwrap()]);
}

/// `kubectl wait --for=condition=Ready <resource> --timeout=<timeout>`, as the OSSM procedure
/// runs it; panics if it does not return in time.
pub fn wait_ready(cluster: &Cluster, resource: &str, timeout: &str) {
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            resource,
            &format!("--timeout={timeout}"),
        ],
    );
}

/// `kubectl get` output as rows of whitespace-separated columns (header dropped), for the given
/// resource and names.
pub fn table(cluster: &Cluster, args: &[&str]) -> Vec<Vec<String>> {
    kubectl(cluster, args)
        .lines()
        .skip(1)
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}
