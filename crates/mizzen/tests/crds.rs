//! `mizzen crds` is what is committed under deploy/crds, and honours `--versions-file`.

use std::process::Command;

fn mizzen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mizzen"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn committed_crds_match_the_code() {
    let out = mizzen(&["crds"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = include_str!("../../../deploy/crds/sailoperator.io.yaml");
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "deploy/crds/sailoperator.io.yaml is stale: run `cargo run -p mizzen -- crds > deploy/crds/sailoperator.io.yaml`"
    );
}

#[test]
fn a_users_catalog_changes_the_version_enums() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("versions.yaml");
    std::fs::write(
        &file,
        "versions:\n  - name: v1.27-latest\n    ref: v1.27.2\n  - name: v1.27.2\n  - name: v1.26.1\n",
    )
    .unwrap();
    let out = mizzen(&["crds", "--versions-file", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("- v1.27-latest"));
    assert!(
        !yaml.contains("v1.30.3"),
        "the embedded catalog must be replaced, not extended"
    );
}

#[test]
fn a_broken_catalog_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("versions.yaml");
    std::fs::write(
        &file,
        "versions:\n  - name: v1.27-latest\n    ref: v1.27.9\n  - name: v1.27.2\n",
    )
    .unwrap();
    let out = mizzen(&["crds", "--versions-file", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("v1.27-latest") && err.contains("v1.27.9"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&file, "versions: [ {name: \n").unwrap();
    let out = mizzen(&["crds", "--versions-file", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(file.to_str().unwrap()), "{err}");
}
