use super::*;
use crate::ImageRef;

fn embedded() -> Catalog {
    Catalog::embedded().unwrap_or_else(|e| panic!("{e}"))
}

fn v(s: &str) -> Version {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn load(yaml: &str) -> Catalog {
    Catalog::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(yaml: &str) -> LoadProblem {
    let err = Catalog::from_yaml_str(yaml).expect_err("catalog should be refused");
    assert_eq!(err.origin, "(string)");
    err.problem
}

/// A small user catalog: 1.26.3–1.26.4 with alias, 1.27.0 with Red Hat images, 1.23 EOL.
const SMALL: &str = r#"
hub: quay.io/mesh
versions:
  - name: v1.27.0
    hub: registry.example/istio
    images:
      istiod: registry.redhat.io/openshift-service-mesh/istio-pilot-rhel9@sha256:aaaa
      cni: install-cni-fips
  - name: v1.26-latest
    ref: v1.26.4
  - name: v1.26.4
  - name: v1.26.3
  - name: v1.23-latest
    ref: v1.23.6
    eol: true
  - name: v1.23.6
    eol: true
"#;

#[test]
fn embedded_catalog_has_the_versions_of_versions_md() {
    let catalog = embedded();
    let installable = |minor: u32| {
        let names = catalog.concrete_names();
        names
            .into_iter()
            .filter(|n| !catalog.is_eol(n) && v(n).minor == minor)
            .count()
    };
    assert_eq!(
        [31, 30, 29, 28, 27, 26].map(installable),
        [5, 5, 8, 11, 10, 9]
    );
    assert_eq!(
        catalog
            .entries
            .iter()
            .filter(|e| !e.alias && !e.eol)
            .count(),
        48
    );
    assert_eq!(
        catalog.entries.iter().filter(|e| !e.alias && e.eol).count(),
        5 + 7 + 5 + 4 + 1
    );
    assert_eq!(catalog.concrete_names().len(), 48 + 22);
    assert_eq!(catalog.all_names().len(), 48 + 22 + 6 + 4);
    for (alias, target) in [
        ("v1.31-latest", "v1.31.4"),
        ("v1.30-latest", "v1.30.8"),
        ("v1.29-latest", "v1.29.8"),
        ("v1.28-latest", "v1.28.10"),
        ("v1.27-latest", "v1.27.9"),
        ("v1.26-latest", "v1.26.8"),
    ] {
        assert_eq!(
            catalog.resolve(alias).map(|r| r.version),
            Ok(v(target)),
            "{alias}"
        );
    }
    for (alias, target) in [
        ("v1.25-latest", "v1.25.5"),
        ("v1.24-latest", "v1.24.6"),
        ("v1.23-latest", "v1.23.6"),
        ("v1.22-latest", "v1.22.8"),
    ] {
        assert!(catalog.is_eol(alias), "{alias}");
        assert_eq!(catalog.entry(alias).map(|e| &e.version), Some(&v(target)));
    }
    let eol: Vec<&str> = catalog
        .all_names()
        .into_iter()
        .filter(|n| catalog.is_eol(n))
        .collect();
    let expected_eol: Vec<String> = [(25, 1, 5), (24, 0, 6), (23, 2, 6), (22, 5, 8), (21, 6, 6)]
        .into_iter()
        .flat_map(|(minor, first, last)| {
            let alias = (minor >= 22).then(|| format!("v1.{minor}-latest"));
            alias
                .into_iter()
                .chain((first..=last).rev().map(move |p| format!("v1.{minor}.{p}")))
        })
        .collect();
    assert_eq!(eol, expected_eol);
    assert_eq!(catalog.default_version(), &v("v1.30.8"));
    assert_eq!(
        &catalog.all_names()[..3],
        ["v1.31-latest", "v1.31.4", "v1.31.3"]
    );
    assert_eq!(catalog.all_names().last(), Some(&"v1.21.6"));
}

#[test]
fn resolves_concrete_versions_and_aliases() {
    let catalog = embedded();
    let concrete = catalog.resolve("v1.26.3").unwrap();
    assert_eq!(
        (
            concrete.requested.as_str(),
            &concrete.version,
            concrete.alias
        ),
        ("v1.26.3", &v("v1.26.3"), false)
    );
    let alias = catalog.resolve("v1.28-latest").unwrap();
    assert_eq!(
        (alias.requested.as_str(), &alias.version, alias.alias),
        ("v1.28-latest", &v("v1.28.10"), true)
    );
    assert_eq!(
        alias.images.istiod.render(None),
        "docker.io/istio/pilot:1.28.10"
    );
    assert_eq!(
        alias.images.proxy.render(Some("distroless")),
        "docker.io/istio/proxyv2:1.28.10-distroless"
    );
    assert_eq!(
        alias.images.cni.render(None),
        "docker.io/istio/install-cni:1.28.10"
    );
    assert_eq!(
        alias.images.ztunnel,
        ImageRef::from_value("ztunnel", "docker.io/istio", "1.28.10")
    );
}

#[test]
fn refuses_malformed_names() {
    let catalog = embedded();
    for bad in [
        "",
        "1.26",
        "v1.26",
        "v1.26.x",
        "v01.26.3",
        "v1.26.3-",
        " v1.26.3",
        "v1.26.3.1",
        "latest",
        "v1.26-LATEST",
    ] {
        let err = catalog.resolve(bad).unwrap_err();
        assert_eq!(
            err,
            CatalogError::Malformed(ParseVersionError {
                input: bad.to_owned(),
                expected: "vX.Y.Z or vX.Y-latest"
            })
        );
        assert_eq!(
            err.to_string(),
            format!("{bad:?} is not a valid version; expected vX.Y.Z or vX.Y-latest")
        );
    }
}

const SUPPORTED: &str = "v1.26.0 … v1.26.8, v1.27.0 … v1.27.9, v1.28.0 … v1.28.10, v1.29.0 … v1.29.6, \
                         v1.29.8, v1.30.0 … v1.30.3, v1.30.8, v1.31.0 … v1.31.4 and the aliases \
                         v1.26-latest, v1.27-latest, v1.28-latest, v1.29-latest, v1.30-latest, \
                         v1.31-latest";

#[test]
fn refuses_unknown_versions() {
    let catalog = embedded();
    for unknown in ["v1.30.4", "v1.32-latest", "v1.20.0", "v1.31.0-beta.1"] {
        let err = catalog.resolve(unknown).unwrap_err();
        assert_eq!(
            err,
            CatalogError::Unknown {
                name: unknown.to_owned(),
                supported: SUPPORTED.to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "version {unknown:?} is not in the version catalog; installable versions are {SUPPORTED}"
            )
        );
    }
}

#[test]
fn refuses_end_of_life_versions() {
    let catalog = embedded();
    for eol in ["v1.24.3", "v1.25-latest", "v1.21.6", "v1.22.5"] {
        assert!(catalog.is_eol(eol), "{eol}");
        let err = catalog.resolve(eol).unwrap_err();
        assert_eq!(
            err,
            CatalogError::EndOfLife {
                name: eol.to_owned(),
                supported: SUPPORTED.to_owned()
            }
        );
    }
    assert_eq!(
        catalog.resolve("v1.24.3").unwrap_err().to_string(),
        format!(
            "version \"v1.24.3\" is end-of-life and cannot be installed; installable versions are {SUPPORTED}"
        )
    );
    for installable in ["v1.26.0", "v1.30-latest", "v9.9.9", "nonsense"] {
        assert!(!catalog.is_eol(installable), "{installable}");
    }
}

#[test]
fn ztunnel_needs_1_24() {
    let catalog = load(SMALL);
    let err = catalog
        .resolve_for(Component::ZTunnel, "v1.23-latest")
        .unwrap_err();
    assert_eq!(
        err,
        CatalogError::TooOld {
            component: Component::ZTunnel,
            name: "v1.23-latest".to_owned(),
            version: v("v1.23.6"),
            minimum: v("v1.24.0"),
        }
    );
    assert_eq!(
        err.to_string(),
        "ZTunnel requires Istio v1.24.0 or newer, but version \"v1.23-latest\" is v1.23.6"
    );
    // IstioCNI existed before 1.24: the version is only end-of-life.
    assert!(matches!(
        catalog.resolve_for(Component::IstioCni, "v1.23.6"),
        Err(CatalogError::EndOfLife { .. })
    ));
    assert_eq!(
        catalog
            .resolve_for(Component::ZTunnel, "v1.26-latest")
            .map(|r| r.version),
        Ok(v("v1.26.4"))
    );
    assert!(matches!(
        embedded().resolve_for(Component::ZTunnel, "v1.24.6"),
        Err(CatalogError::EndOfLife { .. })
    ));
}

#[test]
fn name_lists_for_the_crd_enums() {
    let catalog = load(SMALL);
    assert_eq!(
        catalog.all_names(),
        [
            "v1.27.0",
            "v1.26-latest",
            "v1.26.4",
            "v1.26.3",
            "v1.23-latest",
            "v1.23.6"
        ]
    );
    assert_eq!(
        catalog.concrete_names(),
        ["v1.27.0", "v1.26.4", "v1.26.3", "v1.23.6"]
    );
    assert_eq!(
        catalog.ztunnel_names(),
        ["v1.27.0", "v1.26-latest", "v1.26.4", "v1.26.3"]
    );

    let embedded = embedded();
    let ztunnel = embedded.ztunnel_names();
    assert_eq!(ztunnel.len(), 48 + 6 + 2 + 5 + 7);
    assert!(
        ztunnel.contains(&"v1.24-latest")
            && ztunnel.contains(&"v1.24.0")
            && ztunnel.contains(&"v1.25.5")
    );
    assert!(!ztunnel.contains(&"v1.23-latest") && !ztunnel.contains(&"v1.23.6"));
}

#[test]
fn user_catalog_images_and_default() {
    let catalog = load(SMALL);
    assert_eq!(catalog.default_version(), &v("v1.27.0"));
    let images = catalog.resolve("v1.27.0").unwrap().images;
    assert_eq!(
        images.istiod.render(Some("distroless")),
        "registry.redhat.io/openshift-service-mesh/istio-pilot-rhel9@sha256:aaaa"
    );
    assert_eq!(
        images.cni.render(None),
        "registry.example/istio/install-cni-fips:1.27.0"
    );
    assert_eq!(
        images.proxy.render(None),
        "registry.example/istio/proxyv2:1.27.0"
    );
    assert_eq!(
        catalog
            .resolve("v1.26-latest")
            .unwrap()
            .images
            .ztunnel
            .render(None),
        "quay.io/mesh/ztunnel:1.26.4"
    );
    assert_eq!(
        catalog.resolve("v1.27.1").unwrap_err().to_string(),
        "version \"v1.27.1\" is not in the version catalog; installable versions are v1.26.3, v1.26.4, v1.27.0 \
         and the aliases v1.26-latest"
    );
}

#[test]
fn explicit_default() {
    let catalog = load("default: v1.26.3\nversions: [{name: v1.26.3}, {name: v1.26.4}]");
    assert_eq!(catalog.default_version(), &v("v1.26.3"));
    for (default, problem) in [
        ("v1.26.9", "is not in the catalog"),
        (
            "v1.26-latest",
            "is an alias; the default must be a concrete version",
        ),
        ("v1.25.5", "is end-of-life"),
    ] {
        let yaml = format!(
            "default: {default}\nversions:\n- {{name: v1.26.3}}\n- {{name: v1.26-latest, ref: v1.26.3}}\n- {{name: v1.25.5, eol: true}}"
        );
        let err = load_err(&yaml);
        assert!(
            matches!(&err, LoadProblem::Default { name, problem: p } if name == default && *p == problem),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("default version {default:?} {problem}")
        );
    }
}

#[test]
fn default_is_newest_release_unless_only_prereleases() {
    let catalog = load(
        "versions: [{name: v1.31.0-beta.1}, {name: v1.30.3}, {name: v1.29.6}, {name: v1.32.0, eol: true}]",
    );
    assert_eq!(catalog.default_version(), &v("v1.30.3"));
    let catalog = load(
        "versions: [{name: v1.31.0-alpha.1}, {name: v1.31.0-beta.1}, {name: v1.30.3, eol: true}]",
    );
    assert_eq!(catalog.default_version(), &v("v1.31.0-beta.1"));
}

#[test]
fn needs_an_installable_version() {
    assert!(matches!(
        load_err("versions: []"),
        LoadProblem::NoInstallable
    ));
    assert!(matches!(
        load_err("versions: [{name: v1.25.5, eol: true}]"),
        LoadProblem::NoInstallable
    ));
}

#[test]
fn refuses_dangling_alias_in_a_user_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("versions.yaml");
    std::fs::write(
        &path,
        "versions:\n- name: v1.26-latest\n  ref: v1.26.9\n- name: v1.26.3\n- name: v1.26.4\n",
    )
    .unwrap();
    let err = Catalog::from_file(&path).unwrap_err();
    assert_eq!(err.origin, path.display().to_string());
    assert!(matches!(
        &err.problem,
        LoadProblem::DanglingAlias { alias, target, existing } if alias == "v1.26-latest" && target == "v1.26.9" && existing == &["v1.26.3", "v1.26.4"]
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "invalid version catalog {}: alias \"v1.26-latest\" refers to \"v1.26.9\", which is not in the catalog; \
             the concrete versions are v1.26.3, v1.26.4",
            path.display()
        )
    );
}

#[test]
fn loads_a_user_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("versions.yaml");
    std::fs::write(&path, SMALL).unwrap();
    let catalog = Catalog::from_file(&path).unwrap();
    assert_eq!(catalog.all_names().len(), 6);
    let missing = Catalog::from_file(dir.path().join("missing.yaml")).unwrap_err();
    assert!(matches!(missing.problem, LoadProblem::Io(_)));
    assert!(missing.to_string().starts_with(&format!(
        "invalid version catalog {}: cannot read the file: ",
        dir.path().join("missing.yaml").display()
    )));
}

#[test]
fn refuses_bad_aliases() {
    let alias_to_alias = "versions: [{name: v1.26.3}, {name: v1.26-latest, ref: v1.26.3}, {name: v1.27.0}, {name: v1.27-latest, ref: v1.26-latest}]";
    let err = load_err(alias_to_alias);
    assert!(
        matches!(&err, LoadProblem::AliasToAlias { alias, target } if alias == "v1.27-latest" && target == "v1.26-latest")
    );
    assert_eq!(
        err.to_string(),
        "alias \"v1.27-latest\" refers to \"v1.26-latest\", which is itself an alias; an alias must name a concrete version"
    );

    let err = load_err("versions: [{name: v1.26.3}, {name: v1.27-latest, ref: v1.26.3}]");
    assert!(
        matches!(&err, LoadProblem::AliasMinorMismatch { alias, target } if alias == "v1.27-latest" && target == "v1.26.3")
    );

    let err = load_err(
        "versions: [{name: v1.26.3}, {name: v1.25-latest, ref: v1.25.5}, {name: v1.25.5, eol: true}]",
    );
    assert!(
        matches!(&err, LoadProblem::AliasToEol { alias, target } if alias == "v1.25-latest" && target == "v1.25.5")
    );

    // An EOL alias may point at an installable version; only the alias is refused.
    let catalog =
        load("versions: [{name: v1.26.3}, {name: v1.26-latest, ref: v1.26.3, eol: true}]");
    assert!(catalog.is_eol("v1.26-latest") && !catalog.is_eol("v1.26.3"));
    assert!(matches!(
        catalog.resolve("v1.26-latest"),
        Err(CatalogError::EndOfLife { .. })
    ));
}

#[test]
fn refuses_entries_that_do_not_fit_their_kind() {
    for (yaml, name, problem) in [
        (
            "versions: [{name: v1.26.3, ref: v1.26.4}, {name: v1.26.4}]",
            "v1.26.3",
            "only an alias (vX.Y-latest) takes `ref`",
        ),
        (
            "versions: [{name: v1.26.3}, {name: v1.26-latest}]",
            "v1.26-latest",
            "an alias needs `ref`, the concrete version it stands for",
        ),
        (
            "versions: [{name: v1.26.3}, {name: v1.26-latest, ref: v1.26.3, hub: quay.io/x}]",
            "v1.26-latest",
            "an alias takes only `ref` and `eol`; give `hub` and `images` on the concrete version",
        ),
    ] {
        let err = load_err(yaml);
        assert!(
            matches!(&err, LoadProblem::Entry { name: n, problem: p } if n == name && *p == problem),
            "{err}"
        );
    }
}

#[test]
fn refuses_duplicates_and_malformed_names() {
    let err = load_err("versions: [{name: v1.26.3}, {name: v1.26.4}, {name: v1.26.3, eol: true}]");
    assert!(matches!(&err, LoadProblem::Duplicate { name } if name == "v1.26.3"));
    assert_eq!(
        err.to_string(),
        "version \"v1.26.3\" is listed more than once"
    );

    for bad in ["1.26.3", "v1.26", "master", "v1.26.03"] {
        let err = load_err(&format!(
            "versions: [{{name: v1.26.3}}, {{name: \"{bad}\"}}]"
        ));
        assert!(
            matches!(&err, LoadProblem::Name(e) if e.input == bad),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "bad entry name: {bad:?} is not a valid version; expected vX.Y.Z or vX.Y-latest"
            )
        );
    }
}

#[test]
fn refuses_bad_images() {
    let err = load_err("hub: ''\nversions: [{name: v1.26.3}]");
    assert!(
        matches!(&err, LoadProblem::Image { field, value } if field == "hub" && value.is_empty())
    );
    let err = load_err("versions: [{name: v1.26.3, images: {ztunnel: 'bad image'}}]");
    assert!(
        matches!(&err, LoadProblem::Image { field, value } if field == "versions[v1.26.3]" && value == "bad image")
    );
    // Found through the alias too, whichever comes first.
    let err = load_err("versions: [{name: v1.26-latest, ref: v1.26.3}, {name: v1.26.3, hub: ' '}]");
    assert!(matches!(&err, LoadProblem::Image { field, .. } if field == "versions[v1.26.3]"));
}

#[test]
fn refuses_unparsable_files() {
    for yaml in [
        "",
        "versions: [",
        "versions: {name: v1.26.3}",
        "versions:\n- name: v1.26.3\n  charts: []",
        "hub: a\nhub: b\nversions: [{name: v1.26.3}]",
        "versions: [{name: v1.26.3, images: {pilot: x}}]",
        "versions: [{name: v1.26.3, eol: maybe}]",
        "versions: [{name: [v1.26.3]}]",
        "\t- :\n",
    ] {
        let err = Catalog::from_yaml_str(yaml).expect_err(yaml);
        assert!(
            matches!(err.problem, LoadProblem::Parse(_)),
            "{yaml:?}: {err}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid version catalog (string): cannot parse the file: "),
            "{err}"
        );
    }
}

#[test]
fn summary_lists_scattered_patches_and_prereleases() {
    let catalog = load(
        "versions: [{name: v1.26.1}, {name: v1.26.3}, {name: v1.26.4}, {name: v1.27.0-beta.1}, {name: v1.27.0}, {name: v1.28.0}, {name: v1.28.1}, {name: v1.28.2}]",
    );
    let CatalogError::Unknown { supported, .. } = catalog.resolve("v1.29.0").unwrap_err() else {
        panic!("not Unknown")
    };
    assert_eq!(
        supported,
        "v1.26.1, v1.26.3, v1.26.4, v1.27.0-beta.1, v1.27.0, v1.28.0 … v1.28.2"
    );
}
