//! `mizzen dev`: a local control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and KWOK fake nodes) for demos and development. Its state lives in one
//! directory, which `mizzen dev down` removes.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use mizzen_testcluster::{Cluster, ClusterBinaries, Options};

/// `mizzen dev` subcommands.
#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Start a local control plane with fake nodes; it keeps running after this command ends.
    Up {
        /// Number of fake nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[command(flatten)]
        state: StateDir,
    },
    /// Stop the local control plane and remove its state directory.
    Down {
        #[command(flatten)]
        state: StateDir,
    },
    /// Print the shell exports that point kubectl at the local control plane.
    Env {
        #[command(flatten)]
        state: StateDir,
    },
}

/// Where the local control plane keeps its state.
#[derive(Args, Debug)]
pub struct StateDir {
    /// State directory (default: $XDG_STATE_HOME/mizzen/dev, or ~/.local/state/mizzen/dev).
    #[arg(long = "dir", env = "MIZZEN_DEV_DIR")]
    dir: Option<PathBuf>,
}

impl StateDir {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let base = match std::env::var_os("XDG_STATE_HOME") {
            Some(s) => PathBuf::from(s),
            None => PathBuf::from(
                std::env::var_os("HOME")
                    .ok_or_else(|| anyhow::anyhow!("HOME is not set; pass --dir"))?,
            )
            .join(".local/state"),
        };
        Ok(base.join("mizzen/dev"))
    }
}

/// Runs a `mizzen dev` subcommand.
pub fn run(cmd: DevCommand) -> anyhow::Result<()> {
    match cmd {
        DevCommand::Up { nodes, state } => up(nodes, &state.path()?),
        DevCommand::Down { state } => {
            let dir = state.path()?;
            stop_operator(&dir);
            Cluster::stop_dir(&dir)?;
            eprintln!(
                "stopped the local control plane and removed {}",
                dir.display()
            );
            Ok(())
        }
        DevCommand::Env { state } => {
            let dir = state.path()?;
            anyhow::ensure!(
                !Cluster::running_pids(&dir).is_empty(),
                "no local control plane runs in {}; start one with `mizzen dev up`",
                dir.display()
            );
            print!("{}", env_exports(&dir, &ClusterBinaries::locate()?));
            Ok(())
        }
    }
}

fn up(nodes: usize, dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(nodes >= 1, "--nodes must be at least 1");
    if !Cluster::running_pids(dir).is_empty() {
        anyhow::bail!(
            "a local control plane already runs in {}; `mizzen dev down` stops it",
            dir.display()
        );
    }
    eprintln!(
        "starting a local control plane with {nodes} fake nodes in {} ...",
        dir.display()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let cluster = runtime.block_on(Cluster::start(Options {
        nodes,
        dir: Some(dir.to_path_buf()),
        detach: true,
        ..Options::default()
    }))?;
    eprintln!(
        "ready in {:.1?}: {}",
        cluster.startup_time(),
        cluster.node_names().join(", ")
    );
    eprintln!("to use it:   eval \"$(mizzen dev env)\"   (or the exports below)");
    eprintln!("to stop it:  mizzen dev down");
    let binaries = ClusterBinaries::from_dir(cluster.bin_dir())?;
    print!("{}", env_exports(cluster.dir(), &binaries));
    Ok(())
}

/// Where a demo records the pid of the `mizzen run` it started against the local cluster.
pub const OPERATOR_PID_FILE: &str = "operator.pid";

/// Stops the `mizzen run` recorded in the state directory, if it still is one (checked by its
/// command line, so a reused pid is never signalled).
fn stop_operator(dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(dir.join(OPERATOR_PID_FILE)) else {
        return;
    };
    let pid = pid.trim();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_mizzen_run =
        args.first().is_some_and(|a| a.ends_with(b"mizzen")) && args.get(1) == Some(&&b"run"[..]);
    if is_mizzen_run {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", pid])
            .status();
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("stopped mizzen run (pid {pid})");
    }
}

/// Shell exports: the kubeconfig, and the kubectl that matches the control plane first on PATH.
fn env_exports(dir: &Path, binaries: &ClusterBinaries) -> String {
    format!(
        "export KUBECONFIG={}\nexport PATH={}:\"$PATH\"\n",
        Cluster::kubeconfig_in(dir).display(),
        binaries.dir().display()
    )
}
