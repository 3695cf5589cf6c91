//! The gateway templates of the injector ConfigMap: `waypoint`, `kube-gateway`, and
//! `agentgateway` (1.29+) and `agentgateway-waypoint` (1.31+).
//!
//! These are Go `text/template` documents that istiod evaluates when a Gateway API
//! `Gateway` of one of its classes (`istio-waypoint`, `istio`, `istio-agentgateway`,
//! `istio-agentgateway-waypoint`) appears: istiod fills in the gateway's fields (`.Name`,
//! `.Namespace`, `.UID`, `.DeploymentName`, `.ServiceAccount`, `.Ports`, `.ServiceType`,
//! `.ClusterID`, `.Revision`, `.ProxyImage`/`.AgentgatewayImage`, `.ProxyConfig`,
//! `.MeshConfig`, `.Values`, `.ProxyUID`/`.ProxyGID`, `.InfrastructureLabels`/
//! `.InfrastructureAnnotations`, `.GatewayNameLabel`, `.GatewayClass` from 1.28) and applies
//! the ServiceAccount, Deployment and Service it yields, and the HorizontalPodAutoscaler and
//! PodDisruptionBudget when the Gateway's options ConfigMap configures them. They are
//! written for mizzen from the facts of upstream's (resources, scheduling, probes, ports,
//! env, security settings), not copied, and use only what each minor's istiod provides.
//! Nothing in this crate can execute them; `crates/mizzen/tests/istiod.rs` has a real istiod
//! deploy each.
//!
//! Per-revision facts are written in when rendering: the CA address of this revision,
//! the cluster domain, the grace period (2s before 1.28, 30s from 1.28) and, on OpenShift,
//! no fixed user and group for the Envoy gateways (the SCC assigns them).

use std::collections::BTreeMap;

/// What the injector's templates (these and the pod templates of `injection.rs`) need to
/// know about the revision.
pub(crate) struct TemplateParams {
    /// `istiod{R}.<ns>.svc:15012`.
    pub istiod_address: String,
    pub cluster_domain: String,
    pub openshift: bool,
    pub grace_seconds: u32,
    /// The Istio minor (`1.<minor>`): `.GatewayClass` exists from 1.28, `omitNil` from 1.27.
    pub minor: u32,
}

/// The gateway templates of the revision's minor, by name: `waypoint` and `kube-gateway`,
/// `agentgateway` from 1.29 and `agentgateway-waypoint` from 1.31 (used by istiod when
/// `PILOT_ENABLE_AGENTGATEWAY` turns the `istio-agentgateway` classes on).
pub(crate) fn gateway_templates(params: &TemplateParams) -> BTreeMap<String, String> {
    let mut kinds = vec![Kind::Waypoint, Kind::Gateway];
    if params.minor >= 29 {
        kinds.push(Kind::Agentgateway);
    }
    if params.minor >= 31 {
        kinds.push(Kind::AgentgatewayWaypoint);
    }
    kinds
        .into_iter()
        .map(|kind| (kind.template().to_owned(), render(params, kind)))
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Waypoint,
    Gateway,
    Agentgateway,
    AgentgatewayWaypoint,
}

impl Kind {
    fn template(self) -> &'static str {
        match self {
            Self::Waypoint => "waypoint",
            Self::Gateway => "kube-gateway",
            Self::Agentgateway => "agentgateway",
            Self::AgentgatewayWaypoint => "agentgateway-waypoint",
        }
    }

    /// `proxy <mode>` of the Envoy agent (the agentgateways run no Envoy).
    fn mode(self) -> &'static str {
        match self {
            Self::Waypoint => "waypoint",
            Self::Gateway | Self::Agentgateway | Self::AgentgatewayWaypoint => "router",
        }
    }

    /// The `gateway.istio.io/managed` label value istiod uses for its own objects.
    fn controller(self) -> &'static str {
        match self {
            Self::Waypoint => "istio.io-mesh-controller",
            Self::Gateway => "istio.io-gateway-controller",
            Self::Agentgateway => "istio.io-agentgateway-controller",
            Self::AgentgatewayWaypoint => "istio.io-agentgateway-waypoint-controller",
        }
    }

    /// Waypoints serve the mesh: `global.waypoint`'s resources and scheduling, and their
    /// pods are kept out of the ambient data plane they implement.
    fn waypoint(self) -> bool {
        matches!(self, Self::Waypoint | Self::AgentgatewayWaypoint)
    }
}

/// Labels every generated object carries.
const OBJECT_LABELS: &str = r#"    gateway.istio.io/managed: @CONTROLLER@
    "{{ .GatewayNameLabel }}": "{{ .Name }}"
@CLASS_LABEL@
{{- range $key, $value := .InfrastructureLabels }}
    "{{ $key }}": {{ printf "%q" $value }}
{{- end }}"#;

/// The Gateway's infrastructure annotations, without istiod's own bookkeeping ones.
const OBJECT_ANNOTATIONS: &str = r#"  annotations:
{{- range $key, $value := .InfrastructureAnnotations }}
{{- if not (has $key (list "kubectl.kubernetes.io/last-applied-configuration" "gateway.istio.io/name-override" "gateway.istio.io/service-account" "gateway.istio.io/controller-version")) }}
    "{{ $key }}": {{ printf "%q" $value }}
{{- end }}
{{- end }}"#;

/// Start-up and readiness probes on the status port (15021).
const PROBES: &str = r#"        startupProbe:
          httpGet: {path: /healthz/ready, port: 15021}
          initialDelaySeconds: 1
          periodSeconds: 1
          timeoutSeconds: 1
          failureThreshold: 30
        readinessProbe:
          httpGet: {path: /healthz/ready, port: 15021}
          periodSeconds: 15
          timeoutSeconds: 1
          failureThreshold: 4"#;

/// The start of a gateway's Deployment, up to its pods' first label.
const DEPLOYMENT_HEAD: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
@METADATA@
spec:
  selector:
    matchLabels:
      "{{ .GatewayNameLabel }}": "{{ .Name }}"
  template:
    metadata:
      labels:
        sidecar.istio.io/inject: "false""#;

/// The metadata of the objects named after the Deployment.
const METADATA: &str = r#"  name: "{{ .DeploymentName }}"
  namespace: "{{ .Namespace }}"
  labels:
@LABELS@
@ANNOTATIONS@
@OWNER@"#;

/// The owner reference to the Gateway, so that deleting it removes everything.
const OWNER: &str = r#"  ownerReferences:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    name: "{{ .Name }}"
    uid: "{{ .UID }}""#;

const SERVICE_ACCOUNT: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: "{{ .ServiceAccount }}"
  namespace: "{{ .Namespace }}"
  labels:
@LABELS@
@OWNER@
"#;

const DEPLOYMENT: &str = r#"@DEPLOYMENT_HEAD@
        istio.io/dataplane-mode: none
        service.istio.io/canonical-name: "{{ .DeploymentName }}"
        "{{ .GatewayNameLabel }}": "{{ .Name }}"
{{- if .Revision }}
        istio.io/rev: "{{ .Revision }}"
{{- end }}
{{- range $key, $value := .InfrastructureLabels }}
        "{{ $key }}": {{ printf "%q" $value }}
{{- end }}
      annotations:
        prometheus.io/path: /stats/prometheus
        prometheus.io/port: "15020"
        prometheus.io/scrape: "true"
    spec:
      serviceAccountName: "{{ .ServiceAccount }}"
      terminationGracePeriodSeconds: @GRACE@
@POD_EXTRAS@
      containers:
      - name: istio-proxy
        image: "{{ .ProxyImage }}"
        args:
        - proxy
        - @MODE@
        - --domain
        - $(POD_NAMESPACE).svc.@DOMAIN@
        - --serviceCluster
        - "{{ .ServiceAccount }}.$(POD_NAMESPACE)"
        env:
        - name: PILOT_CERT_PROVIDER
          value: istiod
        - name: CA_ADDR
          value: @CA_ADDR@
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - name: INSTANCE_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: SERVICE_ACCOUNT
          valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
        - name: HOST_IP
          valueFrom: {fieldRef: {fieldPath: status.hostIP}}
        - name: ISTIO_META_NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        - name: ISTIO_CPU_LIMIT
          valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: "1"}}
        - name: GOMEMLIMIT
          valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: "1"}}
        - name: GOMAXPROCS
          valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: "1"}}
        - name: PROXY_CONFIG
          value: {{ printf "%q" (protoToJSON .ProxyConfig) }}
        - name: ISTIO_META_CLUSTER_ID
          value: "{{ .ClusterID }}"
        - name: ISTIO_META_WORKLOAD_NAME
          value: "{{ .DeploymentName }}"
        - name: ISTIO_META_OWNER
          value: "kubernetes://apis/apps/v1/namespaces/{{ .Namespace }}/deployments/{{ .DeploymentName }}"
        - name: ISTIO_META_INTERCEPTION_MODE
          value: REDIRECT
{{- with index .InfrastructureLabels "topology.istio.io/network" | default .Values.global.network }}
        - name: ISTIO_META_NETWORK
          value: {{ quote . }}
{{- end }}
{{- $trustDomain := .MeshConfig.TrustDomain | default .Values.global.trustDomain }}
{{- with .Values.global.meshID | default $trustDomain }}
        - name: ISTIO_META_MESH_ID
          value: {{ quote . }}
{{- end }}
{{- with $trustDomain }}
        - name: TRUST_DOMAIN
          value: {{ quote . }}
{{- end }}
{{- range $name, $value := .ProxyConfig.ProxyMetadata }}
        - name: {{ $name }}
          value: {{ quote $value }}
{{- end }}
{{- with @RESOURCES_VALUE@ }}
        resources: {{ toJson (@OMIT_NIL@.) }}
{{- end }}
        ports:
        - name: metrics
          containerPort: 15020
          protocol: TCP
        - name: status-port
          containerPort: 15021
          protocol: TCP
        - name: http-envoy-prom
          containerPort: 15090
          protocol: TCP
@PROBES@
        securityContext:
          allowPrivilegeEscalation: false
          privileged: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          capabilities: {drop: [ALL]}
@RUN_AS@
@CONTAINER_SECCOMP_ALWAYS@
        volumeMounts:
        - {name: istio-envoy, mountPath: /etc/istio/proxy}
        - {name: istio-data, mountPath: /var/lib/istio/data}
        - {name: istio-token, mountPath: /var/run/secrets/tokens}
        - {name: istiod-ca-cert, mountPath: /var/run/secrets/istio}
        - {name: istio-podinfo, mountPath: /etc/istio/pod}
        - {name: workload-socket, mountPath: /var/run/secrets/workload-spiffe-uds}
        - {name: credential-socket, mountPath: /var/run/secrets/credential-uds}
      volumes:
      - {name: istio-envoy, emptyDir: {medium: Memory}}
      - {name: istio-data, emptyDir: {}}
      - {name: workload-socket, emptyDir: {}}
      - {name: credential-socket, emptyDir: {}}
      - name: istio-token
        projected:
          sources:
          - serviceAccountToken: {path: istio-token, audience: istio-ca, expirationSeconds: 43200}
@CA_VOLUME@
      - name: istio-podinfo
        downwardAPI:
          items:
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
          - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
@PULL_SECRETS@
"#;

/// The trust bundle istiod publishes: the `istio-ca-root-cert` ConfigMap (or
/// `global.trustBundleName`), or a ClusterTrustBundle when istiod uses that API.
const CA_VOLUME: &str = r#"{{- if eq (toString (index (.Values.pilot.env | default dict) "ENABLE_CLUSTER_TRUST_BUNDLE_API")) "true" }}
      - name: istiod-ca-cert
        projected:
          sources:
          - clusterTrustBundle: {name: {{ printf "istio.io:istiod-ca:%s" (.Values.global.trustBundleName | default "root-cert") | quote }}, path: root-cert.pem}
{{- else }}
      - {name: istiod-ca-cert, configMap: {name: {{ .Values.global.trustBundleName | default "istio-ca-root-cert" | quote }}}}
{{- end }}"#;

const PULL_SECRETS: &str = r#"{{- with .Values.global.imagePullSecrets }}
      imagePullSecrets:
{{- range . }}
      - {name: {{ quote . }}}
{{- end }}
{{- end }}"#;

/// An agentgateway (no Envoy, no pilot-agent): it reads its configuration from istiod over
/// xDS (`XDS_ADDRESS`) with a token of its own audience, and its certificates from the CA.
const AGENTGATEWAY_DEPLOYMENT: &str = r#"@DEPLOYMENT_HEAD@
@DATAPLANE_NONE@
        service.istio.io/canonical-name: "{{ .DeploymentName }}"
        service.istio.io/canonical-revision: latest
@POD_LABELS@
      annotations:
        istio.io/rev: {{ .Revision | default "default" | quote }}
        prometheus.io/path: /stats/prometheus
        prometheus.io/port: "15020"
        prometheus.io/scrape: "true"
{{- range $key, $value := .InfrastructureAnnotations }}
{{- if not (has $key (list "kubectl.kubernetes.io/last-applied-configuration" "gateway.istio.io/name-override" "gateway.istio.io/service-account" "gateway.istio.io/controller-version")) }}
        "{{ $key }}": {{ printf "%q" $value }}
{{- end }}
{{- end }}
    spec:
      serviceAccountName: "{{ .ServiceAccount }}"
@POD_EXTRAS@
      containers:
      - name: agentgateway
{{- $image := annotation .ObjectMeta `gateway.istio.io/agentgatewayImage` .Values.global.agentgateway.image }}
        image: {{ if contains "/" $image }}{{ quote $image }}{{ else }}{{ .AgentgatewayImage | quote }}{{ end }}
{{- with .Values.global.imagePullPolicy }}
        imagePullPolicy: {{ quote . }}
{{- end }}
{{- with @RESOURCES_VALUE@ }}
        resources: {{ toJson (@OMIT_NIL@.) }}
{{- end }}
        securityContext:
          allowPrivilegeEscalation: false
          privileged: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          capabilities: {drop: [ALL]}
          runAsUser: {{ .ProxyUID | default "10101" }}
          runAsGroup: {{ .ProxyGID | default "10101" }}
@CONTAINER_SECCOMP@
        ports:
        - {name: metrics, containerPort: 15020, protocol: TCP}
        - {name: status-port, containerPort: 15021, protocol: TCP}
        args: [--config, "{}"]
@LIFECYCLE@
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: INSTANCE_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: SERVICE_ACCOUNT, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
        - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: "1"}}}
        - {name: GATEWAY, value: {{ .Name | quote }}}
        - {name: RUST_BACKTRACE, value: "1"}
        - {name: CLUSTER_ID, value: {{ .Values.global.multiCluster.clusterName | default .ClusterID | quote }}}
{{- with index .InfrastructureLabels "topology.istio.io/network" | default .Values.global.network }}
        - {name: NETWORK, value: {{ quote . }}}
{{- end }}
{{- with .MeshConfig.TrustDomain | default .Values.global.trustDomain }}
        - {name: TRUST_DOMAIN, value: {{ quote . }}}
{{- end }}
{{- range $name, $value := .ProxyConfig.ProxyMetadata }}
        - {name: {{ $name }}, value: {{ quote $value }}}
{{- end }}
        - {name: XDS_ADDRESS, value: {{ .ProxyConfig.DiscoveryAddress | quote }}}
        - {name: CA_ADDRESS, value: {{ .Values.global.caAddress | default "@CA_ADDR@" | quote }}}
@PROBES@
        volumeMounts:
        - {name: istiod-ca-cert, mountPath: /var/run/secrets/xds}
        - {name: xds-token, mountPath: /var/run/secrets/xds-tokens}
        - {name: tmp, mountPath: /tmp}
        - {name: istiod-ca-cert, mountPath: /var/run/secrets/istio}
        - {name: istio-token, mountPath: /var/run/secrets/tokens}
      volumes:
      - {name: tmp, emptyDir: {}}
{{- range $token := list "xds-token" "istio-token" }}
      - name: {{ $token }}
        projected:
          sources:
          - serviceAccountToken: {path: {{ $token }}, expirationSeconds: 43200, audience: {{ $.Values.global.sds.token.aud | quote }}}
{{- end }}
@CA_VOLUME@
@PULL_SECRETS@
"#;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
@METADATA@
spec:
  ipFamilyPolicy: PreferDualStack
  type: "{{ .ServiceType }}"
  selector:
    "{{ .GatewayNameLabel }}": "{{ .Name }}"
  ports:
{{- range .Ports }}
  - name: "{{ .Name }}"
    port: {{ .Port }}
    protocol: TCP
{{- with .AppProtocol }}
    appProtocol: "{{ . }}"
{{- end }}
{{- end }}
{{- if and .Spec.Addresses (eq .ServiceType "LoadBalancer") }}
  loadBalancerIP: {{ (index .Spec.Addresses 0).Value | quote }}
{{- end }}
"#;

/// An autoscaler and a disruption budget for the Deployment. istiod applies them only when
/// the Gateway's (or its class's) customisation ConfigMap configures them, and then with
/// that ConfigMap's settings merged in.
const AUTOSCALING: &str = r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
@METADATA@
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: "{{ .DeploymentName }}"
  maxReplicas: 1
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
@METADATA@
spec:
  selector:
    matchLabels:
      "{{ .GatewayNameLabel }}": "{{ .Name }}"
"#;

/// `gateways.seccompProfile` on the proxy container.
const CONTAINER_SECCOMP: &str = r#"{{- with .Values.gateways.seccompProfile }}
          seccompProfile: {{ toJson . }}
{{- end }}"#;

const LIFECYCLE: &str = r#"{{- with .Values.global.proxy.lifecycle }}
        lifecycle: {{ toJson . }}
{{- end }}"#;

/// Where a waypoint's pods run: `global.waypoint`'s scheduling settings.
const WAYPOINT_SCHEDULING: &str = r#"{{- with .Values.global.waypoint }}
{{- range $key := list "affinity" "topologySpreadConstraints" "nodeSelector" "tolerations" }}
{{- with index $.Values.global.waypoint $key }}
      {{ $key }}: {{ toJson . }}
{{- end }}
{{- end }}
{{- end }}"#;

/// A gateway binds ports below 1024 without privileges, unless `gateways.securityContext`
/// replaces the pod's security context.
const GATEWAY_POD_SECURITY: &str = r#"{{- with .Values.gateways.securityContext }}
      securityContext: {{ toJson . }}
{{- else }}
      securityContext:
        sysctls:
        - {name: net.ipv4.ip_unprivileged_port_start, value: "0"}
{{- with .Values.gateways.seccompProfile }}
        seccompProfile: {{ toJson . }}
{{- end }}
{{- end }}"#;

const RUN_AS: &str = r#"          runAsUser: {{ .ProxyUID }}
          runAsGroup: {{ .ProxyGID }}"#;

fn render(params: &TemplateParams, kind: Kind) -> String {
    let run_as = if params.openshift { "" } else { RUN_AS };
    let (pod_extras, resources) = match kind {
        Kind::Waypoint => (WAYPOINT_SCHEDULING, ".Values.global.waypoint.resources"),
        Kind::AgentgatewayWaypoint => ("", ".Values.global.waypoint.resources"),
        Kind::Gateway | Kind::Agentgateway => {
            (GATEWAY_POD_SECURITY, ".Values.global.proxy.resources")
        }
    };
    let agentgateway = matches!(kind, Kind::Agentgateway | Kind::AgentgatewayWaypoint);
    let deployment = if agentgateway {
        AGENTGATEWAY_DEPLOYMENT
    } else {
        DEPLOYMENT
    };
    // An agentgateway's seccomp profile: the pod's for a gateway, the container's for a
    // waypoint; a gateway's lifecycle hooks from `global.proxy.lifecycle`.
    let container_seccomp = if kind == Kind::AgentgatewayWaypoint {
        CONTAINER_SECCOMP
    } else {
        ""
    };
    let lifecycle = if kind == Kind::Agentgateway {
        LIFECYCLE
    } else {
        ""
    };
    let dataplane_none = if kind.waypoint() {
        "        istio.io/dataplane-mode: none"
    } else {
        ""
    };
    let class_label = if params.minor >= 28 {
        "    gateway.networking.k8s.io/gateway-class-name: \"{{ .GatewayClass }}\""
    } else {
        ""
    };
    [SERVICE_ACCOUNT, deployment, SERVICE, AUTOSCALING]
        .join("---\n")
        .replace("@DEPLOYMENT_HEAD@", DEPLOYMENT_HEAD)
        .replace("@PROBES@", PROBES)
        .replace("@METADATA@", METADATA)
        .replace("@POD_LABELS@", &indent(OBJECT_LABELS, 4))
        .replace("@CA_VOLUME@", CA_VOLUME)
        .replace("@PULL_SECRETS@\n", &line(PULL_SECRETS))
        .replace("@CONTAINER_SECCOMP@\n", &line(container_seccomp))
        .replace("@CONTAINER_SECCOMP_ALWAYS@", CONTAINER_SECCOMP)
        .replace("@LIFECYCLE@\n", &line(lifecycle))
        .replace("@DATAPLANE_NONE@\n", &line(dataplane_none))
        .replace("@LABELS@", OBJECT_LABELS)
        .replace("@ANNOTATIONS@", OBJECT_ANNOTATIONS)
        .replace("@CLASS_LABEL@\n", &line(class_label))
        .replace("@POD_EXTRAS@\n", &line(pod_extras))
        .replace("@RESOURCES_VALUE@", resources)
        .replace(
            "@OMIT_NIL@",
            if params.minor >= 27 { "omitNil " } else { "" },
        )
        .replace("@OWNER@", OWNER)
        .replace("@CONTROLLER@", kind.controller())
        .replace("@MODE@", kind.mode())
        .replace("@GRACE@", &params.grace_seconds.to_string())
        .replace("@DOMAIN@", &params.cluster_domain)
        .replace("@CA_ADDR@", &params.istiod_address)
        .replace("@RUN_AS@\n", &line(run_as))
}

/// `text` with every line that is YAML (not a template action) indented by `by` more spaces.
fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("{{") {
                l.to_owned()
            } else {
                format!("{}{l}", " ".repeat(by))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` as a line of its own; nothing when empty.
fn line(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(openshift: bool) -> TemplateParams {
        TemplateParams {
            istiod_address: "istiod-canary.istio-system.svc:15012".into(),
            cluster_domain: "cluster.local".into(),
            openshift,
            grace_seconds: 30,
            minor: 30,
        }
    }

    #[test]
    fn templates_carry_revision_facts_and_no_placeholders() {
        let templates = gateway_templates(&params(false));
        let waypoint = &templates["waypoint"];
        assert!(waypoint.contains("value: istiod-canary.istio-system.svc:15012"));
        assert!(waypoint.contains("- waypoint\n"));
        assert!(waypoint.contains("terminationGracePeriodSeconds: 30"));
        assert!(waypoint.contains("runAsUser: {{ .ProxyUID }}"));
        assert!(templates["kube-gateway"].contains("- router\n"));
        for template in templates.values() {
            assert!(!template.contains('@'), "{template}");
            assert_eq!(
                template.matches("\n---\n").count() + usize::from(template.starts_with("---")),
                4,
                "ServiceAccount, Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget"
            );
        }
    }

    #[test]
    fn agentgateway_templates_from_their_minors() {
        let at = |minor| {
            gateway_templates(&TemplateParams {
                minor,
                ..params(false)
            })
        };
        assert!(!at(28).contains_key("agentgateway"));
        let t = at(29);
        assert!(t["agentgateway"].contains("- name: agentgateway\n"));
        assert!(t["agentgateway"].contains("istio.io-agentgateway-controller"));
        assert!(t["agentgateway"].contains("ip_unprivileged_port_start"));
        assert!(!t.contains_key("agentgateway-waypoint"));
        let w = &at(31)["agentgateway-waypoint"];
        assert!(w.contains("istio.io-agentgateway-waypoint-controller"));
        assert!(w.contains(".Values.global.waypoint.resources"));
        assert!(w.contains("istio.io/dataplane-mode: none"));
        assert!(!w.contains("ip_unprivileged_port_start"));
        assert!(!w.contains('@'), "{w}");
    }

    #[test]
    fn openshift_leaves_user_and_group_to_the_scc() {
        let templates = gateway_templates(&params(true));
        assert!(!templates["waypoint"].contains("runAsUser"));
    }
}
