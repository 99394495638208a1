//! Property tests of request parsing: whatever bytes arrive in `requests/pending/`, the
//! parser returns a typed request or errors that name the file, never a panic; and whatever
//! it accepts keeps the guarantees the rest of the product builds on.

use std::path::Path;

use proptest::prelude::*;
use warroom_proto::{RequestId, parse_request};

const FILE: &str = "requests/pending/r1.yaml";

const VALID: &str = r#"apiVersion: warroom.intility.io/v1
kind: TroubleshootingRequest
metadata:
  name: etcd-latency
  timestamp: "2026-11-23T10:00:00Z"
  engineer: alice
spec:
  targetClusters:
    - type: hub
      name: production-hub
    - type: hosted
      name: prod-cluster-1
  coordination:
    mode: sequential
  issue:
    category: etcd
    description: etcd latency above 500ms
  investigation:
    prompt: Check etcd health.
    allowedTools: [bash, read]
    timeout: 600
  output:
    destination: results/r1/
"#;

/// Lines and fragments a hostile or careless author could put into a request file.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("&a [*a, *a, *a]".to_owned()),
        Just("*a".to_owned()),
        Just("!!binary aGVsbG8=".to_owned()),
        Just("---".to_owned()),
        Just("? [x]: y".to_owned()),
        Just("name: \"hub.*\"".to_owned()),
        Just("name: ../../etc".to_owned()),
        Just("timeout: -1".to_owned()),
        Just("timeout: 1e999".to_owned()),
        Just("timestamp: 2026-02-30T25:61:61Z".to_owned()),
        Just("destination: results/../x/".to_owned()),
        Just("allowedTools: [curl]".to_owned()),
        Just("mode: sideways".to_owned()),
        Just("  - type: hosted\n      name: prod-cluster-1".to_owned()),
        "[ -~]{0,40}",
        "\\PC{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_name_the_file(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        if let Err(e) = parse_request(Path::new(FILE), &bytes) {
            prop_assert_eq!(e.file, FILE);
            prop_assert!(!e.errors.is_empty());
            prop_assert!(e.errors.iter().all(|error| !error.message.is_empty()));
        }
    }

    #[test]
    fn a_valid_file_with_lines_replaced_or_added_never_panics(
        edits in proptest::collection::vec((0usize..40, fragment(), any::<bool>()), 1..6)
    ) {
        let mut lines: Vec<String> = VALID.lines().map(str::to_owned).collect();
        for (at, text, replace) in edits {
            let at = at % (lines.len() + 1);
            if replace && at < lines.len() {
                let indent: String = lines[at].chars().take_while(|c| *c == ' ').collect();
                lines[at] = format!("{indent}{text}");
            } else {
                lines.insert(at, text);
            }
        }
        let text = lines.join("\n");
        match parse_request(Path::new(FILE), text.as_bytes()) {
            // Whatever is accepted is usable as the rest of the product assumes.
            Ok(request) => {
                prop_assert!(!request.clusters.is_empty());
                prop_assert!(request.results_dir.as_str().starts_with("results/"));
                prop_assert!(request.results_dir.as_str().ends_with("r1"));
                let timeout = request.request.spec.investigation.timeout;
                prop_assert!(timeout > 0);
                for cluster in &request.clusters {
                    let name = cluster.name.as_str();
                    prop_assert!(!name.is_empty());
                    prop_assert!(!name.contains(['.', '*', '>', '/', ' ']));
                }
            }
            Err(e) => {
                prop_assert_eq!(e.file, FILE);
                prop_assert!(!e.errors.is_empty());
            }
        }
    }

    #[test]
    fn request_ids_are_safe_subject_tokens_and_path_parts(id in "\\PC{0,80}") {
        if let Ok(id) = RequestId::new(id) {
            let text = id.as_str();
            prop_assert!(!text.is_empty());
            prop_assert!(!text.contains(['.', '*', '>', '/', '\\', ' ']));
            prop_assert!(text != ".." && !text.starts_with('-'));
        }
    }
}
