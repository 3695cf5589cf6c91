//! The catalog: loading and validating the versions file, and the queries on it.

use std::path::Path;

use serde::Deserialize;

use crate::images::{Images, ImagesSpec, valid_part};
use crate::rules::Component;
use crate::version::{Name, ParseVersionError, Version};

/// The catalog compiled into the operator.
const EMBEDDED: &str = include_str!("../versions.yaml");
/// The hub of every image a catalog file does not place elsewhere.
const DEFAULT_HUB: &str = "docker.io/istio";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    hub: Option<String>,
    default: Option<String>,
    versions: Vec<EntrySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    name: String,
    #[serde(rename = "ref")]
    target: Option<String>,
    #[serde(default)]
    eol: bool,
    hub: Option<String>,
    images: Option<ImagesSpec>,
}

/// The Istio versions the operator knows: concrete versions, `vX.Y-latest` aliases and
/// end-of-life entries, with the images of each.
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Vec<Entry>,
    default: Version,
}

/// One name of the catalog; an alias carries the data of its target.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    alias: bool,
    /// End of life itself, or (for an alias) pointing at an end-of-life version.
    eol: bool,
    version: Version,
    images: Images,
}

/// A version name resolved to an installable concrete version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The name that was asked for, e.g. `v1.26-latest`.
    pub requested: String,
    /// The concrete version; its `Display` is the concrete name (`v1.26.8`).
    pub version: Version,
    /// Whether `requested` was an alias.
    pub alias: bool,
    /// The images of the concrete version.
    pub images: Images,
}

/// A versions file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid version catalog {origin}: {problem}")]
pub struct LoadError {
    /// Where the catalog came from: a file path, `(embedded)` or `(string)`.
    pub origin: String,
    /// What is wrong with it.
    pub problem: LoadProblem,
}

/// What is wrong with a versions file.
#[derive(Debug, thiserror::Error)]
pub enum LoadProblem {
    /// The file cannot be read.
    #[error("cannot read the file: {0}")]
    Io(std::io::Error),
    /// Not YAML, or not of the catalog's shape.
    #[error("cannot parse the file: {0}")]
    Parse(String),
    /// An entry name that is neither `vX.Y.Z` nor `vX.Y-latest`.
    #[error("bad entry name: {0}")]
    Name(#[from] ParseVersionError),
    /// A name listed twice.
    #[error("version {name:?} is listed more than once")]
    Duplicate {
        /// The repeated name.
        name: String,
    },
    /// An entry whose fields do not fit its kind.
    #[error("entry {name:?}: {problem}")]
    Entry {
        /// The entry's name.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A hub or image value that cannot be part of an image reference.
    #[error("{field}: {value:?} is not a valid hub or image (empty or contains whitespace)")]
    Image {
        /// Where the value is, e.g. `versions[v1.26.3].images`.
        field: String,
        /// The rejected value.
        value: String,
    },
    /// An alias whose `ref` names no entry.
    #[error("alias {alias:?} refers to {target:?}, which is not in the catalog; the concrete versions are {}", .existing.join(", "))]
    DanglingAlias {
        /// The alias.
        alias: String,
        /// Its `ref`.
        target: String,
        /// Every concrete name of the catalog.
        existing: Vec<String>,
    },
    /// An alias whose `ref` is another alias.
    #[error(
        "alias {alias:?} refers to {target:?}, which is itself an alias; an alias must name a concrete version"
    )]
    AliasToAlias {
        /// The alias.
        alias: String,
        /// Its `ref`.
        target: String,
    },
    /// An alias `vX.Y-latest` whose `ref` is not an X.Y version.
    #[error("alias {alias:?} refers to {target:?}, which belongs to another minor version")]
    AliasMinorMismatch {
        /// The alias.
        alias: String,
        /// Its `ref`.
        target: String,
    },
    /// An installable alias whose `ref` is end-of-life.
    #[error(
        "alias {alias:?} refers to the end-of-life version {target:?}; point it at an installable \
         version or mark the alias `eol: true`"
    )]
    AliasToEol {
        /// The alias.
        alias: String,
        /// Its `ref`.
        target: String,
    },
    /// A `default` that is not an installable concrete version.
    #[error("default version {name:?} {problem}")]
    Default {
        /// The `default` value.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// No concrete version that is not end-of-life.
    #[error("the catalog lists no installable concrete version")]
    NoInstallable,
}

/// A version name that cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Neither `vX.Y.Z` nor `vX.Y-latest`.
    #[error(transparent)]
    Malformed(#[from] ParseVersionError),
    /// Well-formed but not in the catalog.
    #[error("version {name:?} is not in the version catalog; installable versions are {supported}")]
    Unknown {
        /// The requested name.
        name: String,
        /// The installable versions and aliases, summarised.
        supported: String,
    },
    /// In the catalog, but end-of-life.
    #[error(
        "version {name:?} is end-of-life and cannot be installed; installable versions are {supported}"
    )]
    EndOfLife {
        /// The requested name.
        name: String,
        /// The installable versions and aliases, summarised.
        supported: String,
    },
    /// Older than the component exists (ZTunnel before 1.24).
    #[error("{component} requires Istio {minimum} or newer, but version {name:?} is {version}")]
    TooOld {
        /// The component.
        component: Component,
        /// The requested name.
        name: String,
        /// What the name resolves to.
        version: Version,
        /// The oldest version of the component.
        minimum: Version,
    },
}

impl Catalog {
    /// The catalog compiled into the operator (`versions.yaml` of this crate).
    pub fn embedded() -> Result<Self, LoadError> {
        Self::load(EMBEDDED, "(embedded)")
    }

    /// A catalog from YAML text.
    pub fn from_yaml_str(yaml: &str) -> Result<Self, LoadError> {
        Self::load(yaml, "(string)")
    }

    /// A catalog from a file, e.g. the operator's `--versions-file`, which replaces the
    /// embedded catalog.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let origin = path.as_ref().display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::load(&text, &origin),
            Err(e) => Err(LoadError {
                origin,
                problem: LoadProblem::Io(e),
            }),
        }
    }

    fn load(text: &str, origin: &str) -> Result<Self, LoadError> {
        serde_saphyr::from_str(text)
            .map_err(|e| LoadProblem::Parse(e.to_string()))
            .and_then(Self::build)
            .map_err(|problem| LoadError {
                origin: origin.to_owned(),
                problem,
            })
    }

    fn build(file: FileSpec) -> Result<Self, LoadProblem> {
        let hub = file.hub.as_deref().unwrap_or(DEFAULT_HUB);
        if !valid_part(hub) {
            return Err(LoadProblem::Image {
                field: "hub".to_owned(),
                value: hub.to_owned(),
            });
        }
        let specs = &file.versions;
        let names = specs
            .iter()
            .map(|s| s.name.parse())
            .collect::<Result<Vec<Name>, _>>()?;
        if let Some((_, dup)) = specs
            .iter()
            .enumerate()
            .find(|(i, s)| specs[..*i].iter().any(|p| p.name == s.name))
        {
            return Err(LoadProblem::Duplicate {
                name: dup.name.clone(),
            });
        }
        let draft = Draft {
            hub,
            specs,
            names: &names,
        };
        let entries = specs
            .iter()
            .zip(&names)
            .map(|(spec, name)| draft.entry(spec, name))
            .collect::<Result<Vec<_>, _>>()?;

        let default = match file.default {
            // The newest release; prereleases only when nothing else is installable.
            None => entries
                .iter()
                .filter(|e| !e.alias && !e.eol)
                .map(|e| &e.version)
                .max_by_key(|v| (v.pre().is_none(), *v))
                .ok_or(LoadProblem::NoInstallable)?,
            Some(name) => match entries.iter().find(|e| e.name == name) {
                Some(e) if !e.alias && !e.eol => &e.version,
                found => {
                    let problem = match found {
                        None => "is not in the catalog",
                        Some(e) if e.alias => "is an alias; the default must be a concrete version",
                        Some(_) => "is end-of-life",
                    };
                    return Err(LoadProblem::Default { name, problem });
                }
            },
        };
        Ok(Self {
            default: default.clone(),
            entries,
        })
    }

    /// Resolves a name from `spec.version`: an alias to its concrete version, a concrete
    /// version to itself. Refuses malformed, unknown and end-of-life names.
    pub fn resolve(&self, name: &str) -> Result<Resolved, CatalogError> {
        self.resolve_with(name, None)
    }

    /// Like [`Catalog::resolve`], and also refuses versions older than `component` exists in.
    pub fn resolve_for(&self, component: Component, name: &str) -> Result<Resolved, CatalogError> {
        self.resolve_with(name, Some(component))
    }

    fn resolve_with(
        &self,
        name: &str,
        component: Option<Component>,
    ) -> Result<Resolved, CatalogError> {
        name.parse::<Name>()?;
        let Some(entry) = self.entry(name) else {
            return Err(CatalogError::Unknown {
                name: name.to_owned(),
                supported: self.supported(),
            });
        };
        if let Some(component) = component
            && !component.supports(&entry.version)
            && let Some(minimum) = component.minimum()
        {
            let version = entry.version.clone();
            return Err(CatalogError::TooOld {
                component,
                name: name.to_owned(),
                version,
                minimum,
            });
        }
        if entry.eol {
            return Err(CatalogError::EndOfLife {
                name: name.to_owned(),
                supported: self.supported(),
            });
        }
        Ok(Resolved {
            requested: entry.name.clone(),
            version: entry.version.clone(),
            alias: entry.alias,
            images: entry.images.clone(),
        })
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The version used when `spec.version` is omitted: the file's `default`, else the newest
    /// installable concrete version.
    pub fn default_version(&self) -> &Version {
        &self.default
    }

    /// Whether `name` is in the catalog and end-of-life (an alias also when its target is).
    pub fn is_eol(&self, name: &str) -> bool {
        self.entry(name).is_some_and(|e| e.eol)
    }

    /// Every name, in catalog order: the version enum of `Istio` and `IstioCNI`.
    pub fn all_names(&self) -> Vec<&str> {
        self.names(|_| true)
    }

    /// Concrete names including end-of-life ones, without aliases: the enum of `IstioRevision`.
    pub fn concrete_names(&self) -> Vec<&str> {
        self.names(|e| !e.alias)
    }

    /// The names whose (target) version can run ztunnel (1.24 or newer): the enum of `ZTunnel`.
    pub fn ztunnel_names(&self) -> Vec<&str> {
        self.names(|e| Component::ZTunnel.supports(&e.version))
    }

    fn names(&self, keep: impl Fn(&Entry) -> bool) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.name.as_str())
            .collect()
    }

    /// The installable versions and aliases for error messages:
    /// `v1.26.0 … v1.26.8, v1.27.0 … v1.27.9 and the aliases v1.26-latest, v1.27-latest`.
    fn supported(&self) -> String {
        let mut versions: Vec<&Version> = self
            .entries
            .iter()
            .filter(|e| !e.alias && !e.eol)
            .map(|e| &e.version)
            .collect();
        versions.sort();
        // Runs of consecutive patches of one minor (no prereleases) read as `first … last`.
        let ranges: Vec<String> = versions
            .chunk_by(|a, b| {
                a.minor_key() == b.minor_key()
                    && a.pre().is_none()
                    && b.pre().is_none()
                    && a.patch.checked_add(1) == Some(b.patch)
            })
            .flat_map(|run| match run {
                [first, _, .., last] => vec![format!("{first} … {last}")],
                _ => run.iter().map(ToString::to_string).collect(),
            })
            .collect();
        let mut aliases: Vec<&Entry> = self.entries.iter().filter(|e| e.alias && !e.eol).collect();
        aliases.sort_by_key(|e| &e.version);
        let aliases: Vec<&str> = aliases.iter().map(|e| e.name.as_str()).collect();
        match aliases.as_slice() {
            [] => ranges.join(", "),
            _ => format!(
                "{} and the aliases {}",
                ranges.join(", "),
                aliases.join(", ")
            ),
        }
    }
}

/// The parsed file while it is validated.
struct Draft<'a> {
    hub: &'a str,
    specs: &'a [EntrySpec],
    names: &'a [Name],
}

impl Draft<'_> {
    fn entry(&self, spec: &EntrySpec, name: &Name) -> Result<Entry, LoadProblem> {
        let invalid = |problem| {
            Err(LoadProblem::Entry {
                name: spec.name.clone(),
                problem,
            })
        };
        let (version, images, eol) = match (name, &spec.target) {
            (Name::Concrete(version), None) => {
                (version.clone(), self.images(spec, version)?, spec.eol)
            }
            (Name::Concrete(_), Some(_)) => {
                return invalid("only an alias (vX.Y-latest) takes `ref`");
            }
            (Name::Alias { .. }, None) => {
                return invalid("an alias needs `ref`, the concrete version it stands for");
            }
            (Name::Alias { .. }, Some(_)) if spec.hub.is_some() || spec.images.is_some() => {
                return invalid(
                    "an alias takes only `ref` and `eol`; give `hub` and `images` on the concrete version",
                );
            }
            (&Name::Alias { major, minor }, Some(target)) => {
                let (target, version) = self.alias_target(spec, target, (major, minor))?;
                (
                    version.clone(),
                    self.images(target, version)?,
                    spec.eol || target.eol,
                )
            }
        };
        let alias = matches!(name, Name::Alias { .. });
        Ok(Entry {
            name: spec.name.clone(),
            alias,
            eol,
            version,
            images,
        })
    }

    /// The concrete entry an alias refers to, checked against the alias rules.
    fn alias_target(
        &self,
        alias: &EntrySpec,
        target: &str,
        series: (u32, u32),
    ) -> Result<(&EntrySpec, &Version), LoadProblem> {
        let concrete = || {
            self.specs
                .iter()
                .zip(self.names)
                .filter_map(|(spec, name)| match name {
                    Name::Concrete(version) => Some((spec, version)),
                    Name::Alias { .. } => None,
                })
        };
        let (alias_name, target_name) = (alias.name.clone(), target.to_owned());
        match concrete().find(|(spec, _)| spec.name == target) {
            Some((_, version)) if version.minor_key() != series => {
                Err(LoadProblem::AliasMinorMismatch {
                    alias: alias_name,
                    target: target_name,
                })
            }
            Some((spec, _)) if spec.eol && !alias.eol => Err(LoadProblem::AliasToEol {
                alias: alias_name,
                target: target_name,
            }),
            Some(found) => Ok(found),
            None if self.specs.iter().any(|spec| spec.name == target) => {
                Err(LoadProblem::AliasToAlias {
                    alias: alias_name,
                    target: target_name,
                })
            }
            None => {
                let existing = concrete().map(|(spec, _)| spec.name.clone()).collect();
                Err(LoadProblem::DanglingAlias {
                    alias: alias_name,
                    target: target_name,
                    existing,
                })
            }
        }
    }

    /// The images of a concrete entry: its `images`, under its `hub` or the file's.
    fn images(&self, spec: &EntrySpec, version: &Version) -> Result<Images, LoadProblem> {
        let hub = spec.hub.as_deref().unwrap_or(self.hub);
        let images = spec.images.as_ref();
        if let Some(value) = (!valid_part(hub))
            .then_some(hub)
            .or_else(|| images?.invalid_value())
        {
            return Err(LoadProblem::Image {
                field: format!("versions[{}]", spec.name),
                value: value.to_owned(),
            });
        }
        let tag = version.tag();
        Ok(images.map_or_else(
            || Images::upstream(hub, &tag),
            |images| images.build(hub, &tag),
        ))
    }
}

#[cfg(test)]
mod tests;
