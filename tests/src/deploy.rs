//! What `deploy/` ships, run on this machine: render an overlay with `kubectl kustomize` (the
//! renderer Argo CD uses), then turn one container of a rendered workload into a process with
//! exactly what the manifests give it: its program and arguments, its environment (values,
//! `configMapKeyRef`, `secretKeyRef`, `fieldRef`, `envFrom`, and `$(VAR)` references resolved
//! as the kubelet resolves them) and its mounted files (ConfigMap and Secret volumes with their
//! `items`, `subPath` and modes, `emptyDir`, volume claims).
//!
//! One machine cannot give every container the same absolute paths, hosts and ports, so a
//! [`Pod`] lives below a root folder of its own and a few values are rewritten. Each rewrite
//! is recorded with its reason ([`Pod::rewrites`]) and printed by the tests, so what was not
//! run as shipped is always said:
//! - a mount path `/etc/x` becomes `<root>/etc/x`, in the environment and the arguments;
//! - a program of the image (`warroom-gateway`, `/usr/local/bin/claude`) becomes the binary
//!   this workspace built (or the pinned tool from `scripts/setup`);
//! - whatever a test asks through [`Pod::rewrite_env`] (a Service's host name, a port).
//!
//! Secrets are never in `deploy/`: a test supplies them ([`Secrets`]), made the way
//! `docs/deploying.md` tells an operator to make them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use crate::tools::workspace_root;

/// The `kubectl` that renders: `WARROOM_KUBECTL_BIN`, `.tools/bin/kubectl`, or `PATH`'s.
pub fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("WARROOM_KUBECTL_BIN") {
        return PathBuf::from(path);
    }
    let local = workspace_root().join(".tools/bin/kubectl");
    if local.exists() {
        return local;
    }
    PathBuf::from("kubectl")
}

/// The objects of one rendered kustomization.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The overlay, relative to the workspace root (`deploy/control-plane`).
    pub overlay: String,
    pub objects: Vec<Value>,
}

impl Rendered {
    /// `kubectl kustomize <workspace>/<overlay>`, parsed into its objects.
    pub fn render(overlay: &str) -> Rendered {
        let dir = workspace_root().join(overlay);
        let output = Command::new(kubectl())
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run kubectl ({e}): run scripts/setup"));
        assert!(
            output.status.success(),
            "kubectl kustomize {overlay} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("kustomize output is UTF-8");
        let objects = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|doc| {
                <Value as serde::Deserialize>::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{overlay} rendered invalid YAML: {e}"))
            })
            .filter(|doc| !doc.is_null())
            .collect();
        Rendered {
            overlay: overlay.to_owned(),
            objects,
        }
    }

    /// The objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |o| o["kind"].as_str() == Some(kind))
    }

    /// The object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.iter().find(|o| {
            o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)
        })
    }

    /// The data of the ConfigMap `name` (`data`, and `binaryData` decoded).
    pub fn config_map(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let object = self.get("ConfigMap", name)?;
        let mut data = BTreeMap::new();
        if let Some(map) = object["data"].as_mapping() {
            for (k, v) in map {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                    data.insert(k.to_owned(), v.as_bytes().to_vec());
                }
            }
        }
        Some(data)
    }

    /// The workloads (Deployments and StatefulSets), by name.
    pub fn workloads(&self) -> Vec<Workload> {
        self.objects
            .iter()
            .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
            .map(|o| Workload {
                kind: o["kind"].as_str().unwrap_or_default().to_owned(),
                name: o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                namespace: o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned(),
                replicas: o["spec"]["replicas"].as_u64().unwrap_or(1),
                object: o.clone(),
            })
            .collect()
    }

    /// The workload named `name`.
    pub fn workload(&self, name: &str) -> Workload {
        self.workloads()
            .into_iter()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("{} renders no workload named {name}", self.overlay))
    }
}

/// A rendered Deployment or StatefulSet.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub replicas: u64,
    pub object: Value,
}

impl Workload {
    /// A bare Pod (as a client sent it to the API server, JSON) as a workload of one replica,
    /// so [`Pod::materialize`] runs its containers as it runs a Deployment's.
    pub fn from_pod(pod: &serde_json::Value) -> Workload {
        let pod: Value = serde_yaml_ng::to_value(pod).expect("JSON is YAML");
        Workload {
            kind: "Pod".to_owned(),
            name: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            namespace: pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned(),
            replicas: 1,
            object: serde_yaml_ng::to_value(serde_json::json!({
                "kind": "Pod",
                "spec": {"template": {}},
            }))
            .map(|mut object| {
                object["spec"]["template"] = pod;
                object
            })
            .expect("a template"),
        }
    }

    /// The pod template's spec.
    pub fn pod_spec(&self) -> &Value {
        &self.object["spec"]["template"]["spec"]
    }

    /// The names of the pod's (non-init) containers.
    pub fn containers(&self) -> Vec<String> {
        self.pod_spec()["containers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// The image of `container`, as rendered.
    pub fn image(&self, container: &str) -> String {
        self.pod_spec()["containers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str() == Some(container))
            .and_then(|c| c["image"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// The name pod number `ordinal` gets: `<name>-<ordinal>` for a StatefulSet, a stand-in
    /// `<name>-<ordinal>` for a Deployment's generated name, a bare Pod's own name.
    pub fn pod_name(&self, ordinal: u64) -> String {
        if self.kind == "Pod" {
            return self.name.clone();
        }
        format!("{}-{ordinal}", self.name)
    }
}

/// The Secrets a test supplies, by Secret name and key.
#[derive(Debug, Clone, Default)]
pub struct Secrets(BTreeMap<String, BTreeMap<String, Vec<u8>>>);

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Adds `key` of Secret `name`.
    pub fn insert(&mut self, name: &str, key: &str, value: impl Into<Vec<u8>>) -> &mut Self {
        self.0
            .entry(name.to_owned())
            .or_default()
            .insert(key.to_owned(), value.into());
        self
    }

    /// Adds `key` of Secret `name` from a file.
    pub fn insert_file(&mut self, name: &str, key: &str, file: &Path) -> &mut Self {
        let value = std::fs::read(file)
            .unwrap_or_else(|e| panic!("reading {} for {name}/{key}: {e}", file.display()));
        self.insert(name, key, value)
    }

    fn get(&self, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.0.get(name)
    }
}

/// One value the test changed from what was rendered, and why.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub what: String,
    pub from: String,
    pub to: String,
    pub why: String,
}

impl std::fmt::Display for Rewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {:?} -> {:?} ({})",
            self.what, self.from, self.to, self.why
        )
    }
}

/// One container of a rendered workload, made runnable below `root`.
#[derive(Debug, Clone)]
pub struct Pod {
    pub workload: String,
    pub container: String,
    pub name: String,
    pub root: PathBuf,
    /// The program and its arguments, after the image's entrypoint (`tini --`) is dropped.
    pub argv: Vec<String>,
    /// The container's environment, in order (the image's own `ENV` is not added: every
    /// daemon setting the manifests rely on must be in them).
    pub env: Vec<(String, String)>,
    /// Mount paths and the folders or files standing in for them.
    pub mounts: Vec<(String, PathBuf)>,
    pub rewrites: Vec<Rewrite>,
}

/// Where a program named by the image is taken from on this machine.
pub type Programs<'a> = &'a dyn Fn(&str) -> Option<PathBuf>;

impl Pod {
    /// Makes container `container` of pod `ordinal` of `workload` runnable below `root`
    /// (created), with `secrets` for its Secret references and `programs` for the image's
    /// programs. Fails with what the manifests reference but nobody provides.
    pub fn materialize(
        rendered: &Rendered,
        workload: &Workload,
        container: &str,
        ordinal: u64,
        secrets: &Secrets,
        programs: Programs<'_>,
        root: &Path,
    ) -> Result<Pod, String> {
        let spec = workload.pod_spec();
        let c = spec["containers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str() == Some(container))
            .ok_or_else(|| format!("{}: no container {container}", workload.name))?;
        let name = workload.pod_name(ordinal);
        let what = |field: &str| format!("{}/{}/{container}: {field}", rendered.overlay, name);
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;

        // The environment, in order, as the kubelet builds it: envFrom first, then env, each
        // `$(VAR)` resolved against what came before.
        let mut env: Vec<(String, String)> = Vec::new();
        for source in c["envFrom"].as_sequence().into_iter().flatten() {
            let prefix = source["prefix"].as_str().unwrap_or_default();
            if let Some(cm) = source["configMapRef"]["name"].as_str() {
                let data = rendered.config_map(cm).ok_or_else(|| {
                    format!("{}: ConfigMap {cm} is not rendered", what("envFrom"))
                })?;
                for (k, v) in data {
                    env.push((format!("{prefix}{k}"), String::from_utf8_lossy(&v).into()));
                }
            }
            if let Some(secret) = source["secretRef"]["name"].as_str() {
                let data = secrets
                    .get(secret)
                    .ok_or_else(|| format!("{}: Secret {secret} not supplied", what("envFrom")))?;
                for (k, v) in data {
                    env.push((format!("{prefix}{k}"), String::from_utf8_lossy(v).into()));
                }
            }
        }
        for var in c["env"].as_sequence().into_iter().flatten() {
            let key = var["name"].as_str().unwrap_or_default().to_owned();
            let field = what(&format!("env {key}"));
            let value = if let Some(value) = var["value"].as_str() {
                expand(value, &env)
            } else if let Some(number) = var["value"].as_u64() {
                number.to_string()
            } else if let Some(r) = var["valueFrom"]["configMapKeyRef"].as_mapping() {
                let cm = r_str(r, "name");
                let k = r_str(r, "key");
                let data = rendered
                    .config_map(cm)
                    .ok_or_else(|| format!("{field}: ConfigMap {cm} is not rendered"))?;
                let v = data
                    .get(k)
                    .ok_or_else(|| format!("{field}: ConfigMap {cm} has no key {k}"))?;
                String::from_utf8_lossy(v).into_owned()
            } else if let Some(r) = var["valueFrom"]["secretKeyRef"].as_mapping() {
                let secret = r_str(r, "name");
                let k = r_str(r, "key");
                let v = secrets
                    .get(secret)
                    .and_then(|s| s.get(k))
                    .ok_or_else(|| format!("{field}: Secret {secret} key {k} not supplied"))?;
                String::from_utf8_lossy(v).into_owned()
            } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "metadata.name" => name.clone(),
                    "metadata.namespace" => workload.namespace.clone(),
                    "status.podIP" | "status.hostIP" => "127.0.0.1".to_owned(),
                    other => return Err(format!("{field}: fieldRef {other} is not supported")),
                }
            } else {
                return Err(format!("{field}: a value source this test does not know"));
            };
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        }

        // The files: every mount, from its volume.
        let volumes: BTreeMap<&str, &Value> = spec["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?, v)))
            .collect();
        let claims: Vec<&str> = workload.object["spec"]["volumeClaimTemplates"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|t| t["metadata"]["name"].as_str())
            .collect();
        let mut mounts = Vec::new();
        for mount in c["volumeMounts"].as_sequence().into_iter().flatten() {
            let volume = mount["name"].as_str().unwrap_or_default();
            let mount_path = mount["mountPath"].as_str().unwrap_or_default();
            let field = what(&format!("volumeMount {volume} at {mount_path}"));
            let target = root.join(mount_path.trim_start_matches('/'));
            let files: Option<Files> = if claims.contains(&volume) {
                None
            } else {
                let v = volumes
                    .get(volume)
                    .ok_or_else(|| format!("{field}: no volume {volume}"))?;
                volume_files(rendered, secrets, v).map_err(|e| format!("{field}: {e}"))?
            };
            match (files, mount["subPath"].as_str()) {
                (Some(files), Some(sub)) => {
                    let (bytes, mode) = files
                        .get(sub)
                        .ok_or_else(|| format!("{field}: subPath {sub} is not in the volume"))?;
                    write_file(&target, bytes, *mode)?;
                }
                (Some(files), None) => {
                    std::fs::create_dir_all(&target)
                        .map_err(|e| format!("{}: {e}", target.display()))?;
                    for (path, (bytes, mode)) in files {
                        write_file(&target.join(path), &bytes, mode)?;
                    }
                }
                (None, _) => std::fs::create_dir_all(&target)
                    .map_err(|e| format!("{}: {e}", target.display()))?,
            }
            mounts.push((mount_path.to_owned(), target));
        }
        // The longest mount path first, so `/etc/warroom/nats` wins over `/etc/warroom`.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));

        // The program: the container's command, else the image's entrypoint (tini) with the
        // arguments as its command. The image runs `tini --` in front of every daemon; here
        // the daemon is started directly (the test is its parent and reaps it).
        let mut argv: Vec<String> = c["command"]
            .as_sequence()
            .into_iter()
            .flatten()
            .chain(c["args"].as_sequence().into_iter().flatten())
            .filter_map(|a| a.as_str().map(|a| expand(a, &env)))
            .collect();
        if argv.is_empty() {
            return Err(format!("{}: no command or args", what("command")));
        }
        let mut pod = Pod {
            workload: workload.name.clone(),
            container: container.to_owned(),
            name: name.clone(),
            root: root.to_owned(),
            argv: Vec::new(),
            env,
            mounts,
            rewrites: Vec::new(),
        };
        let program = argv.remove(0);
        let local = programs(&program).ok_or_else(|| {
            format!(
                "{}: the image's program {program} has no stand-in here",
                what("command")
            )
        })?;
        pod.rewrites.push(Rewrite {
            what: what("command[0]"),
            from: program,
            to: local.display().to_string(),
            why: "the image is not built here: its program is this workspace's build of it"
                .to_owned(),
        });
        pod.argv.push(local.display().to_string());
        pod.argv.extend(argv);
        pod.rewrite_paths(programs);
        Ok(pod)
    }

    /// Rewrites every argument and environment value that names a mounted path (to the folder
    /// standing in for it) or a program of the image (to its stand-in).
    fn rewrite_paths(&mut self, programs: Programs<'_>) {
        let mut rewrites = Vec::new();
        let mounts = self.mounts.clone();
        let map = |value: &str| -> Option<(String, String)> {
            // A program of the image first: a path this machine built or installed may lie
            // below a folder the pod mounts (a clone in `/tmp`, a pod with `/tmp` mounted).
            if value.starts_with('/') && !value.contains(':') {
                let base = value.rsplit('/').next().unwrap_or(value);
                if let Some(local) = programs(value).or_else(|| programs(base)) {
                    return Some((
                        local.display().to_string(),
                        "a program of the image, which is not built here: this workspace's \
                         build of it"
                            .to_owned(),
                    ));
                }
            }
            for (mount, local) in &mounts {
                let why = "a mount path: every pod of this machine shares one file system";
                if value == mount {
                    return Some((local.display().to_string(), why.to_owned()));
                }
                if let Some(rest) = value.strip_prefix(&format!("{mount}/")) {
                    return Some((local.join(rest).display().to_string(), why.to_owned()));
                }
            }
            None
        };
        for (key, value) in &mut self.env {
            if let Some((to, why)) = map(value) {
                rewrites.push(Rewrite {
                    what: format!("{}/{}: env {key}", self.name, self.container),
                    from: value.clone(),
                    to: to.clone(),
                    why,
                });
                *value = to;
            }
        }
        for (i, arg) in self.argv.iter_mut().enumerate().skip(1) {
            if let Some((to, why)) = map(arg) {
                rewrites.push(Rewrite {
                    what: format!("{}/{}: args[{i}]", self.name, self.container),
                    from: arg.clone(),
                    to: to.clone(),
                    why,
                });
                *arg = to;
            }
        }
        self.rewrites.extend(rewrites);
    }

    /// Rewrites, in one pass, every absolute path in the mounted file at `mount_path` that
    /// lies under one of the pod's mounts (a configuration file naming other mounted files,
    /// such as `nats.conf`), recording each.
    pub fn rewrite_mount_paths_in(&mut self, mount_path: &str) {
        let file = self.local_path(mount_path);
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: reading {mount_path}: {e}", self.name));
        let mut out = String::with_capacity(text.len());
        let mut rewritten = Vec::new();
        let mut rest = text.as_str();
        'scan: while !rest.is_empty() {
            let at_token_start = out
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')));
            if at_token_start && rest.starts_with('/') {
                for (mount, local) in &self.mounts {
                    if let Some(after) = rest.strip_prefix(mount.as_str())
                        && (after.is_empty() || after.starts_with(['/', '"', '\'', ' ', '\n']))
                    {
                        out.push_str(&local.display().to_string());
                        rewritten.push(mount.clone());
                        rest = after;
                        continue 'scan;
                    }
                }
            }
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        std::fs::write(&file, out)
            .unwrap_or_else(|e| panic!("{}: writing {mount_path}: {e}", self.name));
        rewritten.sort();
        rewritten.dedup();
        for mount in rewritten {
            self.rewrites.push(Rewrite {
                what: format!("{}/{}: {mount_path}", self.name, self.container),
                from: mount.clone(),
                to: self.local_path(&mount).display().to_string(),
                why: "a mount path: every pod of this machine shares one file system".to_owned(),
            });
        }
    }

    /// The value of `key` in the environment.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Changes `key` to `to` (it must be set), recording why.
    pub fn rewrite_env(&mut self, key: &str, to: impl Into<String>, why: &str) {
        let to = to.into();
        let entry = self
            .env
            .iter_mut()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{}/{}: {key} is not set", self.name, self.container));
        self.rewrites.push(Rewrite {
            what: format!("{}/{}: env {key}", self.name, self.container),
            from: entry.1.clone(),
            to: to.clone(),
            why: why.to_owned(),
        });
        entry.1 = to;
    }

    /// The folder or file standing in for `mount_path` (`/etc/nats/nats.conf`).
    pub fn local_path(&self, path: &str) -> PathBuf {
        for (mount, local) in &self.mounts {
            if path == mount {
                return local.clone();
            }
            if let Some(rest) = path.strip_prefix(&format!("{mount}/")) {
                return local.join(rest);
            }
        }
        panic!("{}/{}: {path} is not mounted", self.name, self.container)
    }

    /// A command for the program with its arguments and exactly its environment (plus a `PATH`
    /// for the tools it runs, as the image has one).
    pub fn command(&self, extra_args: &[&str], path: &str) -> Command {
        let mut command = Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .args(extra_args)
            .env_clear()
            .env("PATH", path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.root);
        command
    }

    /// The rewrites, one per line, for a test's output.
    pub fn describe_rewrites(&self) -> String {
        self.rewrites
            .iter()
            .map(|r| format!("  rewritten {r}\n"))
            .collect()
    }
}

fn r_str<'a>(map: &'a serde_yaml_ng::Mapping, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `$(VAR)` replaced by an earlier variable's value; `$$(VAR)` is a literal `$(VAR)`; an
/// unknown reference stays as written (both as the kubelet does).
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(literal) = tail.strip_prefix("$$(") {
            out.push_str("$(");
            rest = literal;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

type Files = BTreeMap<String, (Vec<u8>, Option<u32>)>;

/// The files a volume holds (`None` for an empty, writable folder).
fn volume_files(
    rendered: &Rendered,
    secrets: &Secrets,
    volume: &Value,
) -> Result<Option<Files>, String> {
    if volume.get("emptyDir").is_some() {
        return Ok(None);
    }
    let from = |data: BTreeMap<String, Vec<u8>>, source: &Value| -> Result<Files, String> {
        let default_mode = source["defaultMode"].as_u64().map(|m| m as u32);
        let mut files = Files::new();
        match source["items"].as_sequence() {
            Some(items) => {
                for item in items {
                    let key = item["key"].as_str().unwrap_or_default();
                    let path = item["path"].as_str().unwrap_or(key);
                    let bytes = data
                        .get(key)
                        .ok_or_else(|| format!("items: no key {key}"))?
                        .clone();
                    let mode = item["mode"].as_u64().map(|m| m as u32).or(default_mode);
                    files.insert(path.to_owned(), (bytes, mode));
                }
            }
            None => {
                for (key, bytes) in data {
                    files.insert(key, (bytes, default_mode));
                }
            }
        }
        Ok(files)
    };
    if let Some(name) = volume["configMap"]["name"].as_str() {
        let data = rendered
            .config_map(name)
            .ok_or_else(|| format!("ConfigMap {name} is not rendered"))?;
        return from(data, &volume["configMap"]).map(Some);
    }
    if let Some(name) = volume["secret"]["secretName"].as_str() {
        let data = secrets
            .get(name)
            .ok_or_else(|| format!("Secret {name} not supplied"))?
            .clone();
        return from(data, &volume["secret"]).map(Some);
    }
    if let Some(sources) = volume["projected"]["sources"].as_sequence() {
        let mut files = Files::new();
        for source in sources {
            if let Some(name) = source["configMap"]["name"].as_str() {
                let data = rendered
                    .config_map(name)
                    .ok_or_else(|| format!("ConfigMap {name} is not rendered"))?;
                files.extend(from(data, &source["configMap"])?);
            } else if let Some(name) = source["secret"]["name"].as_str() {
                let data = secrets
                    .get(name)
                    .ok_or_else(|| format!("Secret {name} not supplied"))?
                    .clone();
                files.extend(from(data, &source["secret"])?);
            } else {
                return Err(format!(
                    "a projected source this test does not know: {source:?}"
                ));
            }
        }
        return Ok(Some(files));
    }
    Err(format!("a volume kind this test does not know: {volume:?}"))
}

fn write_file(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = mode.unwrap_or(0o644);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn references_expand_as_the_kubelet_expands_them() {
        let vars = env(&[("POD_NAME", "nats-1"), ("NS", "warroom")]);
        assert_eq!(expand("$(POD_NAME).$(NS).svc", &vars), "nats-1.warroom.svc");
        assert_eq!(expand("$$(POD_NAME)", &vars), "$(POD_NAME)");
        assert_eq!(expand("$(UNKNOWN)/x", &vars), "$(UNKNOWN)/x");
        assert_eq!(expand("cost $5 $(", &vars), "cost $5 $(");
    }
}
