//! What the guard answers for one tool call: allowed or not, a machine-readable rule name, and
//! a reason written for the model so that it can choose a legal command.

use serde::Serialize;

/// The guard's answer for one tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the call may run.
    pub allowed: bool,
    /// A stable, machine-readable name of the rule that decided (`kubectl.refused-kind`).
    pub rule: &'static str,
    /// Why, addressed to the model: what was refused and what to do instead.
    pub reason: String,
}

impl Decision {
    /// A call that may run.
    pub fn allow(rule: &'static str, reason: impl Into<String>) -> Decision {
        Decision {
            allowed: true,
            rule,
            reason: reason.into(),
        }
    }

    /// A call that is refused.
    pub fn deny(rule: &'static str, reason: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            rule,
            reason: reason.into(),
        }
    }
}
