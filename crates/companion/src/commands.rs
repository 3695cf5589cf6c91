//! The companion's commands, between the binary's argument parsing and the pure logic: they
//! read the cluster, call [`crate::status`] or [`crate::plan`], and return what to print.

use std::path::Path;

use kube::ResourceExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use mizzen_api::{Istio, UpdateStrategyType};
use mizzen_catalog::{Catalog, Version};

use crate::mesh::Mesh;
use crate::output::{Format, plan_text, status_text, structured};
use crate::plan::{Current, Direction, Plan, Strategy};

/// A command that cannot do what was asked; printed as one line, exit status 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    /// `message` as an error the binary prints as one line.
    pub fn wrap(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self(message.into()))
    }
}

/// A client for the cluster of `kubeconfig` (else `KUBECONFIG`, else `~/.kube/config`, else
/// the in-cluster account), in `context` (else the current one).
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| Refusal::wrap(format!("kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| e.to_string())
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| e.to_string()),
        (None, None) => kube::Config::infer().await.map_err(|e| e.to_string()),
    }
    .map_err(|e| Refusal::wrap(format!("no usable kubeconfig: {e}")))?;
    Ok(kube::Client::try_from(config)?)
}

/// `mizzen status`.
pub async fn status(
    client: &kube::Client,
    catalog: &Catalog,
    format: Format,
    colour: bool,
) -> anyhow::Result<String> {
    let mesh = Mesh::read(client)
        .await
        .map_err(|e| Refusal::wrap(e.to_string()))?;
    let status = crate::status::status(&mesh, catalog, jiff::Timestamp::now());
    Ok(structured(&status, format).unwrap_or_else(|| status_text(&status, colour)))
}

/// The Istio a command acts on: `name`, or the only one.
pub fn choose_istio<'a>(mesh: &'a Mesh, name: Option<&str>) -> anyhow::Result<&'a Istio> {
    let names = || {
        mesh.istios
            .iter()
            .map(|i| i.name_any())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => mesh
            .istios
            .iter()
            .find(|i| i.name_any() == n)
            .ok_or_else(|| {
                Refusal::wrap(format!(
                    "no Istio named {n:?}; the Istios are: {}",
                    if mesh.istios.is_empty() {
                        "none".into()
                    } else {
                        names()
                    }
                ))
            }),
        None => match mesh.istios.as_slice() {
            [one] => Ok(one),
            [] => Err(Refusal::wrap(
                "there is no Istio to upgrade: create one first (deploy/examples/ambient.yaml)",
            )),
            _ => Err(Refusal::wrap(format!(
                "{} Istios ({}): choose one with --istio NAME",
                mesh.istios.len(),
                names()
            ))),
        },
    }
}

/// The versions running now for `istio`.
pub fn current(mesh: &Mesh, istio: &Istio, catalog: &Catalog) -> anyhow::Result<Current> {
    let active = istio
        .status
        .as_ref()
        .and_then(|s| s.active_revision_name.clone());
    let from_revision = active.and_then(|name| {
        mesh.revisions
            .iter()
            .find(|r| r.name_any() == name)
            .and_then(|r| r.spec.version.parse::<Version>().ok())
    });
    let control_plane = match from_revision {
        Some(v) => v,
        None => {
            catalog
                .resolve(&istio.spec.version)
                .map_err(|e| Refusal::wrap(format!("Istio {}: {e}", istio.name_any())))?
                .version
        }
    };
    let version = |v: &str| catalog.resolve(v).ok().map(|r| r.version);
    Ok(Current {
        istio: istio.name_any(),
        strategy: match istio.spec.update_strategy.as_ref().map(|s| s.type_) {
            Some(UpdateStrategyType::RevisionBased) => Strategy::RevisionBased,
            _ => Strategy::InPlace,
        },
        control_plane,
        cni: mesh.cni.as_ref().and_then(|c| version(&c.spec.version)),
        ztunnel: mesh.ztunnel.as_ref().and_then(|z| version(&z.spec.version)),
    })
}

/// The plan for `istio` (or the only Istio) to `target`, read from the cluster.
pub async fn make_plan(
    client: &kube::Client,
    catalog: &Catalog,
    istio: Option<&str>,
    target: &str,
    direction: Direction,
) -> anyhow::Result<(Mesh, Plan)> {
    let mesh = Mesh::read(client)
        .await
        .map_err(|e| Refusal::wrap(e.to_string()))?;
    let chosen = choose_istio(&mesh, istio)?;
    let current = current(&mesh, chosen, catalog)?;
    let plan = crate::plan::plan(catalog, &current, target, direction)
        .map_err(|e| Refusal::wrap(e.to_string()))?;
    Ok((mesh, plan))
}

/// `mizzen plan`.
pub async fn plan(
    client: &kube::Client,
    catalog: &Catalog,
    istio: Option<&str>,
    target: &str,
    format: Format,
    colour: bool,
) -> anyhow::Result<String> {
    let (mesh, mut plan) = make_plan(client, catalog, istio, target, Direction::Upgrade).await?;
    let platform = mizzen_runtime::detect_platform(client).await;
    crate::effects::fill(client, catalog, platform, &mesh, &mut plan).await?;
    Ok(structured(&plan, format).unwrap_or_else(|| plan_text(&plan, colour)))
}

/// The version `mizzen rollback` returns to without `--to`: the version of the Istio's
/// newest revision other than the active one (RevisionBased, while it exists).
pub fn rollback_target(mesh: &Mesh, istio: &Istio) -> anyhow::Result<String> {
    let active = istio
        .status
        .as_ref()
        .and_then(|s| s.active_revision_name.clone());
    let name = istio.name_any();
    let mut previous: Vec<&mizzen_api::IstioRevision> = mesh
        .revisions_of(&name)
        .filter(|r| Some(r.name_any()) != active && r.metadata.deletion_timestamp.is_none())
        .collect();
    previous.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
    match previous.last() {
        Some(r) => Ok(r.spec.version.clone()),
        None => Err(Refusal::wrap(format!(
            "Istio {} has no previous revision to return to ({}); give the version with --to \
             (InPlace: at most one minor below the running one)",
            istio.name_any(),
            match istio.spec.update_strategy.as_ref().map(|s| s.type_) {
                Some(UpdateStrategyType::RevisionBased) => "it was pruned",
                _ => "InPlace keeps none",
            }
        ))),
    }
}

/// What `mizzen upgrade` or `mizzen rollback` is asked to do.
pub struct Run<'a> {
    /// The Istio, when there is more than one.
    pub istio: Option<&'a str>,
    /// The target version; `None` for a rollback to the previous revision.
    pub to: Option<&'a str>,
    /// Forward or back.
    pub direction: Direction,
    /// Carry it out without asking.
    pub yes: bool,
    /// The wait limits and where to pause.
    pub settings: crate::upgrade::Settings,
}

/// `mizzen upgrade` and `mizzen rollback`: print the plan, ask (unless `yes`), carry it out.
pub async fn run(
    client: &kube::Client,
    catalog: &Catalog,
    run: Run<'_>,
    colour: bool,
    ask: impl FnOnce() -> Option<bool>,
    progress: &mut dyn crate::upgrade::Progress,
) -> anyhow::Result<String> {
    let mesh = Mesh::read(client)
        .await
        .map_err(|e| Refusal::wrap(e.to_string()))?;
    let chosen = choose_istio(&mesh, run.istio)?;
    let target = match run.to {
        Some(t) => t.to_string(),
        None => rollback_target(&mesh, chosen)?,
    };
    let current = current(&mesh, chosen, catalog)?;
    let mut plan = crate::plan::plan(catalog, &current, &target, run.direction)
        .map_err(|e| Refusal::wrap(e.to_string()))?;
    let platform = mizzen_runtime::detect_platform(client).await;
    crate::effects::fill(client, catalog, platform, &mesh, &mut plan).await?;
    eprint!("{}", plan_text(&plan, colour));
    if !plan.steps.is_empty() && !run.yes {
        match ask() {
            Some(true) => {}
            Some(false) => return Err(Refusal::wrap("not carried out: nothing was changed")),
            None => {
                return Err(Refusal::wrap(
                    "not carried out: there is no terminal to ask on; run again with --yes",
                ));
            }
        }
    }
    let outcome = crate::upgrade::run(client, &mesh, &plan, &run.settings, progress).await?;
    let verb = match run.direction {
        Direction::Upgrade => "upgrade",
        Direction::Rollback => "rollback",
    };
    Ok(match outcome {
        crate::upgrade::Outcome::Done => format!(
            "{verb} of Istio {} to {} done: everything runs {}\n",
            plan.istio, plan.to, plan.to
        ),
        crate::upgrade::Outcome::Paused(step) => format!(
            "{verb} of Istio {} to {} paused after the {} step; run `{}` to go on\n",
            plan.istio,
            plan.to,
            step.name(),
            run.settings.again
        ),
    })
}
