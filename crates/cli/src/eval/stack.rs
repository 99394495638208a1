//! What `eval --live` runs the scenarios on: a throwaway bare remote with a clone to push
//! requests from (`Remote`), and the local stack `warroom-dev up` as a child process
//! (`LocalStack`), each cluster's runner pointed at its recorded answers.
//!
//! The remote's git is sealed (`warroom_git::Git::new`): the engineer's signing setup and
//! hooks have nothing to do with a throwaway remote, and the stack runs without a policy.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use warroom_git::Git;
use warroom_proto::RequestStatus;
use warroom_scenario::Scenario;

/// The branch the stack follows.
const BRANCH: &str = "main";

/// How long the stack has to stop after SIGTERM (it finishes its work in flight) before it
/// is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The bare remote the stack follows and the clone requests are pushed from.
pub struct Remote {
    bare: PathBuf,
    clone: Git,
    remote: Git,
}

impl Remote {
    /// Makes `<work>/remote.git` with one commit on `main`, and `<work>/clone`.
    pub fn create(work: &Path) -> Result<Remote> {
        let bare = work.join("remote.git");
        let clone_dir = work.join("clone");
        let outside = Git::new(work);
        let bare_text = bare.display().to_string();
        let clone_text = clone_dir.display().to_string();
        outside.run(&[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch",
            BRANCH,
            &bare_text,
        ])?;
        outside.run(&["clone", "--quiet", "--", &bare_text, &clone_text])?;
        let clone =
            Git::new(&clone_dir).with_identity("claude-warroom eval", "eval@warroom.invalid");
        clone.run(&["symbolic-ref", "HEAD", &format!("refs/heads/{BRANCH}")])?;
        let pending = clone_dir.join("requests/pending");
        std::fs::create_dir_all(&pending)
            .with_context(|| format!("cannot create {}", pending.display()))?;
        std::fs::write(pending.join(".gitkeep"), "")?;
        clone.run(&["add", "--all"])?;
        clone.run(&[
            "commit",
            "--quiet",
            "-m",
            "Scenarios of claude-warroom eval",
        ])?;
        clone.run(&["push", "--quiet", "origin", BRANCH])?;
        Ok(Remote {
            remote: Git::new(&bare),
            bare,
            clone,
        })
    }

    /// The remote's path, for the stack's `--repo`.
    pub fn path(&self) -> &Path {
        &self.bare
    }

    /// Commits `requests/pending/<id>.yaml` and pushes it, fetching and rebasing first: the
    /// publisher pushes results to the same branch.
    pub fn push_request(&self, id: &str, yaml: &str) -> Result<()> {
        let relative = format!("requests/pending/{id}.yaml");
        let file = self.clone.dir().join(&relative);
        std::fs::write(&file, yaml).with_context(|| format!("cannot write {}", file.display()))?;
        self.clone.run(&["add", "--", &relative])?;
        self.clone
            .run(&["commit", "--quiet", "-m", &format!("Request {id}")])?;
        let mut last = String::new();
        for _ in 0..5 {
            self.clone
                .run(&["pull", "--quiet", "--rebase", "origin", BRANCH])?;
            let push = self.clone.output(&["push", "--quiet", "origin", BRANCH])?;
            if push.success {
                return Ok(());
            }
            last = push.stderr;
        }
        bail!(
            "cannot push request {id} to {}: {last}",
            self.bare.display()
        )
    }

    /// A file of `main` on the remote, or `None` when it is not there.
    pub fn read(&self, path: &str) -> Result<Option<String>> {
        let output = self.remote.output(&["show", &format!("{BRANCH}:{path}")])?;
        Ok(output
            .success
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    /// The request's status once it is final and every cluster report it names is there.
    pub fn final_status(&self, id: &str) -> Result<Option<RequestStatus>> {
        let Some(text) = self.read(&format!("results/{id}/status.json"))? else {
            return Ok(None);
        };
        let status: RequestStatus = serde_json::from_str(&text)
            .with_context(|| format!("results/{id}/status.json is not a valid status"))?;
        if !status.phase.is_final() {
            return Ok(None);
        }
        for line in status.clusters.values() {
            if let Some(report) = &line.report
                && self.read(&format!("results/{id}/{report}"))?.is_none()
            {
                return Ok(None);
            }
        }
        Ok(Some(status))
    }
}

/// What the stack is started with.
pub struct StackSetup<'a> {
    /// `warroom-dev`.
    pub dev: &'a Path,
    pub claude: &'a Path,
    /// The agents' model (`WARROOM_MODEL`, the runners' `--model`).
    pub model: Option<&'a str>,
    pub remote: &'a Remote,
    pub scenarios: &'a [Scenario],
    pub work: &'a Path,
}

/// `warroom-dev up` as a child process, its output in `<work>/warroom-dev.log`.
pub struct LocalStack {
    child: Option<Child>,
    log: PathBuf,
}

impl LocalStack {
    /// Writes every cluster's recorded answers and the recorded `oc`/`kubectl`, and starts
    /// `warroom-dev up` with a runner per cluster, each with its answers' kubeconfig. The
    /// agents find the recorded `oc`/`kubectl` first on their PATH (`WARROOM_AGENT_PATH`).
    pub fn start(setup: &StackSetup<'_>) -> Result<LocalStack> {
        let bin = setup.work.join("bin");
        warroom_scenario::install_recorded_kubectl(&bin)?;
        let mut clusters = Vec::new();
        let mut kubeconfigs = Vec::new();
        for scenario in setup.scenarios {
            for recording in &scenario.recordings {
                let dir = setup.work.join("answers").join(&recording.cluster);
                let kubeconfig = recording.write_answers(&dir, &scenario.name)?;
                kubeconfigs.push(format!("{}={}", recording.cluster, kubeconfig.display()));
                clusters.push(recording.cluster.clone());
            }
        }
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let agent_path =
            std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&inherited)))
                .context("the work folder's path holds a `:`")?;

        let log = setup.work.join("warroom-dev.log");
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(setup.dev);
        command
            .arg("up")
            .arg("--repo")
            .arg(setup.remote.path())
            .args(["--branch", BRANCH, "--poll-interval", "500ms"])
            .arg("--clusters")
            .arg(clusters.join(","))
            .arg("--state-dir")
            .arg(setup.work.join("stack"))
            .arg("--claude-bin")
            .arg(setup.claude);
        for kubeconfig in &kubeconfigs {
            command.args(["--kubeconfig", kubeconfig]);
        }
        // The runners read the rest from their environment, as their own binaries would.
        command
            .env("WARROOM_AGENT_PATH", agent_path)
            .env_remove("WARROOM_POLICY")
            .env_remove("KUBECONFIG");
        match setup.model {
            Some(model) => command.env("WARROOM_MODEL", model),
            None => command.env_remove("WARROOM_MODEL"),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", setup.dev.display()))?;
        Ok(LocalStack {
            child: Some(child),
            log,
        })
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails when the stack has exited: it only stops when asked.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            bail!(
                "the local stack (warroom-dev up) exited with {status}; its log is {}:\n{}",
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// Stops the stack with SIGTERM, as Ctrl-C would, so that it stops its daemons, agents
    /// and nats-server; kills it when it has not exited within [`STOP_GRACE`].
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        terminate(&child);
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Some(status) = child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                bail!(
                    "the local stack stopped with {status}; its log is {}",
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the local stack did not stop within {} s of SIGTERM and was killed; its \
                     log is {}",
                    STOP_GRACE.as_secs(),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for LocalStack {
    /// An error on the way out still stops the stack rather than leaving it running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let _ = child.wait();
        }
    }
}

fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// The last lines of a log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
