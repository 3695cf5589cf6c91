//! Records the git commit the binary is built from, for `mizzen --version`.

fn main() {
    let commit = std::env::var("MIZZEN_GIT_COMMIT").ok().or_else(|| {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=MIZZEN_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rerun-if-env-changed=MIZZEN_GIT_COMMIT");
    for f in ["HEAD", "index"] {
        let path = format!("{}/../../.git/{f}", env!("CARGO_MANIFEST_DIR"));
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
