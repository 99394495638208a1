//! Times the guard's decisions over the corpus fixtures (`tests/fixtures/everyday.txt`, all
//! allowed, and `hostile.txt`, all refused) and prints p50/p99/max per corpus and the rule
//! of every refusal:
//!
//! ```text
//! cargo run --release -p warroom-guard --example bench [-- ROUNDS]
//! ```
//!
//! The target is p99 under 50 ms; the hook's own deadline is `DECISION_DEADLINE`.

use std::path::Path;
use std::time::{Duration, Instant};

use warroom_guard::{DECISION_DEADLINE, Guard};

fn fixture(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("# "))
        .map(str::to_owned)
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let guard = Guard::builtin();
    let dir = std::env::temp_dir().join("warroom-guard-bench");
    let _ = std::fs::create_dir_all(dir.join("notes"));
    let _ = std::fs::write(dir.join("pods.json"), "{}");
    let _ = std::fs::write(dir.join("notes/today.txt"), "x");
    let ws = guard.workspace(&dir);
    let mut nested = String::new();
    for depth in [20, 24, 28] {
        nested.push_str(&format!(
            "{}kubectl get pods{}\n",
            "case a in a) ".repeat(depth),
            " esac".repeat(depth)
        ));
    }
    let nested: Vec<String> = nested.lines().map(str::to_owned).collect();
    println!("guard decision time, {rounds} rounds, deadline {DECISION_DEADLINE:?}");
    for (name, corpus, expect_allowed) in [
        ("everyday", fixture("everyday.txt"), true),
        ("hostile", fixture("hostile.txt"), false),
        ("nested case 20/24/28", nested, false),
    ] {
        let mut times = Vec::with_capacity(corpus.len() * rounds);
        let mut wrong = 0;
        for _ in 0..rounds {
            for command in &corpus {
                let started = Instant::now();
                let decision = guard.check_bash(command, &ws);
                times.push(started.elapsed());
                if decision.allowed != expect_allowed {
                    wrong += 1;
                }
            }
        }
        times.sort();
        println!(
            "{name:>22}: {} calls x {rounds}: p50 {:?}, p99 {:?}, max {:?}; {} misclassified",
            corpus.len(),
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or_default(),
            wrong / rounds.max(1)
        );
    }
}
