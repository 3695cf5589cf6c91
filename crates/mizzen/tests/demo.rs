//! The README's first command (`./scripts/demo.sh`) works and ends with the tables the README
//! shows (AGE aside). It runs in a state directory of its own, so a user's `mizzen dev`
//! cluster is left alone.

use std::process::Command;

/// The table lines of a text block, without the AGE column, whitespace-normalised.
fn tables(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("NAME ") || l.contains(".sailoperator.io/"))
        .map(|l| {
            let mut cols: Vec<&str> = l.split_whitespace().collect();
            cols.pop();
            cols.join(" ")
        })
        .collect()
}

#[test]
fn the_demo_ends_with_the_tables_the_readme_shows() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let state = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/demo.sh"))
        .env("MIZZEN_DEV_DIR", state.path().join("dev"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mizzen = format!("{root}/target/debug/mizzen");
    let down = Command::new(&mizzen)
        .args(["dev", "down"])
        .env("MIZZEN_DEV_DIR", state.path().join("dev"))
        .status();
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(down.is_ok_and(|s| s.success()), "mizzen dev down failed");

    let after = stdout
        .split("== after the update")
        .nth(1)
        .expect("an 'after the update' section");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let shown = readme
        .split("<!-- demo-after -->")
        .nth(1)
        .and_then(|r| r.split("<!-- /demo-after -->").next())
        .expect("README marks the demo's tables");
    let expected = tables(shown);
    assert_eq!(tables(after)[..expected.len()], expected[..]);
    // Then one ztunnel pod per fake node.
    let nodes: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("ztunnel-"))
        .filter_map(|l| l.split_whitespace().nth(6))
        .collect();
    let mut nodes = nodes;
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"]);
    assert!(stdout.contains("ztunnel.sailoperator.io/default condition met"));
}
