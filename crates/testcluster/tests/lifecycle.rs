//! Cluster lifecycle: no processes outlive a dead test process, and detached clusters outlive
//! their handle until `Cluster::stop_dir`. Each test starts its own 1-node cluster; they take
//! turns so that at most one extra cluster runs at a time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use mizzen_testcluster::{Cluster, Error, Options};

/// Set in the child test process of `watchdog_stops_components_of_a_dead_test_process`.
const CHILD_ENV: &str = "MIZZEN_TESTCLUSTER_WATCHDOG_CHILD";

/// One cluster start at a time in this binary.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn one_node() -> Options {
    Options {
        nodes: 1,
        ..Options::default()
    }
}

/// Whether `pid` is a live process whose command line names `dir` (a zombie counts as dead).
fn alive_in(pid: u32, dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&format!("{}/", dir.display())))
        .unwrap_or(false)
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
fn process_group(pid: u32) -> Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').context("stat format")?.1;
    Ok(after_name
        .split_whitespace()
        .nth(2)
        .context("pgrp field")?
        .parse()?)
}

async fn wait_until_gone(pids: &[u32], dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.iter().any(|&pid| alive_in(pid, dir)) || dir.exists() {
        if Instant::now() > deadline {
            let left: Vec<_> = pids.iter().filter(|&&p| alive_in(p, dir)).collect();
            bail!(
                "after 30 s: processes left {left:?}, dir exists: {}",
                dir.exists()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Not a test on its own: the body of the child process started by
/// `watchdog_stops_components_of_a_dead_test_process`. It starts a cluster, keeps it in a
/// `static` (never dropped), prints what the parent needs, and dies by a failed test.
#[tokio::test]
async fn child_starts_cluster_and_dies() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    static LEAKED: OnceLock<Cluster> = OnceLock::new();
    let started = Cluster::start(one_node()).await.expect("child cluster");
    let cluster = LEAKED.get_or_init(|| started);
    println!("DIR {}", cluster.dir().display());
    for p in cluster.pids() {
        println!("PID {} {}", p.name, p.pid);
    }
    println!("READY");
    tokio::time::sleep(Duration::from_secs(2)).await;
    panic!("the test process dies with its cluster in a never-dropped static");
}

#[tokio::test]
async fn watchdog_stops_components_of_a_dead_test_process() -> Result<()> {
    let _turn = TURN.lock().await;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_starts_cluster_and_dies",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    // The child's stderr holds its intended panic; show it only if something goes wrong.
    let mut stderr = child.stderr.take().context("child stderr")?;
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    // Read the child's report while it is alive, and check its processes then.
    let (dir, pids, alive_while_running) = tokio::task::spawn_blocking(move || {
        let mut dir = None;
        let mut pids = Vec::new();
        let mut alive = false;
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            // The harness may print "test <name> ... " before the first line.
            if let Some((_, d)) = line.split_once("DIR ") {
                dir = Some(PathBuf::from(d));
            } else if let Some(rest) = line.strip_prefix("PID ") {
                let pid: u32 = rest
                    .rsplit(' ')
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .unwrap_or(0);
                pids.push(pid);
            } else if line == "READY"
                && let Some(d) = &dir
            {
                alive = pids.iter().all(|&pid| alive_in(pid, d));
            }
        }
        (dir, pids, alive)
    })
    .await?;
    let status = child.wait()?;
    let stderr = stderr.join().unwrap_or_default();
    ensure!(
        !status.success(),
        "the child test was meant to fail; its stderr:\n{stderr}"
    );
    let dir = dir.with_context(|| {
        format!(
            "the child printed no state directory (did its cluster start?); its stderr:\n{stderr}"
        )
    })?;
    assert_eq!(
        pids.len(),
        5,
        "etcd, apiserver, controller-manager, scheduler, kwok"
    );
    assert!(
        alive_while_running,
        "the components ran while the child lived"
    );
    wait_until_gone(&pids, &dir).await?;
    Ok(())
}

#[tokio::test]
async fn detached_cluster_outlives_its_handle_until_stop_dir() -> Result<()> {
    let _turn = TURN.lock().await;
    let base = tempfile::tempdir()?;
    let dir = base.path().canonicalize()?.join("dev-cluster");
    let cluster = Cluster::start(Options {
        dir: Some(dir.clone()),
        detach: true,
        ..one_node()
    })
    .await?;
    assert!(cluster.watchdog_pid().is_none());
    let pids: Vec<u32> = cluster.pids().iter().map(|p| p.pid).collect();
    for &pid in &pids {
        assert_eq!(
            process_group(pid)?,
            pid,
            "each detached process leads its own group"
        );
    }
    drop(cluster);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let running = Cluster::running_pids(&dir);
    assert_eq!(running.iter().map(|p| p.pid).collect::<Vec<_>>(), pids);

    // The cluster is still usable through the kubeconfig in its directory.
    let kubeconfig = Kubeconfig::read_from(Cluster::kubeconfig_in(&dir))?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let nodes: Api<Node> = Api::all(kube::Client::try_from(config)?);
    assert_eq!(nodes.list(&ListParams::default()).await?.items.len(), 1);

    // A second start in the same directory is refused while it runs.
    let again = Cluster::start(Options {
        dir: Some(dir.clone()),
        ..one_node()
    })
    .await;
    assert!(
        matches!(&again, Err(Error::StateDir { problem, .. }) if problem.contains("already running")),
        "{again:?}"
    );

    Cluster::stop_dir(&dir)?;
    wait_until_gone(&pids, &dir).await?;
    Ok(())
}

#[tokio::test]
async fn failed_start_names_component_and_keeps_logs() -> Result<()> {
    let _turn = TURN.lock().await;
    let real = tokio::task::spawn_blocking(mizzen_testcluster::ClusterBinaries::locate).await??;
    // A bin directory whose kube-apiserver exits at once.
    let fake = tempfile::tempdir()?;
    for name in mizzen_testcluster::ClusterBinaries::NAMES {
        std::os::unix::fs::symlink(real.path(name), fake.path().join(name))?;
    }
    std::fs::remove_file(fake.path().join("kube-apiserver"))?;
    std::fs::write(
        fake.path().join("kube-apiserver"),
        "#!/bin/sh\necho 'fake apiserver: refusing to start' >&2\nexit 7\n",
    )?;
    std::fs::set_permissions(
        fake.path().join("kube-apiserver"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let result = Cluster::start(Options {
        binaries: Some(mizzen_testcluster::ClusterBinaries::from_dir(fake.path())?),
        timeout: Duration::from_secs(20),
        ..one_node()
    })
    .await;
    let Err(Error::Component {
        component,
        problem,
        dir,
        tail,
        log,
    }) = result
    else {
        bail!("expected a component error, got {result:?}");
    };
    assert_eq!(component, "kube-apiserver");
    assert!(problem.contains("exited early"), "{problem}");
    assert!(tail.contains("refusing to start"), "{tail}");
    assert!(log.exists(), "the log is kept");
    // etcd was started and must have been stopped.
    let etcd_log = dir.join("logs/etcd.log");
    assert!(etcd_log.exists());
    assert!(Cluster::running_pids(&dir).is_empty());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
