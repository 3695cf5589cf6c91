//! `mizzen`: the operator and its command-line companion. This binary only parses arguments
//! and wires the libraries together.

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use mizzen_catalog::Catalog;

mod companion;
mod dev;
mod generate;
mod operator;

/// Installs and upgrades Istio in ambient mode (the sailoperator.io/v1 API).
#[derive(Parser, Debug)]
#[command(name = "mizzen", version, about)]
struct Cli {
    /// Version catalog to use instead of the embedded one.
    #[arg(long, global = true, env = "MIZZEN_VERSIONS_FILE")]
    versions_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MIZZEN_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every CustomResourceDefinition mizzen serves, as YAML.
    Crds,
    /// Print every object mizzen would apply for the resources in a file (offline, like `helm template`).
    Render(companion::RenderArgs),
    /// Run the operator against the cluster of the current kubeconfig.
    Run(operator::RunArgs),
    /// A local Kubernetes control plane with fake nodes, for demos and development.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Print the manifests that install mizzen (Namespace, CRDs, RBAC, Deployment, ...).
    Manifests(generate::ManifestsArgs),
    /// Write the Helm chart of mizzen into a directory.
    Chart(generate::OutArgs),
    /// Write the OLM bundle and file-based catalog of mizzen into a directory.
    Bundle(generate::OutArgs),
    /// Show the mesh lifecycle: Istios and revisions, istio-cni, ztunnel, tags, skew, next step.
    Status(companion::StatusArgs),
    /// Show what an upgrade would do, step by step, checked against the rules.
    Plan(companion::PlanArgs),
    /// Carry out the plan: one resource at a time, each step gated on Ready.
    Upgrade(companion::UpgradeArgs),
    /// Go back: to the previous revision (RevisionBased) or a version given with --to.
    Rollback(companion::RollbackArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `mizzen --version`: the crate version, the commit, and the Istio version the embedded
/// catalog installs when `spec.version` is omitted.
fn version() -> String {
    let default = Catalog::embedded()
        .map(|c| c.default_version().to_string())
        .unwrap_or_else(|e| format!("invalid catalog: {e}"));
    format!(
        "{} (commit {}, default Istio version: {default})",
        env!("CARGO_PKG_VERSION"),
        env!("MIZZEN_GIT_COMMIT")
    )
}

fn main() -> anyhow::Result<()> {
    let mut command = Cli::command().version(version());
    // Installed as `kubectl-mizzen` (a kubectl plugin), it is run as `kubectl mizzen`.
    if std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|f| f.to_owned()))
        .is_some_and(|f| f == "kubectl-mizzen")
    {
        command = command.bin_name("kubectl mizzen");
    }
    let matches = command.get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if matches!(cli.command, Command::Run(_)) {
        mizzen_runtime::limit_malloc_arenas();
    }
    mizzen_runtime::init_logging(match cli.log_format {
        LogFormat::Text => mizzen_runtime::LogFormat::Text,
        LogFormat::Json => mizzen_runtime::LogFormat::Json,
    });
    match cli.command {
        Command::Crds => {
            let catalog = load_catalog(cli.versions_file.as_deref())?;
            print!(
                "{}",
                mizzen_api::crds::crds_yaml(&mizzen_controller::crd_versions(&catalog))
            );
            Ok(())
        }
        Command::Render(args) => {
            companion::render(args, &load_catalog(cli.versions_file.as_deref())?)
        }
        Command::Dev(cmd) => dev::run(cmd),
        Command::Manifests(args) => {
            let catalog = load_catalog(cli.versions_file.as_deref())?;
            print!(
                "{}",
                generate::manifests(args, cli.versions_file.as_deref(), &catalog)?
            );
            Ok(())
        }
        Command::Chart(args) => generate::chart(args),
        Command::Bundle(args) => {
            generate::bundle(args, &load_catalog(cli.versions_file.as_deref())?)
        }
        Command::Status(args) => {
            companion::status(args, &load_catalog(cli.versions_file.as_deref())?)
        }
        Command::Plan(args) => companion::plan(args, &load_catalog(cli.versions_file.as_deref())?),
        Command::Upgrade(args) => {
            companion::upgrade(args, &load_catalog(cli.versions_file.as_deref())?)
        }
        Command::Rollback(args) => {
            companion::rollback(args, &load_catalog(cli.versions_file.as_deref())?)
        }
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "mizzen", &mut std::io::stdout());
            Ok(())
        }
        Command::Run(args) => {
            operator::run_operator(args, load_catalog(cli.versions_file.as_deref())?)
        }
    }
}

/// The embedded catalog, or the user's file.
fn load_catalog(file: Option<&std::path::Path>) -> anyhow::Result<Catalog> {
    Ok(match file {
        Some(f) => Catalog::from_file(f)?,
        None => Catalog::embedded().context("the embedded version catalog is invalid")?,
    })
}
