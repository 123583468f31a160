//! Tidy: repository rules checked as a test (the rust-analyzer habit).
//! Every Rust file opens with a module doc, no ignore attribute lacks a
//! reason, no should_panic attribute, and `docs/configuration.md` documents every
//! configuration key the bridge accepts.

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | ".demo" | ".tools" | "node_modules"
            ) {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_and_keeps_the_test_rules() {
    let mut files = Vec::new();
    for dir in ["bridge", "agent", "tests"] {
        rust_files(&repo_root().join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} files", files.len());
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(repo_root()).unwrap_or(file).display();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{shown}: does not start with a //! module doc"));
        }
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            // Built from parts so this file does not match its own check.
            if line.starts_with(concat!("#[", "ignore]")) {
                problems.push(format!(
                    "{shown}:{}: ignore attribute without a reason",
                    n + 1
                ));
            }
            if line.starts_with(concat!("#[", "should_panic")) {
                problems.push(format!(
                    "{shown}:{}: should_panic attribute: assert the error instead",
                    n + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_configuration_key_is_documented() {
    let docs = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let keys = pvc_bridge::config::RawConfig::keys();
    assert!(keys.contains(&"database.primary".to_owned()), "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| {
            let key = if *key == "enc.settings" {
                "enc.settings.<name>"
            } else {
                key.as_str()
            };
            !docs.contains(&format!("| `{key}` |"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/configuration.md: {missing:?}"
    );
}
