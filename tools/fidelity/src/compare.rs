//! Normalising and comparing two sets of Kubernetes objects, field by field (pure).
//!
//! Normalising removes what says *who* installed an object, not *what* it does: Helm's and
//! mizzen's bookkeeping labels and annotations. It drops nulls and empty maps and lists (the
//! API server stores them as absent), parses ConfigMap values that hold YAML or JSON maps
//! (mesh configuration, injector values, selectors) so they compare as structures, and keys list items
//! that have a `name` by that name, so an order difference in env, ports or volumes is not a
//! difference. Every leaf then has a path such as
//! `spec.template.spec.containers[discovery].env[PILOT_X].value`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Labels and annotations that record the installer, not the behaviour.
const BOOKKEEPING: [&str; 5] = [
    "helm.sh/chart",
    "release",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "meta.helm.sh/*",
];

/// The identity of an object: `Kind/namespace/name` (namespace empty when cluster-scoped).
pub fn key(o: &Value) -> String {
    format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn bookkeeping(name: &str) -> bool {
    name.starts_with("mizzen.io/")
        || BOOKKEEPING.iter().any(|b| match b.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *b,
        })
}

/// `o` without bookkeeping metadata, nulls or empty collections; embedded YAML maps and
/// lists parsed.
pub fn normalise(o: &Value) -> Value {
    let mut o = o.clone();
    for field in ["labels", "annotations"] {
        if let Some(m) = o["metadata"][field].as_object_mut() {
            m.retain(|k, _| !bookkeeping(k));
        }
    }
    // Pod templates carry the same bookkeeping.
    for field in ["labels", "annotations"] {
        if let Some(m) = o
            .pointer_mut(&format!("/spec/template/metadata/{field}"))
            .and_then(Value::as_object_mut)
        {
            m.retain(|k, _| !bookkeeping(k));
        }
    }
    if o["kind"] == "ConfigMap"
        && let Some(data) = o["data"].as_object_mut()
    {
        for v in data.values_mut() {
            if let Some(text) = v.as_str()
                && let Ok(parsed) = serde_saphyr::from_str::<Value>(text)
                && (parsed.is_object() || parsed.is_array())
            {
                *v = parsed;
            }
        }
    }
    // CRDs compare by what `kubectl` and the API server see of them: names, versions served
    // and stored, columns. mizzen's schemas are permissive by design (docs/fidelity.md).
    if o["kind"] == "CustomResourceDefinition"
        && let Some(versions) = o["spec"]["versions"].as_array_mut()
    {
        for v in versions {
            if let Some(v) = v.as_object_mut() {
                v.remove("schema");
            }
            if let Some(columns) = v["additionalPrinterColumns"].as_array_mut() {
                for c in columns.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("description");
                }
            }
        }
    }
    if matches!(o["kind"].as_str(), Some("Role" | "ClusterRole"))
        && let Some(rules) = o["rules"].as_array()
    {
        o["rules"] = permissions(rules);
    }
    prune(o).unwrap_or(Value::Null)
}

/// RBAC rules as what they grant: `group/resource[/name]` to its sorted verbs, so rules
/// split, merged or ordered differently compare equal when they grant the same.
fn permissions(rules: &[Value]) -> Value {
    let mut grants: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    for rule in rules {
        let verbs = strings(&rule["verbs"]);
        let mut targets: Vec<String> = Vec::new();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let names = strings(&rule["resourceNames"]);
                if names.is_empty() {
                    targets.push(format!("{group}/{resource}"));
                }
                targets.extend(names.iter().map(|n| format!("{group}/{resource}/{n}")));
            }
        }
        for url in strings(&rule["nonResourceURLs"]) {
            targets.push(format!("url:{url}"));
        }
        for t in targets {
            grants.entry(t).or_default().extend(verbs.iter().cloned());
        }
    }
    Value::Object(
        grants
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    Value::String(v.into_iter().collect::<Vec<_>>().join(",")),
                )
            })
            .collect(),
    )
}

fn prune(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let m: Map<String, Value> = m
                .into_iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(a) => {
            let a: Vec<Value> = a.into_iter().filter_map(prune).collect();
            (!a.is_empty()).then_some(Value::Array(a))
        }
        other => Some(other),
    }
}

/// Every leaf of `v` by path. List items with a string `name` are keyed by it.
pub fn flatten(v: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    walk(v, String::new(), &mut out);
    out
}

fn walk(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                walk(v, join(k), out);
            }
        }
        Value::Array(a) => {
            let named = a.iter().all(|i| i["name"].is_string());
            for (n, item) in a.iter().enumerate() {
                let index = if named {
                    item["name"].as_str().unwrap_or_default().to_string()
                } else {
                    n.to_string()
                };
                walk(item, format!("{path}[{index}]"), out);
            }
        }
        leaf => {
            out.insert(path, leaf.clone());
        }
    }
}

/// One difference between upstream and mizzen.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The object exists on one side only (`upstream` says which).
    Object { upstream: bool },
    /// A field differs: `None` where a side does not have it.
    Field {
        path: String,
        upstream: Option<Value>,
        mizzen: Option<Value>,
    },
}

/// The differences of one object, by its key.
pub type Report = BTreeMap<String, Vec<Difference>>;

/// Compares normalised objects of both sides; objects are matched by [`key`].
pub fn compare(upstream: &[Value], mizzen: &[Value]) -> Report {
    let index = |objects: &[Value]| -> BTreeMap<String, Value> {
        objects.iter().map(|o| (key(o), normalise(o))).collect()
    };
    let (up, mz) = (index(upstream), index(mizzen));
    let mut report = Report::new();
    for k in up.keys().chain(mz.keys()) {
        if report.contains_key(k) {
            continue;
        }
        let diffs = match (up.get(k), mz.get(k)) {
            (Some(_), None) => vec![Difference::Object { upstream: true }],
            (None, Some(_)) => vec![Difference::Object { upstream: false }],
            (Some(a), Some(b)) => fields(a, b),
            (None, None) => unreachable!("the key comes from one side"),
        };
        report.insert(k.clone(), diffs);
    }
    report
}

fn fields(upstream: &Value, mizzen: &Value) -> Vec<Difference> {
    let (a, b) = (flatten(upstream), flatten(mizzen));
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| Difference::Field {
            path: p.clone(),
            upstream: a.get(p).cloned(),
            mizzen: b.get(p).cloned(),
        })
        .collect()
}

/// One allowed difference: objects and paths by glob, and why it is deliberate.
#[derive(Debug, Deserialize)]
pub struct Allowed {
    /// `Kind/namespace/name` glob.
    pub object: String,
    /// Field path glob; absent: the whole object (also when it exists on one side only).
    #[serde(default)]
    pub path: Option<String>,
    /// Only where both sides have the field (values differ): a field one side lacks is still
    /// reported.
    #[serde(default)]
    pub both_sides: bool,
    /// Why the difference is deliberate (README "Differences from upstream" or DESIGN.md).
    pub reason: String,
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters and every
/// other character itself (paths hold `[`, `]` and `.`, which stay literal).
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The allow-list.
pub struct AllowList {
    entries: Vec<Allowed>,
}

impl AllowList {
    /// Reads the allow-list YAML: a list of [`Allowed`].
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        Ok(Self {
            entries: serde_saphyr::from_str(text)?,
        })
    }

    /// The reason `d` on `object` is allowed, if it is.
    pub fn reason(&self, object: &str, d: &Difference) -> Option<&str> {
        self.entries
            .iter()
            .find(|a| {
                wildcard(&a.object, object)
                    && match (&a.path, d) {
                        (None, _) => true,
                        (
                            Some(p),
                            Difference::Field {
                                path,
                                upstream,
                                mizzen,
                            },
                        ) => {
                            wildcard(p, path)
                                && (!a.both_sides || (upstream.is_some() && mizzen.is_some()))
                        }
                        (Some(_), Difference::Object { .. }) => false,
                    }
            })
            .map(|a| a.reason.as_str())
    }
}

/// Counts of one comparison.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Objects on both sides.
    pub matched: usize,
    /// Objects only upstream renders (not allowed).
    pub only_upstream: usize,
    /// Objects only mizzen renders (not allowed).
    pub only_mizzen: usize,
    /// Field differences on matched objects (not allowed).
    pub fields: usize,
    /// Differences the allow-list explains.
    pub allowed: usize,
}

impl Summary {
    /// Whether nothing outside the allow-list differs.
    pub fn clean(&self) -> bool {
        self.only_upstream + self.only_mizzen + self.fields == 0
    }
}

/// The summary of `report` and its text: one block per object with a difference the
/// allow-list does not explain (`-` upstream only, `+` mizzen only, `~` both, different).
pub fn render_report(report: &Report, allow: &AllowList) -> (Summary, String) {
    let mut s = Summary::default();
    let mut text = String::new();
    let show = |v: &Option<Value>| match v {
        Some(v) => v.to_string(),
        None => "(absent)".into(),
    };
    for (object, diffs) in report {
        if !diffs.iter().any(|d| matches!(d, Difference::Object { .. })) {
            s.matched += 1;
        }
        let mut lines = Vec::new();
        for d in diffs {
            if allow.reason(object, d).is_some() {
                s.allowed += 1;
                continue;
            }
            match d {
                Difference::Object { upstream: true } => {
                    s.only_upstream += 1;
                    lines.push("  - only upstream renders this object".to_string());
                }
                Difference::Object { upstream: false } => {
                    s.only_mizzen += 1;
                    lines.push("  + only mizzen renders this object".to_string());
                }
                Difference::Field {
                    path,
                    upstream,
                    mizzen,
                } => {
                    s.fields += 1;
                    let mark = match (upstream, mizzen) {
                        (Some(_), None) => '-',
                        (None, Some(_)) => '+',
                        _ => '~',
                    };
                    lines.push(format!(
                        "  {mark} {path}: upstream {} | mizzen {}",
                        show(upstream),
                        show(mizzen)
                    ));
                }
            }
        }
        if !lines.is_empty() {
            text.push_str(&format!("{object}\n{}\n", lines.join("\n")));
        }
    }
    (s, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(env: Value, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "istiod", "namespace": "istio-system", "labels": labels},
            "spec": {"template": {"spec": {"containers": [{"name": "discovery", "env": env}]}}},
        })
    }

    #[test]
    fn bookkeeping_empties_and_order_are_not_differences() {
        let up = deployment(
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
            json!({"helm.sh/chart": "istiod-1.30.3", "app": "istiod", "x": {}}),
        );
        let mz = deployment(
            json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]),
            json!({"mizzen.io/owner": "istiorevision.default", "app": "istiod", "y": null}),
        );
        let report = compare(&[up], &[mz]);
        assert_eq!(report["Deployment/istio-system/istiod"], vec![]);
    }

    #[test]
    fn a_changed_missing_or_extra_field_is_reported_by_path() {
        let up = deployment(
            json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]),
            json!({}),
        );
        let mz = deployment(
            json!([{"name": "A", "value": "2"}, {"name": "D", "value": "4"}]),
            json!({}),
        );
        let report = compare(&[up], &[mz]);
        let c = "spec.template.spec.containers[discovery].env";
        assert_eq!(
            report["Deployment/istio-system/istiod"],
            vec![
                Difference::Field {
                    path: format!("{c}[A].value"),
                    upstream: Some(json!("1")),
                    mizzen: Some(json!("2"))
                },
                Difference::Field {
                    path: format!("{c}[C].name"),
                    upstream: Some(json!("C")),
                    mizzen: None
                },
                Difference::Field {
                    path: format!("{c}[C].value"),
                    upstream: Some(json!("3")),
                    mizzen: None
                },
                Difference::Field {
                    path: format!("{c}[D].name"),
                    upstream: None,
                    mizzen: Some(json!("D"))
                },
                Difference::Field {
                    path: format!("{c}[D].value"),
                    upstream: None,
                    mizzen: Some(json!("4"))
                },
            ]
        );
    }

    #[test]
    fn wildcards_match_runs_and_nothing_else() {
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("*", ""));
        assert!(wildcard("x[D].*", "x[D].value"));
        assert!(!wildcard("x[D].*", "xD.value"));
        assert!(!wildcard("a*c", "abcd"));
        assert!(wildcard("*.env[*].value", "spec.env[A].value"));
        assert!(!wildcard("ab*ba", "aba"));
    }

    #[test]
    fn rbac_compares_by_what_it_grants() {
        let role = |rules: Value| {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "r"}, "rules": rules})
        };
        let up = role(json!([
            {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        ]));
        let mz = role(json!([
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "get"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "watch"]},
        ]));
        assert_eq!(
            compare(&[up], &[mz])["ClusterRole//r"],
            vec![Difference::Field {
                path: "rules./pods".into(),
                upstream: Some(json!("get,list")),
                mizzen: Some(json!("get,list,watch"))
            }]
        );
    }

    #[test]
    fn configmap_yaml_compares_as_structure() {
        let cm = |text: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "istio", "namespace": "istio-system"},
                   "data": {"mesh": text}})
        };
        let report = compare(
            &[cm("a: 1\nb: {c: 2}\n")],
            &[cm("{\"b\": {\"c\": 3}, \"a\": 1}")],
        );
        assert_eq!(
            report["ConfigMap/istio-system/istio"],
            vec![Difference::Field {
                path: "data.mesh.b.c".into(),
                upstream: Some(json!(2)),
                mizzen: Some(json!(3))
            }]
        );
    }

    #[test]
    fn the_allow_list_explains_objects_and_fields_and_nothing_else() {
        let allow = AllowList::from_yaml(
            "- {object: 'Service/*/istiod-active-*', reason: stable Service}\n\
             - {object: 'Deployment/*/istiod', path: '*.env[D].*', reason: D is ours}\n",
        )
        .unwrap();
        let svc = json!({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": "istiod-active-default", "namespace": "istio-system"}});
        let up = deployment(json!([{"name": "A", "value": "1"}]), json!({}));
        let mz = deployment(
            json!([{"name": "A", "value": "2"}, {"name": "D", "value": "4"}]),
            json!({}),
        );
        let report = compare(&[up], &[mz, svc]);
        let (summary, text) = render_report(&report, &allow);
        assert_eq!(
            summary,
            Summary {
                matched: 1,
                only_upstream: 0,
                only_mizzen: 0,
                fields: 1,
                allowed: 3
            }
        );
        assert!(!summary.clean());
        assert_eq!(
            text,
            "Deployment/istio-system/istiod\n  ~ spec.template.spec.containers[discovery].env[A].value: upstream \"1\" | mizzen \"2\"\n"
        );

        // `both_sides`: a changed value is explained, a missing one is not.
        let allow = AllowList::from_yaml(
            "- {object: 'Deployment/*', path: '*.env[*].value', both_sides: true, reason: ours}\n",
        )
        .unwrap();
        let up = deployment(json!([{"name": "A", "value": "1"}]), json!({}));
        let mz = deployment(
            json!([{"name": "A", "value": "2"}, {"name": "D", "value": "4"}]),
            json!({}),
        );
        let (summary, text) = render_report(&compare(&[up], &[mz]), &allow);
        assert_eq!((summary.fields, summary.allowed), (2, 1), "{text}");
        assert!(text.contains("env[D]"), "{text}");
    }
}
