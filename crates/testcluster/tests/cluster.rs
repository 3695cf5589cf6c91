//! Integration tests against a real control plane with KWOK fake nodes: one cluster shared by
//! this test binary, a namespace per test, every wait bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use mizzen_testcluster::{TcpState, TestNamespace, is_loopback, shared, sockets};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The longest any single wait in these tests may take.
const TIMEOUT: Duration = Duration::from_secs(90);
const IMAGE_V1: &str = "registry.invalid/mizzen/fake:v1";
const IMAGE_V2: &str = "registry.invalid/mizzen/fake:v2";

/// Polls `probe` until it yields a value, failing after [`TIMEOUT`].
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {TIMEOUT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid manifest")
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_image(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default()
}

fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// The nodes that have a ready (and not terminating) pod, optionally with a given image.
fn nodes_with_ready_pod<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    image: Option<&str>,
) -> BTreeSet<String> {
    pods.into_iter()
        .filter(|p| pod_is_ready(p) && image.is_none_or(|i| pod_image(p) == i))
        .filter_map(|p| pod_node(p).map(str::to_owned))
        .collect()
}

/// Waits until exactly one ready pod with `image` runs on each node and no other pod exists.
async fn wait_for_one_pod_per_node(
    pods: &Api<Pod>,
    selector: &str,
    image: &str,
    nodes: &[String],
) -> Result<Vec<Pod>> {
    let want: BTreeSet<String> = nodes.iter().cloned().collect();
    eventually(&format!("one ready {image} pod per node"), async || {
        let list = pods.list(&ListParams::default().labels(selector)).await?;
        let ok = list.items.len() == nodes.len()
            && nodes_with_ready_pod(&list.items, Some(image)) == want;
        Ok(ok.then_some(list.items))
    })
    .await
}

fn daemonset(name: &str, update_strategy: serde_json::Value) -> DaemonSet {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": update_strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": IMAGE_V1}]}
            }
        }
    }))
}

async fn set_daemonset_image(api: &Api<DaemonSet>, name: &str, image: &str) -> Result<()> {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

/// The pods seen through a watch, updated event by event.
#[derive(Default)]
struct PodView {
    pods: BTreeMap<String, Pod>,
    relisting: Option<BTreeMap<String, Pod>>,
}

impl PodView {
    /// Applies one watch event; true when the view is complete (not in the middle of a list).
    fn apply(&mut self, event: watcher::Event<Pod>) -> bool {
        let key = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
        match event {
            watcher::Event::Init => self.relisting = Some(BTreeMap::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(buffer) = self.relisting.as_mut() {
                    buffer.insert(key(&pod), pod);
                }
            }
            watcher::Event::InitDone => {
                self.pods = self.relisting.take().unwrap_or_default();
                return true;
            }
            watcher::Event::Apply(pod) => {
                self.pods.insert(key(&pod), pod);
                return self.relisting.is_none();
            }
            watcher::Event::Delete(pod) => {
                self.pods.remove(&key(&pod));
                return self.relisting.is_none();
            }
        }
        false
    }

    fn summary(&self) -> String {
        self.pods
            .values()
            .map(|p| {
                format!(
                    "{}@{}:{}{}",
                    p.metadata.name.as_deref().unwrap_or("?"),
                    pod_node(p).unwrap_or("-"),
                    pod_image(p).rsplit(':').next().unwrap_or("?"),
                    if pod_is_ready(p) { "+" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[tokio::test]
async fn cluster_starts_with_ready_untainted_nodes() -> Result<()> {
    let cluster = shared().await;
    println!(
        "cluster start: {:?} total; phases (from launching etcd): {:?}",
        cluster.startup_time(),
        cluster.startup_phases()
    );
    let nodes: Api<Node> = Api::all(cluster.client());
    let list = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["node-1", "node-2", "node-3"]);
    for node in &list.items {
        let status = node.status.as_ref().context("node status")?;
        let allocatable = status.allocatable.as_ref().context("allocatable")?;
        assert!(allocatable.contains_key("pods") && allocatable.contains_key("cpu"));
        let addresses = status.addresses.as_ref().context("addresses")?;
        assert!(
            addresses
                .iter()
                .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"),
            "{addresses:?}"
        );
        assert!(
            node.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_none_or(Vec::is_empty)
        );
    }
    Ok(())
}

#[tokio::test]
async fn kubectl_lists_ready_nodes() -> Result<()> {
    let cluster = shared().await;
    let out = cluster
        .kubectl()
        .args(["get", "nodes", "--no-headers"])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.get(1), Some(&"Ready"), "{line}");
    }

    let out = cluster.kubectl().args(["version", "-o", "json"]).output()?;
    ensure!(out.status.success(), "kubectl version failed");
    let version: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(server.starts_with("v1.36."), "{version}");
    Ok(())
}

#[tokio::test]
async fn deployment_becomes_available() -> Result<()> {
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, "deployment").await?;
    let deployments: Api<Deployment> = ns.api();
    let deployment: Deployment = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": IMAGE_V1}]}
            }
        }
    }));
    let started = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    eventually("Deployment web Available with 3 replicas", async || {
        let status = deployments.get("web").await?.status.unwrap_or_default();
        let available = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True");
        Ok((available && status.available_replicas == Some(3)).then_some(()))
    })
    .await?;
    println!(
        "deployment with 3 replicas available after {:?}",
        started.elapsed()
    );

    let pods: Api<Pod> = ns.api();
    for pod in pods.list(&ListParams::default().labels("app=web")).await? {
        let status = pod.status.context("pod status")?;
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ip: std::net::IpAddr = status.pod_ip.context("podIP")?.parse()?;
        // Fake pod IPs come from KWOK's --cidr (10.244.0.0/16): nothing is behind them.
        assert!(
            matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[..2] == [10, 244]),
            "{ip}"
        );
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    }
    Ok(())
}

#[tokio::test]
async fn daemonset_rolling_update_replaces_one_node_at_a_time() -> Result<()> {
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, "ds-rolling").await?;
    let nodes = cluster.node_names().to_vec();
    let daemonsets: Api<DaemonSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}});
    daemonsets
        .create(&PostParams::default(), &daemonset("roll", strategy))
        .await?;
    wait_for_one_pod_per_node(&pods, "app=roll", IMAGE_V1, &nodes).await?;

    // Watch every change from a complete baseline, then roll.
    let mut events = watcher(pods.clone(), watcher::Config::default().labels("app=roll")).boxed();
    let mut view = PodView::default();
    while !view.apply(events.try_next().await?.context("watch ended")?) {}
    set_daemonset_image(&daemonsets, "roll", IMAGE_V2).await?;

    let all: BTreeSet<String> = nodes.iter().cloned().collect();
    let deadline = Instant::now() + TIMEOUT;
    let mut history = Vec::new();
    let mut max_lacking = 0;
    let mut saw_one_lacking = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(remaining, events.try_next())
            .await
            .with_context(|| {
                format!(
                    "rollout did not finish in {TIMEOUT:?}:\n{}",
                    history.join("\n")
                )
            })??
            .context("watch ended")?;
        if !view.apply(event) {
            continue;
        }
        let ready = nodes_with_ready_pod(view.pods.values(), None);
        let lacking = all.difference(&ready).count();
        history.push(format!("lacking={lacking} {}", view.summary()));
        max_lacking = max_lacking.max(lacking);
        saw_one_lacking |= lacking == 1;
        let done = view.pods.len() == nodes.len()
            && nodes_with_ready_pod(view.pods.values(), Some(IMAGE_V2)) == all;
        if done {
            break;
        }
    }
    assert!(
        max_lacking <= 1,
        "more than one node lacked a ready pod at once:\n{}",
        history.join("\n")
    );
    assert!(
        saw_one_lacking,
        "no rollout step was observed:\n{}",
        history.join("\n")
    );
    println!(
        "rolling update, {} observed states (pod@node:tag, + = ready):\n  {}",
        history.len(),
        history.join("\n  ")
    );

    let final_pods = wait_for_one_pod_per_node(&pods, "app=roll", IMAGE_V2, &nodes).await?;
    assert!(final_pods.iter().all(|p| pod_image(p) == IMAGE_V2));
    Ok(())
}

#[tokio::test]
async fn daemonset_on_delete_replaces_only_deleted_pods() -> Result<()> {
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, "ds-ondelete").await?;
    let nodes = cluster.node_names().to_vec();
    let daemonsets: Api<DaemonSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    daemonsets
        .create(
            &PostParams::default(),
            &daemonset("manual", json!({"type": "OnDelete"})),
        )
        .await?;
    let before = wait_for_one_pod_per_node(&pods, "app=manual", IMAGE_V1, &nodes).await?;

    set_daemonset_image(&daemonsets, "manual", IMAGE_V2).await?;
    // Once the controller has seen the new template, give it time to (wrongly) act.
    eventually(
        "the DaemonSet controller to observe the new template",
        async || {
            let ds = daemonsets.get("manual").await?;
            let observed = ds.status.and_then(|s| s.observed_generation);
            Ok((observed == ds.metadata.generation).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let uids = |pods: &[Pod]| -> BTreeSet<String> {
        pods.iter().filter_map(|p| p.metadata.uid.clone()).collect()
    };
    let still = pods
        .list(&ListParams::default().labels("app=manual"))
        .await?
        .items;
    assert_eq!(
        uids(&still),
        uids(&before),
        "OnDelete must not replace pods by itself"
    );
    assert!(still.iter().all(|p| pod_image(p) == IMAGE_V1));

    // Delete the pod on one node: only that node gets the new image.
    let victim = still
        .iter()
        .find(|p| pod_node(p) == Some(nodes[0].as_str()))
        .context("pod on the first node")?;
    pods.delete(
        victim.metadata.name.as_deref().unwrap_or_default(),
        &DeleteParams::default(),
    )
    .await?;
    eventually("a new-image pod on the first node", async || {
        let list = pods
            .list(&ListParams::default().labels("app=manual"))
            .await?
            .items;
        let on_first: Vec<&Pod> = list
            .iter()
            .filter(|p| pod_node(p) == Some(nodes[0].as_str()))
            .collect();
        Ok(
            (on_first.len() == 1
                && pod_is_ready(on_first[0])
                && pod_image(on_first[0]) == IMAGE_V2)
                .then_some(()),
        )
    })
    .await?;
    let now = pods
        .list(&ListParams::default().labels("app=manual"))
        .await?
        .items;
    let untouched: Vec<&Pod> = now
        .iter()
        .filter(|p| pod_node(p) != Some(nodes[0].as_str()))
        .collect();
    assert_eq!(untouched.len(), nodes.len() - 1);
    assert!(untouched.iter().all(
        |p| pod_image(p) == IMAGE_V1 && before.iter().any(|b| b.metadata.uid == p.metadata.uid)
    ));

    // Delete the rest: all replacements come up with the new image.
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=manual"),
    )
    .await?;
    wait_for_one_pod_per_node(&pods, "app=manual", IMAGE_V2, &nodes).await?;
    Ok(())
}

fn owner_reference(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        block_owner_deletion: Some(true),
        controller: None,
    }
}

fn config_map(name: &str, owner: Option<OwnerReference>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Waits until `name` no longer exists.
async fn gone<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} to be deleted"), async || {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

#[tokio::test]
async fn garbage_collector_deletes_children_of_a_namespaced_owner() -> Result<()> {
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, "gc-namespaced").await?;
    let config_maps: Api<ConfigMap> = ns.api();
    let owner = config_maps
        .create(&PostParams::default(), &config_map("owner", None))
        .await?;
    let owner_ref = owner_reference("v1", "ConfigMap", &owner.metadata);
    config_maps
        .create(
            &PostParams::default(),
            &config_map("child", Some(owner_ref)),
        )
        .await?;
    config_maps
        .create(&PostParams::default(), &config_map("bystander", None))
        .await?;

    config_maps
        .delete("owner", &DeleteParams::background())
        .await?;
    gone(&config_maps, "child").await?;
    assert!(config_maps.get_opt("bystander").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn garbage_collector_deletes_children_of_a_cluster_scoped_owner() -> Result<()> {
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, "gc-cluster").await?;
    let roles: Api<ClusterRole> = Api::all(ns.client());
    let role_name = format!("{}-owner", ns.name());
    let role = roles
        .create(
            &PostParams::default(),
            &ClusterRole {
                metadata: ObjectMeta {
                    name: Some(role_name.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    let config_maps: Api<ConfigMap> = ns.api();
    let owner_ref = owner_reference(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        &role.metadata,
    );
    config_maps
        .create(
            &PostParams::default(),
            &config_map("child", Some(owner_ref)),
        )
        .await?;

    // Foreground: the owner stays until its blocking child is gone, then goes too.
    roles
        .delete(&role_name, &DeleteParams::foreground())
        .await?;
    gone(&config_maps, "child").await?;
    gone(&roles, &role_name).await?;
    Ok(())
}

#[tokio::test]
async fn namespace_with_pods_is_deleted_completely() -> Result<()> {
    let cluster = shared().await;
    let ns = TestNamespace::new(cluster, "ns-delete").await?;
    let deployments: Api<Deployment> = ns.api();
    let deployment: Deployment = from_json(json!({
        "metadata": {"name": "doomed"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "doomed"}},
            "template": {
                "metadata": {"labels": {"app": "doomed"}},
                "spec": {"containers": [{"name": "main", "image": IMAGE_V1}]}
            }
        }
    }));
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let pods: Api<Pod> = ns.api();
    eventually("2 running pods", async || {
        let list = pods.list(&ListParams::default()).await?;
        Ok((list.items.iter().filter(|p| pod_is_ready(p)).count() == 2).then_some(()))
    })
    .await?;

    let namespaces: Api<Namespace> = Api::all(ns.client());
    let started = Instant::now();
    namespaces
        .delete(ns.name(), &DeleteParams::background())
        .await?;
    gone(&namespaces, ns.name()).await?;
    println!("namespace with 2 pods deleted in {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn components_listen_and_connect_only_on_loopback() -> Result<()> {
    let cluster = shared().await;
    let pids = cluster.pids();
    let name_of = |pid: u32| {
        pids.iter()
            .find(|p| p.pid == pid)
            .map_or("?", |p| p.name.as_str())
    };
    let all = sockets(pids.iter().map(|p| p.pid))?;
    let listeners: Vec<(&str, SocketAddr)> = all
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| (name_of(s.pid), s.local))
        .collect();
    println!("listening sockets: {listeners:?}");
    for component in ["etcd", "kube-apiserver", "kwok"] {
        assert!(
            listeners.iter().any(|(name, _)| *name == component),
            "{component} has no listener: the check would be vacuous ({listeners:?})"
        );
    }
    let exposed: Vec<_> = listeners
        .iter()
        .filter(|(_, addr)| !is_loopback(addr.ip()))
        .collect();
    assert!(exposed.is_empty(), "non-loopback listeners: {exposed:?}");

    let outbound: Vec<_> = all
        .iter()
        .filter(|s| matches!(s.state, TcpState::Established | TcpState::Connecting))
        .filter(|s| !is_loopback(s.remote.ip()) || !is_loopback(s.local.ip()))
        .map(|s| (name_of(s.pid), s.local, s.remote))
        .collect();
    assert!(
        outbound.is_empty(),
        "non-loopback connections: {outbound:?}"
    );
    Ok(())
}
