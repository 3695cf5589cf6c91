//! The bad-input table (issue 10): one case per input defect that was fixed, plus inputs that
//! already behaved well, so they stay that way. Each case applies manifests with kubectl and
//! checks what a user sees: the API server's refusal, a condition with a reason and a
//! message, or an Event. Defects 2 (CRD re-install), 6 (foreign list entries) and 7 (usage
//! scoping) are not inputs; their tests are `crates/mizzen/tests/crd_reinstall.rs`,
//! `steady.rs` and `crates/mizzen/tests/usage_scope.rs`. The table is printed.

mod common;

use std::time::{Duration, Instant};

use common::{cluster_with_operator, kubectl, wait_ready};
use mizzen_testcluster::Cluster;

/// Control-plane namespace of every case.
const NS: &str = "bad-table";

enum Step {
    /// `kubectl apply` that must be accepted.
    Apply(String),
    /// Wait for `condition=Ready` of a resource.
    WaitReady(&'static str),
    /// Wait until an outcome is seen (the operator saw this state before the next step).
    Await(Expect),
}

enum Expect {
    /// The API server refuses the last manifest; its message contains the text.
    Rejected(&'static str),
    /// A condition of `resource` (`kind/name`) reaches status and reason; its message
    /// contains the text.
    Condition {
        resource: &'static str,
        type_: &'static str,
        status: &'static str,
        reason: &'static str,
        contains: &'static str,
    },
    /// At least `count` Events with `reason` for the object `name`, the last one's note
    /// containing the text.
    Events {
        name: &'static str,
        reason: &'static str,
        count: usize,
        contains: &'static str,
    },
}

struct Case {
    defect: &'static str,
    input: &'static str,
    steps: Vec<Step>,
    expect: Expect,
    /// Deleted afterwards (`kind/name`).
    cleanup: &'static [&'static str],
}

fn istio(name: &str, version: &str, values: &str) -> String {
    format!(
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata:\n  name: {name}\nspec:\n  \
         namespace: {NS}\n  version: {version}\n  updateStrategy:\n    type: InPlace\n  \
         values: {values}\n"
    )
}

fn cases() -> Vec<Case> {
    use Expect::*;
    use Step::*;
    vec![
        Case {
            defect: "1",
            input: "InPlace jump of two minors through an alias",
            steps: vec![
                Apply(istio("bi-jump", "v1.26.3", "{}")),
                WaitReady("istios/bi-jump"),
                Apply(istio("bi-jump", "v1.28-latest", "{}")),
            ],
            expect: Condition {
                resource: "istios/bi-jump",
                type_: "Ready",
                status: "False",
                reason: "SpecNotApplied",
                contains: "v1.26.3",
            },
            cleanup: &["istio/bi-jump"],
        },
        Case {
            defect: "3",
            input: "IstioRevision deleted while a namespace uses it",
            steps: vec![
                Apply(istio("bi-used", "v1.26.3", "{}")),
                WaitReady("istios/bi-used"),
                Apply(
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bad-table-users\n  \
                     labels:\n    istio.io/rev: bi-used\n"
                        .into(),
                ),
            ],
            expect: Condition {
                resource: "istiorevisions/bi-used",
                type_: "Reconciled",
                status: "False",
                reason: "DeletionBlocked",
                contains: "namespace bad-table-users",
            },
            cleanup: &["namespace/bad-table-users", "istio/bi-used"],
        },
        Case {
            defect: "4",
            input: "hub with a space",
            steps: vec![Apply(istio(
                "bi-hub",
                "v1.26.3",
                "{global: {hub: 'registry.example/bad hub'}}",
            ))],
            expect: Condition {
                resource: "istiorevisions/bi-hub",
                type_: "Reconciled",
                status: "False",
                reason: "InvalidValues",
                contains: "global.hub",
            },
            cleanup: &["istio/bi-hub"],
        },
        Case {
            defect: "4",
            input: "image with a leading space",
            steps: vec![Apply(istio(
                "bi-image",
                "v1.26.3",
                "{pilot: {image: ' pilot'}}",
            ))],
            expect: Condition {
                resource: "istiorevisions/bi-image",
                type_: "Reconciled",
                status: "False",
                reason: "InvalidValues",
                contains: "pilot.image",
            },
            cleanup: &["istio/bi-image"],
        },
        Case {
            defect: "4",
            input: "hub that yields two tags",
            steps: vec![Apply(istio(
                "bi-tags",
                "v1.26.3",
                "{global: {hub: 'registry.example/istio:1.0'}}",
            ))],
            expect: Condition {
                resource: "istiorevisions/bi-tags",
                type_: "Reconciled",
                status: "False",
                reason: "InvalidValues",
                contains: "global.hub",
            },
            cleanup: &["istio/bi-tags"],
        },
        Case {
            defect: "5",
            input: "invalid resource quantity",
            steps: vec![Apply(istio(
                "bi-cpu",
                "v1.26.3",
                "{pilot: {resources: {requests: {cpu: lots}}}}",
            ))],
            expect: Condition {
                resource: "istiorevisions/bi-cpu",
                type_: "Reconciled",
                status: "False",
                reason: "InvalidValues",
                contains: "`pilot.resources.requests.cpu`",
            },
            cleanup: &["istio/bi-cpu"],
        },
        Case {
            defect: "5",
            input: "invalid toleration operator (IstioCNI)",
            steps: vec![Apply(format!(
                "apiVersion: sailoperator.io/v1\nkind: IstioCNI\nmetadata:\n  name: default\n\
                 spec:\n  namespace: {NS}\n  version: v1.26.3\n  values:\n    cni:\n      \
                 tolerations: [{{key: k, operator: Sometimes, effect: NoSchedule}}]\n"
            ))],
            expect: Condition {
                resource: "istiocnis/default",
                type_: "Reconciled",
                status: "False",
                reason: "InvalidValues",
                contains: "Sometimes",
            },
            cleanup: &["istiocni/default"],
        },
        Case {
            defect: "8",
            input: "two different refusals of one Istio",
            steps: vec![
                Apply(istio("bi-twice", "v1.26.3", "{}")),
                WaitReady("istios/bi-twice"),
                Apply(istio("bi-twice", "v1.28.1", "{}")),
                Await(Condition {
                    resource: "istios/bi-twice",
                    type_: "Reconciled",
                    status: "False",
                    reason: "UpdateRefused",
                    contains: "v1.28.1",
                }),
                Apply(istio("bi-twice", "v1.28.2", "{}")),
            ],
            expect: Events {
                name: "bi-twice",
                reason: "UpdateRefused",
                count: 2,
                contains: "v1.28.2",
            },
            cleanup: &["istio/bi-twice"],
        },
        Case {
            defect: "9",
            input: "IstioRevision without values.global",
            steps: vec![Apply(format!(
                "apiVersion: sailoperator.io/v1\nkind: IstioRevision\nmetadata:\n  name: bi-bare\n\
                 spec:\n  namespace: {NS}\n  version: v1.26.3\n  values:\n    revision: bi-bare\n"
            ))],
            expect: Condition {
                resource: "istiorevisions/bi-bare",
                type_: "Reconciled",
                status: "True",
                reason: "Reconciled",
                contains: "",
            },
            cleanup: &["istiorevision/bi-bare"],
        },
        Case {
            defect: "9",
            input: "negative pilot.replicaCount",
            steps: vec![Apply(istio(
                "bi-replicas",
                "v1.26.3",
                "{pilot: {replicaCount: -1}}",
            ))],
            expect: Rejected("greater than or equal to 0"),
            cleanup: &[],
        },
        Case {
            defect: "9",
            input: "pilot.replicaCount while autoscaling owns the replicas",
            steps: vec![Apply(istio(
                "bi-hpa",
                "v1.26.3",
                "{pilot: {autoscaleEnabled: true, replicaCount: 3}}",
            ))],
            expect: Events {
                name: "bi-hpa",
                reason: "UnknownValues",
                count: 1,
                contains: "pilot.replicaCount",
            },
            cleanup: &["istio/bi-hpa"],
        },
        Case {
            defect: "-",
            input: "version not in the catalog",
            steps: vec![Apply(istio("bi-unknown", "v1.99.0", "{}"))],
            expect: Rejected("Unsupported value"),
            cleanup: &[],
        },
        Case {
            defect: "-",
            input: "end-of-life version",
            steps: vec![Apply(istio("bi-eol", "v1.24.3", "{}"))],
            expect: Condition {
                resource: "istios/bi-eol",
                type_: "Reconciled",
                status: "False",
                reason: "VersionNotSupported",
                contains: "end-of-life",
            },
            cleanup: &["istio/bi-eol"],
        },
        Case {
            defect: "-",
            input: "unknown profile",
            steps: vec![Apply(
                istio("bi-profile", "v1.26.3", "{}").replace("spec:\n", "spec:\n  profile: nope\n"),
            )],
            expect: Rejected("Unsupported value"),
            cleanup: &[],
        },
        Case {
            defect: "-",
            input: "unknown update strategy",
            steps: vec![Apply(
                istio("bi-strategy", "v1.26.3", "{}").replace("type: InPlace", "type: Sideways"),
            )],
            expect: Rejected("Unsupported value"),
            cleanup: &[],
        },
        Case {
            defect: "-",
            input: "IstioCNI not named default",
            steps: vec![Apply(format!(
                "apiVersion: sailoperator.io/v1\nkind: IstioCNI\nmetadata:\n  name: other\n\
                 spec:\n  namespace: {NS}\n  version: v1.26.3\n"
            ))],
            expect: Rejected("metadata.name must be 'default'"),
            cleanup: &[],
        },
        Case {
            defect: "-",
            input: "control-plane namespace missing",
            steps: vec![Apply(
                istio("bi-nons", "v1.26.3", "{}")
                    .replace("namespace: bad-table", "namespace: nowhere"),
            )],
            expect: Condition {
                resource: "istiorevisions/bi-nons",
                type_: "Reconciled",
                status: "False",
                reason: "NamespaceNotFound",
                contains: "nowhere",
            },
            cleanup: &["istio/bi-nons"],
        },
        Case {
            defect: "-",
            input: "values key mizzen does not act on",
            steps: vec![Apply(istio(
                "bi-extra",
                "v1.26.3",
                "{pilot: {fancyFeature: true}}",
            ))],
            expect: Events {
                name: "bi-extra",
                reason: "UnknownValues",
                count: 1,
                contains: "pilot.fancyFeature",
            },
            cleanup: &["istio/bi-extra"],
        },
    ]
}

/// `kubectl apply -f -`: stdout on success, stderr on refusal.
fn apply(cluster: &Cluster, manifest: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = cluster
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `kubectl get <resource> -o json`, if it exists.
fn get(cluster: &Cluster, resource: &str) -> Option<serde_json::Value> {
    let out = cluster
        .kubectl()
        .args(["get", resource, "-o", "json"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Checks `expect` once: `Ok(what was seen)` when met, `Err(what was seen)` otherwise.
fn check(
    cluster: &Cluster,
    expect: &Expect,
    last: &Result<String, String>,
) -> Result<String, String> {
    match expect {
        Expect::Rejected(text) => match last {
            Err(msg) if msg.contains(text) => Ok(format!("refused: {}", msg.trim())),
            Err(msg) => Err(format!("refused otherwise: {msg}")),
            Ok(out) => Err(format!("accepted: {out}")),
        },
        Expect::Condition {
            resource,
            type_,
            status,
            reason,
            contains,
        } => {
            let obj = get(cluster, resource).ok_or("not found")?;
            let c = obj["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == *type_)
                .ok_or(format!("no {type_} condition"))?;
            let seen = format!(
                "{type_}={} {}: {}",
                c["status"].as_str().unwrap_or_default(),
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            );
            let generation = &obj["metadata"]["generation"];
            let current =
                c["observedGeneration"] == *generation || c["observedGeneration"].is_null();
            (c["status"] == *status
                && c["reason"] == *reason
                && c["message"].as_str().unwrap_or_default().contains(contains)
                && current)
                .then_some(seen.clone())
                .ok_or(seen)
        }
        Expect::Events {
            name,
            reason,
            count,
            contains,
        } => {
            let selector = format!("reason={reason},involvedObject.name={name}");
            let out = cluster
                .kubectl()
                .args([
                    "get",
                    "events",
                    "-A",
                    "--field-selector",
                    &selector,
                    "-o",
                    "json",
                ])
                .output()
                .unwrap();
            let list: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| format!("no events: {e}"))?;
            let mut notes: Vec<(String, String)> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["lastTimestamp"].as_str().unwrap_or_default().to_owned(),
                        e["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            notes.sort();
            let seen = format!("{} {reason} Events, last: {:?}", notes.len(), notes.last());
            (notes.len() >= *count && notes.iter().any(|(_, n)| n.contains(contains)))
                .then_some(seen.clone())
                .ok_or(seen)
        }
    }
}

/// Waits up to 60 s for `expect`; what was seen.
async fn outcome(
    cluster: &Cluster,
    case: &Case,
    expect: &Expect,
    last: &Result<String, String>,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match check(cluster, expect, last) {
            Ok(seen) => return seen,
            Err(seen) => {
                assert!(
                    Instant::now() < deadline,
                    "defect {}: {}: expected outcome not reached; last seen: {seen}",
                    case.defect,
                    case.input
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

#[tokio::test]
async fn every_bad_input_is_refused_or_reported() {
    let cluster = cluster_with_operator().await;
    kubectl(cluster, &["create", "namespace", NS]);
    let mut rows = Vec::new();
    for case in cases() {
        let mut last = Ok(String::new());
        for step in &case.steps {
            match step {
                Step::Apply(manifest) => {
                    last = apply(cluster, manifest);
                    if !matches!(case.expect, Expect::Rejected(_)) {
                        assert!(last.is_ok(), "{}: {last:?}", case.input);
                    }
                }
                Step::WaitReady(resource) => wait_ready(cluster, resource, "2m"),
                Step::Await(expect) => {
                    outcome(cluster, &case, expect, &last).await;
                }
            }
        }
        if case.defect == "3" {
            kubectl(
                cluster,
                &["delete", "istiorevision", "bi-used", "--wait=false"],
            );
        }
        let seen = outcome(cluster, &case, &case.expect, &last).await;
        rows.push(format!(
            "| {} | {} | {} |",
            case.defect,
            case.input,
            seen.lines().next().unwrap_or_default()
        ));
        for resource in case.cleanup {
            kubectl(cluster, &["delete", resource, "--wait=false"]);
        }
    }
    println!("| defect | input | what the user sees |\n|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
