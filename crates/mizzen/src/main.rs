//! `mizzen`: the operator and its command-line companion. This binary only parses arguments
//! and wires the libraries together.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mizzen_catalog::Catalog;

mod dev;
mod operator;

/// Installs and upgrades Istio in ambient mode (the sailoperator.io/v1 API).
#[derive(Parser, Debug)]
#[command(name = "mizzen", version, about)]
struct Cli {
    /// Version catalog to use instead of the embedded one.
    #[arg(long, global = true, env = "MIZZEN_VERSIONS_FILE")]
    versions_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every CustomResourceDefinition mizzen serves, as YAML.
    Crds,
    /// Run the operator against the cluster of the current kubeconfig.
    Run(operator::RunArgs),
    /// A local Kubernetes control plane with fake nodes, for demos and development.
    #[command(subcommand)]
    Dev(dev::DevCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Crds => {
            let catalog = load_catalog(cli.versions_file.as_deref())?;
            print!(
                "{}",
                mizzen_api::crds::crds_yaml(&mizzen_controller::crd_versions(&catalog))
            );
            Ok(())
        }
        Command::Dev(cmd) => dev::run(cmd),
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
