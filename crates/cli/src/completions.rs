//! `claude-warroom completions`: a shell's completion script, generated from the command line's
//! own definition, so it always knows every subcommand and flag of this version.

use std::process::ExitCode;

use anyhow::Result;

/// Print the completion script for a shell.
///
/// The script completes every subcommand and flag of this version of `claude-warroom`.
/// Install it where the shell looks for completions and start a new shell.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom completions bash > ~/.local/share/bash-completion/completions/claude-warroom
  claude-warroom completions zsh > \"${fpath[1]}/_claude-warroom\"
  claude-warroom completions fish > ~/.config/fish/completions/claude-warroom.fish")]
pub struct Args {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells a script can be generated for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Writes the script for `args.shell` of `command` (the whole command line) to stdout.
pub fn run(args: Args, command: &mut clap::Command) -> Result<ExitCode> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, command, name, &mut std::io::stdout().lock());
    Ok(ExitCode::SUCCESS)
}
