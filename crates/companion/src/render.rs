//! `mizzen render -f FILE`: every object the operator would apply for the resources in a
//! file, offline (no cluster), like `helm template`. The same functions the reconcilers call
//! (`mizzen_controller::desired`, `ztunnel::render`) produce them, so what is printed is what
//! a cluster gets, for the platform given.
//!
//! The file holds `sailoperator.io/v1` Istio, IstioRevision, IstioRevisionTag, IstioCNI and
//! ZTunnel resources, and optionally `mizzen.io/v1alpha1` RolloutPolicies (a `DrainWaves`
//! policy sets its DaemonSet to `OnDelete`). Each Istio is taken as newly created: its
//! revision is the one its spec names (no InPlace move is checked, as there is nothing to
//! move from), and it is active, so tags and ZTunnels that follow it point at it.

use crate::mesh::owned_by;
use kube::ResourceExt;
use mizzen_api::rollout::{RolloutPolicy, RolloutTargetKind};
use mizzen_api::{Istio, IstioCNI, IstioRevision, IstioRevisionTag, ZTunnel};
use mizzen_catalog::{Catalog, Component, Version};
use mizzen_controller::{desired, istio, rollout, tag, ztunnel};
use mizzen_render::{Object, Platform};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a file cannot be rendered: the document, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct RenderFileError {
    /// The document (`document 2 (Istio default)`), or the file for a parse error.
    pub what: String,
    /// What is wrong, and what would be valid.
    pub message: String,
}

/// The resources of a file, by kind.
#[derive(Default)]
struct Resources {
    istios: Vec<Istio>,
    revisions: Vec<IstioRevision>,
    tags: Vec<IstioRevisionTag>,
    cnis: Vec<IstioCNI>,
    ztunnels: Vec<ZTunnel>,
    policies: Vec<RolloutPolicy>,
}

fn typed<K: DeserializeOwned>(doc: Value, what: &str) -> Result<K, RenderFileError> {
    serde_json::from_value(doc).map_err(|e| RenderFileError {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn parse(yaml: &str) -> Result<Resources, RenderFileError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| RenderFileError {
        what: "the file".into(),
        message: format!("not YAML: {e}"),
    })?;
    let mut r = Resources::default();
    for (i, doc) in docs.into_iter().filter(|d| !d.is_null()).enumerate() {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let what = format!("document {} ({kind} {name})", i + 1);
        match (api_version.as_str(), kind.as_str()) {
            ("sailoperator.io/v1", "Istio") => r.istios.push(typed(doc, &what)?),
            ("sailoperator.io/v1", "IstioRevision") => r.revisions.push(typed(doc, &what)?),
            ("sailoperator.io/v1", "IstioRevisionTag") => r.tags.push(typed(doc, &what)?),
            ("sailoperator.io/v1", "IstioCNI") => r.cnis.push(typed(doc, &what)?),
            ("sailoperator.io/v1", "ZTunnel") => r.ztunnels.push(typed(doc, &what)?),
            ("mizzen.io/v1alpha1", "RolloutPolicy") => r.policies.push(typed(doc, &what)?),
            _ => {
                return Err(RenderFileError {
                    what,
                    message: format!(
                        "{api_version} {kind} is not rendered; the file may hold \
                         sailoperator.io/v1 Istio, IstioRevision, IstioRevisionTag, IstioCNI and \
                         ZTunnel, and mizzen.io/v1alpha1 RolloutPolicy"
                    ),
                });
            }
        }
    }
    Ok(r)
}

fn refused(what: String, message: impl std::fmt::Display) -> RenderFileError {
    RenderFileError {
        what,
        message: message.to_string(),
    }
}

fn json_of(objects: Vec<Object>) -> Vec<Value> {
    objects.into_iter().map(Object::into_json).collect()
}

/// Every object mizzen would apply for the resources in `yaml` on `platform`, in apply order
/// per resource: each Istio's IstioRevision and its objects (then the stable Service), each
/// IstioRevision given directly, the tags, istio-cni, ztunnel, and last Istio's CRDs at the
/// newest control-plane version.
pub fn render_file(
    yaml: &str,
    catalog: &Catalog,
    platform: Platform,
) -> Result<Vec<Value>, RenderFileError> {
    let Resources {
        mut istios,
        mut revisions,
        tags,
        cnis,
        ztunnels,
        policies,
    } = parse(yaml)?;
    let mut out = Vec::new();
    // Each Istio's revision first, in the file's order, then the revisions given directly.
    let mut from_istios = Vec::new();
    for i in &mut istios {
        let what = format!("Istio {}", i.name_any());
        let plan = istio::plan(i, catalog, None).map_err(|r| refused(what.clone(), r.message))?;
        let rev = desired::revision_of(i, &plan.revision, &plan.version, platform)
            .map_err(|e| refused(what, e))?;
        i.status.get_or_insert_default().active_revision_name = Some(plan.revision);
        from_istios.push(rev);
    }
    from_istios.append(&mut revisions);
    let revisions = from_istios;
    let mut newest: Option<(Version, String)> = None;
    for rev in &revisions {
        let what = format!("IstioRevision {}", rev.name_any());
        let resolved = catalog
            .resolve(&rev.spec.version)
            .map_err(|e| refused(what.clone(), e))?;
        let istio = istios.iter().find(|i| owned_by(rev, &i.name_any()));
        if istio.is_some() {
            let mut rev = rev.clone();
            // Offline, the Istio has no UID to refer to: the operator sets the reference.
            if rev.owner_references().iter().any(|o| o.uid.is_empty()) {
                rev.metadata.owner_references = None;
            }
            out.push(serde_json::to_value(&rev).expect("an IstioRevision serializes"));
        }
        out.extend(json_of(
            desired::revision_objects(rev, &resolved, platform).map_err(|e| refused(what, e))?,
        ));
        if let Some(i) = istio {
            out.push(desired::stable_service(i, &rev.name_any()));
        }
        if newest.as_ref().is_none_or(|(v, _)| resolved.version > *v) {
            newest = Some((resolved.version.clone(), rev.name_any()));
        }
    }
    for t in &tags {
        let what = format!("IstioRevisionTag {}", t.name_any());
        let target_istio = istios
            .iter()
            .find(|i| i.name_any() == t.spec.target_ref.name);
        let name = tag::target_revision_name(t, target_istio)
            .map_err(|r| refused(what.clone(), r.message))?;
        let rev = revisions.iter().find(|r| r.name_any() == name);
        tag::check_target(t, &name, rev).map_err(|r| refused(what.clone(), r.message))?;
        let rev = rev.expect("checked");
        let resolved = catalog
            .resolve(&rev.spec.version)
            .map_err(|e| refused(what.clone(), e))?;
        out.extend(json_of(
            desired::tag_objects(&t.name_any(), rev, &resolved).map_err(|e| refused(what, e))?,
        ));
    }
    for c in &cnis {
        let what = format!("IstioCNI {}", c.name_any());
        let resolved = catalog
            .resolve_for(Component::IstioCni, &c.spec.version)
            .map_err(|e| refused(what.clone(), e))?;
        let objects = desired::cni_objects(c, &resolved, platform).map_err(|e| refused(what, e))?;
        let drains = rollout::drives(&policies, RolloutTargetKind::IstioCNI, &c.name_any());
        out.extend(desired::with_rollout(objects, drains));
    }
    for z in &ztunnels {
        let what = format!("ZTunnel {}", z.name_any());
        let resolved = catalog
            .resolve_for(Component::ZTunnel, &z.spec.version)
            .map_err(|e| refused(what.clone(), e))?;
        let target = ztunnel::resolve(z, &istios, &revisions)
            .map_err(|r| refused(what.clone(), r.message))?;
        let objects =
            ztunnel::render(z, &target, &resolved, platform).map_err(|e| refused(what, e))?;
        let drains = rollout::drives(&policies, RolloutTargetKind::ZTunnel, &z.name_any());
        out.extend(desired::with_rollout(objects, drains));
    }
    if let Some((version, revision)) = newest {
        let owner = mizzen_render::Owner::istio_revision(&revision);
        out.extend(
            desired::istio_crds(&owner, &version)
                .map_err(|e| refused(format!("Istio CRDs at {version}"), e))?,
        );
    }
    Ok(out)
}

/// Objects as one multi-document YAML stream (`---` between documents).
pub fn to_yaml(objects: &[Value]) -> Result<String, serde_saphyr::ser::Error> {
    let docs = objects
        .iter()
        .map(serde_saphyr::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str = "
apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: default}
spec:
  namespace: istio-system
  version: v1.26.4
  profile: ambient
  updateStrategy: {type: RevisionBased}
---
apiVersion: sailoperator.io/v1
kind: IstioRevisionTag
metadata: {name: default}
spec:
  targetRef: {kind: Istio, name: default}
---
apiVersion: sailoperator.io/v1
kind: IstioCNI
metadata: {name: default}
spec: {namespace: istio-cni, version: v1.26.4, profile: ambient}
---
apiVersion: sailoperator.io/v1
kind: ZTunnel
metadata: {name: default}
spec: {namespace: ztunnel, version: v1.26.4}
---
apiVersion: mizzen.io/v1alpha1
kind: RolloutPolicy
metadata: {name: ztunnel}
spec:
  targetRef: {kind: ZTunnel, name: default}
  mode: DrainWaves
";

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn error(yaml: &str) -> String {
        render_file(yaml, &catalog(), Platform::Kubernetes)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_mesh_renders_as_the_controllers_apply_it() {
        let objects = render_file(MESH, &catalog(), Platform::Kubernetes).unwrap();
        // The Istio's revision is named after the resolved version.
        let rev = find(&objects, "IstioRevision", "default-v1-26-4");
        assert_eq!(rev["spec"]["values"]["profile"], "ambient");
        assert_eq!(
            rev["metadata"].get("ownerReferences"),
            None,
            "no UID offline"
        );
        let istiod = find(&objects, "Deployment", "istiod-default-v1-26-4");
        assert_eq!(istiod["metadata"]["namespace"], "istio-system");
        // The stable Service follows the active revision.
        let stable = find(&objects, "Service", "istiod-active-default");
        assert_eq!(
            stable["spec"]["selector"]["istio.io/rev"],
            "default-v1-26-4"
        );
        // The default tag points at it.
        let tag = find(
            &objects,
            "MutatingWebhookConfiguration",
            "istio-revision-tag-default",
        );
        assert_eq!(tag["metadata"]["labels"]["istio.io/rev"], "default-v1-26-4");
        // ztunnel follows the Istio through the stable Service, and is drained in waves.
        let ztunnel = find(&objects, "DaemonSet", "ztunnel");
        assert_eq!(ztunnel["spec"]["updateStrategy"]["type"], "OnDelete");
        let env = ztunnel["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let xds = env.iter().find(|e| e["name"] == "XDS_ADDRESS").unwrap();
        assert_eq!(xds["value"], "istiod-active-default.istio-system.svc:15012");
        // istio-cni has no policy: a rolling update.
        let cni = find(&objects, "DaemonSet", "istio-cni-node");
        assert_eq!(cni["spec"]["updateStrategy"]["type"], "RollingUpdate");
        // Istio's CRDs, once, without an owner's inventory label.
        let crds: Vec<_> = objects
            .iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .collect();
        assert!(crds.len() > 10, "{}", crds.len());
        assert!(crds.iter().all(|c| {
            c["metadata"]["labels"]
                .get(mizzen_render::INVENTORY_LABEL)
                .is_none()
        }));
        // The same text comes out of the YAML writer and parses back.
        let yaml = to_yaml(&objects).unwrap();
        let back: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        assert_eq!(back, objects);
    }

    #[test]
    fn openshift_renders_for_openshift() {
        let objects = render_file(MESH, &catalog(), Platform::OpenShift).unwrap();
        assert!(
            objects
                .iter()
                .any(|o| o["kind"] == "NetworkAttachmentDefinition"),
            "istio-cni's multus attachment"
        );
    }

    #[test]
    fn bad_input_names_the_document_and_what_is_valid() {
        let e = error("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
        assert!(
            e.starts_with("document 1 (ConfigMap x): v1 ConfigMap is not rendered"),
            "{e}"
        );
        let e = error(
            "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: default}\n\
             spec: {namespace: istio-system, version: v9.9.9}\n",
        );
        assert!(e.starts_with("Istio default: "), "{e}");
        assert!(e.contains("v9.9.9"), "{e}");
        let e = error(
            "apiVersion: sailoperator.io/v1\nkind: ZTunnel\nmetadata: {name: default}\n\
             spec: {namespace: ztunnel, version: v1.26.4}\n",
        );
        assert!(e.starts_with("ZTunnel default: no Istio exists"), "{e}");
        let e = error(
            "apiVersion: sailoperator.io/v1\nkind: IstioRevisionTag\nmetadata: {name: default}\n\
             spec: {targetRef: {kind: IstioRevision, name: gone}}\n",
        );
        assert!(e.contains("IstioRevision gone not found"), "{e}");
        let e = error("apiVersion: sailoperator.io/v1\nkind: Istio\nspec: [\n");
        assert!(e.starts_with("the file: not YAML"), "{e}");
        let e =
            error("apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: a}\nspec: 3\n");
        assert!(e.starts_with("document 1 (Istio a): "), "{e}");
    }
}
