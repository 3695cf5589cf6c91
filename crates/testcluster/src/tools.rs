//! Other Go tools the tests use, built and cached like the cluster binaries.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The helm binary: `$MIZZEN_HELM_BIN/helm` (set by `scripts/test.sh`), else the one
/// `tools/helm/build.sh` builds or finds in its cache.
///
/// # Panics
///
/// If the build fails.
pub fn helm_bin() -> PathBuf {
    tool("MIZZEN_HELM_BIN", "helm", "helm")
}

/// istiod's binary: `$MIZZEN_ISTIOD_BIN/pilot-discovery` (set by `scripts/test.sh`), else the
/// one `tools/istiod/build.sh` builds or finds in its cache.
///
/// # Panics
///
/// If the build fails.
pub fn istiod_bin() -> PathBuf {
    tool("MIZZEN_ISTIOD_BIN", "istiod", "pilot-discovery")
}

/// `$<env>/<binary>`, else `tools/<module>/build.sh`'s.
fn tool(env: &str, module: &str, binary: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(env) {
        return PathBuf::from(dir).join(binary);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools")
        .join(module)
        .join("build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed", script.display());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().expect("build.sh prints the bin dir");
    PathBuf::from(dir.trim()).join(binary)
}
