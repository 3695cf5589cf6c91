//! The upstream side: the values the Sail Operator computes for a spec (its profiles, image
//! digests, platform and overrides, in its order), fed to `helm template` of the upstream
//! charts of that version. Written from the facts of Sail's values pipeline
//! (`pkg/istiovalues`, `pkg/revision/values.go`, `pkg/reconcile/{istiod,cni,ztunnel}.go`):
//!
//! Images: Sail without image digests configured, so the charts compute them from their own
//! `hub`, `tag` and `variant` (as mizzen does from the catalog's upstream images).
//!
//! - Istio: user values on top of the profiles `default` then the user's profile
//!   (else the platform's default profile), `global.platform` set if absent; then `revision`
//!   (empty for `default`), `global.istioNamespace`, and no `defaultRevision`. Charts:
//!   `istiod` as release `<revision>-istiod` in the control-plane namespace, and for the
//!   revision `default` also `base` as `default-base` in the operator's namespace.
//! - IstioCNI: user values on top of the profiles, chart `cni` as `istio-cni`.
//! - ZTunnel (with `targetRef` to the Istio): the revision's `meshConfig`, `revision` and
//!   `global` under the profiles `default` and `ambient`, then the user values, then the
//!   user's `ztunnel` values at the top level; chart `ztunnel` as `ztunnel`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use mizzen_render::Platform;
use serde_json::{Map, Value, json};

/// The namespace Sail's operator runs in (where the `base` chart is installed).
pub const OPERATOR_NAMESPACE: &str = "sail-operator";

/// One Sail Operator version directory (`resources/vX.Y.Z`): `charts/` and `profiles/`.
pub struct Upstream {
    /// The directory.
    pub dir: PathBuf,
    /// The `helm` binary.
    pub helm: PathBuf,
}

/// Sail's MergeOverwrite: maps merge key by key, anything else is replaced.
pub fn merge(base: Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(mut b), Value::Object(o)) => {
            for (k, v) in o {
                let merged = match b.remove(k) {
                    Some(old) => merge(old, v),
                    None => v.clone(),
                };
                b.insert(k.clone(), merged);
            }
            Value::Object(b)
        }
        (_, over) => over.clone(),
    }
}

fn set_if_absent(v: &mut Value, path: &[&str], value: Value) {
    let mut at = v;
    for p in &path[..path.len() - 1] {
        if !at[*p].is_object() {
            at[*p] = json!({});
        }
        at = &mut at[*p];
    }
    let last = path[path.len() - 1];
    if at.get(last).is_none_or(Value::is_null) {
        at[last] = value;
    }
}

/// Sail's profile choice: `default`, then the user's profile or else the default profile.
pub fn profiles(user: Option<&str>, platform: Platform) -> Vec<String> {
    let default_profile = platform.default_profile();
    match (
        user.filter(|p| !p.is_empty() && *p != "default"),
        default_profile,
    ) {
        (Some(p), _) => vec!["default".into(), p.into()],
        (None, Some(d)) => vec!["default".into(), d.into()],
        (None, None) => vec!["default".into()],
    }
}

impl Upstream {
    fn profile(&self, name: &str) -> anyhow::Result<Value> {
        let file = self.dir.join("profiles").join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading profile {}", file.display()))?;
        let doc: Value = serde_saphyr::from_str(&text)?;
        Ok(doc["spec"]["values"].clone())
    }

    /// Sail's ApplyProfilesAndPlatform.
    fn with_profiles(
        &self,
        user: &Value,
        profile: Option<&str>,
        platform: Platform,
    ) -> anyhow::Result<Value> {
        let mut values = json!({});
        for p in profiles(profile, platform) {
            values = merge(values, &self.profile(&p)?);
        }
        let mut values = merge(values, user);
        if let Some(name) = platform.value_name() {
            set_if_absent(&mut values, &["global", "platform"], json!(name));
        }
        Ok(values)
    }

    /// The values of an Istio's revision `revision` in `namespace`.
    pub fn istio_values(
        &self,
        user: &Value,
        profile: Option<&str>,
        platform: Platform,
        revision: &str,
        namespace: &str,
    ) -> anyhow::Result<Value> {
        let mut values = self.with_profiles(user, profile, platform)?;
        values["revision"] = json!(if revision == "default" { "" } else { revision });
        values["global"]["istioNamespace"] = json!(namespace);
        if let Some(m) = values.as_object_mut() {
            m.remove("defaultRevision");
        }
        Ok(values)
    }

    /// The values of istio-cni.
    pub fn cni_values(
        &self,
        user: &Value,
        profile: Option<&str>,
        platform: Platform,
    ) -> anyhow::Result<Value> {
        self.with_profiles(user, profile, platform)
    }

    /// The values of ztunnel following a revision with values `revision_values`.
    pub fn ztunnel_values(
        &self,
        user: &Value,
        platform: Platform,
        revision_values: &Value,
    ) -> anyhow::Result<Value> {
        let mut base = Map::new();
        for k in ["meshConfig", "revision", "global"] {
            if let Some(v) = revision_values.get(k) {
                base.insert(k.into(), v.clone());
            }
        }
        let merged = self.with_profiles(&Value::Object(base), Some("ambient"), platform)?;
        let merged = merge(merged, user);
        Ok(merge(merged, &user["ztunnel"]))
    }

    /// `helm template <release> charts/<chart> -n <namespace>` with `values`.
    pub fn template(
        &self,
        chart: &str,
        release: &str,
        namespace: &str,
        values: &Value,
    ) -> anyhow::Result<Vec<Value>> {
        let file = tempfile_path(release);
        std::fs::write(&file, serde_json::to_vec(values)?)?;
        let out = Command::new(&self.helm)
            .arg("template")
            .arg(release)
            .arg(self.dir.join("charts").join(chart))
            .args(["--namespace", namespace, "--values"])
            .arg(&file)
            .output()
            .with_context(|| format!("running {}", self.helm.display()))?;
        let _ = std::fs::remove_file(&file);
        if !out.status.success() {
            bail!(
                "helm template {chart}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = undo_hub_rewrite(&String::from_utf8(out.stdout)?);
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)?;
        Ok(docs
            .into_iter()
            .filter(|d| d.is_object())
            .map(|mut d| {
                // Namespaced objects without a namespace land in the release's.
                if d["metadata"]["namespace"].is_null() && namespaced(&d) {
                    d["metadata"]["namespace"] = json!(namespace);
                }
                d
            })
            .collect())
    }
}

/// Sail's copies of the charts pull from `registry.istio.io/release`, where Istio's published
/// charts (and mizzen's catalog) name `docker.io/istio`: the same images, mirrored (Sail's
/// `hack/download-charts.sh` rewrites the hub). Undone so that tags and variants compare.
fn undo_hub_rewrite(rendered: &str) -> String {
    rendered.replace("registry.istio.io/release", "docker.io/istio")
}

fn tempfile_path(release: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fidelity-{}-{release}.json", std::process::id()))
}

/// Whether an object of this kind lives in a namespace (the kinds the charts render).
fn namespaced(o: &Value) -> bool {
    !matches!(
        o["kind"].as_str().unwrap_or_default(),
        "ClusterRole"
            | "ClusterRoleBinding"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "CustomResourceDefinition"
            | "Namespace"
            | "SecurityContextConstraints"
    )
}

/// The `helm` binary: `MIZZEN_HELM_BIN/helm`, else `helm` on the PATH.
pub fn helm_binary() -> PathBuf {
    std::env::var_os("MIZZEN_HELM_BIN")
        .map(|d| Path::new(&d).join("helm"))
        .unwrap_or_else(|| PathBuf::from("helm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_overwrites_leaves_and_merges_maps() {
        let base = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        let over = json!({"a": {"c": [3], "e": null}, "f": 2});
        assert_eq!(
            merge(base, &over),
            json!({"a": {"b": 1, "c": [3], "e": null}, "d": 1, "f": 2})
        );
    }

    #[test]
    fn profile_choice_follows_sail() {
        assert_eq!(profiles(None, Platform::Kubernetes), ["default"]);
        assert_eq!(
            profiles(Some("default"), Platform::OpenShift),
            ["default", "openshift"]
        );
        assert_eq!(
            profiles(Some("ambient"), Platform::OpenShift),
            ["default", "ambient"]
        );
        assert_eq!(
            profiles(Some("ambient"), Platform::Kubernetes),
            ["default", "ambient"]
        );
    }

    #[test]
    fn set_if_absent_keeps_a_users_value() {
        let mut v = json!({"pilot": {"image": "mine"}});
        set_if_absent(&mut v, &["pilot", "image"], json!("digest"));
        set_if_absent(&mut v, &["global", "proxy", "image"], json!("digest"));
        assert_eq!(
            v,
            json!({"pilot": {"image": "mine"}, "global": {"proxy": {"image": "digest"}}})
        );
    }

    #[test]
    fn sails_hub_rewrite_is_undone_and_nothing_else() {
        assert_eq!(
            undo_hub_rewrite(
                "image: registry.istio.io/release/pilot:1.30.3\nhub: registry.istio.io/testing"
            ),
            "image: docker.io/istio/pilot:1.30.3\nhub: registry.istio.io/testing"
        );
    }
}
