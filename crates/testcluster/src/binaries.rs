//! Finding (and if needed building) the control-plane binaries.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};

/// Environment variable naming a directory that already holds the binaries.
const BIN_ENV: &str = "MIZZEN_CLUSTER_BIN";
/// The build script, relative to the repository root.
const BUILD_SCRIPT: &str = "tools/cluster/build.sh";
/// How many lines of the build's stderr an error message quotes.
const STDERR_TAIL_LINES: usize = 30;

/// The directory holding `etcd`, `kube-apiserver`, `kube-controller-manager`, `kube-scheduler`,
/// `kubectl` and `kwok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBinaries {
    dir: PathBuf,
}

impl ClusterBinaries {
    /// Every binary a cluster needs.
    pub const NAMES: [&'static str; 6] = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "kwok",
    ];

    /// Finds the binaries: the directory named by `MIZZEN_CLUSTER_BIN` if that is set, otherwise
    /// the output of `tools/cluster/build.sh` (which builds them on first use, taking 20-40
    /// minutes on a cold machine, and answers at once afterwards).
    ///
    /// The script is looked up in this crate's repository, then upwards from the current
    /// directory. Its progress is echoed to stderr, and its answer is remembered for the rest
    /// of the process. This blocks (concurrent callers wait for one build); call it from
    /// `spawn_blocking` in async code.
    pub fn locate() -> Result<Self> {
        if let Some(dir) = std::env::var_os(BIN_ENV) {
            return Self::from_dir(dir);
        }
        // One build-script run per process is enough.
        static BUILT: Mutex<Option<ClusterBinaries>> = Mutex::new(None);
        let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(binaries) = built.as_ref() {
            return Ok(binaries.clone());
        }
        let script = find_build_script().ok_or_else(|| {
            Error::Binaries(format!(
                "{BIN_ENV} is not set and {BUILD_SCRIPT} was found neither under {} nor above the \
                 current directory",
                repo_from_manifest().display()
            ))
        })?;
        let binaries = Self::from_dir(run_build_script(&script)?)?;
        *built = Some(binaries.clone());
        Ok(binaries)
    }

    /// Uses the binaries in `dir`, checking that all of [`Self::NAMES`] are there.
    pub fn from_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let missing: Vec<&str> = Self::NAMES
            .iter()
            .copied()
            .filter(|name| !dir.join(name).is_file())
            .collect();
        if missing.is_empty() {
            Ok(Self { dir })
        } else {
            Err(Error::Binaries(format!(
                "{} lacks {}",
                dir.display(),
                missing.join(", ")
            )))
        }
    }

    /// The directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one binary, e.g. `path("kubectl")`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The repository root as seen from this crate's manifest (`crates/testcluster/../..`).
fn repo_from_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn find_build_script() -> Option<PathBuf> {
    let from_manifest = repo_from_manifest().join(BUILD_SCRIPT);
    if from_manifest.is_file() {
        return Some(from_manifest);
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join(BUILD_SCRIPT))
        .find(|script| script.is_file())
}

/// Runs the build script, echoing its stderr, and returns the last line of its stdout.
fn run_build_script(script: &Path) -> Result<PathBuf> {
    let mut child = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io(format!("running {}", script.display())))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    // Echo progress as it comes and keep the tail for the error message.
    let echo = std::thread::spawn(move || {
        let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            let _ = writeln!(std::io::stderr(), "[cluster build] {line}");
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        Vec::from(tail).join("\n")
    });
    let mut stdout = String::new();
    let read =
        std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout is piped"), &mut stdout);
    let status = child
        .wait()
        .map_err(Error::io(format!("waiting for {}", script.display())))?;
    let tail = echo.join().unwrap_or_default();
    read.map_err(Error::io(format!(
        "reading the output of {}",
        script.display()
    )))?;
    if !status.success() {
        return Err(Error::Binaries(format!(
            "{} failed ({status}); last lines of its stderr:\n{tail}",
            script.display()
        )));
    }
    let dir = stdout
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .ok_or_else(|| {
            Error::Binaries(format!(
                "{} printed no bin directory; last lines of its stderr:\n{tail}",
                script.display()
            ))
        })?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_dir_names_missing_binaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd"), "").unwrap();
        std::fs::write(dir.path().join("kwok"), "").unwrap();
        let err = ClusterBinaries::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kube-apiserver, kube-controller-manager"),
            "{err}"
        );
        assert!(!err.contains("etcd"), "{err}");
        for name in ClusterBinaries::NAMES {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let bins = ClusterBinaries::from_dir(dir.path()).unwrap();
        assert_eq!(bins.path("kubectl"), dir.path().join("kubectl"));
    }

    #[test]
    fn build_script_is_found_from_the_manifest() {
        let script = find_build_script().expect("tools/cluster/build.sh");
        assert!(script.ends_with(BUILD_SCRIPT));
    }

    #[test]
    fn build_failure_quotes_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("build.sh");
        std::fs::write(
            &script,
            "echo progress >&2\necho 'go: something broke' >&2\nexit 3\n",
        )
        .unwrap();
        let err = run_build_script(&script).unwrap_err().to_string();
        assert!(err.contains("go: something broke"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[test]
    fn build_output_is_the_last_stdout_line() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("build.sh");
        std::fs::write(&script, "echo noise\necho /some/bin\necho\n").unwrap();
        assert_eq!(
            run_build_script(&script).unwrap(),
            PathBuf::from("/some/bin")
        );
    }
}
