//! The whole product in one test: a real `nats-server`, a bare git remote, the scripted model,
//! a logging `kubectl`, and every daemon started through `warroom-dev`'s local stack (the
//! same composition `warroom-dev up` runs). Requests go in as plain git commits, as an
//! engineer's would; everything is read back from the remote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use warroom_dev::{Daemons, Model, Stack, StackOptions};
use warroom_proto::{RequestPhase, RequestStatus};
use warroom_scripted_model::{Script, ScriptedModel};
use warroom_testkit::{BareRemote, NatsServer, WorkClone, tools, wait_for};

/// A request runs the real Claude Code CLI a few times; this only stops a hung run from
/// hanging the suite.
pub const FINAL_TIMEOUT: Duration = Duration::from_secs(90);

/// How often an engineer's push is tried while the publisher pushes results too.
const PUSH_ATTEMPTS: usize = 5;

/// What the logging `kubectl` prints for `get pods`.
pub const KUBECTL_PODS: &str = "kube-apiserver-6d9f7c8b5-x2k4q   4/5   CrashLoopBackOff   7";

/// A `kubectl` (and `oc`) for the agents: appends every call's arguments to a log, one line a
/// call, waits while a test holds the call ([`Pipeline::kubectl_hold`]), answers a call a test
/// gave a canned answer for ([`Pipeline::kubectl_answer`]) with it, and `get pods` with
/// [`KUBECTL_PODS`]. Nothing it does touches a cluster, so the log is the proof of what the
/// agent did or did not run.
const LOGGING_KUBECTL: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> "$WARROOM_TEST_KUBECTL_LOG"
answer=__ANSWERS__/"$(printf '%s' "$*" | tr -c 'A-Za-z0-9._-' '_')"
if [ -f "$answer.hold" ]; then
  touch "$answer.held"
  while [ -f "$answer.hold" ]; do sleep 0.1; done
fi
if [ -f "$answer" ]; then cat "$answer"; exit 0; fi
case "$1 $2" in
  "get pods") echo "__PODS__" ;;
  "delete "*) echo "deleted $*" ;;
  *) echo "ok: $*" ;;
esac
"#;

/// The running product and everything around it. Dropping it stops all of it.
pub struct Pipeline {
    pub remote: BareRemote,
    /// An engineer's clone, for pushing requests.
    pub engineer: WorkClone,
    pub model: ScriptedModel,
    /// The stack's NATS server; stopped on drop.
    pub nats: NatsServer,
    options: StackOptions,
    stack: Option<Stack>,
    kubectl_log: PathBuf,
    kubectl_answers: PathBuf,
    _state: TempDir,
}

impl Pipeline {
    /// The product for `clusters` with the daemons' defaults, talking to `script`.
    pub async fn start(clusters: &[&str], script: Script) -> Pipeline {
        Pipeline::start_with(clusters, script, |_| {}).await
    }

    /// As [`Pipeline::start`], after `configure` adjusted the stack's options (for example
    /// extra runner flags such as `--max-turns`).
    pub async fn start_with(
        clusters: &[&str],
        script: Script,
        configure: impl FnOnce(&mut StackOptions),
    ) -> Pipeline {
        let state = tempfile::Builder::new()
            .prefix("warroom-e2e-")
            .tempdir()
            .expect("create the state folder");
        let bin = state.path().join("bin");
        let kubectl_log = state.path().join("kubectl.log");
        std::fs::write(&kubectl_log, "").expect("create the kubectl log");
        let kubectl_answers = state.path().join("kubectl-answers");
        std::fs::create_dir(&kubectl_answers).expect("create the kubectl answers folder");
        install_kubectl(&bin, &kubectl_log, &kubectl_answers);

        let remote = BareRemote::new();
        let engineer = remote.work_clone();
        let model = ScriptedModel::start(script)
            .await
            .expect("start the scripted model");
        let nats = NatsServer::start().await;

        let mut options = StackOptions::new(remote.url(), clusters, state.path().join("stack"));
        options.nats_url = Some(nats.url().to_owned());
        options.claude_bin = tools::claude();
        options.poll_interval = "200ms".to_owned();
        options.model = Model::At {
            base_url: model.base_url(),
        };
        options.agent_path = vec![bin];
        options.extra_args.publisher = vec!["--batch-window".to_owned(), "50ms".to_owned()];
        configure(&mut options);

        let stack = Stack::start(&options).await.expect("start the stack");
        Pipeline {
            remote,
            engineer,
            model,
            nats,
            options,
            stack: Some(stack),
            kubectl_log,
            kubectl_answers,
            _state: state,
        }
    }

    /// Pushes `yaml` as `requests/pending/<id>.yaml` in a plain git commit.
    pub fn push_request(&self, id: &str, yaml: &str) {
        self.push_requests(&[(id, yaml)]);
    }

    /// Pushes several request files in one commit. While the publisher is pushing results, a
    /// push can be rejected as stale: then, as an engineer would, pull (rebase) and push again.
    pub fn push_requests(&self, requests: &[(&str, &str)]) {
        self.engineer.pull();
        for (id, yaml) in requests {
            self.engineer
                .write(format!("requests/pending/{id}.yaml"), yaml);
        }
        let ids: Vec<&str> = requests.iter().map(|(id, _)| *id).collect();
        self.engineer
            .commit_all(&format!("Request {}", ids.join(", ")));
        for _ in 0..PUSH_ATTEMPTS - 1 {
            if self.engineer.try_push().is_ok() {
                return;
            }
            self.engineer.pull();
        }
        self.engineer.push();
    }

    /// The folder below which the stack keeps its state, the runners' workspaces and every
    /// agent's `HOME` among them.
    pub fn state_dir(&self) -> &Path {
        self._state.path()
    }

    /// The public key file of the publisher's signing key (the stack makes a throwaway one).
    pub fn publisher_key_file(&self) -> PathBuf {
        self.stack
            .as_ref()
            .and_then(|stack| stack.publisher_key.as_ref())
            .map(|(file, _line)| file.clone())
            .expect("the stack made a signing key for the publisher")
    }

    /// `results/<id>/<name>` on the remote's `main`.
    pub fn result(&self, id: &str, name: &str) -> Option<String> {
        self.remote.read(&format!("results/{id}/{name}"))
    }

    /// The request's `status.json` on the remote, once there is one.
    pub fn status(&self, id: &str) -> Option<RequestStatus> {
        let text = self.result(id, "status.json")?;
        Some(serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("results/{id}/status.json is not a valid status: {e}\n{text}")
        }))
    }

    /// Waits until the request's `status.json` on the remote is in a final phase.
    pub async fn wait_final(&self, id: &str) -> RequestStatus {
        wait_for(
            format!("results/{id}/status.json in a final phase"),
            FINAL_TIMEOUT,
            || async { self.status(id).filter(|s| s.phase.is_final()) },
        )
        .await
    }

    /// Waits until every file the request's README links to and `audit.jsonl` are on the
    /// remote along with a final `status.json` (the publisher may commit them separately).
    pub async fn wait_report(&self, id: &str, clusters: &[&str]) -> RequestStatus {
        let status = self.wait_final(id).await;
        wait_for(format!("the reports of {id}"), FINAL_TIMEOUT, || async {
            let all = clusters
                .iter()
                .all(|c| self.result(id, &format!("{c}.md")).is_some())
                && self.result(id, "README.md").is_some();
            all.then_some(())
        })
        .await;
        status
    }

    /// The lines of `results/<id>/audit.jsonl`, parsed.
    pub fn audit(&self, id: &str) -> Vec<Value> {
        self.result(id, "audit.jsonl")
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("audit.jsonl line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Makes `kubectl`/`oc` print `output` when called with exactly `args`.
    pub fn kubectl_answer(&self, args: &str, output: &str) {
        std::fs::write(self.kubectl_file(args, ""), output).expect("write a kubectl answer");
    }

    /// Makes a `kubectl`/`oc` call with exactly `args` wait until [`Pipeline::kubectl_release`].
    pub fn kubectl_hold(&self, args: &str) {
        std::fs::write(self.kubectl_file(args, ".hold"), "").expect("hold a kubectl call");
    }

    /// Whether a call with exactly `args` has come and been held.
    pub fn kubectl_held(&self, args: &str) -> bool {
        self.kubectl_file(args, ".held").exists()
    }

    /// Lets held calls with exactly `args` (and later ones) go on.
    pub fn kubectl_release(&self, args: &str) {
        std::fs::remove_file(self.kubectl_file(args, ".hold")).expect("release a kubectl call");
    }

    /// The file of the calls with exactly `args`, as the logging `kubectl` names it.
    fn kubectl_file(&self, args: &str, suffix: &str) -> PathBuf {
        let name: String = args
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.kubectl_answers.join(format!("{name}{suffix}"))
    }

    /// Every call the agents made to `kubectl`/`oc`, one line of arguments each.
    pub fn kubectl_calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.kubectl_log)
            .expect("read the kubectl log")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The product with each daemon in a process of its own (its workspace binary), so that
    /// one can be killed ([`Pipeline::kill`]); `configure` as for [`Pipeline::start_with`].
    pub async fn start_processes(
        clusters: &[&str],
        script: Script,
        configure: impl FnOnce(&mut StackOptions),
    ) -> Pipeline {
        let gateway = tools::workspace_binary("warroom-gateway");
        let bin_dir = gateway
            .parent()
            .expect("a binary lives in a folder")
            .to_path_buf();
        Pipeline::start_with(clusters, script, |options| {
            options.daemons = Daemons::Processes { bin_dir };
            configure(options);
        })
        .await
    }

    /// Kills one daemon process (`gateway`, `dispatcher`, `runner-<cluster>`, `publisher`)
    /// with SIGKILL and waits until it is gone.
    pub async fn kill(&mut self, daemon: &str) {
        self.stack
            .as_mut()
            .expect("the stack runs")
            .kill(daemon)
            .await
            .unwrap_or_else(|e| panic!("kill the {daemon}: {e:#}"));
    }

    /// Starts a killed daemon again with its flags.
    pub fn start_again(&mut self, daemon: &str) {
        self.stack
            .as_mut()
            .expect("the stack runs")
            .start_again(daemon)
            .unwrap_or_else(|e| panic!("start the {daemon} again: {e:#}"));
    }

    /// Stops every daemon and starts them again on the same NATS server and state folders.
    pub async fn restart(&mut self) {
        if let Some(stack) = self.stack.take() {
            stack.shutdown().await.expect("the stack stops cleanly");
        }
        self.stack = Some(
            Stack::start(&self.options)
                .await
                .expect("start the stack again"),
        );
    }

    /// Stops every daemon cleanly; fails the test if one had failed.
    pub async fn shutdown(mut self) {
        if let Some(stack) = self.stack.take() {
            stack.shutdown().await.expect("the stack stops cleanly");
        }
    }
}

/// A request file for `clusters` (`(type, name)` pairs); more than one cluster uses
/// `targetClusters` with `mode`.
pub fn request_yaml(clusters: &[(&str, &str)], mode: &str, prompt: &str, timeout: u64) -> String {
    let targets = match clusters {
        [(kind, name)] => format!("  targetCluster:\n    type: {kind}\n    name: {name}\n"),
        _ => {
            let list: String = clusters
                .iter()
                .map(|(kind, name)| format!("    - type: {kind}\n      name: {name}\n"))
                .collect();
            format!("  targetClusters:\n{list}  coordination:\n    mode: {mode}\n")
        }
    };
    let prompt: String = prompt.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "apiVersion: warroom.intility.io/v1
kind: TroubleshootingRequest
metadata:
  name: e2e
  timestamp: \"2026-11-24T10:00:00Z\"
  engineer: platform-engineer-1
spec:
{targets}  issue:
    category: api-timeout
    description: API server experiencing 30s+ response times
  investigation:
    prompt: |
{prompt}    allowedTools:
      - bash
      - read
      - grep
    timeout: {timeout}
"
    )
}

/// True when `status` is `phase`, with the whole status in the failure message otherwise.
pub fn assert_phase(status: &RequestStatus, phase: RequestPhase) {
    assert_eq!(
        status.phase,
        phase,
        "unexpected phase; status.json: {}",
        serde_json::to_string_pretty(status).unwrap_or_default()
    );
}

fn install_kubectl(bin: &Path, log: &Path, answers: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(bin).expect("create the agents' bin folder");
    let script = LOGGING_KUBECTL
        .replace("__PODS__", KUBECTL_PODS)
        .replace("__ANSWERS__", &format!("'{}'", answers.display()))
        .replace(
            "\"$WARROOM_TEST_KUBECTL_LOG\"",
            &format!("'{}'", log.display()),
        );
    for name in ["kubectl", "oc"] {
        let path = bin.join(name);
        std::fs::write(&path, &script).expect("write the logging kubectl");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make kubectl executable");
    }
}
