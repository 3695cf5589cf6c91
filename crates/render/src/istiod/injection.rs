//! The pod templates of the injector ConfigMap: what istiod's injection webhook adds to a
//! pod. `sidecar` (the default template: an Envoy sidecar and the init container that
//! redirects the pod's traffic to it), `gateway` (pods annotated
//! `inject.istio.io/templates: gateway`: the proxy of a self-managed gateway Deployment whose
//! `istio-proxy` container has `image: auto`), and the proxyless gRPC templates `grpc-agent`
//! (the agent without Envoy, serving xDS to the application over a socket) and `grpc-simple`
//! (a bootstrap file only).
//!
//! Like the gateway templates (`templates.rs`) they are Go `text/template` documents that
//! istiod evaluates per pod with the pod (`.ObjectMeta`, `.Spec`, `.DeploymentMeta`,
//! `.TypeMeta`), the mesh and proxy configuration (`.MeshConfig`, `.ProxyConfig`), the
//! injector's `values` (`.Values`, with the defaults of `values/layers.rs`), and
//! `.Revision`, `.ProxyImage`, `.ProxyUID`/`.ProxyGID`, `.CompliancePolicy`,
//! `.InboundTrafficPolicyMode` and (from 1.27) `.NativeSidecars`. They are written here from
//! the facts of what upstream's templates inject (containers, args, env, ports, probes,
//! security settings, volumes, and the per-pod annotations that change them), per minor:
//! only the functions and fields a minor's istiod has are used (docs/fidelity.md lists the
//! minor differences). A real istiod renders them in `crates/mizzen/tests/istiod.rs`.

use super::templates::TemplateParams;

/// The pod templates, by name.
pub(crate) fn pod_templates(params: &TemplateParams) -> Vec<(&'static str, String)> {
    vec![
        ("sidecar", fill(SIDECAR, params)),
        ("gateway", fill(GATEWAY, params)),
        ("grpc-agent", fill(GRPC_AGENT, params)),
        ("grpc-simple", fill(GRPC_SIMPLE, params)),
    ]
}

/// Variables every pod template starts with: the application containers (every container
/// but `istio-proxy`), the interception mode and the status port after the pod's
/// annotations.
const PROLOGUE: &str = r#"{{- $apps := list }}
{{- range .Spec.Containers }}{{ if ne .Name "istio-proxy" }}{{ $apps = append $apps .Name }}{{ end }}{{ end }}
{{- $mode := annotation .ObjectMeta `sidecar.istio.io/interceptionMode` .ProxyConfig.InterceptionMode }}
{{- $statusPort := annotation .ObjectMeta `status.sidecar.istio.io/port` .Values.global.proxy.statusPort }}
"#;

/// Canonical service labels: from the pod's own labels, else the workload's name; `latest`.
const CANONICAL_LABELS: &str = r#"    service.istio.io/canonical-name: {{ coalesce (index .ObjectMeta.Labels `service.istio.io/canonical-name`) (index .ObjectMeta.Labels `app.kubernetes.io/name`) (index .ObjectMeta.Labels `app`) .DeploymentMeta.Name | trunc 63 | @TRIM@ | quote }}
    service.istio.io/canonical-revision: {{ coalesce (index .ObjectMeta.Labels `service.istio.io/canonical-revision`) (index .ObjectMeta.Labels `app.kubernetes.io/version`) (index .ObjectMeta.Labels `version`) "latest" | quote }}"#;

/// The revision and, unless the pod names them, the default containers for `kubectl`.
const REVISION_ANNOTATIONS: &str = r#"    istio.io/rev: {{ .Revision | default "default" | quote }}
{{- if $apps }}
{{- if not (isset .ObjectMeta.Annotations `kubectl.kubernetes.io/default-container`) }}
    kubectl.kubernetes.io/default-container: {{ first $apps | quote }}
{{- end }}
{{- if not (isset .ObjectMeta.Annotations `kubectl.kubernetes.io/default-logs-container`) }}
    kubectl.kubernetes.io/default-logs-container: {{ first $apps | quote }}
{{- end }}
{{- end }}"#;

/// The proxy's image: the pod's `sidecar.istio.io/proxyImage` or `global.proxy.image` when
/// either is a full reference, else the one istiod composes for the revision.
const PROXY_IMAGE: &str = r#"{{- $image := annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy.image }}
    image: {{ if contains "/" $image }}{{ $image | quote }}{{ else }}{{ .ProxyImage | quote }}{{ end }}
{{- with .Values.global.imagePullPolicy }}
    imagePullPolicy: {{ quote . }}
{{- end }}"#;

/// `pilot-agent proxy <mode>` flags shared by every proxy.
const AGENT_ARGS: &str = r#"    - --domain
    - $(POD_NAMESPACE).svc.@DOMAIN@
    - --proxyLogLevel={{ annotation .ObjectMeta `sidecar.istio.io/logLevel` .Values.global.proxy.logLevel }}
    - --proxyComponentLogLevel={{ annotation .ObjectMeta `sidecar.istio.io/componentLogLevel` .Values.global.proxy.componentLogLevel }}
    - --log_output_level={{ annotation .ObjectMeta `sidecar.istio.io/agentLogLevel` .Values.global.logging.level }}
{{- with .Values.global.sts.servicePort }}
    - --stsPort={{ . }}
{{- end }}
{{- if .Values.global.logAsJson }}
    - --log_as_json
{{- end }}"#;

/// The agent's environment: identity, addresses, resource limits and the workload's facts.
const AGENT_ENV: &str = r#"{{- if eq .InboundTrafficPolicyMode "localhost" }}
    - {name: REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION, value: "true"}
{{- end }}
    - {name: PILOT_CERT_PROVIDER, value: {{ .Values.global.pilotCertProvider | quote }}}
    - {name: CA_ADDR, value: {{ .Values.global.caAddress | default "@CA_ADDR@" | quote }}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: INSTANCE_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: SERVICE_ACCOUNT, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: ISTIO_CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: "1"}}}
    - {name: GOMEMLIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: "1"}}}
    - {name: GOMAXPROCS, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: "1"}}}
    - name: PROXY_CONFIG
      value: {{ protoToJSON .ProxyConfig | quote }}
{{- $ports := list }}
{{- range .Spec.Containers }}{{ range .Ports }}{{ with structToJSON . }}{{ $ports = append $ports . }}{{ end }}{{ end }}{{ end }}
    - name: ISTIO_META_POD_PORTS
      value: {{ printf "[%s]" (join "," $ports) | quote }}
    - {name: ISTIO_META_APP_CONTAINERS, value: {{ join "," $apps | quote }}}
{{- with .CompliancePolicy }}
    - {name: COMPLIANCE_POLICY, value: {{ quote . }}}
@FIPS@
{{- end }}
    - {name: ISTIO_META_CLUSTER_ID, value: {{ .Values.global.multiCluster.clusterName | default "Kubernetes" | quote }}}
    - {name: ISTIO_META_NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: ISTIO_META_INTERCEPTION_MODE, value: {{ $mode | quote }}}
{{- with .Values.global.network }}
    - {name: ISTIO_META_NETWORK, value: {{ quote . }}}
{{- end }}
{{- with index .ObjectMeta.Labels `service.istio.io/workload-name` | default .DeploymentMeta.Name }}
    - {name: ISTIO_META_WORKLOAD_NAME, value: {{ quote . }}}
{{- end }}
{{- if and .TypeMeta.APIVersion .DeploymentMeta.Name }}
    - name: ISTIO_META_OWNER
      value: {{ printf "kubernetes://apis/%s/namespaces/%s/%ss/%s" .TypeMeta.APIVersion (.DeploymentMeta.Namespace | default "default") (lower .TypeMeta.Kind) .DeploymentMeta.Name | quote }}
{{- end }}
{{- if isset .ObjectMeta.Annotations `sidecar.istio.io/bootstrapOverride` }}
    - {name: ISTIO_BOOTSTRAP_OVERRIDE, value: /etc/istio/custom-bootstrap/custom_bootstrap.json}
{{- end }}
{{- $trustDomain := .MeshConfig.TrustDomain | default .Values.global.trustDomain }}
{{- with .Values.global.meshID | default $trustDomain }}
    - {name: ISTIO_META_MESH_ID, value: {{ quote . }}}
{{- end }}
{{- with $trustDomain }}
    - {name: TRUST_DOMAIN, value: {{ quote . }}}
{{- end }}
@EXTRA_ENV@
{{- range $name, $value := .ProxyConfig.ProxyMetadata }}
    - {name: {{ $name }}, value: {{ quote $value }}}
{{- end }}"#;

/// Datadog's `apm.datadoghq.com/env` and (1.30+) OpenTelemetry resource attributes: sidecars only.
const SIDECAR_ENV: &str = r#"{{- if and (eq .Values.global.proxy.tracer "datadog") (isset .ObjectMeta.Annotations `apm.datadoghq.com/env`) }}
{{- range $name, $value := fromJSON (index .ObjectMeta.Annotations `apm.datadoghq.com/env`) }}
    - {name: {{ $name }}, value: {{ quote $value }}}
{{- end }}
{{- end }}"#;

const OTEL_ENV: &str = r#"{{- with otelResourceAttributes .MeshConfig .ObjectMeta.Annotations .ObjectMeta.Labels .DeploymentMeta.Namespace .Spec.Containers }}
    - {name: OTEL_RESOURCE_ATTRIBUTES, value: {{ quote . }}}
{{- end }}"#;

const FIPS_ENV: &str = r#"{{- if eq . "fips-140-3" }}
    - {name: GODEBUG, value: "fips140=only"}
{{- end }}"#;

/// The proxy's resources: the pod's `sidecar.istio.io/proxy{CPU,Memory}[Limit]` annotations
/// when it has any, else `global.proxy.resources`.
const RESOURCES: &str = r#"{{- $a := .ObjectMeta.Annotations }}
{{- if or (isset $a `sidecar.istio.io/proxyCPU`) (isset $a `sidecar.istio.io/proxyMemory`) (isset $a `sidecar.istio.io/proxyCPULimit`) (isset $a `sidecar.istio.io/proxyMemoryLimit`) }}
    resources:
{{- if or (isset $a `sidecar.istio.io/proxyCPU`) (isset $a `sidecar.istio.io/proxyMemory`) }}
      requests:
{{- with index $a `sidecar.istio.io/proxyCPU` }}
        cpu: {{ quote . }}
{{- end }}
{{- with index $a `sidecar.istio.io/proxyMemory` }}
        memory: {{ quote . }}
{{- end }}
{{- end }}
{{- if or (isset $a `sidecar.istio.io/proxyCPULimit`) (isset $a `sidecar.istio.io/proxyMemoryLimit`) }}
      limits:
{{- with index $a `sidecar.istio.io/proxyCPULimit` }}
        cpu: {{ quote . }}
{{- end }}
{{- with index $a `sidecar.istio.io/proxyMemoryLimit` }}
        memory: {{ quote . }}
{{- end }}
{{- end }}
{{- else if .Values.global.proxy.resources }}
    resources: {{ toJson (@OMIT_NIL@.Values.global.proxy.resources) }}
{{- end }}"#;

/// Mounts of the proxy (the pod's `sidecar.istio.io/userVolumeMount` included).
const PROXY_MOUNTS: &str = r#"    volumeMounts:
    - {name: workload-socket, mountPath: /var/run/secrets/workload-spiffe-uds}
@CREDENTIAL_MOUNT@
{{- if eq .Values.global.caName "GkeWorkloadCertificate" }}
    - {name: gke-workload-certificate, mountPath: /var/run/secrets/workload-spiffe-credentials, readOnly: true}
{{- else }}
    - {name: workload-certs, mountPath: /var/run/secrets/workload-spiffe-credentials}
{{- end }}
{{- if eq .Values.global.pilotCertProvider "istiod" }}
    - {name: istiod-ca-cert, mountPath: /var/run/secrets/istio}
@CRL_MOUNT@
{{- end }}
    - {name: istio-data, mountPath: /var/lib/istio/data}
{{- if isset .ObjectMeta.Annotations `sidecar.istio.io/bootstrapOverride` }}
    - {name: custom-bootstrap-volume, mountPath: /etc/istio/custom-bootstrap}
{{- end }}
    - {name: @XDS_VOLUME@, mountPath: /etc/istio/proxy}
    - {name: istio-token, mountPath: /var/run/secrets/tokens}
{{- if .Values.global.mountMtlsCerts }}
    - {name: istio-certs, mountPath: /etc/certs/, readOnly: true}
{{- end }}
    - {name: istio-podinfo, mountPath: /etc/istio/pod}
{{- if isset .ObjectMeta.Annotations `sidecar.istio.io/userVolumeMount` }}
{{- range $name, $mount := fromJSON (index .ObjectMeta.Annotations `sidecar.istio.io/userVolumeMount`) }}
    - {{ toJson (merge (dict "name" $name) $mount) }}
{{- end }}
{{- end }}"#;

/// The pod's volumes for the proxy (the pod's `sidecar.istio.io/userVolume` included) and
/// the pull secrets of `global.imagePullSecrets`.
const POD_VOLUMES: &str = r#"  volumes:
  - {name: workload-socket, emptyDir: {}}
@CREDENTIAL_VOLUME@
{{- if eq .Values.global.caName "GkeWorkloadCertificate" }}
  - {name: gke-workload-certificate, csi: {driver: workloadcertificates.security.cloud.google.com}}
{{- else }}
  - {name: workload-certs, emptyDir: {}}
{{- end }}
{{- if isset .ObjectMeta.Annotations `sidecar.istio.io/bootstrapOverride` }}
  - {name: custom-bootstrap-volume, configMap: {name: {{ index .ObjectMeta.Annotations `sidecar.istio.io/bootstrapOverride` | quote }}}}
{{- end }}
  - {name: @XDS_VOLUME@, emptyDir: {medium: Memory}}
  - {name: istio-data, emptyDir: {}}
  - name: istio-podinfo
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
  - name: istio-token
    projected:
      sources:
      - serviceAccountToken: {path: istio-token, expirationSeconds: 43200, audience: {{ .Values.global.sds.token.aud | quote }}}
{{- if eq .Values.global.pilotCertProvider "istiod" }}
{{- if eq (toString (index (.Values.pilot.env | default dict) "ENABLE_CLUSTER_TRUST_BUNDLE_API")) "true" }}
  - name: istiod-ca-cert
    projected:
      sources:
      - clusterTrustBundle: {name: {{ printf "istio.io:istiod-ca:%s" (.Values.global.trustBundleName | default "root-cert") | quote }}, path: root-cert.pem}
{{- else }}
  - {name: istiod-ca-cert, configMap: {name: {{ .Values.global.trustBundleName | default "istio-ca-root-cert" | quote }}}}
{{- end }}
@CRL_VOLUME@
{{- end }}
{{- if .Values.global.mountMtlsCerts }}
  - {name: istio-certs, secret: {optional: true, secretName: {{ printf "istio.%s" (.Spec.ServiceAccountName | default "default") | quote }}}}
{{- end }}
{{- if isset .ObjectMeta.Annotations `sidecar.istio.io/userVolume` }}
{{- range $name, $volume := fromJSON (index .ObjectMeta.Annotations `sidecar.istio.io/userVolume`) }}
  - {{ toJson (merge (dict "name" $name) $volume) }}
{{- end }}
{{- end }}
{{- with .Values.global.imagePullSecrets }}
  imagePullSecrets:
{{- range . }}
  - {name: {{ quote . }}}
{{- end }}
{{- end }}"#;

/// The readiness probe on the agent's status port (none when the pod sets it to 0).
const READINESS: &str = r#"    readinessProbe:
      httpGet: {path: /healthz/ready, port: @PROBE_PORT@}
      initialDelaySeconds: {{ annotation .ObjectMeta `readiness.status.sidecar.istio.io/initialDelaySeconds` .Values.global.proxy.readinessInitialDelaySeconds }}
      periodSeconds: {{ annotation .ObjectMeta `readiness.status.sidecar.istio.io/periodSeconds` .Values.global.proxy.readinessPeriodSeconds }}
      timeoutSeconds: 3
      failureThreshold: {{ annotation .ObjectMeta `readiness.status.sidecar.istio.io/failureThreshold` .Values.global.proxy.readinessFailureThreshold }}"#;

const SECCOMP: &str = r#"{{- with .Values.global.proxy.seccompProfile }}
      seccompProfile: {{ toJson . }}
{{- end }}"#;

/// `sidecar`: labels and annotations, the traffic-redirecting init container (or, with
/// istio-cni, the one that checks the redirection), and the Envoy sidecar: a native sidecar
/// (an init container that keeps running) when the revision or the pod asks for one.
const SIDECAR: &str = r#"@PROLOGUE@
{{- $tproxy := eq $mode "TPROXY" }}
@NATIVE@
@CAP_NET_BIND@
{{- $hold := and (or .ProxyConfig.HoldApplicationUntilProxyStarts.GetValue .Values.global.proxy.holdApplicationUntilProxyStarts) (not $native) }}
{{- $intercept := ne $mode "NONE" }}
{{- $excludeIn := excludeInboundPort $statusPort (annotation .ObjectMeta `traffic.sidecar.istio.io/excludeInboundPorts` .Values.global.proxy.excludeInboundPorts) }}
{{- $includeOut := annotation .ObjectMeta `traffic.sidecar.istio.io/includeOutboundPorts` .Values.global.proxy.includeOutboundPorts }}
{{- $excludeOut := annotation .ObjectMeta `traffic.sidecar.istio.io/excludeOutboundPorts` .Values.global.proxy.excludeOutboundPorts }}
{{- $includeIPs := annotation .ObjectMeta `traffic.sidecar.istio.io/includeOutboundIPRanges` .Values.global.proxy.includeIPRanges }}
{{- $excludeIPs := annotation .ObjectMeta `traffic.sidecar.istio.io/excludeOutboundIPRanges` .Values.global.proxy.excludeIPRanges }}
{{- $includeIn := annotation .ObjectMeta `traffic.sidecar.istio.io/includeInboundPorts` .Values.global.proxy.includeInboundPorts }}
{{- $reroute := index .ObjectMeta.Annotations `istio.io/reroute-virtual-interfaces` | default (index .ObjectMeta.Annotations `traffic.sidecar.istio.io/kubevirtInterfaces`) }}
{{- $cni := .Values.pilot.cni.enabled }}
metadata:
  labels:
    security.istio.io/tlsMode: {{ index .ObjectMeta.Labels `security.istio.io/tlsMode` | default "istio" | quote }}
{{- if eq (index .ProxyConfig.ProxyMetadata "ISTIO_META_ENABLE_HBONE") "true" }}
    networking.istio.io/tunnel: {{ index .ObjectMeta.Labels `networking.istio.io/tunnel` | default "http" | quote }}
{{- end }}
@CANONICAL@
  annotations:
@REVISION_ANNOTATIONS@
{{- if $cni }}
{{- if eq .Values.pilot.cni.provider "multus" }}
    k8s.v1.cni.cncf.io/networks: {{ appendMultusNetwork (index .ObjectMeta.Annotations `k8s.v1.cni.cncf.io/networks`) `default/istio-cni` | quote }}
{{- end }}
    sidecar.istio.io/interceptionMode: {{ $mode | quote }}
{{- with $includeIPs }}
    traffic.sidecar.istio.io/includeOutboundIPRanges: {{ quote . }}
{{- end }}
{{- with $excludeIPs }}
    traffic.sidecar.istio.io/excludeOutboundIPRanges: {{ quote . }}
{{- end }}
    traffic.sidecar.istio.io/includeInboundPorts: {{ $includeIn | quote }}
    traffic.sidecar.istio.io/excludeInboundPorts: {{ $excludeIn | quote }}
{{- if or (isset .ObjectMeta.Annotations `traffic.sidecar.istio.io/includeOutboundPorts`) .Values.global.proxy.includeOutboundPorts }}
    traffic.sidecar.istio.io/includeOutboundPorts: {{ $includeOut | quote }}
{{- end }}
{{- if or (isset .ObjectMeta.Annotations `traffic.sidecar.istio.io/excludeOutboundPorts`) .Values.global.proxy.excludeOutboundPorts }}
    traffic.sidecar.istio.io/excludeOutboundPorts: {{ $excludeOut | quote }}
{{- end }}
{{- range $key := list `traffic.sidecar.istio.io/kubevirtInterfaces` `istio.io/reroute-virtual-interfaces` `traffic.sidecar.istio.io/excludeInterfaces` }}
{{- with index $.ObjectMeta.Annotations $key }}
    {{ $key }}: {{ quote . }}
{{- end }}
{{- end }}
{{- end }}
spec:
{{- if or $intercept $native }}
  initContainers:
{{- end }}
{{- if $intercept }}
  - name: {{ if $cni }}istio-validation{{ else }}istio-init{{ end }}
{{- $initImage := annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy_init.image }}
    image: {{ if contains "/" $initImage }}{{ $initImage | quote }}{{ else }}{{ @INIT_IMAGE@ | quote }}{{ end }}
{{- with .Values.global.imagePullPolicy }}
    imagePullPolicy: {{ quote . }}
{{- end }}
    args:
    - istio-iptables
    - -p
    - {{ .MeshConfig.ProxyListenPort | default "15001" | quote }}
    - -z
    - {{ .MeshConfig.ProxyInboundListenPort | default "15006" | quote }}
    - -u
    - {{ if $tproxy }}"1337"{{ else }}{{ .ProxyUID | default "1337" | quote }}{{ end }}
    - -m
    - {{ $mode | quote }}
    - -i
    - {{ $includeIPs | quote }}
    - -x
    - {{ $excludeIPs | quote }}
    - -b
    - {{ $includeIn | quote }}
    - -d
    - {{ if $excludeIn }}{{ printf "15090,15021,%s" $excludeIn | quote }}{{ else }}"15090,15021"{{ end }}
{{- if or (isset .ObjectMeta.Annotations `traffic.sidecar.istio.io/includeOutboundPorts`) .Values.global.proxy.includeOutboundPorts }}
    - -q
    - {{ $includeOut | quote }}
{{- end }}
{{- if or (isset .ObjectMeta.Annotations `traffic.sidecar.istio.io/excludeOutboundPorts`) .Values.global.proxy.excludeOutboundPorts }}
    - -o
    - {{ $excludeOut | quote }}
{{- end }}
{{- with $reroute }}
    - -k
    - {{ quote . }}
{{- end }}
{{- with index .ObjectMeta.Annotations `traffic.sidecar.istio.io/excludeInterfaces` }}
    - -c
    - {{ quote . }}
{{- end }}
    - --log_output_level={{ annotation .ObjectMeta `sidecar.istio.io/agentLogLevel` .Values.global.logging.level }}
{{- if .Values.global.logAsJson }}
    - --log_as_json
{{- end }}
{{- if $cni }}
    - --run-validation
    - --skip-rule-apply
{{- else if .Values.global.proxy_init.forceApplyIptables }}
    - --force-apply
{{- end }}
@NFTABLES@
{{- with .ProxyConfig.ProxyMetadata }}
    env:
{{- range $name, $value := . }}
    - {name: {{ $name }}, value: {{ quote $value }}}
{{- end }}
{{- end }}
@RESOURCES@
    securityContext:
      allowPrivilegeEscalation: {{ .Values.global.proxy.privileged }}
      privileged: {{ .Values.global.proxy.privileged }}
{{- if $cni }}
      capabilities: {drop: [ALL]}
      readOnlyRootFilesystem: true
      runAsNonRoot: true
      runAsUser: {{ if $tproxy }}1337{{ else }}{{ .ProxyUID | default "1337" }}{{ end }}
      runAsGroup: {{ if $tproxy }}1337{{ else }}{{ .ProxyGID | default "1337" }}{{ end }}
{{- else }}
      capabilities: {add: [NET_ADMIN, NET_RAW], drop: [ALL]}
      readOnlyRootFilesystem: false
      runAsNonRoot: false
      runAsUser: 0
      runAsGroup: 0
{{- end }}
@INIT_SECCOMP@
{{- end }}
{{- if not $native }}
  containers:
{{- end }}
  - name: istio-proxy
@PROXY_IMAGE@
{{- if $native }}
    restartPolicy: Always
{{- end }}
    ports:
    - {name: http-envoy-prom, containerPort: 15090, protocol: TCP}
    args:
    - proxy
    - sidecar
@AGENT_ARGS@
{{- with .Values.global.proxy.outlierLogPath }}
    - --outlierLogPath={{ . }}
{{- end }}
{{- if .Values.global.proxy.lifecycle }}
    lifecycle: {{ toJson .Values.global.proxy.lifecycle }}
{{- else if $hold }}
    lifecycle:
      postStart: {exec: {command: [pilot-agent, wait]}}
{{- else if $native }}
    lifecycle:
      preStop: {exec: {command: [pilot-agent, request, {{ printf "--debug-port=%s" $statusPort | quote }}, POST, drain]}}
{{- end }}
    env:
@AGENT_ENV@
{{- if ne $statusPort "0" }}
{{- if .Values.global.proxy.startupProbe.enabled }}
    startupProbe:
      httpGet: {path: /healthz/ready, port: 15021}
      initialDelaySeconds: 0
      periodSeconds: 1
      timeoutSeconds: 3
      failureThreshold: {{ .Values.global.proxy.startupProbe.failureThreshold }}
{{- end }}
@READINESS@
{{- end }}
    securityContext:
{{- if eq (index .ProxyConfig.ProxyMetadata "IPTABLES_TRACE_LOGGING") "true" }}
      allowPrivilegeEscalation: true
      privileged: true
      capabilities: {add: [NET_ADMIN], drop: [ALL]}
      readOnlyRootFilesystem: true
      runAsNonRoot: false
      runAsUser: 0
      runAsGroup: {{ .ProxyGID | default "1337" }}
{{- else }}
      allowPrivilegeEscalation: {{ .Values.global.proxy.privileged }}
      privileged: {{ .Values.global.proxy.privileged }}
      readOnlyRootFilesystem: true
{{- $add := list }}
{{- if $tproxy }}{{ $add = append $add "NET_ADMIN" }}{{ end }}
{{- if $bind }}{{ $add = append $add "NET_BIND_SERVICE" }}{{ end }}
{{- if $add }}
      capabilities: {add: {{ toJson $add }}, drop: [ALL]}
      runAsNonRoot: false
      runAsUser: 0
      runAsGroup: 1337
{{- else }}
      capabilities: {drop: [ALL]}
      runAsNonRoot: true
      runAsUser: {{ .ProxyUID | default "1337" }}
      runAsGroup: {{ .ProxyGID | default "1337" }}
{{- end }}
{{- end }}
@SECCOMP@
@RESOURCES@
@PROXY_MOUNTS@
@POD_VOLUMES@
"#;

/// `gateway`: the proxy of a gateway Deployment, in router mode, allowed to bind ports
/// below 1024 through the pod's `ip_unprivileged_port_start` sysctl (unless
/// `gateways.securityContext` replaces the pod's security context).
const GATEWAY: &str = r#"@PROLOGUE@
metadata:
  labels:
@CANONICAL@
  annotations:
@REVISION_ANNOTATIONS@
spec:
{{- with .Values.gateways.securityContext }}
  securityContext: {{ toJson . }}
{{- else }}
  securityContext:
    sysctls:
    - {name: net.ipv4.ip_unprivileged_port_start, value: "0"}
{{- end }}
  containers:
  - name: istio-proxy
@PROXY_IMAGE@
    ports:
    - {name: http-envoy-prom, containerPort: 15090, protocol: TCP}
    args:
    - proxy
    - router
@AGENT_ARGS@
{{- with .Values.global.proxy.lifecycle }}
    lifecycle: {{ toJson . }}
{{- end }}
    securityContext:
      runAsUser: {{ .ProxyUID | default "1337" }}
      runAsGroup: {{ .ProxyGID | default "1337" }}
    env:
@AGENT_ENV@
@READINESS@
@PROXY_MOUNTS@
@POD_VOLUMES@
"#;

/// `grpc-agent`: the agent without Envoy (`DISABLE_ENVOY`), generating gRPC's xDS for the
/// application containers, which get the bootstrap file and the agent's socket.
const GRPC_AGENT: &str = r#"@PROLOGUE@
metadata:
  labels:
@CANONICAL@
  annotations:
@REVISION_ANNOTATIONS@
    sidecar.istio.io/rewriteAppHTTPProbers: "false"
spec:
  containers:
  - name: istio-proxy
@PROXY_IMAGE@
    ports:
    - {name: mesh-metrics, containerPort: 15020, protocol: TCP}
    args:
    - proxy
    - sidecar
@AGENT_ARGS@
    lifecycle:
      postStart: {exec: {command: [pilot-agent, wait, --url=http://localhost:15020/healthz/ready]}}
    env:
    - {name: ISTIO_META_GENERATOR, value: grpc}
    - {name: OUTPUT_CERTS, value: /var/lib/istio/data}
    - {name: ISTIO_META_DNS_CAPTURE, value: "false"}
    - {name: DISABLE_ENVOY, value: "true"}
@AGENT_ENV@
{{- if ne $statusPort "0" }}
@READINESS@
{{- end }}
@RESOURCES@
@PROXY_MOUNTS@
{{- range $apps }}
  - name: {{ . }}
    env:
    - {name: GRPC_XDS_EXPERIMENTAL_SECURITY_SUPPORT, value: "true"}
    - {name: GRPC_XDS_BOOTSTRAP, value: /etc/istio/proxy/grpc-bootstrap.json}
    volumeMounts:
    - {name: istio-data, mountPath: /var/lib/istio/data}
    - {name: istio-xds, mountPath: /etc/istio/proxy}
{{- if eq $.Values.global.caName "GkeWorkloadCertificate" }}
    - {name: gke-workload-certificate, mountPath: /var/run/secrets/workload-spiffe-credentials, readOnly: true}
{{- else }}
    - {name: workload-certs, mountPath: /var/run/secrets/workload-spiffe-credentials}
{{- end }}
{{- end }}
@POD_VOLUMES@
"#;

/// `grpc-simple`: no agent; an init container writes a gRPC xDS bootstrap pointing at this
/// revision's plaintext xDS port (15010), and the application containers read it.
const GRPC_SIMPLE: &str = r#"metadata:
  annotations:
    sidecar.istio.io/rewriteAppHTTPProbers: "false"
spec:
  initContainers:
  - name: grpc-bootstrap-init
    image: busybox:1.28
    volumeMounts:
    - {name: grpc-io-proxyless-bootstrap, mountPath: /var/lib/grpc/data/}
    env:
    - {name: INSTANCE_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: XDS_SERVER, value: "@XDS_PLAINTEXT@"}
    command:
    - sh
    - -c
    - >-
      printf '{"xds_servers":[{"server_uri":"dns:///%s","channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":"sidecar~%s~%s.%s~@DOMAIN@","metadata":{"GENERATOR":"grpc"} } }'
      "$XDS_SERVER" "$INSTANCE_IP" "$POD_NAME" "$POD_NAMESPACE" > /var/lib/grpc/data/bootstrap.json
  containers:
{{- range .Spec.Containers }}
  - name: {{ .Name }}
    env:
    - {name: GRPC_XDS_BOOTSTRAP, value: /var/lib/grpc/data/bootstrap.json}
    - {name: GRPC_GO_LOG_VERBOSITY_LEVEL, value: "99"}
    - {name: GRPC_GO_LOG_SEVERITY_LEVEL, value: info}
    volumeMounts:
    - {name: grpc-io-proxyless-bootstrap, mountPath: /var/lib/grpc/data/}
{{- end }}
  volumes:
  - {name: grpc-io-proxyless-bootstrap, emptyDir: {}}
"#;

/// Checks the structure of a Go template as istiod will parse it: every `{{` is closed by
/// `}}` before the next one, and every `if`, `range`, `with`, `define` and `block` has its
/// `end` (the mistakes that make istiod refuse every pod of the template). Functions and
/// fields are istiod's to check.
pub(crate) fn check_template(text: &str) -> Result<(), String> {
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        let line = text[..offset + start].matches('\n').count() + 1;
        let after = &rest[start + 2..];
        let Some(close) = after.find("}}") else {
            return Err(format!("line {line}: {{{{ is never closed by }}}}"));
        };
        let action = &after[..close];
        if action.contains("{{") {
            return Err(format!("line {line}: {{{{ inside an action"));
        }
        let action = action.trim_start_matches('-').trim_end_matches('-').trim();
        // Comments and string literals hold no keywords.
        if !action.starts_with("/*") {
            match action.split_whitespace().next().unwrap_or_default() {
                keyword @ ("if" | "range" | "with" | "define" | "block") => {
                    open.push((keyword, line));
                }
                "end" if open.pop().is_none() => {
                    return Err(format!("line {line}: {{{{ end }}}} closes nothing"));
                }
                _ => {}
            }
        }
        let consumed = start + 2 + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    match open.last() {
        Some((keyword, line)) => Err(format!(
            "line {line}: {{{{ {keyword} }}}} has no {{{{ end }}}}"
        )),
        None => Ok(()),
    }
}

/// Per-minor pieces: what a minor's istiod offers (`.NativeSidecars` and `omitNil` from
/// 1.27, `otelResourceAttributes` from 1.30, `.ProxyInitImage` from 1.31) and what its
/// templates do (capNetBindService and `--native-nftables` from 1.27, the CRL volume name
/// from `pilot.crlConfigMapName` from 1.29, FIPS-only Go crypto from 1.31).
fn fill(template: &str, params: &TemplateParams) -> String {
    let minor = params.minor;
    let from = |since: u32, text: &str| {
        if minor >= since {
            text.to_owned()
        } else {
            String::new()
        }
    };
    let native = if minor >= 27 {
        "{{- $native := .NativeSidecars }}\n{{- with index .ObjectMeta.Annotations `sidecar.istio.io/nativeSidecar` }}{{ $native = ne . \"false\" }}{{ end }}"
    } else {
        "{{- $native := eq (env \"ENABLE_NATIVE_SIDECARS\" \"false\") \"true\" }}\n{{- with index .ObjectMeta.Annotations `sidecar.istio.io/nativeSidecar` }}{{ $native = eq . \"true\" }}{{ end }}"
    };
    let bind = if minor >= 27 {
        "{{- $bind := eq (annotation .ObjectMeta `sidecar.istio.io/capNetBindService` .Values.global.proxy.capNetBindService) \"true\" }}"
    } else {
        "{{- $bind := false }}"
    };
    let crl_name = if minor >= 29 {
        "{{ .Values.pilot.crlConfigMapName | default \"istio-ca-crl\" | quote }}"
    } else {
        "istio-ca-crl"
    };
    let (domain, istiod) = (
        params.cluster_domain.as_str(),
        params.istiod_address.as_str(),
    );
    let xds_plaintext = istiod.replace(":15012", ":15010");
    // Datadog's and OpenTelemetry's variables go to sidecars only.
    let extra_env = if template == SIDECAR {
        format!("{SIDECAR_ENV}\n{}", from(30, OTEL_ENV))
    } else {
        String::new()
    };
    // Fragments first (they hold markers of their own), then the revision's facts.
    let text = template
        .replace("@PROLOGUE@", PROLOGUE.trim_end())
        .replace("@CANONICAL@", CANONICAL_LABELS)
        .replace("@REVISION_ANNOTATIONS@", REVISION_ANNOTATIONS)
        .replace("@PROXY_IMAGE@", PROXY_IMAGE)
        .replace("@AGENT_ARGS@", AGENT_ARGS)
        .replace("@AGENT_ENV@", AGENT_ENV)
        .replace("@READINESS@", READINESS)
        .replace("@RESOURCES@", RESOURCES)
        .replace("@PROXY_MOUNTS@", PROXY_MOUNTS)
        .replace("@POD_VOLUMES@", POD_VOLUMES)
        .replace("@SECCOMP@", SECCOMP)
        .replace("@INIT_SECCOMP@", &from(28, SECCOMP))
        .replace("@NATIVE@", native)
        .replace("@CAP_NET_BIND@", bind)
        .replace("@EXTRA_ENV@", &extra_env)
        .replace("@FIPS@", &from(31, FIPS_ENV))
        .replace(
            "@NFTABLES@",
            &from(
                27,
                "{{- if .Values.global.nativeNftables }}\n    - --native-nftables\n{{- end }}",
            ),
        )
        .replace(
            "@INIT_IMAGE@",
            if minor >= 31 {
                ".ProxyInitImage"
            } else {
                ".ProxyImage"
            },
        )
        .replace("@OMIT_NIL@", if minor >= 27 { "omitNil " } else { "" })
        .replace(
            "@TRIM@",
            if minor >= 31 {
                "trimAll \"-_.\""
            } else {
                "trimSuffix \"-\""
            },
        );
    // The sidecar, gateway and gRPC agent differ in the socket volume and the CRL.
    let grpc = template == GRPC_AGENT;
    let gateway = template == GATEWAY;
    let xds_volume = if grpc { "istio-xds" } else { "istio-envoy" };
    let credential_mount = if grpc {
        String::new()
    } else {
        "    - {name: credential-socket, mountPath: /var/run/secrets/credential-uds}".to_owned()
    };
    let credential_volume = if grpc {
        String::new()
    } else {
        "  - {name: credential-socket, emptyDir: {}}".to_owned()
    };
    let (crl_mount, crl_volume) = if grpc || gateway {
        (String::new(), String::new())
    } else {
        (
            "    - {name: istio-ca-crl, mountPath: /var/run/secrets/istio/crl}".to_owned(),
            format!("  - {{name: istio-ca-crl, configMap: {{name: {crl_name}, optional: true}}}}"),
        )
    };
    let text = text
        .replace("@XDS_VOLUME@", xds_volume)
        .replace("@CREDENTIAL_MOUNT@", &credential_mount)
        .replace("@CREDENTIAL_VOLUME@", &credential_volume)
        .replace("@CRL_MOUNT@", &crl_mount)
        .replace("@CRL_VOLUME@", &crl_volume)
        .replace("@PROBE_PORT@", if grpc { "15020" } else { "15021" })
        .replace("@DOMAIN@", domain)
        .replace("@CA_ADDR@", istiod)
        .replace("@XDS_PLAINTEXT@", &xds_plaintext);
    // Markers that filled in nothing leave empty lines; drop them.
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(minor: u32) -> Vec<(&'static str, String)> {
        pod_templates(&TemplateParams {
            istiod_address: "istiod-canary.istio-system.svc:15012".into(),
            cluster_domain: "example.local".into(),
            openshift: false,
            grace_seconds: 30,
            minor,
        })
    }

    #[test]
    fn every_marker_is_filled_and_revision_facts_are_written_in() {
        for minor in [26, 27, 28, 29, 30, 31] {
            for (name, text) in templates(minor) {
                assert!(!text.contains('@'), "1.{minor} {name}: {text}");
                assert_eq!(check_template(&text), Ok(()), "1.{minor} {name}");
            }
            let all: std::collections::BTreeMap<_, _> = templates(minor).into_iter().collect();
            assert!(all["sidecar"].contains("istiod-canary.istio-system.svc:15012"));
            assert!(all["sidecar"].contains("$(POD_NAMESPACE).svc.example.local"));
            assert!(all["grpc-simple"].contains("istiod-canary.istio-system.svc:15010"));
            assert!(all["gateway"].contains("- router"));
            assert!(all["gateway"].contains("ip_unprivileged_port_start"));
        }
    }

    #[test]
    fn broken_templates_are_told_apart() {
        assert_eq!(
            check_template("a {{ if .X }}b{{ end }} c {{/* x */}}"),
            Ok(())
        );
        assert_eq!(
            check_template("x\n{{ if .X }}\n{{ range .Y }}{{ end }}"),
            Err("line 2: {{ if }} has no {{ end }}".into())
        );
        assert_eq!(
            check_template("{{ .X }\n"),
            Err("line 1: {{ is never closed by }}".into())
        );
        assert_eq!(
            check_template("{{ end }}"),
            Err("line 1: {{ end }} closes nothing".into())
        );
        assert_eq!(
            check_template("{{- with .A -}}{{ else if .B }}{{- end -}}"),
            Ok(())
        );
    }

    #[test]
    fn minors_use_only_what_their_istiod_offers() {
        let at = |minor: u32| -> std::collections::BTreeMap<_, _> {
            templates(minor).into_iter().collect()
        };
        let (old, new) = (at(26), at(31));
        assert!(old["sidecar"].contains("ENABLE_NATIVE_SIDECARS"));
        assert!(!old["sidecar"].contains(".NativeSidecars"));
        assert!(new["sidecar"].contains(".NativeSidecars"));
        assert!(!old["sidecar"].contains("omitNil"));
        assert!(new["sidecar"].contains("omitNil"));
        assert!(!at(29)["sidecar"].contains("otelResourceAttributes"));
        assert!(at(30)["sidecar"].contains("otelResourceAttributes"));
        assert!(!at(30)["sidecar"].contains(".ProxyInitImage"));
        assert!(new["sidecar"].contains(".ProxyInitImage"));
        assert!(!old["sidecar"].contains("native-nftables"));
        assert!(at(27)["sidecar"].contains("native-nftables"));
    }
}
