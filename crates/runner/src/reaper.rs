//! Nothing outlives a run: the processes an agent started, and the workspace of a run the
//! runner did not live to clean up.
//!
//! Claude Code starts each Bash command in its own session, so signalling the CLI's process
//! group does not reach a hung command, and when the CLI dies its commands are re-parented.
//! Three things together make sure none survives:
//! - every process of a run carries its run id in its environment ([`RUN_VAR`], inherited
//!   from the CLI), and a process whose ancestor carries it belongs to the run as well;
//! - the runner is a child subreaper ([`become_subreaper`]), so the orphans of its runs are
//!   re-parented to it, not to init, and it can reap them;
//! - at the end of every run [`sweep`] walks `/proc`, SIGKILLs every process of the run and
//!   reaps those that became the runner's children.
//!
//! A workspace holds a lock ([`WorkspaceLock`]) while its run lives. At start-up
//! [`clean_work_root`] finds the `warroom-*` workspaces whose lock is free (their runner
//! died), sweeps their processes and removes them.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warroom_runtime::Chain;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

/// The environment variable that names a process's run (the workspace folder's name).
pub const RUN_VAR: &str = "WARROOM_RUN";
/// The prefix of every workspace folder below the work root.
pub const WORKSPACE_PREFIX: &str = "warroom-";
/// The lock file inside a workspace folder; only folders that have one are the runner's.
const LOCK_FILE: &str = "run.lock";
/// How long a sweep keeps killing and reaping before it gives up on a process.
const SWEEP_DEADLINE: Duration = Duration::from_secs(3);
const SWEEP_PAUSE: Duration = Duration::from_millis(10);
/// Ancestors followed from one process (a deeper tree is not an agent's).
const MAX_DEPTH: usize = 64;

/// Makes this process a child subreaper: orphans among its descendants are re-parented to it.
/// Without it (a kernel that refuses) the sweep still finds a run's processes by their run
/// id, but orphans are reaped by init instead.
pub fn become_subreaper() {
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => debug!("the runner is a child subreaper"),
        Err(e) => {
            warn!(cause = %Chain(&e), "cannot become a child subreaper; orphaned tools go to init")
        }
    }
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    ppid: i32,
    zombie: bool,
    /// Its environment names the run.
    marked: bool,
}

/// Every process of `/proc` that can be read, with whether it carries `RUN_VAR=run`. Only
/// the environment of a process started at or after `since` (the run's CLI's start, in the
/// clock ticks of `/proc/<pid>/stat`) is read: one started before cannot be the run's, and on
/// a busy machine those are most of them.
fn scan(run: &str, since: Option<u64>) -> HashMap<i32, Proc> {
    let entry = format!("{RUN_VAR}={run}");
    let mut procs = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return procs;
    };
    for item in dir.flatten() {
        let Some(pid) = item
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(Stat {
            state,
            ppid,
            started,
        }) = parse_stat(&stat)
        else {
            continue;
        };
        let maybe_ours = match (since, started) {
            (Some(since), Some(started)) => started >= since,
            _ => true,
        };
        // Unreadable (another user's, or gone): not ours to judge.
        let marked = maybe_ours
            && std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == entry.as_bytes()));
        procs.insert(
            pid,
            Proc {
                pid,
                ppid,
                zombie: state == 'Z',
                marked,
            },
        );
    }
    procs
}

/// What the sweep reads of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    state: char,
    ppid: i32,
    /// When the process started, in clock ticks since boot (field 22); `None` when the line
    /// is cut short.
    started: Option<u64>,
}

/// Reads `/proc/<pid>/stat` (`pid (comm) S ppid ... starttime ...`; `comm` may hold spaces
/// and parentheses, so the fields start after the last `)`).
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // Fields 5 to 21 lie between the parent (4) and the start time (22).
    let started = fields.nth(17).and_then(|field| field.parse().ok());
    Some(Stat {
        state,
        ppid,
        started,
    })
}

/// When process `pid` started, in the clock ticks of `/proc/<pid>/stat`: what [`sweep`] takes
/// as the start of a run, read from its CLI right after the spawn (while the CLI is the
/// runner's unreaped child, its pid is its own).
pub fn started_at(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)?.started
}

/// Whether `pid` or one of its ancestors carries the run id, or is the run's CLI.
fn belongs(procs: &HashMap<i32, Proc>, pid: i32, cli: Option<i32>, me: i32) -> bool {
    let mut current = pid;
    for _ in 0..MAX_DEPTH {
        if current == me || current <= 1 {
            return false;
        }
        let Some(proc) = procs.get(&current) else {
            return false;
        };
        if proc.marked || Some(current) == cli {
            return true;
        }
        current = proc.ppid;
    }
    false
}

/// Kills every process of run `run` (see the module docs) and reaps those that are the
/// runner's children; `cli` is the run's CLI when it may still be alive (it is the caller's
/// child to reap, never reaped here), `since` when the CLI started ([`started_at`]; every
/// process of the run started at or after it), or `None` to look at every process.
/// Blocking; returns how many processes were killed.
pub fn sweep(run: &str, cli: Option<i32>, since: Option<u64>) -> usize {
    let me = std::process::id().cast_signed();
    let deadline = Instant::now() + SWEEP_DEADLINE;
    let mut killed: HashSet<i32> = HashSet::new();
    loop {
        let procs = scan(run, since);
        let targets: Vec<i32> = procs
            .values()
            .filter(|p| !p.zombie && p.pid != me && !killed.contains(&p.pid))
            .filter(|p| belongs(&procs, p.pid, cli, me))
            .map(|p| p.pid)
            .collect();
        if targets.is_empty() {
            break;
        }
        for pid in targets {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => warn!(pid, cause = %Chain(&e), "cannot kill a process of the run"),
            }
            killed.insert(pid);
        }
        if Instant::now() >= deadline {
            warn!(
                run,
                "processes of the run kept appearing; giving up the sweep"
            );
            break;
        }
    }
    if let Some(cli) = cli {
        killed.remove(&cli);
    }
    reap(&killed, me, deadline);
    if !killed.is_empty() {
        info!(
            run,
            killed = killed.len(),
            "killed what the agent left running"
        );
    }
    killed.len()
}

/// Waits for the killed processes that are (or become, as their parents die) this process's
/// children, so none stays a zombie; the others are their own parents' to reap.
fn reap(killed: &HashSet<i32>, me: i32, deadline: Instant) {
    let mut pending: HashSet<i32> = killed.clone();
    while !pending.is_empty() {
        pending.retain(
            |&pid| match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => true,
                Ok(_) => false,
                // Not our child: gone, or someone else's; wait only while it may still be
                // re-parented to us (alive, with a parent that is dying).
                Err(_) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| parse_stat(&stat))
                    .is_some_and(|stat| stat.state != 'Z' || stat.ppid == me),
            },
        );
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(SWEEP_PAUSE);
    }
    if !pending.is_empty() {
        warn!(pids = ?pending, "killed processes did not end in time");
    }
}

/// The lock a workspace folder holds while its run lives. Released when dropped, and by the
/// kernel when the runner dies, which is how a crashed run's folder is told from a live one.
#[derive(Debug)]
pub struct WorkspaceLock {
    _lock: Flock<File>,
}

impl WorkspaceLock {
    /// Locks the workspace folder `root`. The lock file appears already locked (it is locked
    /// under another name, then renamed), so a runner starting meanwhile never takes it for
    /// a dead run's.
    pub fn acquire(root: &Path) -> std::io::Result<WorkspaceLock> {
        let fresh = root.join(format!("{LOCK_FILE}.new"));
        let file = File::create(&fresh)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| std::io::Error::from(errno))?;
        std::fs::rename(&fresh, root.join(LOCK_FILE))?;
        Ok(WorkspaceLock { _lock: lock })
    }
}

/// Removes the workspaces of runs whose runner died (a `warroom-*` folder below `work_root`
/// with a lock file nobody holds), after killing whatever of those runs still runs. Folders
/// of live runs (another replica's, sharing the root) and anything else are left alone.
/// Returns the folders removed.
pub fn clean_work_root(work_root: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(work_root) {
        Ok(entries) => entries,
        Err(e) => {
            warn!(cause = %Chain(&e), root = %work_root.display(), "cannot list the work root");
            return removed;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(run) = name.to_str().filter(|n| n.starts_with(WORKSPACE_PREFIX)) else {
            continue;
        };
        let path = entry.path();
        let Ok(file) = File::open(path.join(LOCK_FILE)) else {
            continue;
        };
        // Held while the folder is removed, so no other runner starts the same removal.
        let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let killed = sweep(run, None, None);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                info!(path = %path.display(), killed, "removed the workspace of a run that did not end");
                removed.push(path);
            }
            Err(e) => {
                warn!(cause = %Chain(&e), path = %path.display(), "cannot remove an old workspace");
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn stat_is_read_after_the_last_parenthesis() {
        let line = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 113 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 5558272 385 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                ppid: 17,
                started: Some(987_654)
            })
        );
        assert_eq!(
            parse_stat("1 (init) Z 0 1"),
            Some(Stat {
                state: 'Z',
                ppid: 0,
                started: None
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
            .is_some_and(|stat| stat.state != 'Z')
    }

    /// A process of the run that detached itself (its own session, its parent gone) and one
    /// that cleared its environment under a marked parent are both killed; a process of
    /// another run is not.
    #[test]
    fn sweep_kills_marked_processes_and_their_children_only() {
        let run = format!("warroom-test-{}", std::process::id());
        let dir = tempfile::tempdir().expect("temp dir");
        let pids = dir.path().join("pids");
        // `sh` (marked) starts an unmarked `sleep` (env -i) and a detached marked one, and
        // records both pids.
        let script = format!(
            "env -i sleep 300 & echo $! >> {p}; setsid sleep 300 & echo $! >> {p}; wait",
            p = pids.display()
        );
        let mut ours = Command::new("sh")
            .args(["-c", &script])
            .env(RUN_VAR, &run)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the run's shell");
        let mut other = Command::new("sleep")
            .arg("300")
            .env(RUN_VAR, "warroom-someone-else")
            .spawn()
            .expect("spawn another run's process");
        let deadline = Instant::now() + Duration::from_secs(10);
        let children: Vec<i32> = loop {
            let text = std::fs::read_to_string(&pids).unwrap_or_default();
            let found: Vec<i32> = text.lines().filter_map(|l| l.parse().ok()).collect();
            if found.len() == 2 {
                break found;
            }
            assert!(
                Instant::now() < deadline,
                "the shell did not start its children"
            );
            std::thread::sleep(SWEEP_PAUSE);
        };

        let since = started_at(i32::try_from(ours.id()).expect("a pid"));
        assert!(since.is_some(), "the shell's start time is read");
        let killed = sweep(&run, None, since);
        assert_eq!(killed, 3, "the shell and both sleeps");
        let _ = ours.wait();
        for pid in children {
            assert!(!alive(pid), "{pid} survived the sweep");
        }
        assert!(
            other.try_wait().expect("try_wait").is_none(),
            "another run's process was killed"
        );
        let _ = other.kill();
        let _ = other.wait();
    }

    /// The sweep reads the environment only of processes started at or after the run's
    /// start: a process started before it is never taken for the run's, whatever it carries,
    /// and one started at that very tick still is.
    #[test]
    fn the_sweep_looks_only_at_processes_started_since_the_run() {
        let run = format!("warroom-test-since-{}", std::process::id());
        let mut marked = Command::new("sleep")
            .arg("300")
            .env(RUN_VAR, &run)
            .spawn()
            .expect("spawn a marked process");
        let pid = i32::try_from(marked.id()).expect("a pid");
        let started = started_at(pid).expect("its start time");

        assert_eq!(sweep(&run, None, Some(started + 1)), 0);
        assert!(alive(pid), "a process started before the run was killed");
        assert_eq!(sweep(&run, None, Some(started)), 1);
        let _ = marked.wait();
        assert!(!alive(pid));
    }

    #[test]
    fn only_unlocked_workspaces_are_removed_at_start() {
        let root = tempfile::tempdir().expect("temp dir");
        let live = root.path().join("warroom-live-1");
        let dead = root.path().join("warroom-dead-1");
        let foreign = root.path().join("warroom-publisher");
        for dir in [&live, &dead, &foreign] {
            std::fs::create_dir(dir).expect("mkdir");
        }
        let _held = WorkspaceLock::acquire(&live).expect("lock the live run");
        drop(WorkspaceLock::acquire(&dead).expect("lock the dead run"));
        let removed = clean_work_root(root.path());
        assert_eq!(removed, vec![dead.clone()]);
        assert!(live.is_dir() && foreign.is_dir() && !dead.exists());
    }
}
