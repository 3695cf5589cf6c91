//! Istio versions and version names (`vX.Y.Z`, `vX.Y-latest`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// An Istio release version, written `vX.Y.Z` with an optional prerelease suffix
/// (`v1.31.0-beta.1`).
///
/// Parsing is strict: a leading `v`, three decimal numbers without leading zeros, and a
/// prerelease of dot-separated, non-empty identifiers of `[0-9a-z-]`. Ordering follows
/// semantic versioning (a prerelease sorts before its release).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major version (`1` in `v1.26.3`).
    pub major: u32,
    /// Minor version (`26` in `v1.26.3`).
    pub minor: u32,
    /// Patch version (`3` in `v1.26.3`).
    pub patch: u32,
    pre: Option<String>,
}

/// A string that is not a valid version or version name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid version; expected {expected}")]
pub struct ParseVersionError {
    /// The rejected input.
    pub input: String,
    /// The accepted forms, e.g. `vX.Y.Z or vX.Y-latest`.
    pub expected: &'static str,
}

impl Version {
    /// A release version without prerelease suffix.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
            pre: None,
        }
    }

    /// The prerelease suffix without its `-` (`beta.1`), if any.
    pub fn pre(&self) -> Option<&str> {
        self.pre.as_deref()
    }

    /// The bare version used as image tag: `1.26.3`.
    pub fn tag(&self) -> String {
        let Self {
            major,
            minor,
            patch,
            ..
        } = self;
        match &self.pre {
            Some(pre) => format!("{major}.{minor}.{patch}-{pre}"),
            None => format!("{major}.{minor}.{patch}"),
        }
    }

    /// The dashed form used in revision names: `1-26-3` (`1-31-0-beta-1`).
    pub fn dashed(&self) -> String {
        self.tag().replace('.', "-")
    }

    /// The minor series this version belongs to, e.g. `v1.26.x`, for messages.
    pub(crate) fn series(&self) -> String {
        format!("v{}.{}.x", self.major, self.minor)
    }

    /// `(major, minor)`, the unit of every skew rule.
    pub(crate) fn minor_key(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix('v')?;
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        let [major, minor, patch] = parse_numbers(core)?;
        if pre.is_some_and(|pre| !pre.split('.').all(valid_pre_identifier)) {
            return None;
        }
        Some(Self {
            major,
            minor,
            patch,
            pre: pre.map(str::to_owned),
        })
    }
}

/// Parses exactly `N` dot-separated decimal numbers without leading zeros.
fn parse_numbers<const N: usize>(s: &str) -> Option<[u32; N]> {
    let mut parts = s.split('.');
    let mut out = [0; N];
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty()
            || !part.bytes().all(|b| b.is_ascii_digit())
            || (part.len() > 1 && part.starts_with('0'))
        {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn valid_pre_identifier(id: &str) -> bool {
    let numeric = id.bytes().all(|b| b.is_ascii_digit());
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
        && !(numeric && id.len() > 1 && id.starts_with('0'))
}

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| ParseVersionError {
            input: s.to_owned(),
            expected: "vX.Y.Z",
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.tag())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // Numeric identifiers sort numerically and before alphanumeric ones; a shorter list of
        // identifiers sorts first when it is a prefix of the other (semver §11).
        fn key(id: &str) -> (bool, u64, &str) {
            match id.parse::<u64>() {
                Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => (false, n, ""),
                _ => (true, 0, id),
            }
        }
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.split('.').map(key).cmp(b.split('.').map(key)),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A well-formed entry name of the catalog: a concrete version or a `vX.Y-latest` alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Name {
    Concrete(Version),
    Alias { major: u32, minor: u32 },
}

impl FromStr for Name {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let alias = s
            .strip_suffix("-latest")
            .and_then(|rest| rest.strip_prefix('v'))
            .and_then(parse_numbers);
        match (alias, Version::parse(s)) {
            (Some([major, minor]), _) => Ok(Self::Alias { major, minor }),
            (None, Some(version)) => Ok(Self::Concrete(version)),
            (None, None) => Err(ParseVersionError {
                input: s.to_owned(),
                expected: "vX.Y.Z or vX.Y-latest",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_and_formats() {
        let version = v("v1.26.3");
        assert_eq!(
            (version.major, version.minor, version.patch, version.pre()),
            (1, 26, 3, None)
        );
        assert_eq!(version, Version::new(1, 26, 3));
        assert_eq!(version.to_string(), "v1.26.3");
        assert_eq!(version.tag(), "1.26.3");
        assert_eq!(version.dashed(), "1-26-3");
        assert_eq!(v("v0.0.0"), Version::new(0, 0, 0));
        assert_eq!(v("v1.28.10").tag(), "1.28.10");
    }

    #[test]
    fn parses_prereleases() {
        let beta = v("v1.31.0-beta.1");
        assert_eq!(beta.pre(), Some("beta.1"));
        assert_eq!(beta.to_string(), "v1.31.0-beta.1");
        assert_eq!(beta.tag(), "1.31.0-beta.1");
        assert_eq!(beta.dashed(), "1-31-0-beta-1");
        assert_eq!(v("v1.32.0-alpha.527f8d6c").pre(), Some("alpha.527f8d6c"));
        assert_eq!(v("v1.26.3-rc-1").pre(), Some("rc-1"));
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in [
            "",
            "v",
            "1.26.3",
            "1.26",
            "v1.26",
            "v1.26.x",
            "v01.26.3",
            "v1.026.3",
            "v1.26.03",
            "v1.26.3-",
            " v1.26.3",
            "v1.26.3 ",
            "v1.26.3.1",
            "V1.26.3",
            "v1..3",
            "v1.26.",
            "v+1.26.3",
            "v1.-26.3",
            "v1.26.3-beta..1",
            "v1.26.3-beta.",
            "v1.26.3-Beta",
            "v1.26.3-beta.01",
            "v1.26.3+build",
            "v1.26-latest",
            "v99999999999.0.0",
            "v1.26.3-béta",
            "vv1.26.3",
        ] {
            let err = bad.parse::<Version>().expect_err(bad);
            assert_eq!(err.input, bad);
            assert_eq!(
                err.to_string(),
                format!("{bad:?} is not a valid version; expected vX.Y.Z")
            );
        }
    }

    #[test]
    fn orders_numerically_and_by_semver_prerelease() {
        let mut versions: Vec<Version> = [
            "v1.28.10",
            "v1.28.2",
            "v2.0.0",
            "v1.9.9",
            "v1.31.0",
            "v1.31.0-beta.1",
            "v1.31.0-alpha",
            "v1.31.0-beta.11",
            "v1.31.0-beta.2",
            "v1.31.0-beta",
            "v1.31.0-beta.x",
        ]
        .into_iter()
        .map(v)
        .collect();
        versions.sort();
        let sorted: Vec<String> = versions.iter().map(Version::to_string).collect();
        assert_eq!(
            sorted,
            [
                "v1.9.9",
                "v1.28.2",
                "v1.28.10",
                "v1.31.0-alpha",
                "v1.31.0-beta",
                "v1.31.0-beta.1",
                "v1.31.0-beta.2",
                "v1.31.0-beta.11",
                "v1.31.0-beta.x",
                "v1.31.0",
                "v2.0.0",
            ]
        );
    }

    #[test]
    fn parses_names() {
        assert_eq!(
            "v1.30-latest".parse(),
            Ok(Name::Alias {
                major: 1,
                minor: 30
            })
        );
        assert_eq!(
            "v1.30.3".parse(),
            Ok(Name::Concrete(Version::new(1, 30, 3)))
        );
        for bad in [
            "v1-latest",
            "v1.30.3.1-latest",
            "1.30-latest",
            "v1.030-latest",
            "v1.30-Latest",
            "latest",
            "master",
        ] {
            let err = bad.parse::<Name>().expect_err(bad);
            assert_eq!(
                err.to_string(),
                format!("{bad:?} is not a valid version; expected vX.Y.Z or vX.Y-latest")
            );
        }
    }
}
