//! `DrainWaves` rollouts of ztunnel (issue 12) on a local control plane of 30 fake nodes, with
//! ambient Deployments guarded by PodDisruptionBudgets: every node is drained before its
//! ztunnel pod is replaced, no budget is ever broken, every node ends uncordoned, the status
//! shows the waves as they go; pausing halts between nodes, a restarted operator finishes the
//! wave, and bad input is reported.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{apply, eventually, install_crds, kubectl, start_operator};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use mizzen_api::rollout::RolloutPolicy;
use mizzen_catalog::Catalog;
use mizzen_testcluster::{Cluster, Options};
use tokio::sync::OnceCell;

const NODES: usize = 30;
static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
/// The tests share the singleton ZTunnel, and each runs its own operator: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async {
            let c = Cluster::start(Options {
                nodes: NODES,
                ..Default::default()
            })
            .await
            .expect("a cluster of 30 nodes");
            install_crds(&c, &Catalog::embedded().unwrap()).await;
            c
        })
        .await
}

fn mesh(version: &str) -> String {
    format!(
        "apiVersion: sailoperator.io/v1
kind: Istio
metadata: {{name: default}}
spec: {{namespace: istio-system, version: {version}, profile: ambient}}
---
apiVersion: sailoperator.io/v1
kind: ZTunnel
metadata: {{name: default}}
spec: {{namespace: ztunnel, version: {version}}}
"
    )
}

/// Three Deployments of 10 replicas in ambient namespace `apps`, each with a budget of one
/// pod unavailable.
fn workloads(cluster: &Cluster) {
    kubectl(cluster, &["create", "namespace", "apps"]);
    kubectl(
        cluster,
        &[
            "label",
            "namespace",
            "apps",
            "istio.io/dataplane-mode=ambient",
        ],
    );
    for app in ["cart", "shop", "pay"] {
        apply(
            cluster,
            &format!(
                "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {app}, namespace: apps}}
spec:
  replicas: 10
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec: {{containers: [{{name: c, image: example.invalid/{app}:1}}]}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: {app}, namespace: apps}}
spec:
  maxUnavailable: 1
  selector: {{matchLabels: {{app: {app}}}}}
"
            ),
        );
    }
    kubectl(
        cluster,
        &[
            "rollout",
            "status",
            "deployment",
            "-n",
            "apps",
            "--timeout=3m",
        ],
    );
}

fn policy(cluster: &Cluster, name: &str, drain_waves: &str, paused: bool) {
    apply(
        cluster,
        &format!(
            "apiVersion: mizzen.io/v1alpha1
kind: RolloutPolicy
metadata: {{name: {name}}}
spec:
  targetRef: {{kind: ZTunnel, name: default}}
  mode: DrainWaves
  paused: {paused}
  drainWaves: {drain_waves}
"
        ),
    );
}

async fn status(cluster: &Cluster, name: &str) -> mizzen_api::RolloutPolicyStatus {
    Api::<RolloutPolicy>::all(cluster.client())
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

fn set_version(cluster: &Cluster, version: &str) {
    kubectl(
        cluster,
        &[
            "patch",
            "ztunnel",
            "default",
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"version":"{version}"}}}}"#),
        ],
    );
}

/// What the watches saw during a rollout.
#[derive(Default, Debug)]
struct Seen {
    /// A budget with fewer healthy pods than it wants, as its status said.
    violations: Vec<String>,
    /// An old ztunnel pod deleted while ambient app pods still ran on its node.
    undrained: Vec<String>,
    /// The app pods on each node, by the watch.
    apps: BTreeMap<String, BTreeSet<String>>,
}

/// Watches budgets and pods until the tasks are aborted.
fn watch(cluster: &Cluster) -> (Arc<Mutex<Seen>>, Vec<tokio::task::JoinHandle<()>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let client = cluster.client();
    let s = seen.clone();
    let budgets = tokio::spawn({
        let client = client.clone();
        async move {
            let mut events = watcher::watcher(
                Api::<PodDisruptionBudget>::namespaced(client, "apps"),
                watcher::Config::default(),
            )
            .boxed();
            while let Some(event) = events.next().await {
                let Ok(Event::Apply(b) | Event::InitApply(b)) = event else {
                    continue;
                };
                let st = b.status.clone().unwrap_or_default();
                let (healthy, desired) = (
                    st.current_healthy.unwrap_or(0),
                    st.desired_healthy.unwrap_or(0),
                );
                if st.observed_generation == b.metadata.generation
                    && healthy < desired
                    && st.expected_pods.unwrap_or(0) > 0
                {
                    s.lock().unwrap().violations.push(format!(
                        "{}: {healthy} healthy < {desired} desired",
                        b.name_any()
                    ));
                }
            }
        }
    });
    let s = seen.clone();
    let pods = tokio::spawn(async move {
        let mut events =
            watcher::watcher(Api::<Pod>::all(client), watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let mut seen = s.lock().unwrap();
            match event {
                Ok(Event::Apply(p) | Event::InitApply(p)) => {
                    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                    if p.namespace().as_deref() == Some("apps")
                        && let Some(node) = node
                    {
                        let entry = seen.apps.entry(node).or_default();
                        if p.metadata.deletion_timestamp.is_none() {
                            entry.insert(p.name_any());
                        } else {
                            entry.remove(&p.name_any());
                        }
                    }
                }
                Ok(Event::Delete(p)) => {
                    let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                        continue;
                    };
                    if p.namespace().as_deref() == Some("apps") {
                        seen.apps.entry(node).or_default().remove(&p.name_any());
                    } else if p.labels().get("app").map(String::as_str) == Some("ztunnel") {
                        let left = seen.apps.get(&node).cloned().unwrap_or_default();
                        if !left.is_empty() {
                            seen.undrained
                                .push(format!("ztunnel on {node} replaced with {left:?} on it"));
                        }
                    }
                }
                _ => {}
            }
        }
    });
    (seen, vec![budgets, pods])
}

async fn nodes_clean(cluster: &Cluster) {
    let nodes = Api::<Node>::all(cluster.client())
        .list(&ListParams::default())
        .await
        .unwrap();
    for n in nodes.items {
        let cordoned = n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        assert!(!cordoned, "node {} left cordoned", n.name_any());
        assert!(
            !n.annotations().keys().any(|k| k.starts_with("mizzen.io/")),
            "node {} keeps {:?}",
            n.name_any(),
            n.annotations()
        );
    }
}

async fn ztunnel_images(cluster: &Cluster) -> BTreeSet<String> {
    Api::<Pod>::namespaced(cluster.client(), "ztunnel")
        .list(&ListParams::default().labels("app=ztunnel"))
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.containers.first()?.image.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_waves_roll_ztunnel_node_by_node() {
    let _serial = SERIAL.lock().await;
    let cluster = cluster().await;
    let operator = start_operator(cluster, Catalog::embedded().unwrap());
    ensure_mesh(cluster).await;
    kubectl(
        cluster,
        &["delete", "rolloutpolicy", "--all", "--wait=true"],
    );
    let start = ztunnel_version(cluster);
    let (second, third) = (bump(&start), bump(&bump(&start)));

    // The policy switches the DaemonSet to OnDelete and finds nothing to do.
    policy(
        cluster,
        "zt",
        r#"{waveSize: "20%", nodeTimeoutSeconds: 120}"#,
        false,
    );
    eventually(60, "the policy Complete", || async {
        (status(cluster, "zt").await.phase.as_deref() == Some("Complete")).then_some(())
    })
    .await;
    let strategy = ztunnel_update_strategy(cluster);
    assert_eq!(strategy, "OnDelete");

    // A patch release in waves of 20 % (6 nodes).
    let (seen, tasks) = watch(cluster);
    set_version(cluster, &second);
    let mut waves = BTreeSet::new();
    let started = std::time::Instant::now();
    loop {
        let s = status(cluster, "zt").await;
        if let Some(w) = &s.wave {
            waves.insert(w.clone());
        }
        if s.phase.as_deref() == Some("Complete") && s.version.as_deref() == Some(second.as_str()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the rollout did not complete: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "30 nodes in waves of 20 %: {:.1} s; waves seen {waves:?}",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    tasks.iter().for_each(|t| t.abort());
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.violations.is_empty(),
        "budgets broken: {:?}",
        seen.violations
    );
    assert!(seen.undrained.is_empty(), "{:?}", seen.undrained);
    assert!(
        waves.len() >= 3,
        "the status showed the waves as they went: {waves:?}"
    );
    assert!(waves.contains("5/5"), "{waves:?}");
    nodes_clean(cluster).await;
    assert_eq!(
        ztunnel_images(cluster).await,
        BTreeSet::from([format!(
            "docker.io/istio/ztunnel:{}-distroless",
            second.trim_start_matches('v')
        )])
    );
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "ztunnels/default",
            "--timeout=1m",
        ],
    );
    let events = kubectl(
        cluster,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "involvedObject.name=zt",
        ],
    );
    assert!(
        events.contains("WaveStarted") && events.contains("WaveCompleted"),
        "{events}"
    );

    // Pause between nodes, resume, and a restarted operator finishing the wave.
    set_version(cluster, &third);
    eventually(120, "wave 2 under way", || async {
        (status(cluster, "zt").await.current_wave >= 2).then_some(())
    })
    .await;
    policy(
        cluster,
        "zt",
        r#"{waveSize: "20%", nodeTimeoutSeconds: 120}"#,
        true,
    );
    eventually(60, "halted between nodes", || async {
        let s = status(cluster, "zt").await;
        (s.phase.as_deref() == Some("Paused") && s.draining == 0).then_some(s.updated)
    })
    .await;
    let halted = status(cluster, "zt").await.updated;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = status(cluster, "zt").await;
    assert_eq!((s.updated, s.draining), (halted, 0), "{s:?}");
    assert!(halted < NODES as i32, "paused after the end");
    policy(
        cluster,
        "zt",
        r#"{waveSize: "20%", nodeTimeoutSeconds: 120}"#,
        false,
    );
    eventually(120, "a node under way again", || async {
        let s = status(cluster, "zt").await;
        (s.draining > 0 || s.updated > halted).then_some(())
    })
    .await;
    drop(operator);
    let marked = Api::<Node>::all(cluster.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|n| n.annotations().contains_key("mizzen.io/rollout"))
        .count();
    println!("operator stopped with {marked} node(s) under way");
    let _operator = start_operator(cluster, Catalog::embedded().unwrap());
    eventually(600, "the rollout Complete at the third version", || async {
        let s = status(cluster, "zt").await;
        (s.phase.as_deref() == Some("Complete") && s.version.as_deref() == Some(third.as_str()))
            .then_some(())
    })
    .await;
    nodes_clean(cluster).await;
    kubectl(cluster, &["delete", "rolloutpolicy", "zt", "--wait=true"]);
}

async fn condition(cluster: &Cluster, name: &str, type_: &str) -> Option<mizzen_api::Condition> {
    status(cluster, name)
        .await
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
}

fn ztunnel_version(cluster: &Cluster) -> String {
    kubectl(
        cluster,
        &[
            "get",
            "ztunnel",
            "default",
            "-o",
            "jsonpath={.spec.version}",
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_failures_removal_and_pauses() {
    let _serial = SERIAL.lock().await;
    let cluster = cluster().await;
    let _operator = start_operator(cluster, Catalog::embedded().unwrap());
    ensure_mesh(cluster).await;

    // A wave size of 0 and a selector that matches no node: a condition that names the
    // cause, the rollout paused, nothing cordoned.
    policy(cluster, "bad", "{waveSize: 0}", false);
    let c = eventually(60, "InvalidSpec", || async {
        condition(cluster, "bad", "Paused")
            .await
            .filter(|c| c.reason.as_deref() == Some("InvalidSpec"))
    })
    .await;
    assert!(
        c.message
            .as_deref()
            .unwrap_or("")
            .contains("spec.drainWaves.waveSize"),
        "{c:?}"
    );
    policy(
        cluster,
        "bad",
        "{nodeSelector: {matchLabels: {pool: gpu}}}",
        false,
    );
    eventually(60, "NoMatchingNodes", || async {
        condition(cluster, "bad", "Paused")
            .await
            .filter(|c| c.reason.as_deref() == Some("NoMatchingNodes"))
    })
    .await;
    kubectl(cluster, &["delete", "rolloutpolicy", "bad", "--wait=true"]);
    nodes_clean(cluster).await;

    // A budget that can never allow an eviction: the node fails after its timeout, naming
    // the budget; the rollout is paused with the node cordoned and explained. Fixing the
    // cause and touching the policy retries it.
    apply(
        cluster,
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: apps}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec: {containers: [{name: c, image: example.invalid/stuck:1}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: stuck, namespace: apps}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: stuck}}
",
    );
    kubectl(
        cluster,
        &[
            "rollout",
            "status",
            "deployment/stuck",
            "-n",
            "apps",
            "--timeout=2m",
        ],
    );
    let node = stuck_node(cluster);
    kubectl(cluster, &["label", "node", &node, "rollout-test=stuck"]);
    let settings =
        "{waveSize: 1, nodeTimeoutSeconds: 8, nodeSelector: {matchLabels: {rollout-test: stuck}}}";
    policy(cluster, "stuck", settings, false);
    eventually(60, "the policy at rest", || async {
        (status(cluster, "stuck").await.phase.as_deref() == Some("Complete")).then_some(())
    })
    .await;
    let next = bump(&ztunnel_version(cluster));
    set_version(cluster, &next);
    let c = eventually(90, "NodeFailed", || async {
        condition(cluster, "stuck", "Paused")
            .await
            .filter(|c| c.reason.as_deref() == Some("NodeFailed"))
    })
    .await;
    let message = c.message.unwrap_or_default();
    assert!(
        message.contains(&node) && message.contains("PodDisruptionBudget apps/stuck"),
        "{message}"
    );
    let n = Api::<Node>::all(cluster.client()).get(&node).await.unwrap();
    assert_eq!(n.spec.as_ref().and_then(|s| s.unschedulable), Some(true));
    assert!(n.annotations()["mizzen.io/rollout-reason"].contains("apps/stuck"));
    let ready = kubectl(
        cluster,
        &[
            "get",
            "ztunnel",
            "default",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
        ],
    );
    assert!(
        ready.contains("RolloutPolicy stuck") && ready.contains("paused"),
        "{ready}"
    );
    kubectl(cluster, &["delete", "pdb", "stuck", "-n", "apps"]);
    policy(cluster, "stuck", settings, true);
    policy(cluster, "stuck", settings, false);
    eventually(120, "the retried node done", || async {
        let s = status(cluster, "stuck").await;
        (s.phase.as_deref() == Some("Complete")).then_some(())
    })
    .await;
    nodes_clean(cluster).await;

    // A policy removed in the middle, with its node cordoned and draining (the budget is
    // back): what it cordoned is uncordoned, the DaemonSet rolls by itself again.
    apply(
        cluster,
        "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: stuck, namespace: apps}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: stuck}}
",
    );
    let node = stuck_node(cluster);
    kubectl(
        cluster,
        &["label", "node", &node, "rollout-test=stuck", "--overwrite"],
    );
    let settings = "{waveSize: 1, nodeTimeoutSeconds: 300, nodeSelector: {matchLabels: {rollout-test: stuck}}}";
    policy(cluster, "stuck", settings, false);
    let next = bump(&ztunnel_version(cluster));
    set_version(cluster, &next);
    eventually(60, "the node cordoned and draining", || async {
        let n = Api::<Node>::all(cluster.client()).get(&node).await.ok()?;
        let cordoned = n.spec.as_ref()?.unschedulable == Some(true);
        (cordoned && status(cluster, "stuck").await.draining == 1).then_some(())
    })
    .await;
    kubectl(
        cluster,
        &["delete", "rolloutpolicy", "stuck", "--wait=true"],
    );
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "ztunnels/default",
            "--timeout=2m",
        ],
    );
    let strategy = ztunnel_update_strategy(cluster);
    assert_eq!(strategy, "RollingUpdate");
    nodes_clean(cluster).await;
    kubectl(cluster, &["label", "node", &node, "rollout-test-"]);
    // The other test drains every node: no budget that allows nothing may stay.
    kubectl(cluster, &["delete", "pdb", "stuck", "-n", "apps"]);

    // mizzen.io/paused on the Istio: a version change is not applied until it is removed.
    let deployment_image = || {
        kubectl(
            cluster,
            &[
                "get",
                "deployment",
                "istiod",
                "-n",
                "istio-system",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
        )
    };
    let before = deployment_image();
    kubectl(
        cluster,
        &["annotate", "istio", "default", "mizzen.io/paused=true"],
    );
    let istio_version = kubectl(
        cluster,
        &["get", "istio", "default", "-o", "jsonpath={.spec.version}"],
    );
    let target = bump(&istio_version);
    kubectl(
        cluster,
        &[
            "patch",
            "istio",
            "default",
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"version":"{target}"}}}}"#),
        ],
    );
    eventually(30, "the Istio reports Paused", || async {
        let state = kubectl(
            cluster,
            &["get", "istio", "default", "-o", "jsonpath={.status.state}"],
        );
        (state == "Paused").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deployment_image(),
        before,
        "a paused Istio's change was applied"
    );
    kubectl(
        cluster,
        &["annotate", "istio", "default", "mizzen.io/paused-"],
    );
    eventually(60, "the change applied once unpaused", || async {
        (deployment_image() != before).then_some(())
    })
    .await;

    // sailoperator.io/ignore on a child: left alone, repaired once the annotation goes.
    kubectl(
        cluster,
        &[
            "annotate",
            "configmap",
            "istio",
            "-n",
            "istio-system",
            "sailoperator.io/ignore=true",
        ],
    );
    kubectl(
        cluster,
        &[
            "patch",
            "configmap",
            "istio",
            "-n",
            "istio-system",
            "--type=merge",
            "-p",
            r#"{"data":{"mesh":"edited: by hand"}}"#,
        ],
    );
    kubectl(
        cluster,
        &["annotate", "istio", "default", "touched=1", "--overwrite"],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mesh = || {
        kubectl(
            cluster,
            &[
                "get",
                "configmap",
                "istio",
                "-n",
                "istio-system",
                "-o",
                "jsonpath={.data.mesh}",
            ],
        )
    };
    assert_eq!(mesh(), "edited: by hand");
    kubectl(
        cluster,
        &[
            "annotate",
            "configmap",
            "istio",
            "-n",
            "istio-system",
            "sailoperator.io/ignore-",
        ],
    );
    eventually(30, "the ConfigMap repaired", || async {
        (mesh() != "edited: by hand").then_some(())
    })
    .await;
}

/// The next patch of `version` (`v1.26.4` -> `v1.26.5`).
fn bump(version: &str) -> String {
    let (head, patch) = version.rsplit_once('.').unwrap();
    format!("{head}.{}", patch.parse::<u32>().unwrap() + 1)
}

/// Installs the mesh and the workloads unless an earlier test did.
async fn ensure_mesh(cluster: &Cluster) {
    let exists = kubectl(
        cluster,
        &["get", "ztunnel", "--ignore-not-found", "-o", "name"],
    );
    if exists.trim().is_empty() {
        for ns in ["istio-system", "ztunnel"] {
            kubectl(cluster, &["create", "namespace", ns]);
        }
        apply(cluster, &mesh("v1.26.3"));
        workloads(cluster);
    }
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "istios/default",
            "ztunnels/default",
            "--timeout=3m",
        ],
    );
}

/// The node the `stuck` workload's pod runs on (the one a blocking budget guards).
fn stuck_node(cluster: &Cluster) -> String {
    kubectl(
        cluster,
        &[
            "get",
            "pods",
            "-n",
            "apps",
            "-l",
            "app=stuck",
            "-o",
            "jsonpath={.items[0].spec.nodeName}",
        ],
    )
}

/// The ztunnel DaemonSet's `updateStrategy.type`.
fn ztunnel_update_strategy(cluster: &Cluster) -> String {
    kubectl(
        cluster,
        &[
            "get",
            "daemonset",
            "ztunnel",
            "-n",
            "ztunnel",
            "-o",
            "jsonpath={.spec.updateStrategy.type}",
        ],
    )
}
