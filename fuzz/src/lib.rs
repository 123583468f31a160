//! What the fuzz targets share: splitting an input into its parts, the
//! shared upload settings, and a strict reader of the `/host` answer's shell
//! form (to check that what the bridge renders reads back as the same
//! pairs).

use std::sync::{Once, OnceLock};

use pvc_bridge::writes::{
    canonical_json, prepare_facts, selected_facts, stable_facts, FactUpload, WriteSettings,
};
use serde_json::Value;

/// `data` up to its first newline, and the rest (everything is the rest
/// when there is no newline: the first part is then empty).
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[], data),
    }
}

/// Lets a panic raised inside libyaml-safer pass: `pvc_psych::load` runs
/// the parser under `catch_unwind` and turns such a panic into an error, by
/// design (libyaml-safer 0.3 has `todo!`s and `unwrap`s on malformed text;
/// fuzz/regressions/host_answer/ holds one). libfuzzer-sys's panic hook
/// aborts on every panic, caught or not; this keeps its hook for all other
/// panics. A libyaml-safer panic that escaped `load` would still end the run:
/// libfuzzer-sys aborts when the target itself panics.
pub fn let_caught_yaml_panics_pass() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_yaml_parser = info
                .location()
                .is_some_and(|at| at.file().contains("libyaml-safer"));
            if !in_yaml_parser {
                fuzzer_hook(info);
            }
        }));
    });
}

/// The `[writes]` defaults (volatile and ENC fact patterns), built once.
pub fn write_settings() -> &'static WriteSettings {
    static SETTINGS: OnceLock<WriteSettings> = OnceLock::new();
    SETTINGS.get_or_init(WriteSettings::default)
}

/// Whether two JSON values are the same, floating-point numbers within a
/// few units in the last place: serde_json's default float parsing (without
/// its `float_roundtrip` feature) may read back a float it wrote one unit
/// off (`8.655555555555556e40` → `8.655555555555557e40`).
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

/// Asserts `same_json`, showing both values when they differ.
pub fn assert_same_json(a: &Value, b: &Value) {
    assert!(same_json(a, b), "JSON values differ:\n  {a}\n  {b}");
}

/// The texts stored for an accepted fact upload: the facts as received
/// re-read as the same facts; the digest's canonical texts are what their
/// slow, tree-building definition gives (`canonical_json` of
/// `stable_facts`, and of `selected_facts` of those) and re-read as the
/// same facts too.
pub fn check_prepared(upload: &FactUpload) {
    let settings = write_settings();
    let prepared = prepare_facts(upload, settings);
    assert_eq!(prepared.name, upload.name);
    let received: Value = serde_json::from_str(&prepared.facts_json).expect("facts_json is JSON");
    assert_same_json(&received, &Value::Object(upload.facts.clone()));
    let stable = Value::Object(stable_facts(&upload.facts, &settings.volatile));
    assert_eq!(prepared.stable_json, canonical_json(&stable));
    let selected = match &stable {
        Value::Object(stable) => Value::Object(selected_facts(stable, &settings.enc_facts)),
        _ => unreachable!("stable facts are an object"),
    };
    assert_eq!(prepared.enc_json, canonical_json(&selected));
    for (text, value) in [
        (&prepared.stable_json, &stable),
        (&prepared.enc_json, &selected),
    ] {
        let reread: Value = serde_json::from_str(text).expect("canonical JSON");
        assert_same_json(&reread, value);
    }
}

/// Reads `KEY='value'` lines as `Answer::to_shell` writes them: a key, `=`,
/// then single-quoted parts and `\'` up to an unquoted newline. `None` for
/// anything else, so a rendering a shell would read differently (an
/// unquoted character, an unterminated quote) is noticed.
pub fn read_shell_answer(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        if key.is_empty()
            || key.contains(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\'') => loop {
                    match chars.next()? {
                        (_, '\'') => break,
                        (_, c) => value.push(c),
                    }
                },
                (_, '\\') => match chars.next()? {
                    (_, '\'') => value.push('\''),
                    _ => return None,
                },
                (at, '\n') => break at,
                _ => return None,
            }
        };
        pairs.push((key.to_owned(), value));
        rest = &after[end + 1..];
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_bridge_writes() {
        let mut answer = pvc_bridge::answer::Answer::new();
        answer.push("PVC_A".parse().unwrap(), "it's\n$(x) ''");
        answer.push("FACTER_B_2".parse().unwrap(), "");
        answer.push("FACTER_C".parse().unwrap(), "{\"a\":[\"x'y\",null]}");
        let pairs = read_shell_answer(&answer.to_shell()).unwrap();
        assert_eq!(
            pairs,
            [
                ("PVC_A".to_owned(), "it's\n$(x) ''".to_owned()),
                ("FACTER_B_2".to_owned(), String::new())
            ],
            "FACTER_C holds a glob character: not in the shell form"
        );
        assert_eq!(read_shell_answer("A=x\n"), None, "unquoted");
        assert_eq!(read_shell_answer("A='x\n"), None, "unterminated");
        assert_eq!(read_shell_answer("a='x'\n"), None, "not a key");
    }
}
