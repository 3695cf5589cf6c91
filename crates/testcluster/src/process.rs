//! Component processes, the pid file, and the stopper/watchdog.
//!
//! Every component's command line names a path inside the state directory, and every
//! component's pid is appended to `<dir>/pids` right after it is spawned. A pid counts as "ours"
//! only while `/proc/<pid>/cmdline` still contains `<dir>/`: that guards against pid reuse, and
//! a zombie (empty cmdline) counts as gone.
//!
//! Stopping is implemented once, as the shell script [`STOPPER`]: it waits until its stdin
//! reaches end of file, then stops our recorded pids newest first (SIGTERM, up to 5 s, then
//! SIGKILL), and removes the state directory if asked to (and not marked to be kept).
//!
//! - An attached cluster runs the script as its *watchdog*, with stdin a pipe whose only write
//!   end is held by the process that started the cluster. The kernel closes that end when the
//!   process exits for any reason (return, `exit`, panic, signal, even SIGKILL), or when the
//!   [`Watchdog`] is dropped, so the watchdog then stops the components. The watchdog runs in
//!   its own process group so that a Ctrl-C aimed at the test's process group does not kill it
//!   before it has cleaned up.
//! - A detached cluster has no watchdog; [`run_stopper`] runs the script with stdin `/dev/null`
//!   (immediate end of file) to stop it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The pid file in the state directory: one `<component> <pid>` line per process.
pub(crate) const PID_FILE: &str = "pids";
/// A file whose presence tells the stopper to keep the state directory (logs for a failure).
pub(crate) const KEEP_MARKER: &str = "keep";

/// The stopper script: `bash -c STOPPER <name> <dir> <remove|keep>`. See the module docs.
const STOPPER: &str = r#"
set -u
dir=$1 mode=$2
# Block until stdin is at end of file (see the module docs of mizzen-testcluster's process.rs).
cat >/dev/null 2>&1
ours() {
  local args
  [[ -r /proc/$1/cmdline ]] || return 1
  args=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $args == *"$dir/"* ]]
}
pids=()
if [[ -r $dir/pids ]]; then
  while read -r _name pid; do [[ $pid =~ ^[0-9]+$ ]] && pids=("$pid" "${pids[@]}"); done <"$dir/pids"
fi
# Newest first, so etcd goes last and has no clients left that would delay its exit.
for pid in "${pids[@]}"; do
  ours "$pid" || continue
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 50); do ours "$pid" || break; sleep 0.1; done
  ours "$pid" && kill -KILL "$pid" 2>/dev/null
  for _ in $(seq 20); do ours "$pid" || break; sleep 0.1; done
done
if [[ $mode == remove && ! -e $dir/keep ]]; then rm -rf -- "$dir"; fi
"#;

/// How long to wait for the stopper to finish (at most 7 s per component; normally 1-3 s in all).
const STOPPER_TIMEOUT: Duration = Duration::from_secs(45);

fn stopper_command(dir: &Path, remove: bool) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(STOPPER)
        .arg("mizzen-testcluster-stopper")
        .arg(dir)
        .arg(if remove { "remove" } else { "keep" })
        .stdout(Stdio::null());
    cmd
}

/// Stops the components recorded in `dir` now (and removes `dir` if `remove`). Blocking.
pub(crate) fn run_stopper(dir: &Path, remove: bool) -> Result<()> {
    let mut child = stopper_command(dir, remove)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::io("starting the cluster stopper (bash)"))?;
    match wait_timeout(&mut child, STOPPER_TIMEOUT) {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(Error::StateDir {
            dir: dir.to_owned(),
            problem: format!("the stopper failed ({status})"),
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(Error::StateDir {
                dir: dir.to_owned(),
                problem: format!("the stopper did not finish within {STOPPER_TIMEOUT:?}"),
            })
        }
    }
}

/// The watchdog of an attached cluster: a stopper waiting for its stdin to close.
pub(crate) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts the watchdog for `dir`; it removes `dir` after stopping the components if
    /// `remove`, unless the keep marker exists by then.
    pub fn start(dir: &Path, remove: bool, log: &Path) -> Result<Self> {
        let log = File::create(log).map_err(Error::io(format!("creating {}", log.display())))?;
        let mut child = stopper_command(dir, remove)
            .stdin(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(Error::io("starting the cluster watchdog (bash)"))?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }

    /// The watchdog's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the pipe, which makes the watchdog stop the components, and waits for it.
    /// Returns false if it did not finish in time (it is then killed).
    pub fn trigger_and_wait(mut self) -> bool {
        drop(self.stdin.take());
        if wait_timeout(&mut self.child, STOPPER_TIMEOUT).is_some() {
            true
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            false
        }
    }
}

/// One running component.
pub(crate) struct Component {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
    /// The arguments it was started with, to start it again the same way.
    pub args: Vec<String>,
}

impl Component {
    /// Stops this process: SIGTERM, then SIGKILL if it has not exited within `grace`; reaps
    /// it. Returns its exit status, `None` if it still runs [`KILL_TIMEOUT`] after SIGKILL.
    /// Only this child is signalled, by its own pid, which cannot have been reused: the child
    /// is not reaped before it has exited.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let pid = self.child.id().to_string();
        let termed = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed && let Some(status) = wait_timeout(&mut self.child, grace) {
            return Some(status);
        }
        tracing::warn!(
            component = self.name,
            pid,
            ?grace,
            "still running after SIGTERM; SIGKILL"
        );
        let _ = self.child.kill();
        wait_timeout(&mut self.child, KILL_TIMEOUT)
    }
}

/// How long a process may take to go after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How to start one component.
pub(crate) struct Spawn<'a> {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub state_dir: &'a Path,
    /// Put the process in its own process group (detached clusters).
    pub own_process_group: bool,
}

impl Spawn<'_> {
    /// Starts the process with stdout and stderr appended to its log (a component started
    /// again keeps the earlier output), and records its pid.
    pub fn run(self) -> Result<Component> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(Error::io(format!("opening {}", self.log.display())))?;
        let log2 = log
            .try_clone()
            .map_err(Error::io(format!("opening {}", self.log.display())))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .current_dir(self.state_dir);
        clean_environment(&mut cmd);
        if self.own_process_group {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .map_err(Error::io(format!("starting {}", self.program.display())))?;
        let pid_file = self.state_dir.join(PID_FILE);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pid_file)
            .and_then(|mut f| writeln!(f, "{} {}", self.name, child.id()))
            .map_err(Error::io(format!("writing {}", pid_file.display())))?;
        Ok(Component {
            name: self.name,
            child,
            log: self.log,
            args: self.args,
        })
    }
}

/// Removes variables that could send the components' or kubectl's traffic elsewhere (proxies)
/// or point them at another cluster, and exempts loopback from any proxy.
pub(crate) fn clean_environment(cmd: &mut Command) {
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "KUBECONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
}

/// Waits for `child` to exit, for at most `timeout`.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Whether `pid` is alive and is one of the processes of the cluster in `dir`.
pub(crate) fn is_ours(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = format!("{}/", dir.display());
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains(&needle)
}

/// The `(component, pid)` lines of the pid file in `dir` (empty if there is none).
pub(crate) fn recorded_pids(dir: &Path) -> Vec<(String, u32)> {
    let Ok(text) = std::fs::read_to_string(dir.join(PID_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (name, pid) = line.split_once(' ')?;
            Some((name.to_owned(), pid.trim().parse().ok()?))
        })
        .collect()
}

/// The last `lines` lines of a log file, indented, for error messages.
pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..]
                .iter()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(err) => format!("    (cannot read the log: {err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in component: a `tail -f` whose command line names the state directory.
    fn fake_component(dir: &Path, name: &'static str, own_group: bool) -> Component {
        let followed = dir.join(format!("fake-{name}"));
        std::fs::write(&followed, "").unwrap();
        Spawn {
            name,
            program: "tail".into(),
            args: vec!["-f".into(), followed.display().to_string()],
            log: dir.join(format!("{name}.log")),
            state_dir: dir,
            own_process_group: own_group,
        }
        .run()
        .unwrap()
    }

    fn state_dir() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap().join("state");
        std::fs::create_dir(&dir).unwrap();
        (tmp, dir)
    }

    #[test]
    fn pid_file_records_components() {
        let (_tmp, dir) = state_dir();
        let mut a = fake_component(&dir, "a", false);
        let mut b = fake_component(&dir, "b", false);
        let recorded = recorded_pids(&dir);
        assert_eq!(
            recorded,
            [
                ("a".to_owned(), a.child.id()),
                ("b".to_owned(), b.child.id())
            ]
        );
        // Right after spawn the kernel may not have set up the new program's arguments yet
        // (`/proc/<pid>/cmdline` reads empty for a moment after exec starts); a process that
        // is running `tail` on the state directory must be recognised within a second.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !is_ours(a.child.id(), &dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(is_ours(a.child.id(), &dir));
        assert!(!is_ours(std::process::id(), &dir));
        for c in [&mut a, &mut b] {
            c.child.kill().unwrap();
            c.child.wait().unwrap();
        }
        assert!(!is_ours(a.child.id(), &dir));
    }

    #[test]
    fn stopper_stops_recorded_processes_and_removes_dir() {
        let (_tmp, dir) = state_dir();
        let mut a = fake_component(&dir, "a", true);
        // A recorded pid that is not ours (this test process) must survive.
        std::fs::write(
            dir.join(PID_FILE),
            format!(
                "{}stranger {}\n",
                std::fs::read_to_string(dir.join(PID_FILE)).unwrap(),
                std::process::id()
            ),
        )
        .unwrap();
        run_stopper(&dir, true).unwrap();
        assert!(wait_timeout(&mut a.child, Duration::from_secs(5)).is_some());
        assert!(!dir.exists());
    }

    #[test]
    fn watchdog_fires_when_its_pipe_closes_and_honours_keep_marker() {
        let (_tmp, dir) = state_dir();
        let watchdog = Watchdog::start(&dir, true, &dir.join("watchdog.log")).unwrap();
        let mut a = fake_component(&dir, "a", false);
        std::thread::sleep(Duration::from_millis(200));
        assert!(a.child.try_wait().unwrap().is_none(), "still running");
        std::fs::write(dir.join(KEEP_MARKER), "").unwrap();
        assert!(watchdog.trigger_and_wait());
        assert!(a.child.try_wait().unwrap().is_some(), "stopped");
        assert!(dir.join("a.log").exists(), "kept");
    }

    #[test]
    fn stop_terms_then_kills_and_start_again_appends_to_the_log() {
        let (_tmp, dir) = state_dir();
        let mut a = fake_component(&dir, "a", false);
        let status = a.stop(Duration::from_secs(5)).expect("stopped by SIGTERM");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
        assert_eq!(
            a.stop(Duration::from_secs(5)),
            Some(status),
            "already stopped"
        );

        // A process that ignores SIGTERM (from before it says "started"; the disposition
        // survives exec) is killed after the grace period.
        let log = dir.join("stubborn.log");
        std::fs::write(&log, "before\n").unwrap();
        let mut b = Spawn {
            name: "stubborn",
            program: "bash".into(),
            args: vec![
                "-c".into(),
                "trap '' TERM; echo started; exec sleep 30".into(),
                dir.display().to_string(),
            ],
            log: log.clone(),
            state_dir: &dir,
            own_process_group: false,
        }
        .run()
        .unwrap();
        let t0 = Instant::now();
        while !std::fs::read_to_string(&log).unwrap().contains("started") {
            assert!(t0.elapsed() < Duration::from_secs(5), "bash did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let t0 = Instant::now();
        let status = b
            .stop(Duration::from_millis(500))
            .expect("stopped by SIGKILL");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(t0.elapsed() >= Duration::from_millis(500));
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "before\nstarted\n",
            "appended, not truncated"
        );
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        let (_tmp, dir) = state_dir();
        let log = dir.join("x.log");
        std::fs::write(&log, "1\n2\n3\n4\n").unwrap();
        assert_eq!(log_tail(&log, 2), "    3\n    4");
        assert!(log_tail(&dir.join("missing"), 2).contains("cannot read"));
    }
}
