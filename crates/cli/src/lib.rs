//! The library half of `claude-warroom`: the local stack that `claude-warroom dev` runs and
//! that the workspace's end-to-end tests start, so both exercise the same composition.

pub mod stack;

pub use stack::{ExtraArgs, Model, Stack, StackOptions, find_tool};
