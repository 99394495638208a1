//! A scripted, Anthropic-Messages-compatible HTTP server that drives the real Claude Code CLI.
//!
//! Only the model is fake: the CLI runs against it through `ANTHROPIC_BASE_URL` and executes
//! the tool calls the [`Script`] asks for under its real permission system, so tests (and the
//! replay demo) see exactly what a real investigation would do with those tool calls.
//!
//! The turn to answer is chosen statelessly from each request: the first
//! [`Conversation`] whose matcher appears in the request's system prompt or first user message,
//! and within it the turn whose index is the number of assistant messages already in the
//! request's history. Retries, and several CLI runs sharing one server, are therefore safe.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use warroom_scripted_model::{Script, ScriptedModel, Turn};
//!
//! let model = ScriptedModel::start(Script::single(vec![
//!     Turn::bash("kubectl get pods -A"),
//!     Turn::text("All pods healthy."),
//! ]))
//! .await?;
//! // Run `claude -p ...` with ANTHROPIC_BASE_URL=model.base_url(), then:
//! for result in model.tool_results() {
//!     println!("{}: {}", result.tool_use_id, result.content_text);
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod request;
mod script;
mod server;
mod wire;

pub use error::{Error, Result};
pub use request::{Answer, CapturedRequest, ToolResultSeen};
pub use script::{Conversation, Script, ToolCall, Turn};
pub use server::{ScriptedModel, serve};
