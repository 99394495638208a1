//! The guard's one integration-test binary: the command corpus, property tests of the library,
//! and tests of the built `warroom-guard` hook binary.

mod corpus;
mod hook_binary;
mod post_tool_use;
mod properties;
