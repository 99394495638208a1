//! The library half of `warroom-dev`: the local stack that `warroom-dev up` and `demo` run
//! and that the workspace's end-to-end tests start, so both exercise the same composition.

pub mod stack;

pub use stack::{Daemons, ExtraArgs, Memory, Model, Stack, StackOptions, find_tool};
