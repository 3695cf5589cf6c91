//! The values pipeline: defaults, profiles, platform, user values, overrides.

mod common;

use common::{ISTIO_NS, resolve, values};
use mizzen_api::values::{CniValues, Values, ZTunnelValues};
use mizzen_render::{
    CniValuesInput, Platform, RenderError, RevisionValuesInput, ZTunnelValuesInput, cni_values,
    revision_values, ztunnel_values,
};
use serde_json::{Value, json};

fn istio(
    version: &str,
    profile: Option<&str>,
    platform: Platform,
    revision: &str,
    user: Option<Value>,
) -> Result<Value, RenderError> {
    let (version, _) = resolve(version);
    let user: Option<Values> = user.map(values);
    let computed = revision_values(&RevisionValuesInput {
        values: user.as_ref(),
        profile,
        platform,
        revision,
        namespace: "mesh",
        version: &version,
    })?;
    Ok(serde_json::to_value(computed).unwrap())
}

#[test]
fn ambient_profile_is_explicit() {
    let v = istio(
        "v1.27.3",
        Some("ambient"),
        Platform::Kubernetes,
        "default",
        None,
    )
    .unwrap();
    assert_eq!(v["profile"], "ambient");
    assert_eq!(v["pilot"]["env"]["PILOT_ENABLE_AMBIENT"], "true");
    assert_eq!(v["global"]["variant"], "distroless");
    assert_eq!(
        v["meshConfig"]["defaultConfig"]["proxyMetadata"]["ISTIO_META_ENABLE_HBONE"],
        "true"
    );
    assert_eq!(v["meshConfig"]["serviceScopeConfigs"][0]["scope"], "GLOBAL");
    let v26 = istio(
        "v1.26.3",
        Some("ambient"),
        Platform::Kubernetes,
        "default",
        None,
    )
    .unwrap();
    assert!(v26["meshConfig"].get("serviceScopeConfigs").is_none());
}

#[test]
fn overrides_come_last() {
    let user = json!({"revision": "other", "defaultRevision": "x", "global": {"istioNamespace": "elsewhere"}});
    let v = istio(
        "v1.27.3",
        None,
        Platform::Kubernetes,
        "default",
        Some(user.clone()),
    )
    .unwrap();
    assert_eq!(v["revision"], "");
    assert_eq!(v["global"]["istioNamespace"], "mesh");
    assert!(v.get("defaultRevision").is_none());
    let v = istio(
        "v1.27.3",
        None,
        Platform::Kubernetes,
        "default-v1-27-3",
        Some(user),
    )
    .unwrap();
    assert_eq!(v["revision"], "default-v1-27-3");
}

#[test]
fn defaults_and_default_profile() {
    let v = istio("v1.27.3", None, Platform::Kubernetes, "default", None).unwrap();
    assert_eq!(v["global"]["configValidation"], true);
    assert_eq!(v["pilot"]["autoscaleEnabled"], true);
    assert_eq!(v["pilot"]["autoscaleMin"], 1);
    assert_eq!(v["pilot"]["autoscaleMax"], 5);
    assert_eq!(
        v["pilot"]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "2048Mi"})
    );
    assert!(v.get("profile").is_none());
    assert!(v["pilot"].get("env").is_none());
    assert!(v["global"].get("platform").is_none());
}

#[test]
fn user_values_win_maps_merge_lists_replace() {
    let user = json!({
        "pilot": {"env": {"EXTRA": "1"}, "autoscaleMax": 9},
        "global": {"variant": ""},
        "meshConfig": {"serviceScopeConfigs": [{"scope": "LOCAL"}], "defaultConfig": {"proxyMetadata": {"X": "y"}}},
    });
    let v = istio(
        "v1.27.3",
        Some("ambient"),
        Platform::Kubernetes,
        "default",
        Some(user),
    )
    .unwrap();
    assert_eq!(
        v["pilot"]["env"],
        json!({"EXTRA": "1", "PILOT_ENABLE_AMBIENT": "true"})
    );
    assert_eq!(v["pilot"]["autoscaleMax"], 9);
    assert_eq!(v["global"]["variant"], "");
    assert_eq!(
        v["meshConfig"]["serviceScopeConfigs"],
        json!([{"scope": "LOCAL"}])
    );
    assert_eq!(
        v["meshConfig"]["defaultConfig"]["proxyMetadata"],
        json!({"ISTIO_META_ENABLE_HBONE": "true", "X": "y"})
    );
    let user = json!({"meshConfig": {"defaultConfig": {"proxyMetadata": {"ISTIO_META_ENABLE_HBONE": null}}}});
    let v = istio(
        "v1.27.3",
        Some("ambient"),
        Platform::Kubernetes,
        "default",
        Some(user),
    )
    .unwrap();
    assert!(
        v["meshConfig"]["defaultConfig"]["proxyMetadata"]
            .get("ISTIO_META_ENABLE_HBONE")
            .is_none()
    );
}

#[test]
fn unknown_keys_survive() {
    let user = json!({"futureSection": {"a": 1}, "pilot": {"futureKnob": true}, "global": {"futureGlobal": "x"}});
    let v = istio(
        "v1.27.3",
        Some("ambient"),
        Platform::Kubernetes,
        "default",
        Some(user),
    )
    .unwrap();
    assert_eq!(v["futureSection"], json!({"a": 1}));
    assert_eq!(v["pilot"]["futureKnob"], true);
    assert_eq!(v["global"]["futureGlobal"], "x");
}

#[test]
fn platform_and_profiles() {
    let v = istio("v1.27.3", None, Platform::OpenShift, "default", None).unwrap();
    assert_eq!(v["global"]["platform"], "openshift");
    assert_eq!(v["pilot"]["cni"]["enabled"], true);
    assert_eq!(v["pilot"]["cni"]["provider"], "multus");
    assert_eq!(v["pilot"]["cni"]["cniConfDir"], "/etc/cni/multus/net.d");
    assert_eq!(v["pilot"]["trustedZtunnelNamespace"], "kube-system");
    assert!(v["pilot"].get("terminationMessagePolicy").is_none());
    // From 1.31 OpenShift's platform keeps istiod's last log lines as its termination message.
    let v = istio("v1.31.4", None, Platform::OpenShift, "default", None).unwrap();
    assert_eq!(
        v["pilot"]["terminationMessagePolicy"],
        "FallbackToLogsOnError"
    );
    assert!(v.get("profile").is_none());
    // A user profile replaces the platform's default profile, but the platform still applies.
    let v = istio(
        "v1.27.3",
        Some("ambient"),
        Platform::OpenShift,
        "default",
        None,
    )
    .unwrap();
    assert_eq!(v["global"]["platform"], "openshift");
    assert_eq!(v["profile"], "ambient");
    // openshift-ambient on any platform.
    let v = istio(
        "v1.27.3",
        Some("openshift-ambient"),
        Platform::Kubernetes,
        "default",
        None,
    )
    .unwrap();
    assert_eq!(v["global"]["platform"], "openshift");
    assert_eq!(v["profile"], "ambient");
    assert_eq!(v["pilot"]["cni"]["provider"], "multus");
    // The user's platform wins.
    let v = istio(
        "v1.27.3",
        None,
        Platform::OpenShift,
        "default",
        Some(json!({"global": {"platform": "gcp"}})),
    )
    .unwrap();
    assert_eq!(v["global"]["platform"], "gcp");
    // Not OpenShift's multus settings: the defaults (istio-cni off for sidecars).
    assert_eq!(
        v["pilot"]["cni"],
        json!({"enabled": false, "provider": "default"})
    );
    for profile in ["demo", "preview", "remote", "stable"] {
        let v = istio(
            "v1.27.3",
            Some(profile),
            Platform::Kubernetes,
            "default",
            None,
        )
        .unwrap();
        assert_eq!(v["profile"], profile);
    }
    let v = istio(
        "v1.27.3",
        Some("empty"),
        Platform::Kubernetes,
        "default",
        None,
    )
    .unwrap();
    assert!(v.get("profile").is_none());
    assert!(matches!(
        istio(
            "v1.27.3",
            Some("nope"),
            Platform::Kubernetes,
            "default",
            None
        ),
        Err(RenderError::UnknownProfile { .. })
    ));
}

#[test]
fn cni_values_per_profile_platform_and_version() {
    let cni = |version: &str, profile: Option<&str>, platform, user: Option<Value>| {
        let (version, _) = resolve(version);
        let user: Option<CniValues> = user.map(values);
        let v = cni_values(&CniValuesInput {
            values: user.as_ref(),
            profile,
            platform,
            version: &version,
        })
        .unwrap();
        serde_json::to_value(v).unwrap()
    };
    let v = cni("v1.26.3", Some("ambient"), Platform::Kubernetes, None);
    assert_eq!(v["cni"]["ambient"]["enabled"], true);
    assert!(v["cni"]["ambient"].get("enablementSelectors").is_none());
    let v = cni("v1.27.3", None, Platform::Kubernetes, None);
    assert_eq!(v["cni"]["ambient"]["enabled"], false);
    assert!(v["cni"]["ambient"]["enablementSelectors"].is_array());
    let v = cni(
        "v1.28.3",
        Some("ambient"),
        Platform::OpenShift,
        Some(json!({"cni": {"cniBinDir": "/mine"}})),
    );
    assert_eq!(v["global"]["platform"], "openshift");
    assert_eq!(v["cni"]["cniBinDir"], "/mine");
    assert_eq!(v["cni"]["cniConfDir"], "/etc/cni/multus/net.d");
    assert_eq!(v["cni"]["provider"], "multus");
    assert_eq!(v["cni"]["seLinuxOptions"]["type"], "spc_t");
    assert_eq!(v["cni"]["ambient"]["enableAmbientDetectionRetry"], false);
}

#[test]
fn ztunnel_values_follow_the_revision_below_the_user() {
    let (version, _) = resolve("v1.27.3");
    let revision: Values =
        values(json!({"global": {"hub": "quay.io/rev", "tag": "t", "imagePullSecrets": ["s"]}}));
    let user: ZTunnelValues =
        values(json!({"global": {"tag": "mine"}, "ztunnel": {"env": {"A": "1"}}}));
    let v = ztunnel_values(&ZTunnelValuesInput {
        values: Some(&user),
        platform: Platform::OpenShift,
        version: &version,
        revision_values: Some(&revision),
    })
    .unwrap();
    let v = serde_json::to_value(v).unwrap();
    assert_eq!(v["global"]["hub"], "quay.io/rev");
    assert_eq!(v["global"]["tag"], "mine");
    assert_eq!(v["global"]["variant"], "distroless");
    assert_eq!(v["global"]["platform"], "openshift");
    assert_eq!(v["ztunnel"]["resourceName"], "ztunnel");
    assert_eq!(v["ztunnel"]["seLinuxOptions"]["type"], "spc_t");
    assert_eq!(v["ztunnel"]["env"]["A"], "1");
    assert_eq!(v["ztunnel"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        v["ztunnel"]["meshConfig"]["defaultConfig"]["proxyMetadata"]["ISTIO_META_ENABLE_HBONE"],
        "true"
    );
}

#[test]
fn namespace_is_not_validated_here() {
    // The namespace is taken as given; renderers check it.
    assert!(istio("v1.27.3", None, Platform::Kubernetes, "default", None).is_ok());
    assert_eq!(ISTIO_NS, "istio-system");
}

/// `compatibilityVersion` restores an older minor's behaviour below the user's values: the
/// settings of every minor after it (Istio's compatibility profiles), and only those.
#[test]
fn compatibility_version_restores_older_behaviour() {
    let env = |version: &str, compat: &str, user_env: Value| {
        istio(
            version,
            None,
            Platform::Kubernetes,
            "default",
            Some(json!({"compatibilityVersion": compat, "pilot": {"env": user_env}})),
        )
        .map(|v| v["pilot"]["env"].clone())
    };
    let e = env("v1.30.3", "1.28", json!({})).unwrap();
    assert_eq!(e["DISABLE_TRACK_REMAINING_CB_METRICS"], "false");
    assert_eq!(e["PILOT_SIDECAR_PICK_BEST_SERVICE_NAMESPACE"], "false");
    assert!(e.get("ENABLE_NATIVE_SIDECARS").is_none(), "{e}");
    assert!(e.get("DISABLE_SHADOW_HOST_SUFFIX").is_none(), "{e}");
    let e = env("v1.30.3", "1.26", json!({"ENABLE_NATIVE_SIDECARS": "true"})).unwrap();
    assert_eq!(e["ENABLE_NATIVE_SIDECARS"], "true", "the user's value wins");
    assert_eq!(e["DISABLE_SHADOW_HOST_SUFFIX"], "false");
    // 1.23 on 1.26: 1.24's proxy metadata too.
    let v = istio(
        "v1.26.3",
        None,
        Platform::Kubernetes,
        "default",
        Some(json!({"compatibilityVersion": "1.23"})),
    )
    .unwrap();
    assert_eq!(v["pilot"]["env"]["ENABLE_INBOUND_RETRY_POLICY"], "false");
    assert_eq!(v["pilot"]["env"]["PILOT_ENABLE_IP_AUTOALLOCATE"], "false");
    assert_eq!(
        v["meshConfig"]["defaultConfig"]["proxyMetadata"]["ENABLE_DEFERRED_STATS_CREATION"],
        "false"
    );
    // Not older than the running minor, too old, or not a minor: refused, naming the key.
    for (version, bad, accepted) in [
        ("v1.30.3", "1.30", "1.25 … 1.29"),
        ("v1.30.3", "1.24", "1.25 … 1.29"),
        ("v1.27.3", "1.27.0", "1.24 … 1.26"),
        ("v1.31.4", "latest", "1.25 … 1.30"),
    ] {
        let err = env(version, bad, json!({})).unwrap_err().to_string();
        assert!(err.contains("compatibilityVersion"), "{err}");
        assert!(err.contains(&format!("one of {accepted}")), "{err}");
    }
}

/// The `demo` and `preview` profiles carry upstream's settings (compared with the charts by
/// tools/fidelity); the user's values still win.
#[test]
fn demo_and_preview_profiles_apply_their_settings() {
    let demo = istio(
        "v1.30.3",
        Some("demo"),
        Platform::Kubernetes,
        "default",
        None,
    )
    .unwrap();
    assert_eq!(demo["pilot"]["autoscaleEnabled"], false);
    assert_eq!(demo["pilot"]["traceSampling"], 100);
    assert_eq!(demo["pilot"]["resources"]["requests"]["memory"], "100Mi");
    assert_eq!(demo["meshConfig"]["accessLogFile"], "/dev/stdout");
    assert_eq!(
        demo["meshConfig"]["extensionProviders"][3]["name"],
        "jaeger"
    );
    assert_eq!(
        demo["global"]["proxy"]["resources"]["requests"]["cpu"],
        "10m"
    );
    let mine = istio(
        "v1.30.3",
        Some("demo"),
        Platform::Kubernetes,
        "default",
        Some(json!({"pilot": {"autoscaleEnabled": true}})),
    )
    .unwrap();
    assert_eq!(mine["pilot"]["autoscaleEnabled"], true);
    let preview = istio(
        "v1.30.3",
        Some("preview"),
        Platform::Kubernetes,
        "default",
        None,
    )
    .unwrap();
    assert_eq!(
        preview["meshConfig"]["defaultConfig"]["proxyMetadata"]["ISTIO_META_DNS_CAPTURE"],
        "true"
    );
}
