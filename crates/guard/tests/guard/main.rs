//! The guard's one integration-test binary: the command corpus, property tests of the library,
//! tests of the built `warroom-guard` hook binary, and the shipped runbooks judged by the guard.

mod corpus;
mod hook_binary;
mod post_tool_use;
mod properties;
mod runbooks;
