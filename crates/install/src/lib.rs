//! mizzen-install: how mizzen itself gets onto a cluster. Pure functions, no Kubernetes
//! client: from one set of [`InstallValues`] they build the objects of an installation
//! ([`objects`]), and from those objects the three forms mizzen ships in:
//!
//! - the plain manifests of `mizzen manifests` ([`manifests_yaml`], committed as
//!   `deploy/manifests/mizzen.yaml`);
//! - the Helm chart of `mizzen chart` ([`chart::files`], committed as `deploy/chart/`): the
//!   same objects rendered with markers in place of the values, turned into template
//!   expressions, and a `values.yaml` written from [`InstallValues::default`];
//! - the OLM bundle and file-based catalog of `mizzen bundle` ([`olm::files`], committed as
//!   `deploy/olm/`): the Deployment's spec and the RBAC rules as a ClusterServiceVersion's
//!   install strategy.
//!
//! The operator's permissions come from `mizzen_controller::permissions`, the CRDs from
//! `mizzen_api::crds`: nothing here repeats them.
//!
//! ```
//! use mizzen_install::{InstallValues, objects};
//!
//! let values = InstallValues { replicas: 3, ..Default::default() };
//! let objs = objects(&values, Vec::new());
//! assert!(objs.iter().any(|o| o.kind() == "Deployment" && o.name() == "mizzen"));
//! ```

pub mod chart;
mod objects;
pub mod olm;
mod values;
mod yaml;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use mizzen_catalog::Catalog;

pub use objects::{
    CATALOG_CHECKSUM_ANNOTATION, CATALOG_CONFIGMAP, CATALOG_DIR, CATALOG_KEY, HEALTH_PORT,
    LEADER_ELECTION_ROLE, METRICS_PORT, METRICS_SERVICE, NAME, Object, RUN_AS_USER, ServiceMonitor,
    catalog_checksum, deployment, objects, to_yaml_stream,
};
pub use values::{
    DEFAULT_NAMESPACE, DEFAULT_REPOSITORY, Image, InstallValues, InvalidImage, Platform,
    ServiceMonitorValues, VERSION, ValuesError,
};
pub use yaml::parse_stream;

/// The CRDs mizzen serves, with the version enums of `catalog`.
pub fn crds(catalog: &Catalog) -> Vec<CustomResourceDefinition> {
    mizzen_api::crds::crds(&mizzen_controller::crd_versions(catalog))
}

/// The plain manifests: every object of [`objects`] with the CRDs of `catalog`, as one YAML
/// stream.
pub fn manifests_yaml(values: &InstallValues, catalog: &Catalog) -> String {
    to_yaml_stream(&objects(values, crds(catalog)))
}

/// Writes generated files (relative path → content) under `dir`, creating directories.
fn write_files(
    dir: &std::path::Path,
    files: std::collections::BTreeMap<String, String>,
) -> std::io::Result<()> {
    for (path, content) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content)?;
    }
    Ok(())
}
