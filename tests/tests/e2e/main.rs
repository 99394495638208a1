//! Workspace-level end-to-end tests: one test binary, one module per area.

mod cancel;
mod claude_cli;
mod docs;
mod eval;
mod everyday;
mod faults;
mod harness;
mod model_redaction;
mod outcomes;
mod pipeline;
mod progress;
mod queue;
mod redaction;
mod scenarios;
mod sessions;
mod testkit;
mod tidy;
mod trust;
