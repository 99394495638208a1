//! The tool-call guard of claude-warroom: decides every tool call the agent makes, as a Claude
//! Code `PreToolUse` hook.
//!
//! Bash commands are parsed with a real shell grammar (brush-parser) into a pipeline of
//! literal argument vectors; `kubectl` and `oc` are then parsed the way cobra and pflag parse
//! them, and the text tools the way GNU getopt does. Everything not on an allowlist is refused,
//! and every decision names its rule and tells the model what to do instead. RBAC stays the
//! real boundary; the guard keeps the agent to read-only troubleshooting and makes each attempt
//! to step outside it visible. `RULES.md` describes the rules in words.

pub mod cli;
pub mod config;
pub mod decision;
mod error;
pub mod flags;
pub mod hook;
pub mod kube;
pub mod post_tool_use;
pub mod shell;
pub mod text;
pub mod workspace;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub use config::GuardConfig;
pub use decision::Decision;
pub use error::{Error, Result};
pub use workspace::{PathRefusal, Workspace};

use crate::config::Cli;
use crate::flags::{Arity, FlagSpec};
use crate::kube::{KubePolicy, RefusedKind, VerbSpec};
use crate::text::ProgramSpec;

/// How long the hook binary gives one decision before it refuses the call
/// (`hook.deadline`) and exits. The CLI's hook `timeout` must be set above it (with room for
/// process start-up), or a slow decision would let the call through.
pub const DECISION_DEADLINE: Duration = Duration::from_secs(2);

/// The context folder the runner mounts read-only for every task.
pub const DEFAULT_READ_ONLY_FOLDER: &str = "/opt/claude-context";

/// One tool call as the hook receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The Claude Code tool (`Bash`, `Read`, ...).
    pub tool_name: String,
    /// Its input object (`{"command": ".."}` for Bash).
    pub tool_input: Value,
}

/// The guard: the built-in rules, extended by a configuration.
#[derive(Debug, Clone)]
pub struct Guard {
    kube: KubePolicy,
    programs: Vec<ProgramSpec>,
    read_only_folders: Vec<PathBuf>,
    extra_tools: Vec<String>,
}

impl Default for Guard {
    fn default() -> Guard {
        Guard::builtin()
    }
}

impl Guard {
    /// The built-in rules without any configuration.
    pub fn builtin() -> Guard {
        Guard {
            kube: KubePolicy::builtin(),
            programs: text::builtin_programs(),
            read_only_folders: vec![PathBuf::from(DEFAULT_READ_ONLY_FOLDER)],
            extra_tools: Vec::new(),
        }
    }

    /// The built-in rules extended by `config`, which is validated first.
    pub fn new(config: GuardConfig) -> Result<Guard> {
        config.validate(Path::new("<inline>"))?;
        Ok(Guard::extended(config))
    }

    /// The built-in rules extended by the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Guard> {
        Ok(Guard::extended(GuardConfig::load(path)?))
    }

    fn extended(config: GuardConfig) -> Guard {
        let mut guard = Guard::builtin();
        guard.read_only_folders.extend(config.read_only_folders);
        for kind in config.refused_kinds {
            let reason = kind.reason.unwrap_or_else(|| {
                format!(
                    "the cluster's operator refuses `{}` for this agent",
                    kind.resource
                )
            });
            guard
                .kube
                .refused_kinds
                .push(RefusedKind::new(&kind.resource, &kind.names, reason));
        }
        for verb in config.kube_verbs {
            let path: Vec<String> = verb.verb.split(' ').map(str::to_owned).collect();
            let flags: Vec<FlagSpec> = verb.flags.iter().map(flag_spec).collect();
            let clis: &[Cli] = match verb.cli {
                Cli::Both => &[Cli::Kubectl, Cli::Oc],
                Cli::Kubectl => &[Cli::Kubectl],
                Cli::Oc => &[Cli::Oc],
            };
            let mut extended = false;
            for existing in guard.kube.verbs.iter_mut().filter(|v| v.path == path) {
                let matches = clis
                    .iter()
                    .any(|cli| existing.cli == *cli || existing.cli == Cli::Both);
                if matches {
                    existing.flags.extend(flags.iter().cloned());
                    if let Some(operands) = verb.operands {
                        existing.operands = operands.into();
                    }
                    extended = true;
                }
            }
            if !extended {
                guard.kube.verbs.push(VerbSpec {
                    cli: verb.cli,
                    path,
                    flags,
                    operands: verb.operands.unwrap_or_default().into(),
                });
            }
        }
        for program in config.programs {
            let flags: Vec<FlagSpec> = program.flags.iter().map(flag_spec).collect();
            match guard.programs.iter_mut().find(|p| p.name == program.name) {
                Some(existing) => {
                    existing.flags.extend(flags);
                    if let Some(operands) = program.operands {
                        existing.operands = operands.into();
                    }
                }
                None => guard.programs.push(ProgramSpec {
                    name: program.name,
                    flags,
                    operands: program.operands.map_or(text::Operands::None, Into::into),
                }),
            }
        }
        guard.extra_tools = config.tools;
        guard
    }

    /// The workspace rooted at `root`, with this guard's read-only folders.
    pub fn workspace(&self, root: impl Into<PathBuf>) -> Workspace {
        Workspace::new(root).with_read_only(self.read_only_folders.iter().cloned())
    }

    /// Decides one tool call.
    pub fn check(&self, call: &ToolCall, ws: &Workspace) -> Decision {
        let input = &call.tool_input;
        let field = |name: &str| input.get(name).and_then(Value::as_str);
        match call.tool_name.as_str() {
            "Bash" => match field("command") {
                Some(command) => self.check_bash(command, ws),
                None => Decision::deny("tool.malformed", "the Bash call has no `command` text"),
            },
            "Read" | "NotebookRead" => {
                match field("file_path").or_else(|| field("notebook_path")) {
                    Some(path) => check_path(&call.tool_name, path, ws, false),
                    None => Decision::deny(
                        "tool.malformed",
                        format!("the {} call has no path", call.tool_name),
                    ),
                }
            }
            "Grep" | "Glob" | "LS" => {
                // Braces expand to alternatives (`{..,x}/*` holds a `..` no split sees) and `~`
                // to a home folder, so neither is read: patterns stay literal globs.
                for (what, value) in [
                    (
                        "Glob pattern",
                        field("pattern").filter(|_| call.tool_name == "Glob"),
                    ),
                    ("Grep glob", field("glob")),
                ] {
                    if let Some(value) = value
                        && value.contains(['{', '}', '~'])
                    {
                        return Decision::deny(
                            "tool.glob-expansion",
                            format!(
                                "the {what} `{value}` uses braces or `~`, which expand to other paths; write one relative pattern per call (such as `**/*.yaml`)"
                            ),
                        );
                    }
                }
                if let Some(pattern) = field("pattern").filter(|_| call.tool_name == "Glob")
                    && (pattern.starts_with('/')
                        || pattern.starts_with('~')
                        || pattern.split('/').any(|part| part == ".."))
                {
                    return Decision::deny(
                        "tool.path-outside-workspace",
                        format!(
                            "the Glob pattern `{pattern}` leaves the search folder; use a relative pattern without `..`"
                        ),
                    );
                }
                if let Some(glob) = field("glob").filter(|g| g.split('/').any(|part| part == ".."))
                {
                    return Decision::deny(
                        "tool.path-outside-workspace",
                        format!(
                            "the Grep glob `{glob}` contains `..`; search inside the workspace"
                        ),
                    );
                }
                let path = field("path").unwrap_or(".");
                check_path(&call.tool_name, path, ws, false)
            }
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => {
                match field("file_path").or_else(|| field("notebook_path")) {
                    Some(path) => match ws.agent_config(path) {
                        Some(name) => Decision::deny(
                            "tool.agent-config",
                            format!(
                                "{} of `{path}` is refused: `{name}` configures the Claude Code CLI itself (settings, hooks, MCP servers, instructions); write reports and notes under other names",
                                call.tool_name
                            ),
                        ),
                        None => check_path(&call.tool_name, path, ws, true),
                    },
                    None => Decision::deny(
                        "tool.malformed",
                        format!("the {} call has no path", call.tool_name),
                    ),
                }
            }
            // The tool the CLI adds for `--json-schema`: the agent hands in its answer, which
            // touches nothing (the runner checks its evidence afterwards).
            "StructuredOutput" => Decision::allow(
                "tool.structured-output",
                "the agent's structured answer touches nothing",
            ),
            other if self.extra_tools.iter().any(|t| t == other) => Decision::allow(
                "tool.configured",
                format!("`{other}` is allowed by the guard configuration"),
            ),
            other => Decision::deny(
                "tool.not-allowed",
                format!(
                    "the tool `{other}` is refused: this agent may use Bash (read-only kubectl/oc and text filters), Read, Grep, Glob, and Write/Edit inside its workspace"
                ),
            ),
        }
    }

    /// Decides one Bash command line.
    pub fn check_bash(&self, command: &str, ws: &Workspace) -> Decision {
        let pipeline = match shell::parse_pipeline(command) {
            Ok(pipeline) => pipeline,
            Err(decision) => return decision,
        };
        let mut last = None;
        for argv in &pipeline {
            let decision = self.check_argv(argv, ws);
            if !decision.allowed {
                return decision;
            }
            last = Some(decision);
        }
        match (pipeline.len(), last) {
            (1, Some(decision)) => decision,
            (_, Some(_)) => {
                Decision::allow("bash.pipeline", "every command of the pipeline is allowed")
            }
            (_, None) => Decision::deny("shell.no-command", "the command is empty"),
        }
    }

    fn check_argv(&self, argv: &[shell::Arg], ws: &Workspace) -> Decision {
        let Some(first) = argv.first() else {
            return Decision::deny("shell.no-command", "the command is empty");
        };
        let name = first.value.as_str();
        let names = || {
            let mut all = vec!["kubectl".to_owned(), "oc".to_owned()];
            all.extend(self.programs.iter().map(|p| p.name.clone()));
            all.join(", ")
        };
        if !first.plain || name.contains('/') {
            return Decision::deny(
                "bash.program-name",
                format!(
                    "the program `{name}` must be written as a bare name without quotes, escapes or a path; allowed programs: {}",
                    names()
                ),
            );
        }
        let args: Vec<String> = argv.iter().map(|a| a.value.clone()).collect();
        if name == "kubectl" || name == "oc" {
            return self.kube.check(&args);
        }
        if let Some(spec) = self.programs.iter().find(|p| p.name == name) {
            return text::check(spec, &args, ws);
        }
        let why = match name {
            "gawk" | "mawk" | "nawk" | "perl" | "python" | "python3" | "ruby" | "node" => {
                "it can run commands and write files (plain `awk` and `sed` are allowed, with their programs checked)"
            }
            "bash" | "sh" | "zsh" | "dash" | "eval" | "exec" | "source" | "." | "xargs" | "env"
            | "command" | "builtin" | "nohup" | "timeout" | "watch" => "it runs other commands",
            "printenv" | "set" | "export" | "declare" => "the environment holds credentials",
            "base64" | "base32" | "basenc" | "openssl" | "rev" | "xxd" | "od" | "hexdump" => {
                "it encodes, decodes or reshapes values into forms the redaction cannot recognise"
            }
            "curl" | "wget" | "nc" | "ssh" => "the network is reached through kubectl/oc only",
            "find" | "ls" | "tee" | "rm" | "cp" | "mv" => {
                "use the Glob, Read and Write tools for files"
            }
            "egrep" | "fgrep" => "use `grep -E` or `grep -F`",
            _ => "it is not on the allowlist",
        };
        Decision::deny(
            "bash.program",
            format!("`{name}` is refused: {why}. Allowed programs: {}", names()),
        )
    }
}

fn flag_spec(flag: &config::FlagConfig) -> FlagSpec {
    FlagSpec {
        long: flag.long.clone(),
        short: flag.short,
        arity: if flag.value {
            Arity::One
        } else {
            Arity::Switch
        },
    }
}

fn check_path(tool: &str, path: &str, ws: &Workspace, write: bool) -> Decision {
    let result = if write {
        ws.writable(path)
    } else {
        ws.readable(path)
    };
    match result {
        Ok(_) => Decision::allow(
            if write {
                "tool.write-workspace"
            } else {
                "tool.read-workspace"
            },
            format!("{tool} of `{path}` stays inside the allowed folders"),
        ),
        Err(refusal) => {
            let why = match refusal {
                PathRefusal::ParentComponent => "it contains `..`".to_owned(),
                PathRefusal::Outside(p) => format!("it resolves to {}", p.display()),
                PathRefusal::Invalid => "it is not a valid path".to_owned(),
                PathRefusal::DanglingSymlink(p) => format!(
                    "it goes through the symlink {}, which points nowhere (a write would create its target wherever it points)",
                    p.display()
                ),
            };
            let allowed = if write {
                format!("writes stay inside the workspace {}", ws.root().display())
            } else {
                let mut folders = vec![ws.root().display().to_string()];
                folders.extend(ws.read_only().iter().map(|f| f.display().to_string()));
                format!("reads stay inside {}", folders.join(", "))
            };
            Decision::deny(
                "tool.path-outside-workspace",
                format!("{tool} of `{path}` is refused: {why}; {allowed}"),
            )
        }
    }
}
