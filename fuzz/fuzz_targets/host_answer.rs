//! Foreman parameter values as they flow into the `/host` answer: stored
//! text → Foreman's YAML column decoding → parameter precedence → flags,
//! monitored files, check interval, pool → the rendered answer → pvc-agent's
//! strict reading of it.
//!
//! The input is parameter rows separated by NUL bytes (PostgreSQL text
//! cannot hold one). A row's first line is `<type> <key_type> <name>`
//! (`HostParameter string pvc_facter_x`); the rest is the stored value, and
//! a row without a newline has a NULL value. Every row belongs to one host
//! (`web01.example.com`, organization 1, location 2, domain 3, subnets 4
//! and 5, OS 6, hostgroup 7). Checks: every emitted key is a valid answer
//! key in the `PVC_`/`FACTER_` namespaces, flags are `FACTER_*`, monitored
//! files absolute and unbroken; the shell form holds no glob character and
//! reads back as exactly the answer's shell-safe pairs; the JSON form reads
//! back as all of them, and the agent accepts it and finds the same flags,
//! files, interval and grant in it.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pvc_bridge::answer::{is_shell_safe, AnswerKey};
use pvc_bridge::enc::model::KeyType;
use pvc_bridge::hosts::resolve::resolve;
use pvc_bridge::hosts::rows::{FleetRows, HostRow, Level, ParamRow, TreeRow};
use pvc_bridge::hosts::FlagConfig;
use pvc_bridge::runs::{render, PollAnswer};
use pvc_bridge::schedule::{Decision, Grant, Reason, RunMode, Trigger};
use pvc_bridge::store::foreman::decode_yaml_column;

const HOST_ID: i64 = 9;
const SERVER: &str = "puppet1.example.com";

fn host() -> HostRow {
    HostRow {
        id: HOST_ID,
        name: "web01.example.com".into(),
        certname: None,
        hostgroup_id: Some(7),
        organization_id: Some(1),
        location_id: Some(2),
        os_id: Some(6),
        domain_id: Some(3),
        subnet_id: Some(4),
        subnet6_id: Some(5),
    }
}

fn tree(id: i64, title: &str) -> TreeRow {
    TreeRow {
        id,
        ancestry: None,
        title: title.into(),
    }
}

/// The owner id of `level` for `host()`.
fn owner(level: Level) -> Option<i64> {
    match level {
        Level::Global => None,
        Level::Organization => Some(1),
        Level::Location => Some(2),
        Level::Domain => Some(3),
        Level::Subnet => Some(4),
        Level::Os => Some(6),
        Level::Hostgroup => Some(7),
        Level::Host => Some(HOST_ID),
    }
}

fn param(row: &[u8]) -> Option<ParamRow> {
    let text = std::str::from_utf8(row).ok()?;
    let (header, value) = match text.split_once('\n') {
        Some((header, value)) => (header, Some(value)),
        None => (text, None),
    };
    let mut words = header.splitn(3, ' ');
    let level = Level::from_type(words.next()?)?;
    let key_type = KeyType::parse(words.next());
    let name = words.next()?.to_owned();
    Some(ParamRow {
        level,
        reference_id: owner(level),
        value: decode_yaml_column(value, &name).map_err(|e| e.to_string()),
        key_type,
        name,
    })
}

fn grant() -> Decision {
    Decision {
        run: Some(Grant {
            server: Arc::from(SERVER),
            mode: RunMode::Full,
            trigger: Trigger::FileChange,
            rate: 1.0,
            burst: 1.0,
            overdraft: true,
        }),
        fact_run: false,
        check_interval: 300,
        reason: Reason::ForcedRun,
        over_forced_budget: false,
    }
}

fuzz_target!(|data: &[u8]| {
    pvc_fuzz::let_caught_yaml_panics_pass();
    let rows = FleetRows {
        hosts: vec![host()],
        params: data.split(|&b| b == 0).filter_map(param).collect(),
        taxonomies: vec![tree(1, "Org"), tree(2, "Europe/DC1")],
        hostgroups: vec![tree(7, "base")],
    };
    let resolved = resolve(&rows, &FlagConfig::default());
    let [(info, _)] = &resolved.hosts[..] else {
        panic!("the one host resolves");
    };
    assert!(!info.pool.is_empty() && !info.pool.contains(char::is_control));
    for path in &info.files_monitored {
        assert!(path.starts_with('/'));
        assert!(!path.contains(|c: char| c.is_whitespace() || c.is_control()));
    }
    for (key, value) in &info.flags {
        assert!(key.as_str().starts_with("FACTER_"), "{key}");
        assert!(!value.contains('\0'));
    }

    let check_interval = info.check_interval.unwrap_or(60).clamp(5, 300);
    let answer = render(&PollAnswer {
        decision: grant(),
        run_id: Some("0e6b1a36-1c4c-4f2b-9a57-3f0c1d2e3f40".into()),
        info: Arc::new(info.clone()),
        check_interval,
    });
    let pairs: Vec<(String, String)> = answer
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_owned()))
        .collect();
    for (key, _) in &pairs {
        let reparsed = key.parse::<AnswerKey>().map(|k| k.to_string());
        assert_eq!(reparsed.as_ref(), Ok(key));
        assert!(
            key.starts_with("PVC_") || key.starts_with("FACTER_"),
            "{key}"
        );
    }
    // The shell form: the pairs whose values the original agent's unquoted
    // `eval $r` cannot glob-expand, reading back exactly; no glob character
    // anywhere in it.
    let shell = answer.to_shell();
    assert!(!shell.contains(['*', '?', '[']), "{shell}");
    let shell_pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(_, value)| is_shell_safe(value))
        .cloned()
        .collect();
    assert_eq!(
        pvc_fuzz::read_shell_answer(&shell).as_ref(),
        Some(&shell_pairs),
        "the shell form reads back as the answer"
    );
    // The JSON form: every pair.
    let json = serde_json::to_vec(&answer.to_json()).expect("an answer serialises");
    let reread: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).expect("the JSON form is an object");
    let reread: Vec<(String, String)> = reread
        .into_iter()
        .map(|(k, v)| (k, v.as_str().expect("string values").to_owned()))
        .collect();
    assert_eq!(reread, pairs, "the JSON form reads back as the answer");

    let decision = pvc_agent::decision::parse(&json).expect("the agent accepts the answer");
    let run = decision.run.expect("the grant is read");
    assert_eq!(run.server.as_deref(), Some(SERVER));
    assert_eq!(run.trigger, "file_change");
    assert_eq!(
        decision.check_interval,
        Duration::from_secs(check_interval.into())
    );
    let files: Vec<String> = decision
        .files_monitored
        .iter()
        .map(|p| p.to_str().expect("UTF-8 paths").to_owned())
        .collect();
    assert_eq!(files, info.files_monitored);
    let flags: Vec<(String, String)> = info
        .flags
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(decision.facter_env, flags);
});
