//! The shared test kit: a real `nats-server` ([`NatsServer`]), a real S3-compatible server
//! ([`S3Server`], moto), a fixture Slack webhook ([`SlackFixture`]), real `git` with bare remotes
//! ([`BareRemote`], [`WorkClone`]), a fixture Kubernetes API server for pods ([`KubeApi`]), and
//! waiting on conditions with a deadline ([`wait_for`]).
//! Recorded incident scenarios and their `oc`/`kubectl` are in [`scenario`].
//! The scripted model server that drives the real Claude Code CLI lives in
//! `warroom-scripted-model`.

pub mod check;
pub mod deploy;
pub mod git;
pub mod github;
pub mod kube;
pub mod nats;
pub mod s3;
pub mod scenario;
pub mod slack;
pub mod tools;
pub mod wait;

pub use check::{
    Checked, UID_WITHOUT_PASSWD, command_without_passwd, give_to_uid_without_passwd, run_check,
    unused_nats_url,
};
pub use git::{BareRemote, GitFailure, SshKey, WorkClone};
pub use kube::KubeApi;
pub use nats::{NatsCluster, NatsServer, reserved_port};
pub use s3::S3Server;
pub use slack::SlackFixture;
pub use wait::{DEFAULT_TIMEOUT, wait_for, wait_for_ok, wait_until};
