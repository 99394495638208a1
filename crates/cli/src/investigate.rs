//! `claude-warroom investigate` (alias `create`): writes a request file, validated exactly
//! as the gateway will validate it, commits only that file, and pushes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warroom_proto::request::{
    ClusterRef, ClusterType, Coordination, CoordinationMode, Investigation, Issue, Metadata,
    Output, OutputFormat, RequestSpec, Tool, TroubleshootingRequest,
};
use warroom_proto::{API_VERSION, KIND_TROUBLESHOOTING};
use warroom_proto::{ClusterName, RequestId};

use crate::submit::{NewFile, Outbox, invalid};

/// The folder request files go to, from the repository root.
const PENDING_DIR: &str = "requests/pending";
/// Longest slug in a generated id, so the id stays readable.
const MAX_SLUG_LEN: usize = 40;

/// Ask for an investigation: write, commit and push a request file.
///
/// Builds a TroubleshootingRequest from the flags, validates it exactly as the secure zone's
/// gateway will (an invalid request is never written), writes
/// `requests/pending/<ID>.yaml` in your clone, commits only that file (anything else you
/// have staged stays staged), and pushes the current branch to `origin` (after a
/// `git pull --rebase` and one retry if the remote moved). Your own git identity, signing
/// key and hooks are used. The request id is printed alone on the last line of stdout;
/// everything else goes to stderr.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("target").required(true).args(["cluster", "clusters"])),
    after_help = "\
Examples:
  # The design's example: one cluster (production-hub is a hub: its name ends in -hub).
  claude-warroom investigate --cluster production-hub --namespace clusters-prod-1 \\
      --issue \"etcd latency\" --strategy control-plane-health

  claude-warroom create --cluster hub --issue \"API timeout\" \\
      --prompt \"Investigate control plane health\"

  # Several clusters, one after another: each later cluster's prompt carries what the
  # clusters before it found.
  claude-warroom investigate --clusters production-hub,prod-cluster-1 --mode sequential \\
      --issue \"API server experiencing 30s+ response times\" --timeout 900

  # Capture the id in a script, then follow the request.
  id=$(claude-warroom investigate --cluster prod-cluster-1 --issue \"node NotReady\")
  claude-warroom status \"$id\"

Exit codes: 0 written, committed and pushed; 1 the request would be invalid (nothing is
written) or git failed; 2 usage error."
)]
pub struct Args {
    /// The one cluster to investigate (letters, digits, `-`, `_`).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// The HyperShift role of --cluster. Default: `hub` when the name is `hub` or ends with
    /// `-hub`, else `hosted`.
    #[arg(long, value_name = "TYPE", requires = "cluster")]
    pub cluster_type: Option<ClusterKind>,

    /// Several clusters, comma-separated, in order. Each is `NAME` or `NAME:TYPE`
    /// (`hub`/`hosted`; the type defaults as for --cluster). Needs --mode.
    #[arg(
        long,
        value_name = "NAME[:TYPE],...",
        value_delimiter = ',',
        requires = "mode"
    )]
    pub clusters: Vec<String>,

    /// How --clusters are investigated: `parallel` (all at once) or `sequential` (one after
    /// another, in the listed order, each later one told what the earlier ones found).
    #[arg(
        long,
        value_name = "MODE",
        requires = "clusters",
        conflicts_with = "cluster"
    )]
    pub mode: Option<Mode>,

    /// The issue, in a sentence (the request's `spec.issue.description`).
    #[arg(long, value_name = "TEXT")]
    pub issue: String,

    /// A short category for the issue. Default: the issue text as a slug
    /// (`API timeout` -> `api-timeout`).
    #[arg(long, value_name = "SLUG")]
    pub category: Option<String>,

    /// Resources affected by the issue (hosted clusters, nodes...), comma-separated.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub affected_resources: Vec<String>,

    /// The Kubernetes namespace to focus on, e.g. `clusters-prod-1`.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// A named troubleshooting strategy (a runbook in the secure zone), e.g.
    /// `control-plane-health`; `claude-warroom strategies` lists them. Without one, the agent
    /// picks a runbook from their index.
    #[arg(long, value_name = "NAME")]
    pub strategy: Option<String>,

    /// The instructions for the agent. Default: a prompt composed from --issue, --namespace
    /// and --strategy.
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,

    /// The tools the agent may use, comma-separated: bash, read, grep, glob, write, edit.
    /// The secure zone narrows them further (bash runs only read-only oc/kubectl verbs and
    /// text tools; writes stay in the task's own workspace).
    #[arg(
        long,
        value_name = "TOOL,...",
        value_delimiter = ',',
        default_value = "bash,read,grep",
        value_parser = parse_tool
    )]
    pub tools: Vec<Tool>,

    /// Seconds the investigation may run in each cluster before it is stopped and reported
    /// `timed_out` (30 to 14400; the secure zone may allow less).
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub timeout: u64,

    /// Who is asking. Default: `git config user.email` of the repository, else `user.name`,
    /// else $USER.
    #[arg(long, value_name = "WHO", env = "WARROOM_ENGINEER")]
    pub engineer: Option<String>,

    /// A short human name for the request. Default: `<category>-investigation`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The request id, which is also the file name. Default: `<YYYY-MM-DD-HHMM>-<category>-<6
    /// hex>`, the time in UTC.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    /// Where the publisher writes the results: a folder inside `results/` (e.g.
    /// `results/team-a/`), to which the request id is added as the last folder so that two
    /// requests never share one. Default: `results/<ID>/`.
    #[arg(long, value_name = "DIR")]
    pub destination: Option<String>,

    /// A clone of the warroom repository.
    #[arg(long, value_name = "DIR", env = "WARROOM_REPO", default_value = ".")]
    pub repo: PathBuf,

    /// Commit, but do not push (push later with `git push`).
    #[arg(long)]
    pub no_push: bool,
}

/// `--cluster-type`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ClusterKind {
    /// The hub (management) cluster that hosts control planes.
    Hub,
    /// A hosted cluster.
    Hosted,
}

impl From<ClusterKind> for ClusterType {
    fn from(kind: ClusterKind) -> Self {
        match kind {
            ClusterKind::Hub => ClusterType::Hub,
            ClusterKind::Hosted => ClusterType::Hosted,
        }
    }
}

/// `--mode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    /// Every cluster at once.
    Parallel,
    /// One cluster after another, each later one told what the earlier ones found.
    Sequential,
}

impl From<Mode> for CoordinationMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Parallel => CoordinationMode::Parallel,
            Mode::Sequential => CoordinationMode::Sequential,
        }
    }
}

fn parse_tool(name: &str) -> Result<Tool, String> {
    Tool::parse(name.trim()).ok_or_else(|| {
        let known: Vec<&str> = Tool::ALL.iter().map(|t| t.as_str()).collect();
        format!(
            "unknown tool `{name}`; expected some of: {}",
            known.join(", ")
        )
    })
}

/// The type a cluster name implies: the hub is `hub` or `*-hub`.
pub(crate) fn default_type(name: &str) -> ClusterType {
    if name == "hub" || name.ends_with("-hub") {
        ClusterType::Hub
    } else {
        ClusterType::Hosted
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    // Everything that needs no git is checked first, so a typo costs nothing.
    let (targets, unchecked) = targets(&args)?;
    if let Some(id) = &args.id
        && let Some(problem) = RequestId::problem(id)
    {
        bail!("--id: the request id `{id}` {problem}");
    }

    let outbox = Outbox::open(&args.repo, args.no_push)?;
    let engineer = outbox.engineer(args.engineer.as_deref())?;
    let now = crate::submit::now()?;
    let category = args.category.clone().unwrap_or_else(|| slug(&args.issue));
    let id = match &args.id {
        Some(id) => id.clone(),
        None => generate_id(now, &category)?,
    };
    let request = build(&args, &id, targets, engineer, category, now)?;
    let relative = format!("{PENDING_DIR}/{id}.yaml");
    let yaml = if unchecked.is_empty() {
        render(&request, &id)?
    } else {
        // A cluster name the type refuses goes into the file as written, so the validation
        // below reports it together with every other problem, with its field and flag.
        let mut value = serde_yaml_ng::to_value(&request).context("serializing the request")?;
        for (index, raw) in &unchecked {
            let spec = &mut value["spec"];
            let cluster = match index {
                None => &mut spec["targetCluster"],
                Some(i) => &mut spec["targetClusters"][*i],
            };
            cluster["name"] = serde_yaml_ng::Value::String(raw.clone());
        }
        render(&value, &id)?
    };

    // The exact check the gateway makes; only a request that passes it is written.
    let validated = warroom_proto::parse_request(Path::new(&relative), yaml.as_bytes())
        .map_err(|errors| invalid("the request", &errors, flag_for))?;
    if validated.results_dir.as_str() != format!("results/{id}")
        && let Some(rev) = outbox.remote_rev()?
    {
        let status = format!("{}/status.json", validated.results_dir);
        if outbox.repo.read_at(&rev, &status)?.is_some() {
            bail!(
                "--destination: `{}` already holds the results of another request on `{rev}`; \
                 choose a folder of its own",
                validated.results_dir
            );
        }
    }

    outbox.submit(NewFile {
        path: &relative,
        text: &yaml,
        subject: &format!("request: {id}"),
        what: &format!("request {id}"),
        unsigned: "reject it",
        id: &id,
    })?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// `--destination` as the request file says it: the folder, ending in the request id (added
/// unless the engineer already wrote it).
fn destination_for(destination: &str, id: &str) -> String {
    let trimmed = destination.trim_end_matches('/');
    if trimmed.rsplit('/').next() == Some(id) {
        format!("{trimmed}/")
    } else {
        format!("{trimmed}/{id}/")
    }
}

/// The target clusters the flags name.
/// A cluster name the flags gave that is not a valid `ClusterName`: its index in
/// `targetClusters` (`None` for `targetCluster`) and the name as written.
type Unchecked = Vec<(Option<usize>, String)>;

/// A stand-in for an invalid cluster name while the request is built; the name as written
/// replaces it in the file, where validation reports it.
fn checked(name: &str, index: Option<usize>, unchecked: &mut Unchecked) -> ClusterName {
    ClusterName::new(name).unwrap_or_else(|_| {
        unchecked.push((index, name.to_owned()));
        ClusterName::new("invalid").unwrap_or_else(|_| unreachable!("`invalid` is a valid name"))
    })
}

fn targets(args: &Args) -> Result<(Targets, Unchecked)> {
    let mut unchecked = Unchecked::new();
    if let Some(name) = &args.cluster {
        let kind = args
            .cluster_type
            .map_or_else(|| default_type(name), ClusterType::from);
        let name = checked(name, None, &mut unchecked);
        return Ok((Targets::One(ClusterRef { kind, name }), unchecked));
    }
    let mut clusters = Vec::new();
    for item in &args.clusters {
        let item = item.trim();
        let (name, kind) = match item.split_once(':') {
            None => (item, default_type(item)),
            Some((name, "hub")) => (name, ClusterType::Hub),
            Some((name, "hosted")) => (name, ClusterType::Hosted),
            Some((_, other)) => {
                bail!(
                    "--clusters: unknown cluster type `{other}` in `{item}`; expected `hub` or `hosted`"
                )
            }
        };
        let name = checked(name, Some(clusters.len()), &mut unchecked);
        clusters.push(ClusterRef { kind, name });
    }
    // clap makes --mode required with --clusters.
    let mode = args
        .mode
        .map_or(CoordinationMode::Sequential, CoordinationMode::from);
    Ok((Targets::Several(clusters, mode), unchecked))
}

enum Targets {
    One(ClusterRef),
    Several(Vec<ClusterRef>, CoordinationMode),
}

fn build(
    args: &Args,
    id: &str,
    targets: Targets,
    engineer: String,
    category: String,
    now: time::OffsetDateTime,
) -> Result<TroubleshootingRequest> {
    let (target_cluster, target_clusters, coordination) = match targets {
        Targets::One(cluster) => (Some(cluster), None, None),
        Targets::Several(clusters, mode) => (None, Some(clusters), Some(Coordination { mode })),
    };
    let prompt = args.prompt.clone().unwrap_or_else(|| {
        default_prompt(
            &args.issue,
            args.namespace.as_deref(),
            args.strategy.as_deref(),
        )
    });
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-investigation", slug(&category)));
    // Whole seconds: the file is read by people.
    let timestamp = now.replace_nanosecond(0).context("rounding the time")?;
    Ok(TroubleshootingRequest {
        api_version: API_VERSION.to_owned(),
        kind: KIND_TROUBLESHOOTING.to_owned(),
        metadata: Metadata {
            name,
            timestamp,
            engineer,
        },
        spec: RequestSpec {
            target_cluster,
            target_clusters,
            coordination,
            issue: Issue {
                category,
                description: args.issue.clone(),
                affected_resources: args
                    .affected_resources
                    .iter()
                    .map(|r| r.trim().to_owned())
                    .collect(),
            },
            investigation: Investigation {
                prompt,
                allowed_tools: args.tools.clone(),
                timeout: args.timeout,
                strategy: args.strategy.clone(),
                namespace: args.namespace.clone(),
            },
            output: args.destination.as_ref().map(|destination| Output {
                format: OutputFormat::Markdown,
                destination: Some(destination_for(destination, id)),
            }),
        },
    })
}

/// The prompt when none is given: the issue, and where and how to look.
fn default_prompt(issue: &str, namespace: Option<&str>, strategy: Option<&str>) -> String {
    let mut prompt = format!("Investigate this issue: {}\n", issue.trim());
    if let Some(namespace) = namespace {
        let _ = writeln!(prompt, "Focus on the namespace {namespace}.");
    }
    if let Some(strategy) = strategy {
        let _ = writeln!(prompt, "Follow the {strategy} troubleshooting strategy.");
    }
    prompt.push_str(
        "Find the root cause, cite the evidence (commands and their output), and recommend \
         the next steps.\n",
    );
    prompt
}

/// The request file's text: a comment that says where it came from, then the request.
fn render(request: &impl serde::Serialize, id: &str) -> Result<String> {
    let body = serde_yaml_ng::to_string(request).context("serializing the request")?;
    Ok(format!(
        "# Request {id}, written by `claude-warroom investigate`.\n\
         # Results: results/{id}/ (unless spec.output.destination says otherwise).\n{body}"
    ))
}

/// The flag that sets a request field.
fn flag_for(field: &str) -> &'static str {
    const FLAGS: &[(&str, &str)] = &[
        // Longer prefixes first: `spec.targetClusters` also starts with `spec.targetCluster`.
        ("spec.targetClusters", "--clusters"),
        ("spec.targetCluster.type", "--cluster-type"),
        ("spec.targetCluster", "--cluster"),
        ("spec.coordination", "--mode"),
        ("spec.issue.category", "--category"),
        ("spec.issue.description", "--issue"),
        ("spec.issue.affectedResources", "--affected-resources"),
        ("spec.investigation.prompt", "--prompt"),
        ("spec.investigation.allowedTools", "--tools"),
        ("spec.investigation.timeout", "--timeout"),
        ("spec.investigation.strategy", "--strategy"),
        ("spec.investigation.namespace", "--namespace"),
        ("spec.output", "--destination"),
        ("metadata.name", "--name"),
        ("metadata.engineer", "--engineer"),
        ("metadata.timestamp", "the clock"),
    ];
    FLAGS
        .iter()
        .find(|(prefix, _)| field.starts_with(prefix))
        .map_or("--id", |(_, flag)| flag)
}

/// Lowercase ASCII letters and digits, runs of anything else as one `-`.
fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    if slug.len() > MAX_SLUG_LEN {
        slug.truncate(MAX_SLUG_LEN);
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "request".to_owned()
    } else {
        slug.to_owned()
    }
}

/// `<YYYY-MM-DD-HHMM>-<slug>-<6 hex>`: sorts by time, reads as the issue, and the random
/// suffix keeps two requests written in the same minute apart.
pub(crate) fn generate_id(now: time::OffsetDateTime, category: &str) -> Result<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]-[hour][minute]");
    let stamp = now.format(&format).context("formatting the time")?;
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("{stamp}-{}-{suffix}", slug(category)))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn slugs_are_id_safe() {
        assert_eq!(slug("API timeout"), "api-timeout");
        assert_eq!(slug("  etcd latency (30s+)!"), "etcd-latency-30s");
        assert_eq!(slug("ÄÖÜ"), "request");
        assert!(slug(&"x y ".repeat(40)).len() <= MAX_SLUG_LEN);
        assert!(!slug(&"ab-".repeat(40)).ends_with('-'));
    }

    #[test]
    fn generated_ids_are_valid_request_ids() {
        let id = generate_id(datetime!(2024-01-15 14:30:59 UTC), "api-timeout").unwrap();
        assert!(id.starts_with("2024-01-15-1430-api-timeout-"), "{id}");
        assert_eq!(id.len(), "2024-01-15-1430-api-timeout-".len() + 6);
        assert_eq!(RequestId::problem(&id), None);
        let long = generate_id(datetime!(2024-01-15 14:30 UTC), &"word ".repeat(100)).unwrap();
        assert_eq!(RequestId::problem(&long), None);
    }

    #[test]
    fn hub_type_follows_the_name() {
        assert_eq!(default_type("hub"), ClusterType::Hub);
        assert_eq!(default_type("production-hub"), ClusterType::Hub);
        assert_eq!(default_type("hubble"), ClusterType::Hosted);
        assert_eq!(default_type("prod-cluster-1"), ClusterType::Hosted);
    }

    #[test]
    fn fields_map_to_their_flags() {
        assert_eq!(flag_for("spec.targetCluster.name"), "--cluster");
        assert_eq!(flag_for("spec.targetCluster.type"), "--cluster-type");
        assert_eq!(flag_for("spec.targetClusters[1].name"), "--clusters");
        assert_eq!(flag_for("spec.investigation.timeout"), "--timeout");
        assert_eq!(flag_for(""), "--id");
    }

    #[test]
    fn default_prompt_names_namespace_and_strategy() {
        let prompt = default_prompt(
            "etcd latency",
            Some("clusters-prod-1"),
            Some("control-plane-health"),
        );
        assert!(prompt.contains("etcd latency"));
        assert!(prompt.contains("clusters-prod-1"));
        assert!(prompt.contains("control-plane-health"));
    }
}
