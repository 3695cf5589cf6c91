//! The committed Helm chart (deploy/chart) is what the code generates, passes `helm lint`, and
//! renders with `helm template` exactly the objects that mizzen-install builds in Rust, with
//! the default values and with every optional value set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mizzen_catalog::Catalog;
use mizzen_install::{InstallValues, Object, chart, objects, parse_stream};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart_dir() -> PathBuf {
    repo().join("deploy/chart")
}

/// Every file under `dir`, by relative path.
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn committed_chart_matches_the_code() {
    let generated = tempfile::tempdir().unwrap();
    chart::write(generated.path(), &Catalog::embedded().unwrap()).unwrap();
    let want = read_tree(generated.path());
    let have = read_tree(&chart_dir());
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        have.keys().collect::<Vec<_>>(),
        "deploy/chart has other files than the generator writes: run `cargo run -p mizzen -- chart --out deploy/chart`"
    );
    for (path, content) in &want {
        assert!(
            &have[path] == content,
            "deploy/chart/{path} is stale: run `cargo run -p mizzen -- chart --out deploy/chart`"
        );
    }
}

fn run_helm(args: &[&str]) -> String {
    let out = Command::new(mizzen_testcluster::helm_bin())
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("mizzen-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("mizzen-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("mizzen-helm-data"),
        )
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Objects by `Kind/name`, each exactly once.
fn by_key(docs: Vec<Value>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for doc in docs {
        let key = format!(
            "{}/{}",
            doc["kind"].as_str().unwrap(),
            doc["metadata"]["name"].as_str().unwrap()
        );
        assert!(map.insert(key.clone(), doc).is_none(), "{key} twice");
    }
    map
}

fn rust_objects(values: &InstallValues, crds: bool) -> BTreeMap<String, Value> {
    let crds = if crds {
        mizzen_install::crds(&Catalog::embedded().unwrap())
    } else {
        Vec::new()
    };
    by_key(
        objects(values, crds)
            .iter()
            .filter(|o| !matches!(o, Object::Namespace(_)))
            .map(|o| serde_json::to_value(o).unwrap())
            .collect(),
    )
}

fn assert_same(helm: BTreeMap<String, Value>, rust: BTreeMap<String, Value>) {
    assert_eq!(
        helm.keys().collect::<Vec<_>>(),
        rust.keys().collect::<Vec<_>>(),
        "helm template and mizzen-install give different objects"
    );
    for (key, want) in &rust {
        assert!(
            &helm[key] == want,
            "{key} differs.\nhelm template:\n{}\nmizzen-install:\n{}",
            serde_saphyr::to_string(&helm[key]).unwrap(),
            serde_saphyr::to_string(want).unwrap()
        );
    }
}

#[test]
fn helm_lint_passes() {
    let chart = chart_dir();
    let out = run_helm(&["lint", "--strict", chart.to_str().unwrap()]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn helm_template_with_defaults_gives_the_manifests() {
    let chart = chart_dir();
    let out = run_helm(&[
        "template",
        "mizzen",
        chart.to_str().unwrap(),
        "--namespace",
        "mizzen-system",
        "--include-crds",
    ]);
    let helm = by_key(parse_stream(&out).unwrap());
    assert!(helm.contains_key("Deployment/mizzen"));
    assert!(helm.contains_key("CustomResourceDefinition/istios.sailoperator.io"));
    assert!(!helm.contains_key("Namespace/mizzen-system"));
    assert_same(helm, rust_objects(&InstallValues::default(), true));
}

const CATALOG: &str = "versions:\n  - name: v1.27-latest\n    ref: v1.27.2\n  - name: v1.27.2\n";

/// Every optional part set, as a user's values file.
fn custom_values() -> String {
    format!(
        "replicas: 3
image:
  repository: registry.example.com/team/mizzen
  tag: dev
  pullPolicy: Always
imagePullSecrets:
  - name: regcred
nodeSelector:
  kubernetes.io/os: linux
  node-role.kubernetes.io/infra: \"\"
tolerations:
  - key: node-role.kubernetes.io/infra
    operator: Exists
    effect: NoSchedule
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - key: kubernetes.io/arch
              operator: In
              values: [amd64, arm64]
priorityClassName: system-cluster-critical
platform: openshift
serviceMonitor:
  enabled: true
resources:
  limits:
    memory: 512Mi
catalog: |
{}",
        CATALOG
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    )
}

#[test]
fn helm_template_with_every_value_set_gives_what_rust_builds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, custom_values()).unwrap();
    let chart = chart_dir();
    let out = run_helm(&[
        "template",
        "mizzen",
        chart.to_str().unwrap(),
        "--namespace",
        "mizzen-system",
        "-f",
        file.to_str().unwrap(),
    ]);
    let helm = by_key(parse_stream(&out).unwrap());
    let values = InstallValues::from_helm_values(&custom_values()).unwrap();
    assert_eq!(values.catalog, CATALOG);
    assert_eq!(values.replicas, 3);
    // Helm merges maps: the limit replaces one key, the default requests stay.
    assert_eq!(values.resources.requests.as_ref().unwrap()["cpu"].0, "10m");
    for key in [
        "ConfigMap/mizzen-catalog",
        "ServiceMonitor/mizzen",
        "PodDisruptionBudget/mizzen",
    ] {
        assert!(helm.contains_key(key), "{key} missing from helm template");
    }
    let deployment = &helm["Deployment/mizzen"]["spec"];
    assert_eq!(deployment["replicas"], 3);
    let pod = &deployment["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example.com/team/mizzen:dev"
    );
    assert_eq!(
        deployment["template"]["metadata"]["annotations"]
            [mizzen_install::CATALOG_CHECKSUM_ANNOTATION],
        mizzen_install::catalog_checksum(CATALOG)
    );
    assert_same(helm, rust_objects(&values, false));
}

#[test]
fn one_replica_and_no_resources_drop_the_budget_and_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    let yaml = "replicas: 1\nresources: null\nimage:\n  digest: sha256:0123\n";
    std::fs::write(&file, yaml).unwrap();
    let chart = chart_dir();
    let out = run_helm(&[
        "template",
        "mizzen",
        chart.to_str().unwrap(),
        "--namespace",
        "ops",
        "-f",
        file.to_str().unwrap(),
    ]);
    let helm = by_key(parse_stream(&out).unwrap());
    assert!(!helm.contains_key("PodDisruptionBudget/mizzen"));
    let pod = &helm["Deployment/mizzen"]["spec"]["template"]["spec"];
    assert!(pod["containers"][0].get("resources").is_none(), "{pod}");
    assert_eq!(pod["containers"][0]["image"], "mizzen/mizzen@sha256:0123");
    let values = InstallValues {
        namespace: "ops".into(),
        ..InstallValues::from_helm_values(yaml).unwrap()
    };
    assert_same(helm, rust_objects(&values, false));
}
