//! The `warroom-guard` binary: a Claude Code `PreToolUse` hook (see [`warroom_guard::cli`]).

fn main() {
    warroom_guard::cli::main();
}
