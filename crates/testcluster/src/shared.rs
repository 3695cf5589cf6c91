//! One cluster per test binary, and a namespace per test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use tokio::sync::OnceCell;

use crate::cluster::{Cluster, Options};
use crate::error::Result;

/// The label put on every namespace made by [`TestNamespace`].
pub const TEST_NAMESPACE_LABEL: &str = "mizzen.dev/test-namespace";

static SHARED: OnceCell<std::result::Result<Cluster, String>> = OnceCell::const_new();

/// The cluster shared by all tests of this test binary: 3 fake nodes, started by the first
/// caller, never dropped (its watchdog stops it when the test binary exits).
///
/// Only the processes are shared: get a client per test with [`Cluster::client`] (or use
/// [`TestNamespace`]), since a `kube::Client` belongs to the runtime it was made in and each
/// `#[tokio::test]` has its own.
///
/// # Panics
///
/// If the cluster cannot start; later callers panic at once with the same message.
pub async fn shared() -> &'static Cluster {
    let started = SHARED
        .get_or_init(|| async {
            Cluster::start(Options::default())
                .await
                .map_err(|e| e.to_string())
        })
        .await;
    match started {
        Ok(cluster) => cluster,
        Err(message) => panic!("the shared test cluster did not start: {message}"),
    }
}

/// A namespace with a unique name for one test, deleted (best effort, without waiting) on drop.
pub struct TestNamespace {
    name: String,
    client: kube::Client,
    config: kube::Config,
}

impl TestNamespace {
    /// Creates a namespace named `<prefix>-<n>-<suffix>` (the prefix is lower-cased and cut to
    /// fit), labelled [`TEST_NAMESPACE_LABEL`].
    pub async fn new(cluster: &Cluster, prefix: &str) -> Result<Self> {
        let name = unique_name(prefix);
        let client = cluster.client();
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    TEST_NAMESPACE_LABEL.to_owned(),
                    "true".to_owned(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(Self {
            name,
            client,
            config: cluster.kube_config(),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A client for the test's runtime.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// An API handle for a namespaced resource in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // The test's runtime may be shutting down (and a blocking call inside it would be
        // refused), so delete from a helper thread with its own runtime.
        let config = self.config.clone();
        let name = std::mem::take(&mut self.name);
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let client = kube::Client::try_from(config).ok()?;
                let namespaces: Api<Namespace> = Api::all(client);
                let deleted = tokio::time::timeout(
                    Duration::from_secs(10),
                    namespaces.delete(&name, &DeleteParams::background()),
                )
                .await
                .ok()?;
                match deleted {
                    Ok(_) => Some(()),
                    // Already gone (a test deleted it itself).
                    Err(kube::Error::Api(status)) if status.code == 404 => Some(()),
                    Err(_) => None,
                }
            })
        })
        .join();
        if !matches!(deleted, Ok(Some(()))) {
            tracing::warn!("could not delete a test namespace");
        }
    }
}

/// `<prefix>-<counter>-<time>`, a valid DNS label of at most 63 characters.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or_default();
    let mut clean: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    clean = clean.trim_matches('-').to_owned();
    if clean.is_empty() {
        clean.push_str("test");
    }
    format!("{clean}-{n}-{nanos:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels() {
        let a = unique_name("My_Test::Case");
        let b = unique_name("My_Test::Case");
        assert_ne!(a, b);
        assert!(a.starts_with("my-test--case-"), "{a}");
        let long = unique_name(&"x".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert!(unique_name("--").starts_with("test-"));
        for name in [&a, &long] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
    }
}
