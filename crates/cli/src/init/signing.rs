//! Whether the engineer's git signs commits, and the exact commands that set it up when it
//! does not: a secure zone with a policy rejects every unsigned request.

use std::path::PathBuf;

use crate::git::Repo;

/// What the check found: a verdict, and the commands to run (empty when there is nothing to
/// do).
pub struct Report {
    summary: String,
    commands: Vec<String>,
}

impl Report {
    /// Prints the verdict and the commands, one a line, on stderr.
    pub fn print(&self) {
        eprintln!("signing: {}", self.summary);
        if !self.commands.is_empty() {
            eprintln!("signing: run:");
            for command in &self.commands {
                eprintln!("  {command}");
            }
        }
    }
}

/// The SSH public keys looked for under `~/.ssh`, in order of preference.
const SSH_KEYS: [&str; 3] = ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"];

/// Checks `user.signingkey`, `gpg.format`, `commit.gpgsign` and, for SSH, the
/// allowed-signers file, as git sees them in this clone (local, global and system settings).
pub fn check(repo: &Repo) -> Report {
    let format = repo
        .config("gpg.format")
        .unwrap_or_else(|| "openpgp".to_owned());
    let key = repo.config("user.signingkey");
    let gpgsign = repo
        .try_output(&["config", "--type=bool", "--get", "commit.gpgsign"])
        .is_ok_and(|output| output.success && output.text() == "true");
    let mut commands = Vec::new();
    if !matches!(format.as_str(), "openpgp" | "x509" | "ssh") {
        commands.push("git config --global gpg.format ssh".to_owned());
        return Report {
            summary: format!("gpg.format is `{format}`; git knows openpgp, x509 and ssh"),
            commands,
        };
    }
    let Some(key) = key else {
        if format == "openpgp" && gpgsign {
            return Report {
                summary: "on: commit.gpgsign=true with GnuPG's default key for your email"
                    .to_owned(),
                commands,
            };
        }
        return not_set_up();
    };
    let looks_ssh = ["ssh-", "key::", "ecdsa-", "sk-"]
        .iter()
        .any(|prefix| key.starts_with(prefix))
        || key.ends_with(".pub");
    if looks_ssh && format != "ssh" {
        commands.push("git config --global gpg.format ssh".to_owned());
        return Report {
            summary: format!(
                "user.signingkey `{key}` is an SSH key, but gpg.format is `{format}`: git \
                 cannot sign with it"
            ),
            commands,
        };
    }
    if format == "ssh" && !key.starts_with("key::") && !key.starts_with("ssh-") {
        let file = expand_home(&key);
        if !file.is_file() {
            commands.push(format!(
                "ssh-keygen -t ed25519 -f {}",
                key.trim_end_matches(".pub")
            ));
            return Report {
                summary: format!("user.signingkey `{key}` names no file: git cannot sign"),
                commands,
            };
        }
    }
    let mut notes = Vec::new();
    if !gpgsign {
        notes.push("commit.gpgsign is off (investigate signs anyway; this signs the commits you make by hand too)");
        commands.push("git config --global commit.gpgsign true".to_owned());
    }
    if format == "ssh" && repo.config("gpg.ssh.allowedSignersFile").is_none() {
        notes.push("no gpg.ssh.allowedSignersFile, so `git log --show-signature` cannot check your own commits");
        commands.extend(allowed_signers(&key));
    }
    let mut summary = format!("on: {format} key `{key}`");
    for note in notes {
        summary.push_str("; ");
        summary.push_str(note);
    }
    Report { summary, commands }
}

/// The report when nothing is set up: an SSH key is the simplest (an existing one if the
/// engineer has one).
fn not_set_up() -> Report {
    let existing = SSH_KEYS.iter().find(|name| {
        home()
            .map(|home| home.join(".ssh").join(name))
            .is_some_and(|path| path.is_file())
    });
    let key = format!("~/.ssh/{}", existing.unwrap_or(&SSH_KEYS[0]));
    let mut commands = Vec::new();
    if existing.is_none() {
        commands.push("ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519".to_owned());
    }
    commands.extend([
        "git config --global gpg.format ssh".to_owned(),
        format!("git config --global user.signingkey {key}"),
        "git config --global commit.gpgsign true".to_owned(),
    ]);
    commands.extend(allowed_signers(&key));
    commands.push(format!(
        "# and give {key} to the secure zone's operators, for its policy"
    ));
    Report {
        summary: "off: your commits are not signed, and a secure zone with a policy rejects \
                  unsigned requests"
            .to_owned(),
        commands,
    }
}

/// The commands that let git check the engineer's own SSH signatures: an allowed-signers
/// file with their email and public key.
fn allowed_signers(key: &str) -> [String; 2] {
    let public = if let Some(literal) = key.strip_prefix("key::") {
        literal.to_owned()
    } else if key.starts_with("ssh-") || key.ends_with(".pub") && !key.contains('/') {
        key.to_owned()
    } else if key.ends_with(".pub") {
        format!("$(cat {key})")
    } else {
        // A private key: its public half.
        format!("$(ssh-keygen -y -f {key})")
    };
    [
        "git config --global gpg.ssh.allowedSignersFile ~/.config/git/allowed_signers".to_owned(),
        format!(
            "mkdir -p ~/.config/git && echo \"$(git config user.email) {public}\" >> \
             ~/.config/git/allowed_signers"
        ),
    ]
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// `~/x` as a path under `$HOME`.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}
