//! Round-trips every real Foreman ENC answer: `dump(load(text)) == text`.
//!
//! Each fixture is what Foreman (Ruby 3.1.2 / Psych 4.0.x / libyaml 0.2.5)
//! served for one host, so this checks both directions at once: a String
//! that looks like a number must load as a String and be quoted again, a
//! Float must keep its `.0`, nils, empties and indentation must match.

use std::fs;
use std::path::PathBuf;

use pvc_psych::{dump, load};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/foreman/enc")
}

#[test]
fn foreman_enc_fixtures_round_trip_byte_for_byte() {
    let mut paths: Vec<PathBuf> = fs::read_dir(fixture_dir())
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 40, "expected the 40 Foreman ENC fixtures");

    let mut failures = Vec::new();
    for path in &paths {
        let text = fs::read_to_string(path).expect("fixture is UTF-8");
        let value = load(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let again = dump(&value);
        if again != text {
            let line = again
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            failures.push(format!(
                "{}: first difference at line {}:\n  want {:?}\n  got  {:?}",
                path.display(),
                line + 1,
                text.lines().nth(line),
                again.lines().nth(line)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
