//! `mizzen manifests`, `mizzen chart` and `mizzen bundle`: how mizzen itself is installed,
//! printed or written from mizzen-install.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mizzen_catalog::Catalog;
use mizzen_install::{InstallValues, Platform, olm::BundleOptions};

/// Options of `mizzen manifests`.
#[derive(Args, Debug)]
pub struct ManifestsArgs {
    /// Namespace of the operator.
    #[arg(long, default_value = mizzen_install::DEFAULT_NAMESPACE)]
    namespace: String,
    /// The operator's image, `<repository>[:<tag>]` or `<repository>@<digest>`.
    #[arg(long)]
    image: Option<String>,
    /// Replicas of the operator's Deployment.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..))]
    replicas: i32,
    /// Platform passed to the operator (`auto` passes none).
    #[arg(long, default_value = "auto")]
    platform: Platform,
    /// Also create a Prometheus Operator ServiceMonitor.
    #[arg(long)]
    service_monitor: bool,
}

/// Options of `mizzen chart` and `mizzen bundle`.
#[derive(Args, Debug)]
pub struct OutArgs {
    /// Directory to write into (created if missing; existing files are overwritten).
    #[arg(long)]
    out: PathBuf,
}

/// The manifests of an installation as one YAML stream. With `--versions-file`, that catalog
/// gives the CRDs' version enums and is shipped in the ConfigMap `mizzen-catalog`.
pub fn manifests(
    args: ManifestsArgs,
    versions_file: Option<&std::path::Path>,
    catalog: &Catalog,
) -> anyhow::Result<String> {
    let defaults = InstallValues::default();
    let image = match &args.image {
        Some(reference) => defaults.image.with_reference(reference)?,
        None => defaults.image.clone(),
    };
    let catalog_text = match versions_file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => String::new(),
    };
    let values = InstallValues {
        namespace: args.namespace,
        image,
        replicas: args.replicas,
        platform: args.platform,
        catalog: catalog_text,
        service_monitor: mizzen_install::ServiceMonitorValues {
            enabled: args.service_monitor,
        },
        ..defaults
    };
    Ok(mizzen_install::manifests_yaml(&values, catalog))
}

/// Writes the Helm chart (always from the embedded catalog: the chart's CRDs are static).
pub fn chart(args: OutArgs) -> anyhow::Result<()> {
    let catalog = Catalog::embedded().context("the embedded version catalog is invalid")?;
    mizzen_install::chart::write(&args.out, &catalog)
        .with_context(|| format!("writing the chart into {}", args.out.display()))
}

/// Writes the OLM bundle and file-based catalog.
pub fn bundle(args: OutArgs, catalog: &Catalog) -> anyhow::Result<()> {
    mizzen_install::olm::write(&args.out, catalog, &BundleOptions::default())
        .with_context(|| format!("writing the bundle into {}", args.out.display()))
}
