//! The tool policy: which Claude Code tools an agent gets and which calls it may make, derived
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

use warroom_proto::Tool;

/// Read-only verbs of both `kubectl` and `oc`.
const READ_ONLY_VERBS: [&str; 10] = [
    "get",
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
const TEXT_TOOLS: [&str; 8] = ["grep", "head", "tail", "wc", "sort", "uniq", "jq", "cut"];

/// Subcommands that change a cluster, reach into containers or nodes, or hand out credentials.
/// None of them is allowed anyway; listing them refuses them even if an allow rule is widened
/// by mistake, and makes the intent visible in the audit log.
const MUTATING: [&str; 30] = [
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
    "rollout",
    "expose",
    "drain",
    "cordon",
    "uncordon",
    "taint",
    "certificate",
    "config",
    "auth",
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

/// Flags that change who the command runs as or which API server it talks to, or bypass the
/// typed API: each would step around the runner's service account.
const IDENTITY_FLAGS: [&str; 9] = [
    "--as",
    "--token",
    "--kubeconfig",
    "--server",
    "--username",
    "--password",
    "--client-key",
    "--client-certificate",
    "--raw",
];

/// The effective policy of one task, as CLI arguments and as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Claude Code tools that exist for the agent (`--tools`).
    pub tools: Vec<&'static str>,
    /// Permission rules that allow calls (`--allowedTools`).
    pub allowed: Vec<String>,
    /// Permission rules that refuse calls, winning over `allowed` (`--disallowedTools`).
    pub denied: Vec<String>,
}

impl Policy {
    /// The policy for a request that allows `requested` tools.
    pub fn for_tools(requested: &[Tool]) -> Policy {
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
            // jq reads the environment (`env`, `$ENV`), which holds the API key unless the
            // CLI scrubs it.
            denied.push("Bash(jq *env*)".to_owned());
            denied.push("Bash(jq *ENV*)".to_owned());
        }

        Policy {
            tools,
            allowed,
            denied,
        }
    }

    /// The CLI arguments that enforce this policy. The lists are given as single
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
    use super::*;

    #[test]
    fn tools_map_one_to_one_and_nothing_else_exists() {
        let policy = Policy::for_tools(&[Tool::Read, Tool::Bash]);
        assert_eq!(policy.tools, vec!["Bash", "Read"]);
        let policy = Policy::for_tools(&Tool::ALL);
        assert_eq!(
            policy.tools,
            vec!["Bash", "Read", "Grep", "Glob", "Write", "Edit"]
        );
    }

    #[test]
    fn bash_allows_only_read_only_verbs_and_text_tools() {
        let policy = Policy::for_tools(&[Tool::Bash]);
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
            assert!(policy.allowed.iter().any(|r| r == rule), "{rule} missing");
        }
        for rule in &policy.allowed {
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
        assert!(!policy.allowed.iter().any(|r| r.starts_with("Edit")));
    }

    #[test]
    fn secrets_mutations_and_identity_flags_are_denied() {
        let policy = Policy::for_tools(&[Tool::Bash]);
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
            assert!(policy.denied.iter().any(|r| r == rule), "{rule} missing");
        }
        // A deny rule must never cover a read-only verb the allow list grants.
        for rule in &policy.denied {
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
        let policy = Policy::for_tools(&[Tool::Write]);
        assert_eq!(policy.tools, vec!["Write"]);
        assert_eq!(policy.allowed, vec!["Edit(./**)"]);
        assert!(policy.denied.is_empty());
        assert!(
            !policy
                .allowed
                .iter()
                .any(|r| r == "Write" || r == "Edit" || r.contains(".."))
        );
    }

    #[test]
    fn read_tools_without_bash_get_no_shell() {
        let policy = Policy::for_tools(&[Tool::Read, Tool::Grep, Tool::Glob]);
        assert_eq!(policy.tools, vec!["Read", "Grep", "Glob"]);
        assert_eq!(policy.allowed, vec!["Read(./**)"]);
        assert!(!policy.allowed.iter().any(|r| r.starts_with("Bash")));
    }

    #[test]
    fn cli_args_are_single_arguments_in_dont_ask_mode() {
        let args = Policy::for_tools(&[Tool::Bash, Tool::Read]).cli_args();
        assert_eq!(args[0..2], ["--permission-mode", "dontAsk"]);
        assert_eq!(args[2], "--tools=Bash,Read");
        assert!(args[3].starts_with("--allowedTools=Bash(kubectl get:*),"));
        assert!(args[4].starts_with("--disallowedTools=Bash(kubectl get secret:*),"));
        assert_eq!(args.len(), 5);

        let none = Policy::for_tools(&[]).cli_args();
        assert_eq!(none, ["--permission-mode", "dontAsk", "--tools="]);
    }
}
