//! `mizzen run` as a process: it waits for its CRDs instead of crashing, reports readiness on
//! /readyz, and stops cleanly on SIGTERM.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::http_get;
use mizzen_testcluster::shared;

fn get(port: u16, path: &str) -> Option<String> {
    http_get(port, path).map(|(code, _)| code.to_string())
}

fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn waits_for_crds_reports_ready_and_stops_on_sigterm() {
    let cluster = shared().await;
    // Logs go to a file: a pipe nobody reads while the process runs could fill and block it.
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("mizzen.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mizzen"))
        .args([
            "run",
            "--health-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    // The port the kernel picked, from the start-up log line.
    let port = common::until(30, "the start-up log line", || {
        common::logged_port(&log_path, "health_addr")
    });

    // No CRDs yet: alive, not ready, still running.
    until(30, "/healthz", || {
        get(port, "/healthz").is_some_and(|l| l.contains("200"))
    });
    std::thread::sleep(Duration::from_secs(2));
    until(10, "/readyz 503 without CRDs", || {
        get(port, "/readyz").is_some_and(|l| l.contains("503"))
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "mizzen run exited without its CRDs"
    );

    let crds = Command::new(env!("CARGO_BIN_EXE_mizzen"))
        .arg("crds")
        .output()
        .unwrap()
        .stdout;
    let mut apply = cluster
        .kubectl()
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    apply.stdin.take().unwrap().write_all(&crds).unwrap();
    assert!(apply.wait().unwrap().success());
    until(60, "/readyz after the CRDs appear", || {
        get(port, "/readyz").is_some_and(|l| l.contains("200"))
    });

    // A kind whose watch cannot be served makes /readyz false, naming it.
    let deleted = cluster
        .kubectl()
        .args(["delete", "crd", "ztunnels.sailoperator.io", "--wait"])
        .status()
        .unwrap();
    assert!(deleted.success());
    until(60, "/readyz 503 while the ZTunnel watch fails", || {
        get(port, "/readyz").is_some_and(|l| l.contains("503"))
    });
    let (_, body) = http_get(port, "/readyz").unwrap();
    assert!(body.contains("watch ztunnels failing"), "{body}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "mizzen run did not stop on SIGTERM: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("stopped {:.1?} after SIGTERM", started.elapsed());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(
        log.contains("waiting for the sailoperator.io CRDs"),
        "{log}"
    );
    assert!(
        log.contains("SIGTERM") && log.contains("controllers stopped"),
        "{log}"
    );
}
