//! Charts from istio/istio's tree made into what a release publishes. The tree's charts are
//! placeholders that Istio's release builder fills in when it publishes a version: chart
//! `version`/`appVersion` 1.0.0 become the release, the development hub
//! (`registry.istio.io/testing`) and tag (`latest`) become the published hub
//! (`docker.io/istio`) and the release, and the `install.operator.istio.io/owning-resource`
//! labels are dropped (no published chart has them; compare Sail's copies). `--as-release`
//! applies the same edits to a copy, so that a minor without released charts at hand (a
//! release candidate's tree) can be compared without those placeholders showing as
//! differences.

use std::path::Path;

use anyhow::Context;
use mizzen_catalog::Version;

/// A copy of the version directory `tree` (charts, profiles, CRDs) with the release
/// builder's edits for `version`; removed when the returned directory is dropped.
pub fn as_release(tree: &Path, version: &Version) -> anyhow::Result<tempfile::TempDir> {
    let out = tempfile::tempdir()?;
    copy(tree, out.path(), &|path, text| {
        edit(path, text, &version.tag())
    })
    .with_context(|| format!("copying {}", tree.display()))?;
    Ok(out)
}

fn copy(from: &Path, to: &Path, edit: &dyn Fn(&Path, String) -> String) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy(&src, &dst, edit)?;
        } else {
            let text = std::fs::read_to_string(&src)?;
            std::fs::write(&dst, edit(&src, text))?;
        }
    }
    Ok(())
}

/// The release builder's edits to one file of a chart.
fn edit(path: &Path, text: String, tag: &str) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let lines = text.lines().filter_map(|line| {
        let key = line.trim_start();
        if key.starts_with("install.operator.istio.io/owning-resource:") {
            return None;
        }
        let indent = &line[..line.len() - key.len()];
        Some(match name {
            "Chart.yaml" if key == "version: 1.0.0" => format!("{indent}version: {tag}"),
            "Chart.yaml" if key == "appVersion: 1.0.0" => format!("{indent}appVersion: {tag}"),
            "values.yaml" if key == "hub: registry.istio.io/testing" => {
                format!("{indent}hub: docker.io/istio")
            }
            "values.yaml" if key == "tag: latest" => format!("{indent}tag: {tag}"),
            _ => line.to_owned(),
        })
    });
    let mut out = lines.collect::<Vec<_>>().join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_the_release_and_nothing_else_changes() {
        let chart = edit(
            Path::new("c/Chart.yaml"),
            "name: istiod\nversion: 1.0.0\nappVersion: 1.0.0\n".into(),
            "1.31.4",
        );
        assert_eq!(chart, "name: istiod\nversion: 1.31.4\nappVersion: 1.31.4\n");
        let values = edit(
            Path::new("c/values.yaml"),
            "  global:\n    hub: registry.istio.io/testing\n    tag: latest\n  hub: \"\"\n".into(),
            "1.31.4",
        );
        assert_eq!(
            values,
            "  global:\n    hub: docker.io/istio\n    tag: 1.31.4\n  hub: \"\"\n"
        );
        let template = edit(
            Path::new("c/templates/x.yaml"),
            "  labels:\n    install.operator.istio.io/owning-resource: {{ .Values.ownerName }}\n    app: istiod\ntag: latest\n".into(),
            "1.31.4",
        );
        assert_eq!(template, "  labels:\n    app: istiod\ntag: latest\n");
    }
}
