//! KWOK Stage objects: how fake nodes and pods move through their lifecycle.
//!
//! KWOK v0.8.0 ships no built-in stages, so the cluster passes these with `--config`. They use
//! the `kwok.x-k8s.io/v1alpha1` Stage API: a `selector` (jq-style paths over the object) picks the
//! objects a stage applies to, and `next` says what to do with them (`statusTemplate`, a Go
//! template rendered into a status patch; `delete`). Template helpers used here are KWOK's
//! `Now`, `Quote`, `NodeIP`, `NodePort`, `NodeIPWith` and `PodIPWith`.

/// The Stage documents given to KWOK (multi-document YAML):
///
/// - `mizzen-node-ready`: a node that is not Ready becomes Ready at once, with the addresses
///   `InternalIP=127.0.0.1` (KWOK's `--node-ip`) and `Hostname=<name>`, the kubelet endpoint on
///   KWOK's port, allocatable `cpu: 64, memory: 256Gi, pods: 250`, and a `nodeInfo`. Node health
///   afterwards is kept by KWOK renewing the node Leases.
/// - `mizzen-pod-running`: a bound, pending pod that is not being deleted becomes Running and
///   Ready at once: conditions, running and ready container statuses (init containers completed,
///   sidecar init containers running), `startTime`, `hostIP` and a `podIP` (the node IP for
///   `hostNetwork` pods, otherwise from KWOK's `--cidr`). Readiness gates are reported as passed.
/// - `mizzen-pod-ready-again`: a running pod that is not being deleted and not Ready (the
///   kube-controller-manager's node lifecycle controller marks the pods of a node whose Lease
///   went stale not Ready, e.g. after an API-server outage, and no kubelet reports them ready
///   again) is Ready again at once: the conditions of `mizzen-pod-running`.
/// - `mizzen-pod-delete`: a pod with a `deletionTimestamp` is deleted at once (there is no
///   container to stop), so graceful deletion completes immediately.
/// - `mizzen-pod-job-complete`: a running pod owned by a Job succeeds at once.
pub const KWOK_STAGES: &str = r#"apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: mizzen-node-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select(.type == "Ready") | .status'
      operator: NotIn
      values: ["True"]
  next:
    statusTemplate: |
      {{ $now := Now | Quote }}
      {{ $since := or .metadata.creationTimestamp Now | Quote }}
      phase: Running
      conditions:
      - type: Ready
        status: "True"
        reason: KubeletReady
        message: fake kubelet (kwok) is ready
        lastHeartbeatTime: {{ $now }}
        lastTransitionTime: {{ $since }}
      {{ range $type := list "MemoryPressure" "DiskPressure" "PIDPressure" "NetworkUnavailable" }}
      - type: {{ $type }}
        status: "False"
        reason: FakeNodeHas{{ $type }}Cleared
        message: fake node has no {{ $type }}
        lastHeartbeatTime: {{ $now }}
        lastTransitionTime: {{ $since }}
      {{ end }}
      addresses:
      - type: InternalIP
        address: {{ NodeIP | Quote }}
      - type: Hostname
        address: {{ .metadata.name | Quote }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ NodePort }}
      {{ range $field := list "capacity" "allocatable" }}
      {{ $field }}:
        cpu: "64"
        memory: 256Gi
        pods: "250"
        ephemeral-storage: 1Ti
      {{ end }}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        osImage: mizzen fake node
        kernelVersion: fake
        kubeletVersion: fake
        kubeProxyVersion: fake
        containerRuntimeVersion: fake://0
        machineID: {{ .metadata.uid | Quote }}
        systemUUID: {{ .metadata.uid | Quote }}
        bootID: {{ .metadata.uid | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: mizzen-pod-running
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: DoesNotExist
    - key: .status.phase
      operator: In
      values: ["Pending"]
  next:
    statusTemplate: |
      {{ $now := Now | Quote }}
      {{ $hostIP := NodeIPWith .spec.nodeName }}
      {{ $podIP := PodIPWith .spec.nodeName (or .spec.hostNetwork false) .metadata.uid .metadata.name .metadata.namespace }}
      phase: Running
      startTime: {{ $now }}
      hostIP: {{ $hostIP | Quote }}
      hostIPs:
      - ip: {{ $hostIP | Quote }}
      podIP: {{ $podIP | Quote }}
      podIPs:
      - ip: {{ $podIP | Quote }}
      conditions:
      {{ range $type := list "PodScheduled" "PodReadyToStartContainers" "Initialized" "ContainersReady" "Ready" }}
      - type: {{ $type }}
        status: "True"
        lastTransitionTime: {{ $now }}
      {{ end }}
      {{ range .spec.readinessGates }}
      - type: {{ .conditionType | Quote }}
        status: "True"
        lastTransitionTime: {{ $now }}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: {{ printf "fake://%s" .image | Quote }}
        containerID: {{ printf "fake://%s" .name | Quote }}
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now }}
      {{ end }}
      {{ with .spec.initContainers }}
      initContainerStatuses:
      {{ range . }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: {{ printf "fake://%s" .image | Quote }}
        containerID: {{ printf "fake://%s" .name | Quote }}
        restartCount: 0
        ready: true
        {{ if eq (or .restartPolicy "") "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now }}
        {{ else }}
        started: false
        state:
          terminated:
            exitCode: 0
            reason: Completed
            startedAt: {{ $now }}
            finishedAt: {{ $now }}
        {{ end }}
      {{ end }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: mizzen-pod-ready-again
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: DoesNotExist
    - key: .status.phase
      operator: In
      values: ["Running"]
    - key: '.status.conditions.[] | select(.type == "Ready") | .status'
      operator: NotIn
      values: ["True"]
  next:
    statusTemplate: |
      {{ $now := Now | Quote }}
      conditions:
      {{ range $type := list "PodScheduled" "PodReadyToStartContainers" "Initialized" "ContainersReady" "Ready" }}
      - type: {{ $type }}
        status: "True"
        lastTransitionTime: {{ $now }}
      {{ end }}
      {{ range .spec.readinessGates }}
      - type: {{ .conditionType | Quote }}
        status: "True"
        lastTransitionTime: {{ $now }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: mizzen-pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: Exists
  next:
    delete: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: mizzen-pod-job-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: DoesNotExist
    - key: .status.phase
      operator: In
      values: ["Running"]
    - key: '.metadata.ownerReferences.[].kind'
      operator: In
      values: ["Job"]
  next:
    statusTemplate: |
      {{ $now := Now | Quote }}
      phase: Succeeded
      conditions:
      {{ range $type := list "PodReadyToStartContainers" "ContainersReady" "Ready" }}
      - type: {{ $type }}
        status: "False"
        reason: PodCompleted
        lastTransitionTime: {{ $now }}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        imageID: {{ printf "fake://%s" .image | Quote }}
        containerID: {{ printf "fake://%s" .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            reason: Completed
            finishedAt: {{ $now }}
      {{ end }}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The Go templates are only checked by a running KWOK (see the integration tests); this
    /// checks the Stage objects around them.
    #[test]
    fn stages_are_well_formed_stage_objects() {
        let docs: Vec<Value> = serde_saphyr::from_multiple(KWOK_STAGES).unwrap();
        let mut names = Vec::new();
        for doc in &docs {
            assert_eq!(doc["apiVersion"], "kwok.x-k8s.io/v1alpha1");
            assert_eq!(doc["kind"], "Stage");
            let spec = &doc["spec"];
            assert_eq!(spec["resourceRef"]["apiGroup"], "v1");
            let exprs = spec["selector"]["matchExpressions"].as_array().unwrap();
            for expr in exprs {
                assert!(expr["key"].as_str().unwrap().starts_with('.'), "{expr}");
                let op = expr["operator"].as_str().unwrap();
                assert!(
                    ["In", "NotIn", "Exists", "DoesNotExist"].contains(&op),
                    "{op}"
                );
            }
            assert!(spec["next"].is_object());
            names.push(doc["metadata"]["name"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            names,
            [
                "mizzen-node-ready",
                "mizzen-pod-running",
                "mizzen-pod-ready-again",
                "mizzen-pod-delete",
                "mizzen-pod-job-complete"
            ]
        );
        assert_eq!(docs[3]["spec"]["next"]["delete"], true);
        let running = docs[1]["spec"]["next"]["statusTemplate"].as_str().unwrap();
        assert!(running.contains("phase: Running"));
    }
}
