//! A real istiod on what mizzen renders (issue 9, item 9): `pilot-discovery` (built by
//! `tools/istiod/build.sh` from the istio.io/istio pseudo-version pinned there) runs as a host
//! process with the args, environment and mesh configuration of the Deployment and ConfigMaps
//! mizzen applied, authenticated with a token of the ServiceAccount mizzen created for it,
//! listening on 127.0.0.1 only. For the newest catalog version, InPlace and RevisionBased, it
//! must become ready, patch the webhooks' `caBundle` without mizzen and istiod writing over
//! each other, deploy a waypoint and an `istio`-class Gateway from mizzen's templates, be
//! refused nothing by the RBAC mizzen rendered, and connect to nothing but the local API
//! server.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Operator, account_kubeconfig, free_port, http_get, install_crds, kubectl, kubectl_output,
    kubectl_stdin, output_with_stdin, until,
};
use mizzen_testcluster::{Cluster, istiod_bin, shared};
use serde_json::Value;

/// The istiod process; killed (by its pid) when dropped.
struct Istiod {
    child: Child,
    http: u16,
    /// The webhook server (injection and validation), TLS with istiod's own certificate.
    https: u16,
    log: std::path::PathBuf,
}

impl Drop for Istiod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Istiod {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(cluster, &all)).unwrap()
}

/// The objects of one revision that the test reads.
struct Names {
    namespace: String,
    deployment: String,
    config: String,
    account: String,
    validator: String,
    injector: String,
}

impl Names {
    /// Upstream's names: unsuffixed for the revision `default`.
    fn of(revision: &str, namespace: &str) -> Self {
        let suffix = |prefix: &str| match revision {
            "default" => prefix.to_owned(),
            r => format!("{prefix}-{r}"),
        };
        Self {
            namespace: namespace.to_owned(),
            deployment: suffix("istiod"),
            config: suffix("istio"),
            account: suffix("istiod"),
            validator: match revision {
                "default" => format!("istio-validator-{namespace}"),
                r => format!("istio-validator-{r}-{namespace}"),
            },
            injector: match revision {
                "default" => "istio-sidecar-injector".to_owned(),
                r => format!("istio-sidecar-injector-{r}-{namespace}"),
            },
        }
    }
}

/// Starts istiod on what mizzen rendered for one revision (`names`): the
/// Deployment's args and literal env, the `istio` ConfigMap's mesh files, the mounted
/// directories materialised under `dir` (its working directory), and addresses on 127.0.0.1.
fn start_istiod(cluster: &Cluster, names: &Names, dir: &Path) -> Istiod {
    let Names {
        namespace,
        deployment,
        config,
        account,
        ..
    } = names;
    let d = json(cluster, &["get", "deployment", deployment, "-n", namespace]);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    let cm = json(cluster, &["get", "configmap", config, "-n", namespace]);
    let mesh = dir.join("mesh");
    let networks = dir.join("meshNetworks");
    std::fs::write(&mesh, cm["data"]["mesh"].as_str().unwrap()).unwrap();
    std::fs::write(&networks, cm["data"]["meshNetworks"].as_str().unwrap_or("")).unwrap();
    let kubeconfig =
        account_kubeconfig(cluster, namespace, account, &dir.join("istiod.kubeconfig"));

    let mut command = Command::new(istiod_bin());
    // The rendered args, with every listener moved to 127.0.0.1.
    let http = free_port();
    let https = free_port();
    for arg in container["args"].as_array().unwrap() {
        let arg = arg.as_str().unwrap();
        if !arg.starts_with("--monitoringAddr") {
            command.arg(arg);
        }
    }
    command
        .arg(format!("--meshConfig={}", mesh.display()))
        .arg(format!("--networksConfig={}", networks.display()))
        .arg(format!("--httpAddr=127.0.0.1:{http}"))
        .arg(format!("--grpcAddr=127.0.0.1:{}", free_port()))
        .arg(format!("--secureGRPCAddr=127.0.0.1:{}", free_port()))
        .arg(format!("--httpsAddr=127.0.0.1:{https}"))
        .arg(format!("--monitoringAddr=127.0.0.1:{}", free_port()))
        .arg("--ctrlz_address=127.0.0.1")
        .arg(format!("--ctrlz_port={}", free_port()));
    // The rendered literal env; what the kubelet would fill in, filled in here.
    for e in container["env"].as_array().unwrap() {
        if let Some(v) = e["value"].as_str() {
            command.env(e["name"].as_str().unwrap(), v);
        }
    }
    command
        .env("POD_NAME", format!("{deployment}-host"))
        .env("POD_NAMESPACE", namespace)
        .env("SERVICE_ACCOUNT", account)
        // In a pod: the in-cluster credentials of the ServiceAccount; here the same, as a file.
        .env("KUBECONFIG", &kubeconfig)
        // Platform detection off: nothing to probe outside the cluster.
        .env("CLOUD_PLATFORM", "none");
    let log = dir.join("istiod.log");
    let child = command
        .current_dir(dir)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .unwrap();
    Istiod {
        child,
        http,
        https,
        log,
    }
}

/// Starts istiod and waits (up to 120 s) for `/ready`. Its ports are picked free and released
/// before istiod binds them, so another process can take one in between; istiod then exits,
/// and it is started again on fresh ports (three attempts), as the test cluster does.
fn start_ready(cluster: &Cluster, names: &Names, dir: &Path, strategy: &str) -> Istiod {
    for attempt in 1..=3 {
        let mut istiod = start_istiod(cluster, names, dir);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if http_get(istiod.http, "/ready").is_some_and(|(code, _)| code == 200) {
                eprintln!(
                    "{strategy}: istiod ready in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                return istiod;
            }
            if let Ok(Some(status)) = istiod.child.try_wait() {
                let log = istiod.log();
                let clash = log.contains("address already in use");
                assert!(
                    clash && attempt < 3,
                    "istiod exited ({status}) before it was ready:\n{log}"
                );
                eprintln!("{strategy}: a port istiod was given was taken meanwhile; again");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "istiod not ready in 120 s:\n{}",
            istiod.log()
        );
    }
    unreachable!("every attempt returns or fails")
}

/// The remote addresses of `pid`'s TCP sockets that are not listening (from `/proc`): every
/// connection the process has open or is opening.
fn remote_addresses(pid: u32) -> Vec<String> {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    l.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[2] remote address, f[3] state (0A: listening), f[9] inode
            if f.len() > 9 && f[3] != "0A" && inodes.contains(f[9]) {
                out.push(f[2].to_owned());
            }
        }
    }
    out
}

/// Whether a `/proc/net/tcp{,6}` address (hex, host byte order per 32-bit word) is loopback:
/// 127.0.0.0/8, `::1`, or `::ffff:127.x.x.x`.
fn loopback(address: &str) -> bool {
    let ip = address.split(':').next().unwrap_or_default();
    match ip.len() {
        8 => ip.ends_with("7F"),
        32 => {
            ip == "00000000000000000000000001000000"
                || (ip.starts_with("0000000000000000FFFF0000") && ip.ends_with("7F"))
        }
        _ => false,
    }
}

/// The `caBundle` and `failurePolicy` of each webhook of a webhook configuration.
fn webhooks(cluster: &Cluster, kind: &str, name: &str) -> Vec<(bool, String)> {
    json(cluster, &["get", kind, name])["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["clientConfig"]["caBundle"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty()),
                w["failurePolicy"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_real_istiod_runs_on_mizzens_render() {
    let cluster = shared().await;
    let dir = tempfile::tempdir().unwrap();
    install_crds(cluster);
    let _operator = Operator::start("istiod-test", &cluster.kubeconfig_path(), dir.path(), &[]);
    // The Gateway API CRDs of the sigs.k8s.io/gateway-api module istiod is built with.
    let crds = std::fs::read_to_string(istiod_bin().with_file_name("gateway-api-crds.yaml"))
        .expect("tools/istiod/build.sh puts gateway-api-crds.yaml next to pilot-discovery");
    let crds: Vec<Value> = serde_saphyr::from_multiple(&crds).unwrap();
    let crds: Vec<String> = crds
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| serde_json::to_string(&d).unwrap())
        .collect();
    kubectl_stdin(
        cluster,
        &["apply", "--server-side", "-f", "-"],
        Some(crds.join("\n").as_bytes()),
    );
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "crd/gateways.gateway.networking.k8s.io",
            "--timeout=60s",
        ],
    );
    // The newest minor of the catalog, under both strategies.
    let version = mizzen_catalog::Catalog::embedded()
        .unwrap()
        .concrete_names()
        .into_iter()
        .filter_map(|n| n.parse::<mizzen_catalog::Version>().ok())
        .max()
        .unwrap();
    for (istio, namespace, strategy, revision) in [
        ("default", "istio-system", "InPlace", "default".to_owned()),
        (
            "rb",
            "istio-rb",
            "RevisionBased",
            format!("rb-v{}", version.dashed()),
        ),
    ] {
        let phase = dir.path().join(istio);
        std::fs::create_dir(&phase).unwrap();
        kubectl(cluster, &["create", "namespace", namespace]);
        kubectl_stdin(
            cluster,
            &["apply", "-f", "-"],
            Some(
                format!(
                    "apiVersion: sailoperator.io/v1
kind: Istio
metadata: {{name: {istio}}}
spec:
  namespace: {namespace}
  version: {version}
  profile: ambient
  updateStrategy: {{type: {strategy}}}
  # istiod's agentgateway classes are off by default; on, they use mizzen's templates.
  values: {{pilot: {{env: {{PILOT_ENABLE_AGENTGATEWAY: \"true\"}}}}}}
"
                )
                .as_bytes(),
            ),
        );
        kubectl(
            cluster,
            &[
                "wait",
                "--for=condition=Ready",
                &format!("istio/{istio}"),
                "--timeout=3m",
            ],
        );
        let istiod = istiod_on(cluster, &Names::of(&revision, namespace), &phase, strategy);
        gateways(cluster, &istiod, istio, &revision, &version.to_string());
        injection(
            cluster,
            &istiod,
            &Names::of(&revision, namespace),
            &phase,
            &version.to_string(),
        );
        log_is_clean(&istiod, strategy);
        drop(istiod);
        kubectl(cluster, &["delete", "istio", istio, "--wait=false"]);
    }
}

/// Runs istiod on one revision's render and checks it (see the module documentation).
fn istiod_on(cluster: &Cluster, names: &Names, dir: &Path, strategy: &str) -> Istiod {
    let (validator, injector) = (names.validator.as_str(), names.injector.as_str());
    assert_eq!(
        webhooks(cluster, "validatingwebhookconfiguration", validator),
        [(false, "Ignore".to_owned())],
        "{strategy}: created without caBundle, at Ignore"
    );

    let istiod = start_ready(cluster, names, dir, strategy);

    // istiod patches the webhooks' caBundle; mizzen leaves it (it never sends one).
    until(60, "caBundle written by istiod", || {
        webhooks(cluster, "validatingwebhookconfiguration", validator)
            .iter()
            .chain(&webhooks(cluster, "mutatingwebhookconfiguration", injector))
            .all(|(ca, _)| *ca)
            .then_some(())
    });
    let version_of = |kind: &str, name: &str| {
        json(cluster, &["get", kind, name])["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Every connection istiod holds goes to 127.0.0.0/8 (the API server).
    let pid = istiod.child.id();
    let mut seen = 0;
    for _ in 0..5 {
        let remote = remote_addresses(pid);
        seen += remote.len();
        let outside: Vec<&String> = remote.iter().filter(|a| !loopback(a)).collect();
        assert!(outside.is_empty(), "istiod connected outside: {outside:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        seen > 0,
        "istiod's connections to the API server are visible"
    );
    // No write war: the webhooks stay as they are while both run.
    let before = (
        version_of("validatingwebhookconfiguration", validator),
        version_of("mutatingwebhookconfiguration", injector),
    );
    std::thread::sleep(Duration::from_secs(10));
    let after = (
        version_of("validatingwebhookconfiguration", validator),
        version_of("mutatingwebhookconfiguration", injector),
    );
    assert_eq!(
        before, after,
        "{strategy}: the webhooks kept changing: a write war"
    );
    // istiod tightens the policy only once the API server calls its webhook, which the local
    // control plane never does (admission webhooks are off): it stays at Ignore here.
    let policy = webhooks(cluster, "validatingwebhookconfiguration", validator)[0]
        .1
        .clone();
    assert_eq!(policy, "Ignore", "{strategy}");

    istiod
}

/// After it all: no `forbidden` answer in istiod's log, and no dial outside 127.0.0.0/8.
fn log_is_clean(istiod: &Istiod, strategy: &str) {
    let log = istiod.log();
    // For the reader of the test output: what istiod warned about.
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\twarn\t") || l.contains("\terror\t"))
        .collect();
    eprintln!(
        "{strategy}: istiod log: {} lines, {} warnings or errors, the last:\n{}",
        log.lines().count(),
        warnings.len(),
        warnings
            .iter()
            .rev()
            .take(3)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The RBAC mizzen rendered refuses istiod nothing.
    let forbidden: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(forbidden.is_empty(), "{strategy}: {}", forbidden.join("\n"));
    // Nor did it log a dial anywhere else.
    let dials: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dial tcp") && !l.contains("dial tcp 127.0.0.1"))
        .collect();
    assert!(dials.is_empty(), "{strategy}: {}", dials.join("\n"));
}

/// The Deployment istiod creates for the Gateway `name` in `ns` (within 60 s); otherwise a
/// failure with the Gateway's status and what istiod logged about it.
fn deployed(cluster: &Cluster, istiod: &Istiod, ns: &str, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let out = cluster
            .kubectl()
            .args(["get", "deployment", name, "-n", ns, "-o", "json"])
            .output()
            .unwrap();
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = cluster
        .kubectl()
        .args(["get", "gateway", name, "-n", ns, "-o", "jsonpath={.status}"])
        .output()
        .unwrap();
    let log = istiod.log();
    let about: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains(name) || l.contains("\terror\t") || l.contains("\twarn\t"))
                && !l.contains("sync complete")
        })
        .collect();
    let about = &about[about.len().saturating_sub(40)..];
    panic!(
        "istiod deployed nothing for {ns}/{name} in 60 s; Gateway status: {}\nistiod log:\n{}",
        String::from_utf8_lossy(&status.stdout),
        about.join("\n")
    );
}

/// A waypoint and an `istio`-class Gateway: istiod deploys each from mizzen's templates
/// (`waypoint`, `kube-gateway` in the injector ConfigMap), with the proxy image of `version`.
fn gateways(cluster: &Cluster, istiod: &Istiod, istio: &str, revision: &str, version: &str) {
    let ns = format!("gw-{istio}");
    kubectl(cluster, &["create", "namespace", &ns]);
    let label = if revision == "default" {
        String::new()
    } else {
        format!(", labels: {{istio.io/rev: {revision}}}")
    };
    kubectl_stdin(
        cluster,
        &["apply", "-f", "-"],
        Some(
            format!(
                "apiVersion: v1
kind: ConfigMap
metadata: {{name: waypoint-options, namespace: {ns}}}
data:
  horizontalPodAutoscaler: |
    spec: {{minReplicas: 2, maxReplicas: 3}}
  podDisruptionBudget: |
    spec: {{minAvailable: 1}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: {ns}{label}}}
spec:
  gatewayClassName: istio-waypoint
  infrastructure:
    parametersRef: {{group: \"\", kind: ConfigMap, name: waypoint-options}}
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: {ns}{label}}}
spec:
  gatewayClassName: istio
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: agw, namespace: {ns}{label}}}
spec:
  gatewayClassName: istio-agentgateway
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: agw-waypoint, namespace: {ns}{label}}}
spec:
  gatewayClassName: istio-agentgateway-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
"
            )
            .as_bytes(),
        ),
    );
    for (deployment, role) in [("waypoint", "waypoint"), ("ingress-istio", "router")] {
        let d = deployed(cluster, istiod, &ns, deployment);
        let proxy = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(proxy["name"], "istio-proxy", "{deployment}");
        let image = proxy["image"].as_str().unwrap();
        assert!(
            image.contains("/proxyv2:") && image.contains(version.trim_start_matches('v')),
            "{deployment}: {image}"
        );
        let args = strings(&proxy["args"]);
        assert!(args.contains(&role), "{deployment}: {args:?}");
        // Resources: a waypoint's from global.waypoint.resources, a gateway's from
        // global.proxy.resources (upstream's defaults: the same amounts once the API server
        // has normalised 2000m and 1024Mi).
        assert_eq!(proxy["resources"]["limits"]["cpu"], "2", "{deployment}");
        assert_eq!(
            proxy["resources"]["limits"]["memory"], "1Gi",
            "{deployment}"
        );
        assert_eq!(
            proxy["resources"]["requests"]["cpu"], "100m",
            "{deployment}"
        );
        assert_eq!(
            proxy["startupProbe"]["httpGet"]["port"], 15021,
            "{deployment}"
        );
        let pod = &d["spec"]["template"]["spec"];
        let sysctl = &pod["securityContext"]["sysctls"][0]["name"];
        if role == "router" {
            assert_eq!(
                sysctl, "net.ipv4.ip_unprivileged_port_start",
                "{deployment}"
            );
        } else {
            assert!(sysctl.is_null(), "{deployment}");
        }
    }
    // The agentgateway classes (1.30+, 1.31+): no Envoy, the agentgateway image of the
    // version, its xDS and CA addresses; the waypoint one outside the ambient data plane.
    for (deployment, waypoint) in [("agw", false), ("agw-waypoint", true)] {
        let d = deployed(cluster, istiod, &ns, deployment);
        let pod = &d["spec"]["template"];
        let agw = &pod["spec"]["containers"][0];
        assert_eq!(agw["name"], "agentgateway", "{deployment}");
        let image = agw["image"].as_str().unwrap();
        assert!(
            image.contains("/agentgateway:") && image.contains(version.trim_start_matches('v')),
            "{deployment}: {image}"
        );
        assert_eq!(env_of(agw, "GATEWAY"), Some(deployment));
        assert!(
            env_of(agw, "XDS_ADDRESS").unwrap().ends_with(":15012"),
            "{deployment}"
        );
        if waypoint {
            assert_eq!(
                pod["metadata"]["labels"]["istio.io/dataplane-mode"], "none",
                "{deployment}"
            );
        } else {
            let sysctl = &pod["spec"]["securityContext"]["sysctls"][0]["name"];
            assert_eq!(
                sysctl, "net.ipv4.ip_unprivileged_port_start",
                "{deployment}"
            );
        }
        assert_eq!(agw["resources"]["limits"]["cpu"], "2", "{deployment}");
    }
    // The autoscaler and disruption budget of the waypoint's options ConfigMap, applied
    // through the template's HorizontalPodAutoscaler and PodDisruptionBudget.
    let hpa = until(60, "istiod creates the waypoint's autoscaler", || {
        let out = cluster
            .kubectl()
            .args(["get", "hpa", "waypoint", "-n", &ns, "-o", "json"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
    });
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 3);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "waypoint");
    let pdb = json(cluster, &["get", "pdb", "waypoint", "-n", &ns]);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["gateway.networking.k8s.io/gateway-name"],
        "waypoint"
    );
}

/// Asks istiod's injection webhook (as the API server would, with an AdmissionReview) to
/// inject `pod` in namespace `ns`, over TLS verified with the `caBundle` istiod wrote into
/// the revision's injector webhook; returns the pod with istiod's JSON patch applied.
fn inject(
    cluster: &Cluster,
    istiod: &Istiod,
    names: &Names,
    dir: &Path,
    ns: &str,
    pod: &Value,
) -> Value {
    let hook = json(
        cluster,
        &["get", "mutatingwebhookconfiguration", &names.injector],
    );
    let config = &hook["webhooks"][0]["clientConfig"];
    let ca = dir.join("injector-ca.pem");
    std::fs::write(
        &ca,
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            config["caBundle"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let service = &config["service"];
    let host = format!(
        "{}.{}.svc",
        service["name"].as_str().unwrap(),
        service["namespace"].as_str().unwrap()
    );
    let path = service["path"].as_str().unwrap_or("/inject");
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": pod,
        },
    });
    // The service's name resolves to istiod's loopback listener, for this request only.
    let mut curl = Command::new("curl");
    curl.args([
        "--silent",
        "--show-error",
        "--fail",
        "--noproxy",
        "*",
        "--max-time",
        "20",
    ])
    .args(["--cacert", ca.to_str().unwrap()])
    .args(["--resolve", &format!("{host}:{}:127.0.0.1", istiod.https)])
    .args([
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "@-",
    ])
    .arg(format!("https://{host}:{}{path}", istiod.https));
    let out = output_with_stdin(curl, Some(review.to_string().as_bytes()));
    assert!(
        out.status.success(),
        "injection request: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let response = &answer["response"];
    assert_eq!(
        response["allowed"], true,
        "istiod could not inject: {}",
        response["status"]["message"]
    );
    let patch = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        response["patch"].as_str().expect("a patch"),
    )
    .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut injected = pod.clone();
    json_patch::patch(&mut injected, &patch).unwrap();
    injected
}

/// The container named `name` among the pod's containers and init containers.
fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The API server accepts the injected pod (schema and validation; nothing is stored).
fn valid_on_the_api_server(cluster: &Cluster, pod: &Value, what: &str) {
    let mut pod = pod.clone();
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    let out = kubectl_output(
        cluster,
        &["create", "--dry-run=server", "-o", "name", "-f", "-"],
        Some(pod.to_string().as_bytes()),
    );
    assert!(
        out.status.success(),
        "{what}: the API server refuses the injected pod: {}\n{pod:#}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every pod template of mizzen's injector ConfigMap, rendered by istiod's injection
/// webhook for a pod that asks for it: `sidecar` (the default; with per-pod annotations),
/// `gateway`, `grpc-agent` and `grpc-simple`. The injected pods must pass the API server's
/// validation and carry what the templates promise.
fn injection(cluster: &Cluster, istiod: &Istiod, names: &Names, dir: &Path, version: &str) {
    let ns = format!("app-{}", names.namespace);
    kubectl(cluster, &["create", "namespace", &ns]);
    let tag = version.trim_start_matches('v');
    let pod = |name: &str, annotations: Value, image: &str| {
        serde_json::json!({
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"app": name, "version": "v1"},
                "annotations": annotations,
            },
            "spec": {
                "serviceAccountName": "default",
                "containers": [{
                    "name": if image == "auto" { "istio-proxy" } else { "app" },
                    "image": image,
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                }],
            },
        })
    };

    let inject_pod = |name: &str, annotations: Value, image: &str| {
        inject(
            cluster,
            istiod,
            names,
            dir,
            &ns,
            &pod(name, annotations, image),
        )
    };

    // sidecar, with two per-pod annotations that change it.
    let injected = inject_pod(
        "web",
        serde_json::json!({
            "sidecar.istio.io/proxyCPU": "250m",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
        }),
        "registry.invalid/web:1",
    );
    valid_on_the_api_server(cluster, &injected, "sidecar");
    let meta = &injected["metadata"];
    assert_eq!(meta["labels"]["security.istio.io/tlsMode"], "istio");
    assert_eq!(meta["labels"]["service.istio.io/canonical-name"], "web");
    assert_eq!(meta["labels"]["service.istio.io/canonical-revision"], "v1");
    assert_eq!(
        meta["annotations"]["kubectl.kubernetes.io/default-container"],
        "app"
    );
    assert!(
        meta["annotations"]["sidecar.istio.io/status"].is_string(),
        "{meta}"
    );
    let init = container(&injected, "istio-init");
    let args = strings(&init["args"]);
    assert_eq!(args[0], "istio-iptables", "{args:?}");
    for pair in [
        ["-p", "15001"],
        ["-z", "15006"],
        ["-u", "1337"],
        ["-m", "REDIRECT"],
        ["-o", "5432"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    assert!(strings(&init["securityContext"]["capabilities"]["add"]).contains(&"NET_ADMIN"));
    let proxy = container(&injected, "istio-proxy");
    let image = proxy["image"].as_str().unwrap();
    assert!(
        image.contains("/proxyv2:") && image.contains(tag),
        "{image}"
    );
    assert_eq!(strings(&proxy["args"])[..2], ["proxy", "sidecar"]);
    assert_eq!(proxy["resources"]["requests"]["cpu"], "250m", "{proxy}");
    assert!(
        proxy["resources"]["limits"].is_null(),
        "annotations replace the defaults"
    );
    let istiod_host = format!("{}.{}.svc:15012", names.deployment, names.namespace);
    assert_eq!(env_of(proxy, "CA_ADDR"), Some(istiod_host.as_str()));
    assert_eq!(env_of(proxy, "ISTIO_META_APP_CONTAINERS"), Some("app"));
    assert!(
        env_of(proxy, "ISTIO_META_POD_PORTS")
            .unwrap()
            .contains("8080")
    );
    assert_eq!(proxy["readinessProbe"]["httpGet"]["port"], 15021);
    assert_eq!(proxy["securityContext"]["runAsUser"], 1337);
    let volumes: Vec<&str> = injected["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in [
        "istio-envoy",
        "istio-token",
        "istiod-ca-cert",
        "istio-podinfo",
        "workload-socket",
    ] {
        assert!(volumes.contains(&v), "{v} in {volumes:?}");
    }
    if proxy["restartPolicy"] == "Always" {
        eprintln!("sidecar injected as a native sidecar");
    }

    // gateway: a Deployment-style pod whose istio-proxy says `image: auto`.
    let injected = inject_pod(
        "ingress",
        serde_json::json!({"inject.istio.io/templates": "gateway"}),
        "auto",
    );
    valid_on_the_api_server(cluster, &injected, "gateway");
    let proxy = container(&injected, "istio-proxy");
    assert!(
        proxy["image"].as_str().unwrap().contains("/proxyv2:"),
        "{proxy}"
    );
    assert_eq!(strings(&proxy["args"])[..2], ["proxy", "router"]);
    assert_eq!(
        injected["spec"]["securityContext"]["sysctls"][0]["name"],
        "net.ipv4.ip_unprivileged_port_start"
    );
    assert!(
        injected["spec"]["initContainers"].is_null(),
        "a gateway has no init container"
    );

    // grpc-agent: the agent without Envoy; the application reads its bootstrap.
    let injected = inject_pod(
        "grpc",
        serde_json::json!({"inject.istio.io/templates": "grpc-agent"}),
        "registry.invalid/grpc:1",
    );
    valid_on_the_api_server(cluster, &injected, "grpc-agent");
    assert_eq!(
        env_of(container(&injected, "istio-proxy"), "DISABLE_ENVOY"),
        Some("true")
    );
    assert_eq!(
        env_of(container(&injected, "app"), "GRPC_XDS_BOOTSTRAP"),
        Some("/etc/istio/proxy/grpc-bootstrap.json")
    );

    // grpc-simple: a bootstrap file pointing at this revision's istiod.
    let injected = inject_pod(
        "simple",
        serde_json::json!({"inject.istio.io/templates": "grpc-simple"}),
        "registry.invalid/simple:1",
    );
    valid_on_the_api_server(cluster, &injected, "grpc-simple");
    let init = container(&injected, "grpc-bootstrap-init");
    let server = format!("{}.{}.svc:15010", names.deployment, names.namespace);
    assert_eq!(env_of(init, "XDS_SERVER"), Some(server.as_str()));
    assert!(env_of(container(&injected, "app"), "GRPC_XDS_BOOTSTRAP").is_some());
}

#[test]
fn loopback_addresses_are_told_apart() {
    assert!(loopback("0100007F:1F90"));
    assert!(loopback("0200007F:0050"));
    assert!(!loopback("0A00600A:01BB"), "10.96.0.10");
    assert!(!loopback("FEA9FEA9:0050"), "169.254.169.254");
    assert!(loopback("00000000000000000000000001000000:1F90"), "::1");
    assert!(loopback("0000000000000000FFFF00000100007F:1F90"));
    assert!(!loopback("0000000000000000FFFF00000A00000A:1F90"));
    assert!(
        !loopback("B80D0120000000000000000001000000:0050"),
        "2001:db8::1"
    );
}
