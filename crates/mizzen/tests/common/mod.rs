//! `mizzen run` as a host process against the test cluster, its metrics scraped, and kubectl.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mizzen_testcluster::Cluster;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The mizzen binary the end-to-end tests run as the operator: `$MIZZEN_E2E_BIN` when set
/// (`scripts/test.sh` sets it to the copy of the image's binary that `scripts/image.sh` leaves
/// at `target/image/mizzen`, built from the same checkout), else this build's.
pub fn mizzen_bin() -> PathBuf {
    match std::env::var_os("MIZZEN_E2E_BIN") {
        Some(bin) => {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "MIZZEN_E2E_BIN={} is not a file",
                bin.display()
            );
            bin
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_mizzen")),
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port of the server named `field` (`health_addr`, `metrics_addr`) in the start-up log
/// line of the `mizzen run` logging to `log`; `None` before it has logged it.
pub fn logged_port(log: &Path, field: &str) -> Option<u16> {
    let log = std::fs::read_to_string(log).ok()?;
    let line = log.lines().find(|l| l.contains("mizzen starting"))?;
    let after = &line[line.find(field)?..];
    let address = &after[after.find("127.0.0.1:")? + "127.0.0.1:".len()..];
    let digits: String = address.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A `mizzen run` process; killed when dropped. Its health and metrics servers listen on
/// ports the kernel picks (`127.0.0.1:0`), read back from its start-up log line: a port
/// picked by the test and freed before the operator binds it can meanwhile become a client
/// connection's local port (both come from the same range), and the operator would fail.
pub struct Operator {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Operator {
    /// Starts `mizzen run` with `kubeconfig` and extra `args`, logging to `dir/<name>.log`.
    pub fn start(name: &str, kubeconfig: &Path, dir: &Path, args: &[&str]) -> Self {
        Self::start_with(name, kubeconfig, dir, args, &[])
    }

    /// Like [`Operator::start`] with environment variables.
    pub fn start_with(
        name: &str,
        kubeconfig: &Path,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(mizzen_bin())
            .arg("run")
            .arg("--health-addr=127.0.0.1:0")
            .arg("--metrics-addr=127.0.0.1:0")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            name: name.into(),
            log,
        }
    }

    fn port(&self, field: &str) -> Option<u16> {
        logged_port(&self.log, field)
    }

    /// The scraped metrics, or `None` while the endpoint does not answer.
    pub fn scrape(&self) -> Option<Metrics> {
        http_get(self.port("metrics_addr")?, "/metrics").map(|b| Metrics::parse(&b.1))
    }

    /// `/readyz`'s status code and body.
    pub fn readyz(&self) -> Option<(u16, String)> {
        http_get(self.port("health_addr")?, "/readyz")
    }

    /// Whether it holds the leader lease (from `mizzen_leader`).
    pub fn leads(&self) -> bool {
        self.scrape()
            .is_some_and(|m| m.value("mizzen_leader", &[]) == Some(1.0))
    }

    /// Whether the process still runs.
    pub fn child_alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends a signal (e.g. "TERM", "KILL") to this process only.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.child.id());
    }

    /// Waits for the process to exit, up to `secs`.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// GET `path` on 127.0.0.1:`port`: status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// One sample of the text exposition format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Clone, Debug, Default)]
pub struct Metrics(pub Vec<Sample>);

impl Metrics {
    /// Parses the Prometheus/OpenMetrics text format (comments skipped).
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a numeric value"),
            });
        }
        Self(samples)
    }

    /// Samples of `name` whose labels include all of `labels`.
    pub fn select(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The sum of the matching samples, `None` when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let s = self.select(name, labels);
        (!s.is_empty()).then(|| s.iter().map(|s| s.value).sum())
    }

    /// API requests sent that are writes (not get, list, watch), by resource, leases apart.
    pub fn writes(&self) -> (f64, f64) {
        let mut other = 0.0;
        let mut leases = 0.0;
        for s in self.select("mizzen_kube_requests_total", &[]) {
            let verb = s.labels.get("verb").map(String::as_str).unwrap_or("");
            if matches!(verb, "get" | "list" | "watch") {
                continue;
            }
            if s.labels.get("resource").map(String::as_str) == Some("leases") {
                leases += s.value;
            } else {
                other += s.value;
            }
        }
        (other, leases)
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("closing quote");
        labels.insert(
            key.trim_start_matches(',').trim().to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    labels
}

/// Runs kubectl against `cluster` with `kubeconfig`'s credentials.
pub fn kubectl_output(cluster: &Cluster, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = cluster.kubectl();
    command.args(args);
    output_with_stdin(command, stdin)
}

/// Runs `command` with `stdin` (or an empty one), capturing stdout and stderr.
pub fn output_with_stdin(mut command: Command, stdin: Option<&[u8]>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        let mut input = input;
        input.write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs kubectl, returning stdout; panics on failure.
pub fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    kubectl_stdin(cluster, args, None)
}

/// Runs kubectl with `stdin`, returning stdout; panics on failure.
pub fn kubectl_stdin(cluster: &Cluster, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = kubectl_output(cluster, args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The stdout of `mizzen <args>` (this build's binary); panics on failure.
pub fn mizzen(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_mizzen"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mizzen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `kubectl patch <resource> --type=merge` setting `spec.version`, as the seed does.
pub fn set_version(cluster: &Cluster, resource: &str, version: &str) {
    let patch = format!(r#"{{"spec":{{"version":"{version}"}}}}"#);
    let (kind, name) = resource.split_once('/').expect("kind/name");
    kubectl(
        cluster,
        &["patch", kind, name, "--type=merge", "-p", &patch],
    );
}

/// Installs mizzen's CRDs with `mizzen crds | kubectl apply --server-side`.
pub fn install_crds(cluster: &Cluster) {
    let crds = mizzen(&["crds"]);
    kubectl_stdin(cluster, &["apply", "--server-side", "-f", "-"], Some(&crds));
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "istios.sailoperator.io",
            "istiorevisions.sailoperator.io",
            "istiorevisiontags.sailoperator.io",
            "istiocnis.sailoperator.io",
            "ztunnels.sailoperator.io",
        ],
    );
}

/// Runs a seed procedure script (`scripts/seed/<name>.sh`) with `args`, as an administrator;
/// returns its output, panics with it on failure.
pub fn seed(cluster: &Cluster, name: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(root().join(format!("scripts/seed/{name}.sh")))
        .args(args)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                cluster.bin_dir().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "seed {name} failed:\n{text}");
    text
}

/// Polls `f` every 100 ms until it returns `Some`, up to `secs`; panics with `what`.
pub fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs helm against `cluster`; returns stdout, panics with the output on failure.
pub fn helm(cluster: &Cluster, args: &[&str]) -> String {
    let out = Command::new(mizzen_testcluster::helm_bin())
        .args(args)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("mizzen-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("mizzen-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("mizzen-helm/data"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The install manifests' ServiceAccount and roles applied to the cluster (after `adjust` has
/// had its way with each role object), and a kubeconfig that authenticates as that account.
pub struct ShippedIdentity {
    /// The manifests' namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub account: String,
    /// The rules of its ClusterRole and Role, as applied.
    pub rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
    dir: tempfile::TempDir,
}

impl ShippedIdentity {
    /// Applies the manifests' Namespace, ServiceAccount and RBAC, each role through `adjust`.
    pub fn create(cluster: &Cluster, adjust: impl Fn(&mut serde_json::Value)) -> Self {
        let objects: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&String::from_utf8(mizzen(&["manifests"])).unwrap())
                .unwrap();
        let kind = |o: &serde_json::Value| o["kind"].as_str().unwrap_or_default().to_owned();
        let mut rbac: Vec<serde_json::Value> = objects
            .into_iter()
            .filter(|o| {
                matches!(
                    kind(o).as_str(),
                    "Namespace"
                        | "ServiceAccount"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "Role"
                        | "RoleBinding"
                )
            })
            .collect();
        let mut rules = Vec::new();
        for o in &mut rbac {
            if matches!(kind(o).as_str(), "ClusterRole" | "Role") {
                adjust(o);
                let role_rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
                    serde_json::from_value(o["rules"].clone()).unwrap_or_default();
                rules.extend(role_rules);
            }
        }
        let stream: String = rbac
            .iter()
            .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
            .collect();
        kubectl_stdin(
            cluster,
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(stream.as_bytes()),
        );
        let sa = rbac
            .iter()
            .find(|o| kind(o) == "ServiceAccount")
            .expect("the manifests have a ServiceAccount");
        let account = sa["metadata"]["name"].as_str().unwrap().to_owned();
        let namespace = sa["metadata"]["namespace"].as_str().unwrap().to_owned();
        // A kubeconfig with the ServiceAccount's token instead of the admin's certificate.
        let token = kubectl(
            cluster,
            &[
                "create",
                "token",
                &account,
                "-n",
                &namespace,
                "--duration=2h",
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let kc = dir.path().join("kubeconfig");
        std::fs::copy(cluster.kubeconfig_path(), &kc).unwrap();
        let kc_arg = format!("--kubeconfig={}", kc.display());
        let set_token = format!("--token={}", token.trim());
        kubectl(
            cluster,
            &[&kc_arg, "config", "set-credentials", "operator", &set_token],
        );
        kubectl(
            cluster,
            &[
                &kc_arg,
                "config",
                "set-context",
                "--current",
                "--user=operator",
            ],
        );
        Self {
            namespace,
            account,
            rules,
            dir,
        }
    }

    /// The kubeconfig authenticating as the ServiceAccount.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

/// Memory and CPU of one process, from `/proc`.
#[derive(Clone, Copy, Debug)]
pub struct ProcessStats {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `VmHWM` (peak RSS), KiB.
    pub hwm_kib: u64,
    /// `utime + stime` in seconds.
    pub cpu_secs: f64,
}

/// The clock ticks per second that `/proc/<pid>/stat` counts in (`getconf CLK_TCK`, else 100).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

impl ProcessStats {
    /// Reads `/proc/<pid>/status` (VmRSS, VmHWM) and `/proc/<pid>/stat` (utime, stime).
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| anyhow::anyhow!("reading /proc/{pid}/status: {e}"))?;
        let kib = |field: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| anyhow::anyhow!("reading /proc/{pid}/stat: {e}"))?;
        // The command name (field 2) is in parentheses and may hold spaces: count fields after
        // the last ')'. There, field 3 (state) is index 0, so utime (14) and stime (15) are 11
        // and 12.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow::anyhow!("malformed /proc/{pid}/stat"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<f64> {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .ok_or_else(|| anyhow::anyhow!("malformed /proc/{pid}/stat"))
        };
        Ok(Self {
            rss_kib: kib("VmRSS:")?,
            hwm_kib: kib("VmHWM:")?,
            cpu_secs: (ticks(11)? + ticks(12)?) / clock_ticks(),
        })
    }
}

/// Prints a benchmark's progress line on stderr, stamped with the time since it started.
pub fn progress(message: impl std::fmt::Display) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>7.1}s] {message}", start.elapsed().as_secs_f64());
}

/// A benchmark binary's `main`: runs `run` on a multi-threaded runtime, and says `<name>
/// benchmark failed: …` with a failure exit status when it fails.
pub fn bench_main<F>(name: &str, run: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    progress(format!("{name} benchmark starting"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} benchmark failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A copy of the cluster's kubeconfig at `file` that authenticates as the ServiceAccount
/// `namespace/account`, with a token from the TokenRequest API (what a pod gets mounted).
pub fn account_kubeconfig(
    cluster: &Cluster,
    namespace: &str,
    account: &str,
    file: &Path,
) -> PathBuf {
    let token = kubectl(
        cluster,
        &["create", "token", account, "-n", namespace, "--duration=1h"],
    );
    std::fs::copy(cluster.kubeconfig_path(), file).unwrap();
    let arg = format!("--kubeconfig={}", file.display());
    kubectl(
        cluster,
        &[
            &arg,
            "config",
            "set-credentials",
            account,
            &format!("--token={}", token.trim()),
        ],
    );
    kubectl(
        cluster,
        &[
            &arg,
            "config",
            "set-context",
            "--current",
            &format!("--user={account}"),
        ],
    );
    file.to_path_buf()
}
