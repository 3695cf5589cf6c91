//! Snapshots of what `mizzen plan` and `mizzen status` print, as text and as JSON, from fixed
//! inputs: a small catalog, a mesh read from YAML, a fixed time. A change of wording or layout
//! shows up here (`INSTA_UPDATE=always cargo test -p mizzen-companion --test output` rewrites
//! the snapshots; review the diff).

use mizzen_catalog::Catalog;
use mizzen_companion::mesh::Mesh;
use mizzen_companion::output::{Format, plan_text, status_text, structured};
use mizzen_companion::plan::{Current, Direction, Strategy, plan};

const CATALOG: &str = "hub: docker.io/istio
versions:
  - {name: v1.28-latest, ref: v1.28.1}
  - name: v1.28.1
  - name: v1.28.0
  - {name: v1.27-latest, ref: v1.27.3}
  - name: v1.27.3
  - name: v1.27.2
  - {name: v1.26-latest, ref: v1.26.4}
  - name: v1.26.4
  - name: v1.26.3
  - {name: v1.25.5, eol: true}
";

fn catalog() -> Catalog {
    Catalog::from_yaml_str(CATALOG).unwrap()
}

fn current(strategy: Strategy) -> Current {
    Current {
        istio: "default".into(),
        strategy,
        control_plane: "v1.26.3".parse().unwrap(),
        cni: Some("v1.26.3".parse().unwrap()),
        ztunnel: Some("v1.26.3".parse().unwrap()),
    }
}

#[test]
fn plan_across_two_minors_inplace() {
    let p = plan(
        &catalog(),
        &current(Strategy::InPlace),
        "v1.28.1",
        Direction::Upgrade,
    )
    .unwrap();
    insta::assert_snapshot!("plan_inplace_two_minors.txt", plan_text(&p, false));
    insta::assert_snapshot!(
        "plan_inplace_two_minors.json",
        structured(&p, Format::Json).unwrap()
    );
}

#[test]
fn plan_of_a_revision_based_patch_update() {
    let p = plan(
        &catalog(),
        &current(Strategy::RevisionBased),
        "v1.26-latest",
        Direction::Upgrade,
    )
    .unwrap();
    insta::assert_snapshot!("plan_revisionbased_patch.txt", plan_text(&p, false));
}

/// A RevisionBased mesh halfway through §1.6.2: both revisions, the old one unused and
/// counting down, ztunnel rolling out.
const MESH: &str = r#"
istios:
- apiVersion: sailoperator.io/v1
  kind: Istio
  metadata: {name: default, generation: 2, uid: i-1}
  spec:
    namespace: istio-system
    version: v1.26.4
    updateStrategy: {type: RevisionBased, inactiveRevisionDeletionGracePeriodSeconds: 30}
  status:
    observedGeneration: 2
    state: Healthy
    activeRevisionName: default-v1-26-4
    conditions:
    - {type: Ready, status: "True", reason: Healthy, observedGeneration: 2}
revisions:
- apiVersion: sailoperator.io/v1
  kind: IstioRevision
  metadata:
    name: default-v1-26-3
    creationTimestamp: "2026-12-01T10:00:00Z"
    ownerReferences: [{apiVersion: sailoperator.io/v1, kind: Istio, name: default, uid: i-1}]
  spec: {version: v1.26.3, namespace: istio-system}
  status:
    conditions:
    - {type: Ready, status: "True"}
    - {type: InUse, status: "False", lastTransitionTime: "2026-12-07T10:00:00Z"}
- apiVersion: sailoperator.io/v1
  kind: IstioRevision
  metadata:
    name: default-v1-26-4
    creationTimestamp: "2026-12-07T09:58:00Z"
    ownerReferences: [{apiVersion: sailoperator.io/v1, kind: Istio, name: default, uid: i-1}]
  spec: {version: v1.26.4, namespace: istio-system}
  status:
    conditions:
    - {type: Ready, status: "True"}
    - {type: InUse, status: "True"}
    inUseBy: ["ambient namespace bookinfo (through ztunnel pod ztunnel/ztunnel-a)"]
cni:
  apiVersion: sailoperator.io/v1
  kind: IstioCNI
  metadata: {name: default, generation: 2}
  spec: {namespace: istio-cni, version: v1.26.4}
  status:
    observedGeneration: 2
    state: Healthy
    conditions:
    - {type: Ready, status: "True", observedGeneration: 2}
ztunnel:
  apiVersion: sailoperator.io/v1
  kind: ZTunnel
  metadata: {name: default, generation: 2}
  spec: {namespace: ztunnel, version: v1.26.4}
  status:
    observedGeneration: 2
    state: DaemonSetNotReady
    istioRevision: default-v1-26-4
    conditions:
    - {type: Ready, status: "False", reason: DaemonSetNotReady, observedGeneration: 2,
       message: "rolling out v1.26.4: 2/3 nodes updated, 2/3 available"}
cni_daemonset:
  metadata: {name: istio-cni-node, namespace: istio-cni, labels: {app.kubernetes.io/version: 1.26.4}}
  status: {desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 3, currentNumberScheduled: 3, numberMisscheduled: 0, numberReady: 3}
ztunnel_daemonset:
  metadata: {name: ztunnel, namespace: ztunnel, labels: {app.kubernetes.io/version: 1.26.4}}
  status: {desiredNumberScheduled: 3, updatedNumberScheduled: 2, numberAvailable: 2, currentNumberScheduled: 3, numberMisscheduled: 0, numberReady: 2}
"#;

#[derive(serde::Deserialize)]
struct Fixture {
    istios: Vec<mizzen_api::Istio>,
    revisions: Vec<mizzen_api::IstioRevision>,
    cni: mizzen_api::IstioCNI,
    ztunnel: mizzen_api::ZTunnel,
    cni_daemonset: k8s_openapi::api::apps::v1::DaemonSet,
    ztunnel_daemonset: k8s_openapi::api::apps::v1::DaemonSet,
}

fn mesh() -> Mesh {
    let f: Fixture = serde_saphyr::from_str(MESH).unwrap();
    Mesh {
        istios: f.istios,
        revisions: f.revisions,
        tags: Vec::new(),
        cni: Some(f.cni),
        ztunnel: Some(f.ztunnel),
        cni_daemonset: Some(f.cni_daemonset),
        ztunnel_daemonset: Some(f.ztunnel_daemonset),
        policies: Vec::new(),
    }
}

#[test]
fn status_halfway_through_a_revision_based_update() {
    let now: jiff::Timestamp = "2026-12-07T10:00:12Z".parse().unwrap();
    let s = mizzen_companion::status::status(&mesh(), &catalog(), now);
    insta::assert_snapshot!("status_revisionbased_halfway.txt", status_text(&s, false));
    insta::assert_snapshot!(
        "status_revisionbased_halfway.json",
        structured(&s, Format::Json).unwrap()
    );
}
