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
    if let Some(dir) = std::env::var_os("MIZZEN_HELM_BIN") {
        return PathBuf::from(dir).join("helm");
    }
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/helm/build.sh"
    ));
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tools/helm/build.sh");
    assert!(out.status.success(), "tools/helm/build.sh failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().expect("build.sh prints the bin dir");
    PathBuf::from(dir.trim()).join("helm")
}
