//! `mizzen status`, `plan`, `upgrade`, `rollback`, `render`: the flags, handed to `mizzen-companion`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use mizzen_catalog::Catalog;
use mizzen_companion::commands::{self, Refusal};
use mizzen_companion::output::{BarProgress, Format, LineProgress};
use mizzen_companion::plan::{Direction, StepKind};
use mizzen_companion::render::RenderFileError;
use mizzen_companion::upgrade::{Progress, Settings};

/// The cluster to talk to (as kubectl's flags of the same names).
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long)]
    context: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutputArg {
    Text,
    Json,
    Yaml,
}

/// Options of `mizzen status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputArg::Text)]
    output: OutputArg,
}

/// Options of `mizzen plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The version to upgrade to (vX.Y.Z or vX.Y-latest).
    #[arg(long)]
    to: String,
    /// The Istio to upgrade (needed when there is more than one).
    #[arg(long)]
    istio: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputArg::Text)]
    output: OutputArg,
}

fn format(o: OutputArg) -> Format {
    match o {
        OutputArg::Text => Format::Text,
        OutputArg::Json => Format::Json,
        OutputArg::Yaml => Format::Yaml,
    }
}

/// Colour only on a terminal, and not when NO_COLOR is set.
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Prints what a command returned; a refusal (or a file `render` refuses) is one line on
/// stderr and exit status 1.
fn finish(result: anyhow::Result<String>) -> anyhow::Result<()> {
    match result {
        Ok(out) => {
            print!("{out}");
            Ok(())
        }
        Err(e) if e.is::<Refusal>() || e.is::<RenderFileError>() => {
            eprintln!("mizzen: {e}");
            std::process::exit(1);
        }
        Err(e) => Err(e),
    }
}

/// `mizzen status`.
pub fn status(args: StatusArgs, catalog: &Catalog) -> anyhow::Result<()> {
    finish(runtime()?.block_on(async {
        let client = commands::connect(
            args.cluster.kubeconfig.as_deref(),
            args.cluster.context.as_deref(),
        )
        .await?;
        commands::status(&client, catalog, format(args.output), colour()).await
    }))
}

/// `mizzen plan`.
pub fn plan(args: PlanArgs, catalog: &Catalog) -> anyhow::Result<()> {
    finish(runtime()?.block_on(async {
        let client = commands::connect(
            args.cluster.kubeconfig.as_deref(),
            args.cluster.context.as_deref(),
        )
        .await?;
        commands::plan(
            &client,
            catalog,
            args.istio.as_deref(),
            &args.to,
            format(args.output),
            colour(),
        )
        .await
    }))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StepArg {
    ControlPlane,
    IstioCni,
    Ztunnel,
}

/// A duration such as `90s`, `5m` or `1h30m`.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration such as 90s, 5m or 1h30m: {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))
}

/// The flags `upgrade` and `rollback` share.
#[derive(Args, Debug)]
pub struct CarryOutArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The Istio to change (needed when there is more than one).
    #[arg(long)]
    istio: Option<String>,
    /// Carry the plan out without asking.
    #[arg(long, short)]
    yes: bool,
    /// How long each step may take to become Ready.
    #[arg(long, default_value = "10m", value_parser = duration)]
    timeout: std::time::Duration,
    /// Stop after this step (run the command again to go on).
    #[arg(long, value_enum)]
    pause_after: Option<StepArg>,
}

/// Options of `mizzen upgrade`.
#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// The version to upgrade to (vX.Y.Z or vX.Y-latest).
    #[arg(long)]
    to: String,
    #[command(flatten)]
    common: CarryOutArgs,
}

/// Options of `mizzen rollback`.
#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The version to return to (default: the previous revision's, while it exists).
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    common: CarryOutArgs,
}

/// Asks on the terminal whether to go on; `None` when there is no terminal.
fn ask() -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("Carry out this plan? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).ok()?;
    Some(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn carry_out(
    args: CarryOutArgs,
    catalog: &Catalog,
    to: Option<String>,
    direction: Direction,
) -> anyhow::Result<()> {
    let CarryOutArgs {
        cluster,
        istio,
        yes,
        timeout,
        pause_after,
    } = args;
    let verb = match direction {
        Direction::Upgrade => "upgrade",
        Direction::Rollback => "rollback",
    };
    let mut again = format!("mizzen {verb}");
    if let Some(t) = &to {
        again += &format!(" --to {t}");
    }
    if let Some(i) = &istio {
        again += &format!(" --istio {i}");
    }
    let settings = Settings {
        timeout,
        pause_after: pause_after.map(|p| match p {
            StepArg::ControlPlane => StepKind::ControlPlane,
            StepArg::IstioCni => StepKind::IstioCni,
            StepArg::Ztunnel => StepKind::Ztunnel,
        }),
        poll: std::time::Duration::from_millis(500),
        again,
    };
    let mut progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(BarProgress::new())
    } else {
        Box::new(LineProgress::default())
    };
    finish(runtime()?.block_on(async {
        let client =
            commands::connect(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await?;
        let run = commands::Run {
            istio: istio.as_deref(),
            to: to.as_deref(),
            direction,
            yes,
            settings,
        };
        // Ctrl-C between requests: each patch is one request, so nothing is half-patched.
        tokio::select! {
            r = commands::run(&client, catalog, run, colour(), ask, progress.as_mut()) => r,
            _ = tokio::signal::ctrl_c() => Err(Refusal::wrap(format!(
                "interrupted; every resource is either patched or not: run `mizzen {verb}` \
                 again to go on from where the cluster is"
            ))),
        }
    }))
}

/// `mizzen upgrade`.
pub fn upgrade(args: UpgradeArgs, catalog: &Catalog) -> anyhow::Result<()> {
    carry_out(args.common, catalog, Some(args.to), Direction::Upgrade)
}

/// `mizzen rollback`.
pub fn rollback(args: RollbackArgs, catalog: &Catalog) -> anyhow::Result<()> {
    carry_out(args.common, catalog, args.to, Direction::Rollback)
}

/// Options of `mizzen render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// File of Istio, IstioRevision, IstioRevisionTag, IstioCNI, ZTunnel (and RolloutPolicy)
    /// resources; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// The platform to render for.
    #[arg(long, value_enum, default_value_t = RenderPlatform::Kubernetes)]
    platform: RenderPlatform,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RenderPlatform {
    Kubernetes,
    Openshift,
}

/// `mizzen render -f FILE`: the objects as one multi-document YAML stream.
pub fn render(args: RenderArgs, catalog: &Catalog) -> anyhow::Result<()> {
    let yaml = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let platform = match args.platform {
        RenderPlatform::Kubernetes => mizzen_render::Platform::Kubernetes,
        RenderPlatform::Openshift => mizzen_render::Platform::OpenShift,
    };
    finish(
        mizzen_companion::render::render_file(&yaml, catalog, platform)
            .map_err(anyhow::Error::from)
            .and_then(|objects| Ok(mizzen_companion::render::to_yaml(&objects)?)),
    )
}
