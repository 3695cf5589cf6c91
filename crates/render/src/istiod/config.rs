//! istiod's ConfigMaps: the mesh configuration `istio{R}`, the injector configuration
//! `istio-sidecar-injector{R}` (values and templates istiod renders waypoints and gateways
//! from), and the informational `values{R}`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use mizzen_catalog::ImageRef;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::injection;
use super::templates::{self, TemplateParams};
use super::{InjectorSettings, Revision};
use crate::json::{canonical, get, merge, set};
use crate::object::{Object, namespaced};
use crate::pod::section;
use crate::{Platform, RenderError};

/// `telemetry`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Telemetry {
    enabled: Option<bool>,
    v2: Option<TelemetryV2>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TelemetryV2 {
    enabled: Option<bool>,
    prometheus: Option<Enabled>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Enabled {
    enabled: Option<bool>,
}

impl Telemetry {
    /// Whether Prometheus metrics are the mesh's default metrics provider.
    fn prometheus(&self) -> bool {
        let v2 = self.v2.as_ref();
        self.enabled.unwrap_or(true)
            && v2.and_then(|v| v.enabled).unwrap_or(true)
            && v2
                .and_then(|v| v.prometheus.as_ref())
                .and_then(|p| p.enabled)
                .unwrap_or(true)
    }
}

impl Revision<'_> {
    pub(super) fn config_maps(&self) -> Result<Vec<Object>, RenderError> {
        let mesh = BTreeMap::from([
            ("mesh".to_owned(), yaml(&self.mesh()?, "meshConfig")?),
            (
                "meshNetworks".to_owned(),
                yaml(&self.mesh_networks(), "meshNetworks")?,
            ),
        ]);
        let injector = BTreeMap::from([
            (
                "config".to_owned(),
                yaml(&self.injector_config()?, "the injector config")?,
            ),
            ("values".to_owned(), pretty_json(&self.injector_values()?)?),
        ]);
        let values = BTreeMap::from([
            (
                "original-values".to_owned(),
                pretty_json(&to_json(&self.input.values)?)?,
            ),
            (
                "merged-values".to_owned(),
                pretty_json(&to_json(&self.values)?)?,
            ),
        ]);
        [
            (self.names.mesh_config(), mesh),
            (self.names.injector_config(), injector),
            (self.names.values_config(), values),
        ]
        .into_iter()
        .map(|(name, data)| self.config_map(&name, data))
        .collect()
    }

    fn config_map(
        &self,
        name: &str,
        data: BTreeMap<String, String>,
    ) -> Result<Object, RenderError> {
        self.stamp.object(&ConfigMap {
            metadata: namespaced(name, self.names.namespace(), self.config_labels()),
            data: Some(data),
            ..ConfigMap::default()
        })
    }

    /// The mesh configuration: the built-in part (discovery address of this revision,
    /// root namespace, trust domain, image type, default metrics provider), deep-merged
    /// with `meshConfig`.
    pub(super) fn mesh(&self) -> Result<Value, RenderError> {
        let user = match &self.values.mesh_config {
            None => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(RenderError::value("meshConfig", "expected an object")),
        };
        let root = self
            .global
            .istio_namespace
            .as_deref()
            .filter(|n| !n.is_empty());
        let mut mesh = json!({
            "defaultConfig": {"discoveryAddress": self.names.istiod_address()},
            "rootNamespace": root.unwrap_or(self.names.namespace()),
            "trustDomain": "cluster.local",
        });
        if let Some(variant) = self.global.variant.as_deref().filter(|v| !v.is_empty()) {
            set(
                &mut mesh,
                &["defaultConfig", "image", "imageType"],
                variant.into(),
            );
        }
        if let Some(id) = self.global.mesh_id.as_deref().filter(|v| !v.is_empty()) {
            set(&mut mesh, &["meshId"], id.into());
        }
        let telemetry: Telemetry = section(self.values.telemetry.as_ref(), "telemetry")?;
        if telemetry.prometheus() && get(&user, &["defaultProviders"]).is_none() {
            set(
                &mut mesh,
                &["defaultProviders", "metrics"],
                json!(["prometheus"]),
            );
        }
        merge(&mut mesh, &user);
        Ok(mesh)
    }

    fn mesh_networks(&self) -> Value {
        let networks = self.global.other.get("meshNetworks").cloned();
        json!({ "networks": networks.unwrap_or_else(|| json!({})) })
    }

    /// The `values` key: the parts of the values istiod's injector reads, with the proxy
    /// image of the catalog filled in where the values name none.
    fn injector_values(&self) -> Result<Value, RenderError> {
        let mut global = to_json(&self.global)?;
        let mut fill = |path: &[&str], value: &str| {
            let missing = get(&global, path)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if missing {
                set(&mut global, path, value.into());
            }
        };
        // The proxy image of sidecars and gateways, as istiod will compose it.
        let proxy_image = self
            .global
            .proxy
            .as_ref()
            .and_then(|p| p.get("image"))
            .and_then(Value::as_str);
        crate::image::resolve(
            &self.input.images.proxy,
            crate::image::ImageValues {
                image: proxy_image,
                ..Default::default()
            },
            Some(&self.global),
            "global.proxy",
        )?;
        match &self.input.images.proxy {
            ImageRef::Parts { hub, name, tag } => {
                fill(&["hub"], hub);
                fill(&["tag"], tag);
                fill(&["proxy", "image"], name);
            }
            ImageRef::Full(reference) => fill(&["proxy", "image"], reference),
        }
        let mut values = json!({
            "global": global,
            "revision": self.names.helm(),
            "sidecarInjectorWebhook": self.values.sidecar_injector_webhook.clone().unwrap_or_else(|| json!({})),
            "pilot": {
                "cni": to_json(&self.pilot.cni)?,
                "env": to_json(&self.pilot.env)?,
            },
        });
        if let Some(gateways) = self.values.other.get("gateways") {
            values["gateways"] = gateways.clone();
        }
        crate::json::prune(&mut values);
        Ok(values)
    }

    /// The `config` key: injection policy, selectors, and the templates istiod renders —
    /// `waypoint` and `kube-gateway` built in, plus the user's.
    fn injector_config(&self) -> Result<Value, RenderError> {
        let settings = InjectorSettings::read(&self.values)?;
        let params = TemplateParams {
            istiod_address: self.names.istiod_address(),
            cluster_domain: self.cluster_domain(),
            openshift: self.platform == Platform::OpenShift,
            grace_seconds: if crate::values::at_least(self.version(), 28) {
                30
            } else {
                2
            },
            minor: self.version().minor,
        };
        let mut templates = templates::gateway_templates(&params);
        templates.extend(
            injection::pod_templates(&params)
                .into_iter()
                .map(|(name, text)| (name.to_owned(), text)),
        );
        // The user's templates replace built-in ones of the same name; one istiod could not
        // parse would fail every pod that uses it, so it is refused here, by name.
        for (name, text) in settings.templates.iter().flatten() {
            injection::check_template(text).map_err(|problem| {
                RenderError::value(format!("sidecarInjectorWebhook.templates.{name}"), problem)
            })?;
        }
        templates.extend(settings.templates.clone().unwrap_or_default());
        let default_templates = settings
            .default_templates
            .clone()
            .unwrap_or_else(|| vec!["sidecar".to_owned()]);
        // A default template nobody wrote would fail the injection of every pod.
        if let Some(missing) = default_templates
            .iter()
            .find(|t| !templates.contains_key(t.as_str()))
        {
            return Err(RenderError::value(
                "sidecarInjectorWebhook.defaultTemplates",
                format!(
                    "names the template {missing:?}, which neither mizzen nor \
                     sidecarInjectorWebhook.templates defines (defined: {})",
                    templates.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(json!({
            "defaultTemplates": default_templates,
            "policy": self.injection_policy(),
            "alwaysInjectSelector": settings.always_inject_selector.unwrap_or_default(),
            "neverInjectSelector": settings.never_inject_selector.unwrap_or_default(),
            "injectedAnnotations": settings.injected_annotations.unwrap_or_default(),
            // As upstream: an istiod too old for `templates` fails loudly on this one.
            "template": "{{ Template_Version_And_Istio_Version_Mismatched_Check_Installation }}",
            "templates": templates,
        }))
    }

    /// `global.proxy.autoInject` (`enabled` by default, as upstream).
    fn injection_policy(&self) -> String {
        self.global
            .proxy
            .as_ref()
            .and_then(|p| p.get("autoInject"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or("enabled")
            .to_owned()
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Value, RenderError> {
    serde_json::to_value(value).map_err(|e| RenderError::serialize("values", e))
}

/// YAML text of a tree, keys sorted.
fn yaml(value: &Value, what: &str) -> Result<String, RenderError> {
    serde_saphyr::to_string(&canonical(value.clone())).map_err(|e| RenderError::serialize(what, e))
}

/// Indented JSON text of a tree, keys sorted.
fn pretty_json(value: &Value) -> Result<String, RenderError> {
    serde_json::to_string_pretty(&canonical(value.clone()))
        .map_err(|e| RenderError::serialize("values", e))
}
