//! The shared test kit: real `nats-server`, real `git` with bare remotes, the scripted model
//! server that drives the real Claude Code CLI, and waiting on conditions with a deadline.

pub mod tools;
