//! `kubectl` and `oc`, parsed the way cobra and pflag parse them: global flags before the verb,
//! the verb from an allowlist, flags from a per-verb allowlist in every spelling, resource
//! types normalised and checked against the refused kinds, output formats that could decode
//! refused.

use crate::config::{Cli, VerbOperands};
use crate::decision::Decision;
use crate::flags::{Arity, FlagError, FlagSpec, Item, Style, is_flag, parse_all, parse_flag};

/// What the operands after a verb are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operands {
    /// None at all (`cluster-info`, so `cluster-info dump` is refused).
    None,
    /// `TYPE[,TYPE..] [NAME..]` or `TYPE/NAME..`: every type is checked.
    Resources,
    /// `POD|TYPE/NAME [CONTAINER]`.
    Logs,
    /// Not resources (`explain` field paths, which only print the schema).
    Any,
}

impl From<VerbOperands> for Operands {
    fn from(o: VerbOperands) -> Operands {
        match o {
            VerbOperands::None => Operands::None,
            VerbOperands::Resources => Operands::Resources,
            VerbOperands::Any => Operands::Any,
        }
    }
}

/// One allowed verb (`get`, `adm top node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerbSpec {
    /// The client it belongs to.
    pub cli: Cli,
    /// Its words.
    pub path: Vec<String>,
    /// Its allowed flags besides the global ones.
    pub flags: Vec<FlagSpec>,
    /// Its operands.
    pub operands: Operands,
}

impl VerbSpec {
    fn applies_to(&self, program: &str) -> bool {
        match self.cli {
            Cli::Both => true,
            Cli::Kubectl => program == "kubectl",
            Cli::Oc => program == "oc",
        }
    }
}

/// A resource kind that may not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedKind {
    /// The plural resource name.
    pub resource: String,
    /// Every lowercase name it answers to, the plural included.
    pub names: Vec<String>,
    /// Why, for the model.
    pub reason: String,
}

impl RefusedKind {
    /// A kind with its plural, its singular (the plural without a trailing `s`) and `names`.
    pub fn new(resource: &str, names: &[String], reason: String) -> RefusedKind {
        let mut all = vec![resource.to_owned()];
        if let Some(singular) = resource.strip_suffix('s') {
            all.push(singular.to_owned());
        }
        all.extend(names.iter().map(|n| n.to_ascii_lowercase()));
        RefusedKind {
            resource: resource.to_owned(),
            names: all,
            reason,
        }
    }
}

/// The `kubectl`/`oc` half of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubePolicy {
    /// Flags every verb accepts, and the only ones allowed before the verb.
    pub global_flags: Vec<FlagSpec>,
    /// The allowed verbs.
    pub verbs: Vec<VerbSpec>,
    /// The refused kinds.
    pub refused_kinds: Vec<RefusedKind>,
}

fn f(long: &str, short: Option<char>, arity: Arity) -> FlagSpec {
    FlagSpec::new(long, short, arity)
}

fn switch(long: &str) -> FlagSpec {
    FlagSpec::new(long, None, Arity::Switch)
}

fn value(long: &str) -> FlagSpec {
    FlagSpec::new(long, None, Arity::One)
}

fn all_namespaces() -> FlagSpec {
    f("all-namespaces", Some('A'), Arity::Switch)
}

fn selector() -> FlagSpec {
    f("selector", Some('l'), Arity::One)
}

fn output() -> FlagSpec {
    f("output", Some('o'), Arity::One)
}

fn top_pod_flags() -> Vec<FlagSpec> {
    vec![
        all_namespaces(),
        selector(),
        value("field-selector"),
        switch("containers"),
        value("sort-by"),
        switch("no-headers"),
        switch("sum"),
    ]
}

fn top_node_flags() -> Vec<FlagSpec> {
    vec![
        selector(),
        value("sort-by"),
        switch("no-headers"),
        switch("show-capacity"),
    ]
}

fn verb(cli: Cli, path: &str, operands: Operands, flags: Vec<FlagSpec>) -> VerbSpec {
    VerbSpec {
        cli,
        path: path.split(' ').map(str::to_owned).collect(),
        flags,
        operands,
    }
}

const SECRETS_REASON: &str = "Secrets carry credentials; read the workload that uses them instead (its env and volume references name the Secret and key without the data)";
const TOKENS_REASON: &str = "it holds or mints access tokens; check identities with `oc whoami` (without -t) and permissions through the workload's RBAC objects instead";

impl KubePolicy {
    /// The built-in rules.
    pub fn builtin() -> KubePolicy {
        let get_flags = vec![
            all_namespaces(),
            selector(),
            value("field-selector"),
            output(),
            switch("show-labels"),
            value("sort-by"),
            switch("no-headers"),
            value("chunk-size"),
            switch("ignore-not-found"),
            f("label-columns", Some('L'), Arity::One),
            switch("show-kind"),
            switch("show-managed-fields"),
            // Only the health, version and metrics paths (`check_raw_path`).
            value("raw"),
        ];
        let describe_flags = vec![
            all_namespaces(),
            selector(),
            value("field-selector"),
            switch("show-events"),
            value("chunk-size"),
        ];
        let logs_flags = vec![
            f("container", Some('c'), Arity::One),
            switch("all-containers"),
            f("previous", Some('p'), Arity::Switch),
            value("since"),
            value("since-time"),
            value("tail"),
            switch("timestamps"),
            value("limit-bytes"),
            switch("prefix"),
            value("max-log-requests"),
            selector(),
            switch("ignore-errors"),
            switch("all-pods"),
        ];
        let events_flags = vec![
            value("for"),
            value("types"),
            output(),
            all_namespaces(),
            switch("no-headers"),
            value("chunk-size"),
        ];
        let api_resources_flags = vec![
            switch("namespaced"),
            value("verbs"),
            value("api-group"),
            output(),
            value("sort-by"),
            switch("no-headers"),
            switch("cached"),
            value("categories"),
        ];
        let explain_flags = vec![switch("recursive"), value("api-version"), output()];
        let version_flags = vec![switch("client"), output()];

        let mut verbs = vec![
            verb(Cli::Both, "get", Operands::Resources, get_flags),
            verb(Cli::Both, "describe", Operands::Resources, describe_flags),
            verb(Cli::Both, "logs", Operands::Logs, logs_flags),
            verb(Cli::Both, "events", Operands::None, events_flags),
            verb(Cli::Both, "explain", Operands::Any, explain_flags),
            verb(
                Cli::Both,
                "api-resources",
                Operands::None,
                api_resources_flags,
            ),
            verb(Cli::Both, "api-versions", Operands::None, Vec::new()),
            verb(Cli::Both, "version", Operands::None, version_flags),
            verb(Cli::Both, "cluster-info", Operands::None, Vec::new()),
            // `rollout status` waits for the rollout to finish (or `--timeout`); it reads.
            verb(
                Cli::Both,
                "rollout status",
                Operands::Resources,
                vec![
                    value("timeout"),
                    f("watch", Some('w'), Arity::Switch),
                    value("revision"),
                    selector(),
                ],
            ),
            verb(
                Cli::Both,
                "rollout history",
                Operands::Resources,
                vec![value("revision"), output(), selector()],
            ),
            // `auth can-i` asks the API server a yes/no question about this identity; its
            // operands are verbs, types and URLs, never read. `--as*` stay refused.
            verb(
                Cli::Both,
                "auth can-i",
                Operands::Any,
                vec![
                    all_namespaces(),
                    switch("list"),
                    switch("no-headers"),
                    f("quiet", Some('q'), Arity::Switch),
                    value("subresource"),
                ],
            ),
            verb(
                Cli::Oc,
                "status",
                Operands::None,
                vec![all_namespaces(), switch("suggest")],
            ),
            // `-t`/`--show-token` is left out on purpose: it prints the service account's
            // token. `-c` is `--show-context`, so the bundle `-ct` fails on `t`.
            verb(
                Cli::Oc,
                "whoami",
                Operands::None,
                vec![
                    switch("show-server"),
                    switch("show-console"),
                    f("show-context", Some('c'), Arity::Switch),
                ],
            ),
        ];
        for pod in ["pod", "pods", "po"] {
            verbs.push(verb(
                Cli::Both,
                &format!("top {pod}"),
                Operands::Resources,
                top_pod_flags(),
            ));
            verbs.push(verb(
                Cli::Oc,
                &format!("adm top {pod}"),
                Operands::Resources,
                top_pod_flags(),
            ));
        }
        for node in ["node", "nodes", "no"] {
            verbs.push(verb(
                Cli::Both,
                &format!("top {node}"),
                Operands::Resources,
                top_node_flags(),
            ));
            verbs.push(verb(
                Cli::Oc,
                &format!("adm top {node}"),
                Operands::Resources,
                top_node_flags(),
            ));
        }

        let kind = |resource: &str, names: &[&str], reason: String| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            RefusedKind::new(resource, &names, reason)
        };
        let refused_kinds = vec![
            kind("secrets", &[], SECRETS_REASON.to_owned()),
            kind("tokenrequests", &[], format!("TokenRequests: {TOKENS_REASON}")),
            kind("tokenreviews", &[], format!("TokenReviews: {TOKENS_REASON}")),
            kind("oauthaccesstokens", &[], format!("OAuthAccessTokens: {TOKENS_REASON}")),
            kind("oauthauthorizetokens", &[], format!("OAuthAuthorizeTokens: {TOKENS_REASON}")),
            kind("useroauthaccesstokens", &[], format!("UserOAuthAccessTokens: {TOKENS_REASON}")),
            kind("machineconfigs", &["mc"], "MachineConfigs embed files written to nodes, which can hold credentials (pull secrets, kubeconfigs, keys); read the MachineConfigPools (`oc get mcp`) and the node's status instead".to_owned()),
            kind("controllerconfigs", &[], "the ControllerConfig embeds the cluster's pull secret and CA material; read the MachineConfigPools (`oc get mcp`) and the machine-config ClusterOperator instead".to_owned()),
            kind(
                "oauthclients",
                &[],
                "OAuthClients carry client secrets; read the OAuth cluster config (`oc get oauth cluster -o yaml`) instead".to_owned(),
            ),
        ];

        KubePolicy {
            global_flags: vec![
                f("namespace", Some('n'), Arity::One),
                value("request-timeout"),
            ],
            verbs,
            refused_kinds,
        }
    }

    /// Decides one `kubectl`/`oc` command; `argv[0]` is the program.
    pub fn check(&self, argv: &[String]) -> Decision {
        let program = argv[0].as_str();
        let args = &argv[1..];

        // Global flags may come before the verb, as cobra allows; they must be parsed there
        // too, or `-n get` would be misread as the verb `get`.
        let mut globals = Vec::new();
        let mut i = 0;
        while i < args.len() && is_flag(&args[i]) && args[i] != "--" {
            match parse_flag(args, i, &self.global_flags, Style::Pflag, &mut globals) {
                Ok(next) => i = next,
                Err(err) => return flag_refusal(program, None, &err),
            }
        }

        // cobra finds a sub-command past the flags written between the verb words
        // (`top -A pod`), so the words are matched the same way, each candidate with its own
        // flags; the flags read on the way are checked like the others.
        let mut matched: Option<(&VerbSpec, usize, Vec<Item>)> = None;
        for candidate in self.verbs.iter().filter(|v| v.applies_to(program)) {
            if matched
                .as_ref()
                .is_some_and(|(m, _, _)| m.path.len() >= candidate.path.len())
            {
                continue;
            }
            if let Some((next, items)) = self.match_path(candidate, args, i) {
                matched = Some((candidate, next, items));
            }
        }
        let Some((spec, next, between)) = matched else {
            let verb = args.get(i).map(String::as_str).unwrap_or("");
            return self.verb_refusal(program, verb);
        };
        let verb_name = spec.path.join(" ");
        let rest = &args[next..];

        let mut specs = self.global_flags.clone();
        specs.extend(spec.flags.iter().cloned());
        let mut items = between;
        match parse_all(rest, &specs, Style::Pflag) {
            Ok(more) => items.extend(more),
            Err(err) => return flag_refusal(program, Some(&verb_name), &err),
        }

        let mut positionals = Vec::new();
        for item in &items {
            match item {
                Item::Flag {
                    spec,
                    written,
                    values,
                } => {
                    if let Some(d) =
                        self.check_flag_value(program, &verb_name, spec, written, values)
                    {
                        return d;
                    }
                }
                Item::Positional(p) => positionals.push(p.as_str()),
            }
        }

        // An operand that looks like a flag (only possible after `--`) is no resource name
        // anyone needs, and refusing it leaves no room for a parser that reads it as a flag.
        if let Some(odd) = positionals.iter().find(|p| p.starts_with('-')) {
            return Decision::deny(
                "kubectl.operand",
                format!(
                    "the operand `{odd}` of `{program} {verb_name}` starts with `-`; flags go before `--`, and only allowed ones"
                ),
            );
        }
        let outputs: Vec<&str> = flag_values(&items, "output");
        if !flag_values(&items, "raw").is_empty() && !positionals.is_empty() {
            return Decision::deny(
                "kubectl.raw-path",
                format!(
                    "`{program} {verb_name} --raw` takes no resource operands; use either --raw with a health path or a resource type"
                ),
            );
        }
        match spec.operands {
            Operands::None => {
                if let Some(extra) = positionals.first() {
                    return Decision::deny(
                        "kubectl.operand",
                        format!(
                            "`{program} {verb_name}` takes no operands, and `{extra}` is refused (`cluster-info dump` dumps everything, Secrets included)"
                        ),
                    );
                }
            }
            Operands::Any => {}
            Operands::Resources => {
                for (n, operand) in positionals.iter().enumerate() {
                    // The first operand is `TYPE[,TYPE]` or `TYPE/NAME`; later ones are names
                    // unless they also carry a `/`.
                    let types: Vec<&str> = match operand.split_once('/') {
                        Some((types, _)) => types.split(',').collect(),
                        None if n == 0 => operand.split(',').collect(),
                        None => Vec::new(),
                    };
                    for ty in types {
                        if let Some(d) = self.check_type(program, &verb_name, ty) {
                            return d;
                        }
                        if let Some(d) = route_output(program, &verb_name, ty, &outputs) {
                            return d;
                        }
                    }
                }
            }
            Operands::Logs => {
                if positionals.len() > 2 {
                    return Decision::deny(
                        "kubectl.operand",
                        format!(
                            "`{program} logs` takes a pod (or TYPE/NAME) and at most a container name"
                        ),
                    );
                }
                if let Some((ty, _)) = positionals.first().and_then(|p| p.split_once('/'))
                    && let Some(d) = self.check_type(program, &verb_name, ty)
                {
                    return d;
                }
            }
        }
        Decision::allow(
            "kubectl.read-only",
            format!("`{program} {verb_name}` is a read-only verb with allowed flags"),
        )
    }

    /// Matches the words of `candidate` from `args[start]`, reading the global and the
    /// candidate's flags between them; returns the index after the last word and the flags.
    fn match_path(
        &self,
        candidate: &VerbSpec,
        args: &[String],
        start: usize,
    ) -> Option<(usize, Vec<Item>)> {
        let mut specs = self.global_flags.clone();
        specs.extend(candidate.flags.iter().cloned());
        let mut items = Vec::new();
        let mut j = start;
        for (k, word) in candidate.path.iter().enumerate() {
            while k > 0 && j < args.len() && is_flag(&args[j]) && args[j] != "--" {
                j = parse_flag(args, j, &specs, Style::Pflag, &mut items).ok()?;
            }
            if args.get(j) != Some(word) {
                return None;
            }
            j += 1;
        }
        Some((j, items))
    }

    fn verb_refusal(&self, program: &str, verb: &str) -> Decision {
        let mut verbs: Vec<String> = self
            .verbs
            .iter()
            .filter(|v| v.applies_to(program))
            .map(|v| v.path.join(" "))
            .filter(|v| {
                !v.contains(' ')
                    || ((v.starts_with("adm top") || v.starts_with("top ")) && v.ends_with('s'))
                    || v.starts_with("rollout ")
                    || v.starts_with("auth ")
            })
            .collect();
        verbs.dedup();
        let why = match verb {
            "" => "no verb given".to_owned(),
            "exec" | "attach" | "debug" | "rsh" | "cp" | "rsync" | "port-forward" | "proxy"
            | "run" => {
                format!("`{verb}` reaches into containers, nodes or the network")
            }
            "auth" => "of `auth`, only `auth can-i` is allowed (a yes/no question); `auth reconcile` changes RBAC".to_owned(),
            "rollout" => "of `rollout`, only `rollout status` and `rollout history` read; restart, undo, pause and resume change workloads".to_owned(),
            "config" | "login" | "logout" | "token" | "create" => {
                format!("`{verb}` handles credentials or changes the cluster")
            }
            v if v.starts_with('-') => {
                format!("the flag `{v}` is not an allowed global flag before the verb")
            }
            v => format!("`{v}` is not a read-only verb"),
        };
        Decision::deny(
            "kubectl.verb",
            format!(
                "`{program} {verb}` is refused: {why}. Allowed verbs: {}; global flags before the verb: only -n/--namespace and --request-timeout",
                verbs.join(", ")
            ),
        )
    }

    fn check_type(&self, program: &str, verb: &str, ty: &str) -> Option<Decision> {
        let ty = ty.trim();
        if !ty.is_ascii() {
            // Go's and Rust's case folding differ for a few non-ASCII letters (`İ`); no real
            // resource type needs them.
            return Some(Decision::deny(
                "kubectl.resource-type",
                format!(
                    "the resource type `{ty}` contains non-ASCII characters; write it in plain ASCII"
                ),
            ));
        }
        let lower = ty.to_ascii_lowercase();
        // `secrets`, `secrets.v1.`, `secret.v1.core`, `Secret.`: the name is the part before
        // the first dot, whatever version and group follow.
        let name = lower.split('.').next().unwrap_or_default();
        let kind = self
            .refused_kinds
            .iter()
            .find(|k| k.names.iter().any(|n| n == name))?;
        Some(Decision::deny(
            "kubectl.refused-kind",
            format!("`{program} {verb} {ty}` is refused: {}", kind.reason),
        ))
    }

    fn check_flag_value(
        &self,
        program: &str,
        verb: &str,
        spec: &FlagSpec,
        written: &str,
        values: &[String],
    ) -> Option<Decision> {
        let value = values.first()?;
        match spec.long.as_deref() {
            Some("output") => check_output(program, verb, written, value),
            Some("raw") => check_raw_path(program, value),
            Some("for") => {
                let ty = value.split_once('/').map_or(value.as_str(), |(ty, _)| ty);
                self.check_type(program, verb, ty)
            }
            _ => None,
        }
    }
}

/// Output formats that only print what the API returned. Templates are refused because Go
/// templates can decode (`base64decode`) and read files; jsonpath cannot, but a jsonpath that
/// mentions decoding is refused too, so no output format is a decoding step.
fn check_output(program: &str, verb: &str, written: &str, value: &str) -> Option<Decision> {
    let (format, _) = value.split_once('=').unwrap_or((value, ""));
    let allowed = [
        "json",
        "yaml",
        "wide",
        "name",
        "jsonpath",
        "jsonpath-as-json",
        "custom-columns",
    ];
    if !allowed.contains(&format) {
        return Some(Decision::deny(
            "kubectl.output-format",
            format!(
                "`{program} {verb} {written} {value}` is refused: output format `{format}` is not allowed (templates can decode and read files). Use -o json, yaml, wide, name, jsonpath=... or custom-columns=..."
            ),
        ));
    }
    if let Some(word) = decoding_word(value) {
        return Some(Decision::deny(
            "kubectl.output-decode",
            format!(
                "`{written} {value}` is refused: `{word}` reads as a decoding step, and output expressions may not decode data; a field whose name holds `base64` is fine as `.field` or `['field']`"
            ),
        ));
    }
    None
}

/// A word of an output expression that mentions decoding (`base64`, `decode`) other than as a
/// field name (after `.`, or inside quotes as in `['base64cert']`).
fn decoding_word(expr: &str) -> Option<String> {
    let chars: Vec<char> = expr.chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if is_word(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_lowercase();
            let field = start > 0 && chars[start - 1] == '.';
            if !field && (lower.contains("base64") || lower.contains("decode")) {
                return Some(word);
            }
            continue;
        }
        i += 1;
    }
    None
}

/// The values of every occurrence of the flag with long name `long`.
fn flag_values<'a>(items: &'a [Item], long: &str) -> Vec<&'a str> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Flag { spec, values, .. } if spec.long.as_deref() == Some(long) => {
                values.first().map(String::as_str)
            }
            _ => None,
        })
        .collect()
}

/// The only paths `get --raw` may read: the API server's health checks (each check on its
/// own too, with `?verbose`), its version and its metrics. Everything else through `--raw`
/// would bypass the refused kinds (`/api/v1/namespaces/x/secrets`, `nodes/x/proxy`,
/// `serviceaccounts/x/token`).
fn check_raw_path(program: &str, path: &str) -> Option<Decision> {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let health = ["/readyz", "/livez", "/healthz"];
    let check_ok = |check: &str| {
        let parts: Vec<&str> = check.split('/').collect();
        parts.len() <= 2 && parts.iter().all(|p| name_ok(p))
    };
    let is_health = health.contains(&base)
        || health.iter().any(|h| {
            base.strip_prefix(h)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(check_ok)
        });
    let ok = match base {
        "/version" | "/metrics" => query.is_empty(),
        _ => is_health && (query.is_empty() || query == "verbose"),
    };
    if ok {
        return None;
    }
    Some(Decision::deny(
        "kubectl.raw-path",
        format!(
            "`{program} get --raw {path}` is refused: --raw bypasses the typed API (and the refused kinds), so it may read only /readyz, /livez, /healthz (also one check, such as /readyz/etcd, and ?verbose), /version and /metrics; use get/describe with a resource type for anything else"
        ),
    ))
}

/// Routes can hold a TLS private key in `spec.tls.key`, and a route created with `apply`
/// repeats it in its last-applied-configuration annotation: printing the whole object (`-o
/// yaml/json`, `describe`) or any expression that reaches `tls`, a key, a certificate, the
/// annotations, the whole `metadata`, the whole `spec` or whole items is refused for
/// route(s) and for `all` (OpenShift lists routes in `all`). Default, wide and name output
/// and narrow expressions stay allowed.
fn route_output(program: &str, verb: &str, ty: &str, outputs: &[&str]) -> Option<Decision> {
    let lower = ty.trim().to_ascii_lowercase();
    let name = lower.split('.').next().unwrap_or_default();
    if !matches!(name, "route" | "routes" | "all") {
        return None;
    }
    if verb == "describe" {
        // `describe` prints the annotations, and `kubectl.kubernetes.io/last-applied-
        // configuration` holds the whole applied manifest, spec.tls.key included.
        return Some(Decision::deny(
            "kubectl.route-tls",
            format!(
                "`{program} describe {ty}` is refused: it prints the route's annotations, and the last-applied-configuration annotation can hold the whole manifest with its TLS private key. Use `{program} get routes -o wide`, or name leaf fields outside spec.tls and the annotations, such as -o custom-columns=NAME:.metadata.name,HOST:.spec.host,SERVICE:.spec.to.name"
            ),
        ));
    }
    if verb != "get" {
        return None;
    }
    let risky = outputs.iter().find(|o| route_expression_risky(o))?;
    Some(Decision::deny(
        "kubectl.route-tls",
        format!(
            "`{program} get {ty} -o {risky}` is refused: routes can carry a TLS private key in spec.tls, and this output could print it. Use the default or `-o wide` output, or name leaf fields that are not under spec.tls, such as -o custom-columns=NAME:.metadata.name,HOST:.spec.host,SERVICE:.spec.to.name"
        ),
    ))
}

fn route_expression_risky(output: &str) -> bool {
    let (format, expr) = output.split_once('=').unwrap_or((output, ""));
    if !matches!(format, "jsonpath" | "jsonpath-as-json" | "custom-columns") {
        // json and yaml print everything; wide and name print no TLS field.
        return matches!(format, "json" | "yaml");
    }
    let lower = expr.to_ascii_lowercase();
    // `.spec.*` prints every spec field; `[*]` over a list is fine when a field follows.
    if ["tls", "key", "cert", "annotation", "..", "@", "$"]
        .iter()
        .any(|bad| lower.contains(bad))
        || lower.replace("[*]", "").contains('*')
    {
        return true;
    }
    // Every field path must end in a named field below the object: not `.`, `.spec`,
    // `.items`, nor an index (`.items[0]`), unless it is the list a `range` walks.
    let tokens: Vec<&str> = lower
        .split(['{', '}', ',', ' ', '(', ')', ':', '"', '\''])
        .filter(|t| !t.is_empty())
        .collect();
    for (n, token) in tokens.iter().enumerate() {
        if !token.starts_with('.') && !token.starts_with('[') {
            continue;
        }
        if n > 0 && tokens[n - 1] == "range" {
            continue;
        }
        let last = token.rsplit('.').next().unwrap_or_default();
        if token.ends_with(']') || matches!(last, "" | "spec" | "items" | "metadata") {
            return true;
        }
    }
    false
}

fn flag_refusal(program: &str, verb: Option<&str>, err: &FlagError) -> Decision {
    let flag = err.flag();
    let at = verb.map_or_else(|| program.to_owned(), |v| format!("{program} {v}"));
    let why = match err {
        FlagError::MissingValue(_) => "it needs a value".to_owned(),
        FlagError::UnexpectedValue(_) => "it takes no value here".to_owned(),
        FlagError::Unknown(_) => known_flag_reason(flag),
    };
    Decision::deny(
        "kubectl.flag",
        format!("`{flag}` is refused for `{at}`: {why}"),
    )
}

/// Why a flag outside the allowlist is refused, in words the model can act on.
fn known_flag_reason(flag: &str) -> String {
    let name = flag.trim_start_matches('-');
    match name {
        "f" | "filename" | "k" | "kustomize" | "R" | "recursive" => {
            "reading manifests from files or URLs is refused; name the resource type and name instead".to_owned()
        }
        "s" | "server" | "context" | "cluster" | "user" | "kubeconfig" | "token" | "as" | "as-group" | "as-uid"
        | "username" | "password" | "certificate-authority" | "tls-server-name" | "insecure-skip-tls-verify" => {
            "the command must run as the runner's own identity against its own cluster; leave out server, context, user and credential flags".to_owned()
        }
        n if n.starts_with("client-") => {
            "the command must run as the runner's own identity; leave out client credential flags".to_owned()
        }
        "raw" => "`--raw` bypasses the typed API (and the refused kinds); use get/describe with a resource type".to_owned(),
        "w" | "watch" | "watch-only" | "follow" => {
            "commands that never end are refused; use `--tail`/`--since` for logs, or run get again later".to_owned()
        }
        "template" => "output templates can decode data; use -o jsonpath=... or custom-columns=...".to_owned(),
        "t" | "show-token" => "it prints an access token".to_owned(),
        "v" | "loglevel" => "verbose client logs can print request headers with credentials".to_owned(),
        _ => "it is not on this verb's allowlist".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str) -> Decision {
        let argv: Vec<String> = line.split(' ').map(str::to_owned).collect();
        KubePolicy::builtin().check(&argv)
    }

    #[test]
    fn globals_before_the_verb_are_parsed() {
        assert!(check("kubectl -n ns get pods").allowed);
        assert!(check("kubectl --namespace=ns get pods").allowed);
        assert!(check("kubectl -nns get pods").allowed);
        // `-n` swallows `get`, so `pods` is the verb, which does not exist.
        assert_eq!(check("kubectl -n get pods").rule, "kubectl.verb");
        assert_eq!(check("kubectl -s http://x get pods").rule, "kubectl.flag");
        assert_eq!(
            check("kubectl --kubeconfig=/x get pods").rule,
            "kubectl.flag"
        );
    }

    #[test]
    fn resource_types_are_normalised() {
        for ty in [
            "secrets",
            "SeCrEtS",
            "secret",
            "Secret",
            "secret/x",
            "secrets.v1.",
            "secret.v1.core",
            "pods,secrets",
            "po,Secret",
        ] {
            assert_eq!(
                check(&format!("kubectl get {ty}")).rule,
                "kubectl.refused-kind",
                "{ty}"
            );
        }
        assert_eq!(
            check("kubectl get pods/x secret/y").rule,
            "kubectl.refused-kind"
        );
        assert!(
            check("kubectl get pods secrets").allowed,
            "a pod named `secrets` is fine"
        );
        assert!(
            check("kubectl explain secrets").allowed,
            "explain only prints the schema"
        );
    }

    #[test]
    fn output_formats() {
        assert!(check("kubectl get pods -o=wide").allowed);
        assert!(check("kubectl get pods -ojson").allowed);
        assert_eq!(
            check("kubectl get pods -o go-template={{.}}").rule,
            "kubectl.output-format"
        );
        assert_eq!(
            check("kubectl get pods -o jsonpath={.x|base64decode}").rule,
            "kubectl.output-decode"
        );
    }

    #[test]
    fn raw_paths() {
        for good in [
            "/readyz",
            "/readyz?verbose",
            "/livez/etcd",
            "/healthz/poststarthook/x",
            "/version",
            "/metrics",
        ] {
            assert!(check_raw_path("kubectl", good).is_none(), "{good}");
        }
        for bad in [
            "/",
            "/api/v1/secrets",
            "/readyz/",
            "/readyz/../api",
            "/readyz/a/b/c",
            "/readyz?exclude=x",
            "/version?verbose",
            "/metricsx",
            "readyz",
        ] {
            assert!(check_raw_path("kubectl", bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn decoding_words_and_fields() {
        assert_eq!(
            decoding_word("{.data.x|base64decode}").as_deref(),
            Some("base64decode")
        );
        assert_eq!(decoding_word("{base64}").as_deref(), Some("base64"));
        assert_eq!(decoding_word("{.metadata.annotations.base64Cert}"), None);
        assert_eq!(decoding_word("{.data['base64']}"), None);
        assert_eq!(decoding_word("X:.spec.base64Data"), None);
    }

    #[test]
    fn verb_words_past_flags() {
        assert!(check("kubectl top -A pod").allowed);
        assert!(check("kubectl top -n x pod --containers").allowed);
        assert_eq!(check("kubectl top -A node").rule, "kubectl.verb");
        assert_eq!(check("kubectl top -s x pod").rule, "kubectl.verb");
        assert!(check("kubectl rollout status deploy/x").allowed);
        assert!(check("kubectl auth can-i get pods").allowed);
        let reconcile = check("kubectl auth reconcile -f x");
        assert_eq!(reconcile.rule, "kubectl.verb");
        assert!(
            reconcile.reason.contains("only `auth can-i` is allowed"),
            "{}",
            reconcile.reason
        );
        assert_eq!(
            check("kubectl auth can-i get pods --as=x").rule,
            "kubectl.flag"
        );
    }

    #[test]
    fn oc_only_verbs() {
        assert!(check("oc adm top nodes").allowed);
        assert!(check("oc whoami").allowed);
        assert_eq!(check("oc whoami -ct").rule, "kubectl.flag");
        assert_eq!(check("kubectl whoami").rule, "kubectl.verb");
        assert_eq!(check("kubectl cluster-info dump").rule, "kubectl.operand");
    }
}
