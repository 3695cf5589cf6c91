//! `fidelity`: renders a spec with mizzen (`mizzen render`'s library) and with the upstream
//! charts fed the values the Sail Operator computes, and prints the normalised per-object,
//! per-field difference that the allow-list does not explain. A development harness: it
//! needs local copies of the upstream charts, which are never committed (tools/fidelity/README.md).

mod compare;
mod release;
mod sail;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use mizzen_catalog::{Catalog, Version};
use mizzen_render::Platform;
use serde_json::Value;

use compare::{AllowList, render_report};
use sail::Upstream;

/// Compare mizzen's render with the upstream charts'.
#[derive(Parser, Debug)]
struct Args {
    /// A Sail Operator `resources/` directory (one `vX.Y.Z/` with `charts/` and `profiles/`
    /// per version), or one such version directory.
    #[arg(long)]
    upstream: PathBuf,
    /// Versions to compare (default: every version directory the catalog knows).
    #[arg(long = "version")]
    versions: Vec<String>,
    /// With `--upstream` naming one version directory: the catalog version to render for
    /// it, when the charts at hand are not of that exact version (a release candidate of the
    /// minor, say). Reported in each case's name.
    #[arg(long)]
    catalog_version: Option<String>,
    /// With `--catalog-version`: the directory holds istio/istio's tree at a tag; compare a
    /// copy with the release builder's edits (release version and hub, no owning-resource
    /// labels) instead of the tree's placeholders.
    #[arg(long, requires = "catalog_version")]
    as_release: bool,
    /// Platforms (default: both).
    #[arg(long = "platform", value_enum)]
    platforms: Vec<PlatformArg>,
    /// Update strategies (default: both).
    #[arg(long = "strategy", value_enum)]
    strategies: Vec<Strategy>,
    /// Profiles (default: ambient and default).
    #[arg(long = "profile", value_enum)]
    profiles: Vec<Profile>,
    /// The allow-list of deliberate differences.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/allow.yaml"))]
    allow: PathBuf,
    /// A YAML file of the Istio's `spec.values`, given to both sides (e.g. a
    /// `compatibilityVersion`).
    #[arg(long)]
    values: Option<PathBuf>,
    /// Write each case's differences to `<dir>/<case>.txt` instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum PlatformArg {
    Kubernetes,
    Openshift,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Strategy {
    InPlace,
    RevisionBased,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Profile {
    Ambient,
    Default,
    /// Not in the default matrix: Istio only, with that profile.
    Demo,
    Preview,
}

impl Profile {
    /// The `spec.profile` the Istio names (none for `default`).
    fn name(self) -> Option<&'static str> {
        match self {
            Self::Ambient => Some("ambient"),
            Self::Default => None,
            Self::Demo => Some("demo"),
            Self::Preview => Some("preview"),
        }
    }
}

/// One comparison.
struct Case {
    version: Version,
    platform: Platform,
    strategy: Strategy,
    profile: Profile,
    /// The Istio's `spec.values` (`--values`), on both sides.
    values: Value,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "{}-{}-{:?}-{:?}",
            self.version,
            match self.platform {
                Platform::Kubernetes => "kubernetes",
                Platform::OpenShift => "openshift",
            },
            self.strategy,
            self.profile
        )
        .to_lowercase()
    }

    /// The resources of the case, as a user writes them.
    fn spec(&self) -> String {
        let v = &self.version;
        let strategy = format!("{:?}", self.strategy);
        let mut spec = format!(
            "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {{name: default}}\n\
             spec: {{namespace: istio-system, version: {v}, updateStrategy: {{type: {strategy}}}, \
             values: {}",
            self.values
        );
        if let Some(p) = self
            .profile
            .name()
            .filter(|_| self.profile != Profile::Ambient)
        {
            spec.push_str(&format!(", profile: {p}}}\n"));
        } else if self.profile == Profile::Ambient {
            spec.push_str(&format!(
                ", profile: ambient}}\n---\napiVersion: sailoperator.io/v1\nkind: IstioCNI\n\
                 metadata: {{name: default}}\nspec: {{namespace: istio-cni, version: {v}, profile: ambient}}\n\
                 ---\napiVersion: sailoperator.io/v1\nkind: ZTunnel\nmetadata: {{name: default}}\n\
                 spec: {{namespace: ztunnel, version: {v}, targetRef: {{kind: Istio, name: default}}}}\n"
            ));
        } else {
            spec.push_str("}\n");
        }
        spec
    }

    fn revision(&self) -> String {
        match self.strategy {
            Strategy::InPlace => "default".into(),
            Strategy::RevisionBased => format!("default-v{}", self.version.dashed()),
        }
    }

    /// What mizzen applies, without the IstioRevision (no chart renders it) and, unless
    /// `crds`, without Istio's CRDs (Sail installs them from its bundle, not a chart).
    fn mizzen(&self, catalog: &Catalog, crds: bool) -> anyhow::Result<Vec<Value>> {
        let objects = mizzen_companion::render::render_file(&self.spec(), catalog, self.platform)?;
        Ok(objects
            .into_iter()
            .filter(|o| match o["kind"].as_str() {
                Some("IstioRevision") => false,
                Some("CustomResourceDefinition") => crds,
                _ => true,
            })
            .collect())
    }

    /// What Sail's Helm releases hold for the same resources.
    fn upstream(&self, up: &Upstream) -> anyhow::Result<Vec<Value>> {
        let revision = self.revision();
        let profile = self.profile.name();
        let none = serde_json::json!({});
        let values = up.istio_values(
            &self.values,
            profile,
            self.platform,
            &revision,
            "istio-system",
        )?;
        let mut objects = up.template(
            "istiod",
            &format!("{revision}-istiod"),
            "istio-system",
            &values,
        )?;
        if revision == "default" {
            objects.extend(up.template(
                "base",
                "default-base",
                sail::OPERATOR_NAMESPACE,
                &values,
            )?);
        }
        // Istio's CRDs of the release (`crds.yaml`: manifests/charts/base/files/crd-all.gen.yaml
        // of istio/istio at the tag), when the directory has them.
        let crds = up.dir.join("crds.yaml");
        if crds.is_file() {
            let docs: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(&crds)?)?;
            objects.extend(
                docs.into_iter()
                    .filter(|d| d["kind"] == "CustomResourceDefinition"),
            );
        }
        // The base chart of istio/istio's tree renders them too; Sail's copies do not.
        objects.retain(|o| o["kind"] != "CustomResourceDefinition" || crds.is_file());
        if self.profile == Profile::Ambient {
            let cni = up.cni_values(&none, profile, self.platform)?;
            objects.extend(up.template("cni", "istio-cni", "istio-cni", &cni)?);
            let zt = up.ztunnel_values(&none, self.platform, &values)?;
            objects.extend(up.template("ztunnel", "ztunnel", "ztunnel", &zt)?);
        }
        Ok(objects)
    }
}

fn version_dirs(upstream: &Path) -> anyhow::Result<Vec<(Version, PathBuf)>> {
    if upstream.join("charts").is_dir() {
        let name = upstream
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        return Ok(vec![(name.parse()?, upstream.to_path_buf())]);
    }
    let mut dirs = Vec::new();
    for entry in
        std::fs::read_dir(upstream).with_context(|| format!("reading {}", upstream.display()))?
    {
        let path = entry?.path();
        if let Some(v) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<Version>().ok())
            && path.join("charts").is_dir()
        {
            dirs.push((v, path));
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn or_all<T: Copy>(chosen: &[T], all: &[T]) -> Vec<T> {
    if chosen.is_empty() {
        all.to_vec()
    } else {
        chosen.to_vec()
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let catalog = Catalog::embedded()?;
    let allow = AllowList::from_yaml(&std::fs::read_to_string(&args.allow)?)
        .with_context(|| format!("reading {}", args.allow.display()))?;
    let helm = sail::helm_binary();
    let values: Value = match &args.values {
        Some(f) => serde_saphyr::from_str(&std::fs::read_to_string(f)?)?,
        None => serde_json::json!({}),
    };
    let mut dirs = version_dirs(&args.upstream)?;
    if let Some(v) = &args.catalog_version {
        anyhow::ensure!(
            dirs.len() == 1,
            "--catalog-version needs --upstream to name one version directory"
        );
        dirs[0].0 = v.parse()?;
    }
    dirs.retain(|(v, _)| {
        catalog.resolve(&v.to_string()).is_ok()
            && (args.versions.is_empty() || args.versions.iter().any(|w| *w == v.to_string()))
    });
    anyhow::ensure!(
        !dirs.is_empty(),
        "no version directory under {} that the catalog knows",
        args.upstream.display()
    );
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)?;
    }
    let mut unclean = 0;
    for (version, dir) in dirs {
        let released = if args.as_release {
            Some(release::as_release(&dir, &version)?)
        } else {
            None
        };
        let up = Upstream {
            dir: released.as_ref().map_or(dir, |r| r.path().to_path_buf()),
            helm: helm.clone(),
        };
        for platform in or_all(
            &args.platforms,
            &[PlatformArg::Kubernetes, PlatformArg::Openshift],
        ) {
            for strategy in or_all(
                &args.strategies,
                &[Strategy::InPlace, Strategy::RevisionBased],
            ) {
                for profile in or_all(&args.profiles, &[Profile::Ambient, Profile::Default]) {
                    let case = Case {
                        version: version.clone(),
                        platform: match platform {
                            PlatformArg::Kubernetes => Platform::Kubernetes,
                            PlatformArg::Openshift => Platform::OpenShift,
                        },
                        strategy,
                        profile,
                        values: values.clone(),
                    };
                    let report = compare::compare(
                        &case.upstream(&up)?,
                        &case.mizzen(&catalog, up.dir.join("crds.yaml").is_file())?,
                    );
                    let (s, text) = render_report(&report, &allow);
                    println!(
                        "{:<42} {:>3} matched, {:>2} only upstream, {:>2} only mizzen, {:>4} fields differ, {:>4} allowed{}",
                        case.name(),
                        s.matched,
                        s.only_upstream,
                        s.only_mizzen,
                        s.fields,
                        s.allowed,
                        if s.clean() { "  clean" } else { "" }
                    );
                    unclean += usize::from(!s.clean());
                    match &args.out {
                        Some(dir) => {
                            std::fs::write(dir.join(format!("{}.txt", case.name())), text)?
                        }
                        None => print!("{text}"),
                    }
                }
            }
        }
    }
    if unclean > 0 {
        std::process::exit(1);
    }
    Ok(())
}
