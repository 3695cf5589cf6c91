//! The `waypoint` and `kube-gateway` templates of the injector ConfigMap.
//!
//! These are Go `text/template` documents that istiod evaluates when a Gateway API
//! `Gateway` of class `istio-waypoint` (or `istio`) appears: istiod fills in the gateway's
//! fields (`.Name`, `.Namespace`, `.UID`, `.DeploymentName`, `.ServiceAccount`, `.Ports`,
//! `.ServiceType`, `.ClusterID`, `.Revision`, `.ProxyImage`, `.ProxyConfig`,
//! `.ProxyUID`/`.ProxyGID`, `.InfrastructureLabels`/`.InfrastructureAnnotations`,
//! `.GatewayNameLabel`) and applies the ServiceAccount, Deployment and Service it yields.
//! They are written for mizzen (minimal, not the upstream files) and only use fields and
//! functions istiod 1.26–1.28 provides. They are data for istiod: nothing in this crate
//! can execute them, so tests only check that they are present and carry the revision's
//! addresses; a cluster test with a real istiod is what exercises them.
//!
//! Per-revision facts are written in when rendering: the CA address of this revision,
//! the cluster domain, the grace period (2s before 1.28, 30s from 1.28) and, on OpenShift,
//! no fixed user and group (the SCC assigns them).

use std::collections::BTreeMap;

/// What the templates need to know about the revision.
pub(crate) struct TemplateParams {
    /// `istiod{R}.<ns>.svc:15012`.
    pub istiod_address: String,
    pub cluster_domain: String,
    pub openshift: bool,
    pub grace_seconds: u32,
    /// The Istio minor (`1.<minor>`): `.GatewayClass` exists from 1.28, `omitNil` from 1.27.
    pub minor: u32,
}

/// The two gateway templates, by name.
pub(crate) fn gateway_templates(params: &TemplateParams) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("waypoint".to_owned(), render(params, Kind::Waypoint)),
        ("kube-gateway".to_owned(), render(params, Kind::Gateway)),
    ])
}

#[derive(Clone, Copy)]
enum Kind {
    Waypoint,
    Gateway,
}

impl Kind {
    /// `proxy <mode>` of the Envoy agent.
    fn mode(self) -> &'static str {
        match self {
            Self::Waypoint => "waypoint",
            Self::Gateway => "router",
        }
    }

    /// The `gateway.istio.io/managed` label value istiod uses for its own objects.
    fn controller(self) -> &'static str {
        match self {
            Self::Waypoint => "istio.io-mesh-controller",
            Self::Gateway => "istio.io-gateway-controller",
        }
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

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
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
        sidecar.istio.io/inject: "false"
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
        startupProbe:
          httpGet: {path: /healthz/ready, port: 15021}
          initialDelaySeconds: 1
          periodSeconds: 1
          timeoutSeconds: 1
          failureThreshold: 30
        readinessProbe:
          httpGet: {path: /healthz/ready, port: 15021}
          periodSeconds: 15
          failureThreshold: 4
        securityContext:
          allowPrivilegeEscalation: false
          privileged: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          capabilities: {drop: [ALL]}
@RUN_AS@
{{- with .Values.gateways.seccompProfile }}
          seccompProfile: {{ toJson . }}
{{- end }}
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
      - name: istiod-ca-cert
        configMap: {name: istio-ca-root-cert}
      - name: istio-podinfo
        downwardAPI:
          items:
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
          - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
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
{{- end }}"#;

const RUN_AS: &str = r#"          runAsUser: {{ .ProxyUID }}
          runAsGroup: {{ .ProxyGID }}"#;

fn render(params: &TemplateParams, kind: Kind) -> String {
    let run_as = if params.openshift { "" } else { RUN_AS };
    let (pod_extras, resources) = match kind {
        Kind::Waypoint => (WAYPOINT_SCHEDULING, ".Values.global.waypoint.resources"),
        Kind::Gateway => (GATEWAY_POD_SECURITY, ".Values.global.proxy.resources"),
    };
    let class_label = if params.minor >= 28 {
        "    gateway.networking.k8s.io/gateway-class-name: \"{{ .GatewayClass }}\""
    } else {
        ""
    };
    [SERVICE_ACCOUNT, DEPLOYMENT, SERVICE, AUTOSCALING]
        .join("---\n")
        .replace("@METADATA@", METADATA)
        .replace("@LABELS@", OBJECT_LABELS)
        .replace("@ANNOTATIONS@", OBJECT_ANNOTATIONS)
        .replace("@CLASS_LABEL@\n", &line(class_label))
        .replace("@POD_EXTRAS@", pod_extras)
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
    fn openshift_leaves_user_and_group_to_the_scc() {
        let templates = gateway_templates(&params(true));
        assert!(!templates["waypoint"].contains("runAsUser"));
    }
}
