//! The tool rules: which Claude Code tools an agent gets and which calls it may make, derived
//! from the request's `allowedTools` and narrowed by the runner's read-only default.
//!
//! RBAC (a read-only ClusterRole without Secrets) is the real boundary; this policy shapes what
//! the agent tries and turns every other attempt into a refused call that is audited. It relies
//! on these behaviours of the Claude Code CLI (2.1.x, checked against the real binary):
//! - `--permission-mode dontAsk` refuses every call no allow rule covers (nobody is asked);
//! - `--tools` makes only the listed tools exist at all;
//! - `Bash(kubectl get:*)` allows that command prefix (word-bounded: `oc get secret:*` does not
//!   cover `oc get secrets`), and a `*` elsewhere is a wildcard (`Bash(kubectl *secret*)`);
//! - chained commands, `$(...)`, redirections outside the workspace and writes or reads
//!   outside the working directory are refused even when the first command is allowed; a pipe
//!   runs when every part is allowed (`kubectl get pods | grep x`);
//! - `sort -o`, `uniq IN OUT` and `tee` writing a file are refused although `sort`/`uniq` are
//!   allowed, so the plain text tools are safe to allow;
//! - deny rules win over allow rules;
//! - `Edit(./**)` lets Write and Edit change files inside the working directory only; a bare
//!   `Write` or `Edit` rule would allow writes anywhere.
//!
//! In front of these rules sits the tool-call guard (`warroom-guard`, [`GuardHook`]), a
//! `PreToolUse` hook the CLI runs before every tool call: it parses each command with a shell
//! grammar and kubectl/oc the way they parse themselves, and its refusals carry a rule and a
//! reason. The permission rules above stay as the second layer.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use warroom_runtime::Chain;

use serde_json::{Value, json};
use warroom_guard::hook::DecisionRecord;
use warroom_proto::wire::Redacted;
use warroom_proto::{Denial, Tool};

/// Read-only verbs of both `kubectl` and `oc`.
const READ_ONLY_VERBS: [&str; 13] = [
    "get",
    // The read-only forms of verbs whose other forms write (see MUTATING).
    "rollout status",
    "rollout history",
    "auth can-i",
    "describe",
    "logs",
    "top",
    "events",
    "explain",
    "api-resources",
    "api-versions",
    "version",
    "cluster-info",
];

/// Read-only commands only `oc` has.
const OC_ONLY: [&str; 3] = ["adm top", "status", "whoami"];

/// Text tools for filtering command output. Each was checked: the CLI refuses their forms that
/// write files (`sort -o`, `uniq IN OUT`) and their reads outside the workspace.
/// `awk`, `sed`, `tr` and `date` are allowed here as commands; the guard decides which of
/// their programs may run (no `system` or `getline` in awk, `sed -n` without `e` or `w`, `tr`
/// only squeezing or deleting blanks).
const TEXT_TOOLS: [&str; 12] = [
    "grep", "head", "tail", "wc", "sort", "uniq", "jq", "cut", "awk", "sed", "tr", "date",
];

/// Subcommands that change a cluster, reach into containers or nodes, or hand out credentials.
/// None of them is allowed anyway; listing them refuses them even if an allow rule is widened
/// by mistake, and makes the intent visible in the audit log.
const MUTATING: [&str; 33] = [
    "exec",
    "port-forward",
    "proxy",
    "cp",
    "attach",
    "debug",
    "run",
    "edit",
    "delete",
    "apply",
    "create",
    "replace",
    "patch",
    "scale",
    "autoscale",
    "set",
    "label",
    "annotate",
    "rollout restart",
    "rollout undo",
    "rollout pause",
    "rollout resume",
    "expose",
    "drain",
    "cordon",
    "uncordon",
    "taint",
    "certificate",
    "config",
    "auth reconcile",
    "plugin",
    "kustomize",
    "wait",
];

/// `oc` commands beyond the `kubectl` ones that change state or open a shell.
const OC_MUTATING: [&str; 14] = [
    "rsh",
    "rsync",
    "login",
    "logout",
    "project",
    "new-app",
    "new-project",
    "new-build",
    "start-build",
    "rollback",
    "import-image",
    "tag",
    "adm drain",
    "adm policy",
];

/// Flags that change who the command runs as or which API server it talks to: each would step
/// around the runner's service account. (`--raw` is the guard's: it allows only the health,
/// version and metrics paths.)
const IDENTITY_FLAGS: [&str; 8] = [
    "--as",
    "--token",
    "--kubeconfig",
    "--server",
    "--username",
    "--password",
    "--client-key",
    "--client-certificate",
];

/// The effective tool rules of one task, as CLI arguments and as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRules {
    /// Claude Code tools that exist for the agent (`--tools`).
    pub tools: Vec<&'static str>,
    /// Permission rules that allow calls (`--allowedTools`).
    pub allowed: Vec<String>,
    /// Permission rules that refuse calls, winning over `allowed` (`--disallowedTools`).
    pub denied: Vec<String>,
}

impl ToolRules {
    /// The tool rules for a request that allows `requested` tools.
    pub fn for_tools(requested: &[Tool]) -> ToolRules {
        let has = |tool: Tool| requested.contains(&tool);
        let mut tools = Vec::new();
        for tool in Tool::ALL {
            if has(tool) {
                tools.push(claude_tool(tool));
            }
        }

        let mut allowed = Vec::new();
        if has(Tool::Bash) {
            for cli in ["kubectl", "oc"] {
                for verb in READ_ONLY_VERBS {
                    allowed.push(format!("Bash({cli} {verb}:*)"));
                }
            }
            for command in OC_ONLY {
                allowed.push(format!("Bash(oc {command}:*)"));
            }
            for tool in TEXT_TOOLS {
                allowed.push(format!("Bash({tool}:*)"));
            }
        }
        if has(Tool::Read) || has(Tool::Grep) || has(Tool::Glob) {
            // Read rules cover Grep and Glob too. The CLI already allows reads inside the
            // working directory in dontAsk mode; the explicit rule documents it.
            allowed.push("Read(./**)".to_owned());
        }
        if has(Tool::Write) || has(Tool::Edit) {
            // Edit rules cover Write too; `./**` is the workspace (the CLI's cwd).
            allowed.push("Edit(./**)".to_owned());
        }

        let mut denied = Vec::new();
        if has(Tool::Bash) {
            for cli in ["kubectl", "oc"] {
                for verb in ["get", "describe"] {
                    denied.push(format!("Bash({cli} {verb} secret:*)"));
                    denied.push(format!("Bash({cli} {verb} secrets:*)"));
                }
                // Catches `get pods,secrets`, `get -n x secret`, `get --raw .../secrets`.
                denied.push(format!("Bash({cli} *secret*)"));
                for verb in MUTATING {
                    denied.push(format!("Bash({cli} {verb}:*)"));
                }
                denied.push(format!("Bash({cli} cluster-info dump:*)"));
                for flag in IDENTITY_FLAGS {
                    denied.push(format!("Bash({cli} *{flag}*)"));
                }
            }
            for command in OC_MUTATING {
                denied.push(format!("Bash(oc {command}:*)"));
            }
            // `oc whoami -t` / `--show-token` prints the service account's token.
            denied.push("Bash(oc whoami *-t*)".to_owned());
            // jq reads the environment (`env`, `$ENV`). It holds no credential (the model
            // key stays with the runner's proxy); refused all the same, as defence in depth.
            denied.push("Bash(jq *env*)".to_owned());
            denied.push("Bash(jq *ENV*)".to_owned());
        }

        ToolRules {
            tools,
            allowed,
            denied,
        }
    }

    /// The CLI arguments that enforce these rules. The lists are given as single
    /// `--flag=value` arguments, so the CLI's variadic list options never swallow what follows.
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec![
            "--permission-mode".to_owned(),
            "dontAsk".to_owned(),
            format!("--tools={}", self.tools.join(",")),
        ];
        if !self.allowed.is_empty() {
            args.push(format!("--allowedTools={}", self.allowed.join(",")));
        }
        if !self.denied.is_empty() {
            args.push(format!("--disallowedTools={}", self.denied.join(",")));
        }
        args
    }
}

/// The guard hook of every run: the resolved `warroom-guard` binary and its optional config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardHook {
    /// The guard binary, an absolute path.
    pub bin: PathBuf,
    /// The guard configuration, an absolute path (the hook runs in the workspace).
    pub config: Option<PathBuf>,
}

/// The files of one run's hooks, in the task's private folder (never in the workspace, which
/// the agent may write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFiles {
    /// The CLI settings registering the hooks (`--settings`).
    pub settings: PathBuf,
    /// The script the CLI runs as the `PreToolUse` hook command: the guard's decision.
    pub script: PathBuf,
    /// The script the CLI runs as the `PostToolUse` hook command: the output's redaction.
    pub redact_script: PathBuf,
    /// Where the guard appends one line per decision.
    pub decisions: PathBuf,
    /// Where the `PostToolUse` hook appends what it removed from each output.
    pub redactions: PathBuf,
}

// How long a hook may take. The CLI lets a call through when its `PreToolUse` hook runs past
// the hook's `timeout` (see `../shared/design/field-notes.md`, "Hooks fail open except on
// exit 2"), so the wrapper script must end the hook, with exit 2, well before the CLI gives
// up on it:
//
//   the guard's own deadline (about 2 s: it denies when it runs out)
//   < the wrapper's bound, `HOOK_BOUND_SECS` (+ `HOOK_KILL_AFTER_SECS` if TERM is ignored)
//   < the CLI's hook timeout, `HOOK_TIMEOUT_SECS`.
//
// The `PostToolUse` redaction keeps the same ladder: its own deadline
// (`warroom_guard::post_tool_use::DEADLINE`, after which it withholds the output) is below
// the wrapper's bound.

/// Seconds the wrapper script lets `warroom-guard` run before `timeout` sends it TERM.
pub const HOOK_BOUND_SECS: u64 = 5;
/// Seconds after TERM before `timeout` sends KILL.
pub const HOOK_KILL_AFTER_SECS: u64 = 1;
/// The CLI's `timeout` of each hook entry, in seconds: a safety margin above the wrapper.
pub const HOOK_TIMEOUT_SECS: u64 = 10;

const _: () = assert!(HOOK_BOUND_SECS + HOOK_KILL_AFTER_SECS + 2 <= HOOK_TIMEOUT_SECS);
const _: () = assert!(warroom_guard::post_tool_use::DEADLINE.as_secs() < HOOK_BOUND_SECS);

/// `timeout`'s exit status when the command ran past its bound, and when it was killed after
/// ignoring the TERM (128 + SIGKILL).
const TIMED_OUT: [u8; 2] = [124, 137];

impl GuardHook {
    /// Writes the hook scripts and the CLI settings for a run in `workspace` into `private`.
    pub fn write(&self, private: &Path, workspace: &Path) -> std::io::Result<HookFiles> {
        let files = HookFiles {
            settings: private.join("claude-settings.json"),
            script: private.join("guard-hook.sh"),
            redact_script: private.join("redact-hook.sh"),
            decisions: private.join("guard-decisions.jsonl"),
            redactions: private.join("hook-redactions.jsonl"),
        };
        write_file(
            &files.script,
            &self.script(workspace, &files.decisions),
            0o500,
        )?;
        write_file(
            &files.redact_script,
            &self.redact_script(&files.redactions),
            0o500,
        )?;
        let settings = settings(
            &sh_quote(&files.script.display().to_string()),
            &sh_quote(&files.redact_script.display().to_string()),
        );
        write_file(&files.settings, &format!("{settings:#}\n"), 0o400)?;
        Ok(files)
    }

    /// The `PreToolUse` hook script. The CLI runs a hook command through a shell, so every
    /// path is quoted. It does not `exec` the guard: the guard itself always exits 0, and a
    /// guard that cannot run at all (exit 126/127, a crash) or does not answer within
    /// [`HOOK_BOUND_SECS`] must block the call with exit 2, because the CLI lets a call
    /// through when its hook fails with any other code or runs past its timeout.
    fn script(&self, workspace: &Path, decisions: &Path) -> String {
        let mut command = format!(
            "{} --workspace {} --decisions {}",
            sh_quote(&self.bin.display().to_string()),
            sh_quote(&workspace.display().to_string()),
            sh_quote(&decisions.display().to_string()),
        );
        if let Some(config) = &self.config {
            command.push_str(" --config ");
            command.push_str(&sh_quote(&config.display().to_string()));
        }
        bounded_script(
            "The warroom-guard PreToolUse hook of this task",
            &command,
            "warroom-guard",
            "the call is blocked",
        )
    }

    /// The `PostToolUse` hook script: `warroom-guard post-tool-use`, which prints the tool's
    /// output redacted for the model. Exit 2 cannot take a tool's output back (the tool has
    /// run); it shows the reason to the model, and the runner's model proxy redacts the
    /// output on its way out all the same (the second layer).
    fn redact_script(&self, redactions: &Path) -> String {
        let command = format!(
            "{} post-tool-use --record {}",
            sh_quote(&self.bin.display().to_string()),
            sh_quote(&redactions.display().to_string()),
        );
        bounded_script(
            "The warroom-guard PostToolUse hook of this task (redacts tool output)",
            &command,
            "warroom-guard post-tool-use",
            "the output is redacted by the model proxy instead",
        )
    }
}

/// A hook script that runs `command` under coreutils `timeout` and turns every failure of it,
/// running past the bound included, into exit 2 with the reason on stderr.
fn bounded_script(title: &str, command: &str, what: &str, consequence: &str) -> String {
    let [timed_out, killed] = TIMED_OUT;
    format!(
        "#!/bin/sh\n\
         # {title}, written by warroom-runner.\n\
         {timeout} --kill-after={HOOK_KILL_AFTER_SECS}s {HOOK_BOUND_SECS}s {command}\n\
         status=$?\n\
         [ \"$status\" -eq 0 ] && exit 0\n\
         if [ \"$status\" -eq {timed_out} ] || [ \"$status\" -eq {killed} ]; then\n\
         \x20 echo \"{what} did not answer within {HOOK_BOUND_SECS} s; {consequence}\" >&2\n\
         else\n\
         \x20 echo \"{what} failed (exit $status); {consequence}\" >&2\n\
         fi\n\
         exit 2\n",
        timeout = sh_quote(timeout_bin()),
    )
}

/// coreutils `timeout`, by absolute path: the hook's PATH is the agent's, which the runner
/// sets but the agent may not be trusted to keep. Where neither path exists, the bare name is
/// looked up on PATH; a missing `timeout` fails the hook with exit 2, which blocks every call.
fn timeout_bin() -> &'static str {
    ["/usr/bin/timeout", "/bin/timeout"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .unwrap_or("timeout")
}

/// The CLI settings registering `guard` as the `PreToolUse` hook and `redact` as the
/// `PostToolUse` hook of every tool, each with the CLI-side timeout [`HOOK_TIMEOUT_SECS`].
pub fn settings(guard: &str, redact: &str) -> Value {
    let entry = |command: &str| {
        json!([{
            "matcher": "*",
            "hooks": [{ "type": "command", "command": command, "timeout": HOOK_TIMEOUT_SECS }],
        }])
    };
    json!({
        "hooks": {
            "PreToolUse": entry(guard),
            "PostToolUse": entry(redact),
        },
    })
}

fn write_file(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// `text` as one single-quoted POSIX shell word: `'` becomes `'\''`.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Reads the guard's decisions file; a missing file (no tool call) is empty, and a line that
/// is not a decision is skipped with a warning.
pub fn read_decisions(path: &Path) -> Vec<DecisionRecord> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(cause = %Chain(&e), path = %path.display(), "cannot read the guard's decisions");
            return Vec::new();
        }
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| match serde_json::from_str(line) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::warn!(cause = %Chain(&e), path = %path.display(), "skipping a guard decision line that does not parse");
                None
            }
        })
        .collect()
}

/// What the `PostToolUse` hook removed from the output of call `tool_use_id`, by kind, from
/// its records at `path` (a withheld output counts as `withheld_output`). The runner redacts
/// what the CLI streams, which the hook has already redacted; this is how the audit event of
/// the output still says what was removed from it.
pub fn hook_redactions(path: &Path, tool_use_id: &str) -> Redacted {
    let records = match warroom_guard::post_tool_use::read_records(path) {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(cause = %Chain(&e), path = %path.display(), "cannot read the redaction hook's records");
            return Redacted::new();
        }
    };
    let mut removed = Redacted::new();
    for record in records.iter().filter(|r| r.tool_use_id == tool_use_id) {
        for (kind, n) in &record.removed {
            *removed.entry(kind.clone()).or_default() += n;
        }
        if record.withheld {
            *removed.entry("withheld_output".to_owned()).or_default() += 1;
        }
    }
    removed
}

/// Adds the guard's rule and reason (`guard_rule`, `guard_reason`) to the input of each
/// denial the guard made, matched by tool and input text (the command, the path: what the
/// guard records). Returns the guard's denied decisions that matched no denial, e.g. when the
/// run ended without a result.
pub fn attribute_denials(
    denials: &mut [Denial],
    decisions: &[DecisionRecord],
) -> Vec<DecisionRecord> {
    let mut unmatched = Vec::new();
    let mut taken = vec![false; denials.len()];
    for record in decisions.iter().filter(|r| r.decision == "deny") {
        let found = denials.iter().enumerate().position(|(i, denial)| {
            !taken[i]
                && denial.tool == record.tool
                && denial.input.is_object()
                && input_summary(&denial.tool, &denial.input).as_deref()
                    == Some(record.input.as_str())
        });
        match found {
            Some(i) => {
                taken[i] = true;
                if let Some(input) = denials[i].input.as_object_mut() {
                    input.insert("guard_rule".to_owned(), Value::from(record.rule.clone()));
                    input.insert(
                        "guard_reason".to_owned(),
                        Value::from(record.reason.clone()),
                    );
                }
            }
            None => unmatched.push(record.clone()),
        }
    }
    unmatched
}

/// The input text the guard records for a call (`warroom_guard::hook`'s summary): the Bash
/// command, else the path or pattern, cut to the same length.
fn input_summary(tool: &str, input: &Value) -> Option<String> {
    let field = |name: &str| input.get(name).and_then(Value::as_str);
    let text = match tool {
        "Bash" => field("command"),
        _ => field("file_path")
            .or_else(|| field("notebook_path"))
            .or_else(|| field("path"))
            .or_else(|| field("pattern")),
    }?;
    const SUMMARY_LEN: usize = 2000;
    Some(match text.char_indices().nth(SUMMARY_LEN) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    })
}

/// The Claude Code tool a request tool maps onto.
pub fn claude_tool(tool: Tool) -> &'static str {
    match tool {
        Tool::Bash => "Bash",
        Tool::Read => "Read",
        Tool::Grep => "Grep",
        Tool::Glob => "Glob",
        Tool::Write => "Write",
        Tool::Edit => "Edit",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tools_map_one_to_one_and_nothing_else_exists() {
        let rules = ToolRules::for_tools(&[Tool::Read, Tool::Bash]);
        assert_eq!(rules.tools, vec!["Bash", "Read"]);
        let rules = ToolRules::for_tools(&Tool::ALL);
        assert_eq!(
            rules.tools,
            vec!["Bash", "Read", "Grep", "Glob", "Write", "Edit"]
        );
    }

    #[test]
    fn bash_allows_only_read_only_verbs_and_text_tools() {
        let rules = ToolRules::for_tools(&[Tool::Bash]);
        for rule in [
            "Bash(kubectl get:*)",
            "Bash(kubectl describe:*)",
            "Bash(kubectl logs:*)",
            "Bash(kubectl top:*)",
            "Bash(kubectl events:*)",
            "Bash(kubectl api-resources:*)",
            "Bash(kubectl cluster-info:*)",
            "Bash(oc get:*)",
            "Bash(oc adm top:*)",
            "Bash(oc status:*)",
            "Bash(oc whoami:*)",
            "Bash(grep:*)",
            "Bash(jq:*)",
            "Bash(cut:*)",
        ] {
            assert!(rules.allowed.iter().any(|r| r == rule), "{rule} missing");
        }
        for rule in &rules.allowed {
            let command = rule
                .strip_prefix("Bash(")
                .and_then(|r| r.strip_suffix(":*)"))
                .unwrap_or_else(|| panic!("{rule} is not a Bash prefix rule"));
            for verb in MUTATING {
                assert!(
                    !command.split(' ').any(|word| word == verb),
                    "{rule} allows the mutating verb {verb}"
                );
            }
        }
        assert!(!rules.allowed.iter().any(|r| r.starts_with("Edit")));
    }

    #[test]
    fn secrets_mutations_and_identity_flags_are_denied() {
        let rules = ToolRules::for_tools(&[Tool::Bash]);
        for rule in [
            "Bash(kubectl get secret:*)",
            "Bash(kubectl get secrets:*)",
            "Bash(kubectl describe secret:*)",
            "Bash(oc get secrets:*)",
            "Bash(kubectl *secret*)",
            "Bash(oc *secret*)",
            "Bash(kubectl exec:*)",
            "Bash(kubectl port-forward:*)",
            "Bash(kubectl proxy:*)",
            "Bash(kubectl cp:*)",
            "Bash(kubectl edit:*)",
            "Bash(kubectl delete:*)",
            "Bash(kubectl apply:*)",
            "Bash(kubectl patch:*)",
            "Bash(kubectl scale:*)",
            "Bash(oc delete:*)",
            "Bash(oc rsh:*)",
            "Bash(oc adm drain:*)",
            "Bash(kubectl *--as*)",
            "Bash(kubectl *--token*)",
            "Bash(oc whoami *-t*)",
            "Bash(jq *env*)",
            "Bash(jq *ENV*)",
        ] {
            assert!(rules.denied.iter().any(|r| r == rule), "{rule} missing");
        }
        // A deny rule must never cover a read-only verb the allow list grants.
        for rule in &rules.denied {
            assert!(
                !READ_ONLY_VERBS
                    .iter()
                    .any(|verb| rule == &format!("Bash(kubectl {verb}:*)")),
                "{rule} denies a read-only verb outright"
            );
        }
    }

    #[test]
    fn writes_are_limited_to_the_workspace() {
        let rules = ToolRules::for_tools(&[Tool::Write]);
        assert_eq!(rules.tools, vec!["Write"]);
        assert_eq!(rules.allowed, vec!["Edit(./**)"]);
        assert!(rules.denied.is_empty());
        assert!(
            !rules
                .allowed
                .iter()
                .any(|r| r == "Write" || r == "Edit" || r.contains(".."))
        );
    }

    #[test]
    fn read_tools_without_bash_get_no_shell() {
        let rules = ToolRules::for_tools(&[Tool::Read, Tool::Grep, Tool::Glob]);
        assert_eq!(rules.tools, vec!["Read", "Grep", "Glob"]);
        assert_eq!(rules.allowed, vec!["Read(./**)"]);
        assert!(!rules.allowed.iter().any(|r| r.starts_with("Bash")));
    }

    #[test]
    fn the_hook_quotes_every_path_and_blocks_when_the_guard_cannot_run() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
        let dir = tempfile::tempdir().expect("temp dir");
        let private = dir.path().join("task 'x'");
        std::fs::create_dir(&private).expect("private dir");
        let hook = GuardHook {
            bin: PathBuf::from("/opt/warroom/bin/warroom-guard"),
            config: Some(PathBuf::from("/etc/warroom/guard.yaml")),
        };
        let files = hook
            .write(&private, Path::new("/work/ws"))
            .expect("writes the hook");
        let script = std::fs::read_to_string(&files.script).expect("script");
        let decisions = sh_quote(&files.decisions.display().to_string());
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(
            script.contains(&format!(
                "s {HOOK_BOUND_SECS}s '/opt/warroom/bin/warroom-guard' --workspace '/work/ws' --decisions {decisions} --config '/etc/warroom/guard.yaml'\n"
            )),
            "{script}"
        );
        assert!(script.contains("exit 2\n"), "{script}");
        let redact = std::fs::read_to_string(&files.redact_script).expect("redact script");
        let redactions = sh_quote(&files.redactions.display().to_string());
        assert!(
            redact.contains(&format!(
                "s {HOOK_BOUND_SECS}s '/opt/warroom/bin/warroom-guard' post-tool-use --record {redactions}\n"
            )),
            "{redact}"
        );
        let settings: Value =
            serde_json::from_str(&std::fs::read_to_string(&files.settings).expect("settings"))
                .expect("settings are JSON");
        for (event, script) in [
            ("PreToolUse", &files.script),
            ("PostToolUse", &files.redact_script),
        ] {
            let entry = &settings["hooks"][event][0];
            assert_eq!(entry["matcher"], "*", "{event}");
            assert_eq!(entry["hooks"][0]["type"], "command", "{event}");
            assert_eq!(
                entry["hooks"][0]["command"],
                sh_quote(&script.display().to_string()),
                "{event}"
            );
            // Without a timeout the CLI waits its own default, and lets the call through
            // when that runs out.
            assert_eq!(
                entry["hooks"][0]["timeout"],
                json!(HOOK_TIMEOUT_SECS),
                "{event}"
            );
        }
        // Nothing of the hook is in the workspace the agent writes.
        for file in [
            &files.script,
            &files.redact_script,
            &files.settings,
            &files.decisions,
            &files.redactions,
        ] {
            assert!(file.starts_with(&private), "{}", file.display());
        }
    }

    /// Runs a hook script with `stdin` and waits for it, at most `deadline`; the exit status
    /// and stderr.
    fn run_hook(script: &Path, stdin: &str, deadline: Duration) -> (Option<i32>, String) {
        use std::io::Write as _;
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(sh_quote(&script.display().to_string()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs the hook");
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = rx
            .recv_timeout(deadline)
            .unwrap_or_else(|_| panic!("the hook did not end within {deadline:?}"))
            .expect("waits for the hook");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// A stand-in guard (a shell script) for the hook scripts.
    fn stand_in_guard(dir: &Path, body: &str) -> GuardHook {
        use std::os::unix::fs::PermissionsExt as _;
        let bin = dir.join("slow-guard");
        std::fs::write(&bin, format!("#!/bin/sh\n{body}\n")).expect("write the stand-in");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        GuardHook { bin, config: None }
    }

    #[test]
    fn a_guard_that_never_answers_blocks_the_call_within_the_bound() {
        let dir = tempfile::tempdir().expect("temp dir");
        // `exec` so that TERM reaches the sleeping process itself, as it would a hung guard.
        let hook = stand_in_guard(dir.path(), "cat >/dev/null; exec sleep 1000");
        let files = hook.write(dir.path(), dir.path()).expect("writes the hook");
        // Generous: the bound is what ends it, this only keeps a broken wrapper from hanging
        // the test (the CLI would have let the call through long before).
        let deadline = Duration::from_secs(HOOK_TIMEOUT_SECS * 3);
        for script in [&files.script, &files.redact_script] {
            let (code, stderr) = run_hook(script, "{}", deadline);
            assert_eq!(code, Some(2), "{}: {stderr}", script.display());
            assert!(
                stderr.contains(&format!("did not answer within {HOOK_BOUND_SECS} s")),
                "{stderr}"
            );
        }
    }

    #[test]
    fn a_guard_that_ignores_term_is_killed_and_blocks_the_call() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hook = stand_in_guard(
            dir.path(),
            "trap '' TERM; cat >/dev/null; while :; do sleep 1; done",
        );
        let files = hook.write(dir.path(), dir.path()).expect("writes the hook");
        let (code, stderr) = run_hook(
            &files.script,
            "{}",
            Duration::from_secs(HOOK_TIMEOUT_SECS * 3),
        );
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("did not answer within"), "{stderr}");
    }

    #[test]
    fn a_guard_that_answers_in_time_passes_its_answer_and_status_through() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hook = stand_in_guard(dir.path(), "cat >/dev/null; echo decided");
        let files = hook.write(dir.path(), dir.path()).expect("writes the hook");
        let output = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(sh_quote(&files.script.display().to_string()))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("runs the hook");
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "decided\n");
    }

    #[test]
    fn a_missing_guard_blocks_the_call_with_exit_2() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hook = GuardHook {
            bin: dir.path().join("no-such-guard"),
            config: None,
        };
        let files = hook.write(dir.path(), dir.path()).expect("writes the hook");
        let status = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(sh_quote(&files.script.display().to_string()))
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("runs the hook");
        assert_eq!(status.code(), Some(2));
    }

    fn record(tool: &str, input: &str, decision: &str, rule: &str) -> DecisionRecord {
        DecisionRecord {
            time: "2026-01-01T00:00:00Z".to_owned(),
            session_id: None,
            tool: tool.to_owned(),
            input: input.to_owned(),
            decision: decision.to_owned(),
            rule: rule.to_owned(),
            reason: format!("because {rule}"),
        }
    }

    #[test]
    fn guard_refusals_are_matched_to_denials_by_input() {
        let denial = |tool: &str, input: Value| Denial {
            tool: tool.to_owned(),
            tool_use_id: "t".to_owned(),
            input,
        };
        let mut denials = vec![
            denial("Bash", json!({"command": "kubectl get secrets"})),
            denial("Read", json!({"file_path": "/etc/passwd"})),
            denial("Bash", json!({"command": "kubectl get secrets"})),
            // Refused by the CLI's own rules, not by the guard.
            denial("Bash", json!({"command": "kubectl delete pod x"})),
        ];
        let decisions = vec![
            record("Bash", "kubectl get pods", "allow", "kubectl.get"),
            record(
                "Bash",
                "kubectl get secrets",
                "deny",
                "kubectl.refused-kind",
            ),
            record("Read", "/etc/passwd", "deny", "tool.path-outside-workspace"),
            record(
                "Bash",
                "kubectl get secrets",
                "deny",
                "kubectl.refused-kind",
            ),
            // Never reached the result (e.g. a run stopped by its timeout).
            record("Bash", "oc whoami -t", "deny", "kubectl.flag"),
        ];
        let unmatched = attribute_denials(&mut denials, &decisions);
        assert_eq!(denials[0].input["guard_rule"], "kubectl.refused-kind");
        assert_eq!(
            denials[0].input["guard_reason"],
            "because kubectl.refused-kind"
        );
        assert_eq!(denials[0].input["command"], "kubectl get secrets");
        assert_eq!(
            denials[1].input["guard_rule"],
            "tool.path-outside-workspace"
        );
        assert_eq!(denials[2].input["guard_rule"], "kubectl.refused-kind");
        assert!(denials[3].input.get("guard_rule").is_none());
        assert_eq!(unmatched.len(), 1);
        assert_eq!(unmatched[0].input, "oc whoami -t");
    }

    #[test]
    fn decisions_file_missing_or_partly_broken_is_read_as_far_as_it_goes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("guard-decisions.jsonl");
        assert!(read_decisions(&path).is_empty());
        let line =
            serde_json::to_string(&record("Bash", "ls", "deny", "bash.program")).expect("encodes");
        std::fs::write(&path, format!("{line}\nnot json\n\n{line}\n")).expect("write");
        assert_eq!(read_decisions(&path).len(), 2);
    }

    #[test]
    fn cli_args_are_single_arguments_in_dont_ask_mode() {
        let args = ToolRules::for_tools(&[Tool::Bash, Tool::Read]).cli_args();
        assert_eq!(args[0..2], ["--permission-mode", "dontAsk"]);
        assert_eq!(args[2], "--tools=Bash,Read");
        assert!(args[3].starts_with("--allowedTools=Bash(kubectl get:*),"));
        assert!(args[4].starts_with("--disallowedTools=Bash(kubectl get secret:*),"));
        assert_eq!(args.len(), 5);

        let none = ToolRules::for_tools(&[]).cli_args();
        assert_eq!(none, ["--permission-mode", "dontAsk", "--tools="]);
    }
}
