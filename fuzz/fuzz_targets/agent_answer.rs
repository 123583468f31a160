//! pvc-agent's reading of the `/host` answer (its JSON form): strict, never
//! evaluated. An accepted answer grants a run only with `PVC_RETURN` 0,
//! never sleeps longer than an hour or less than a second, and passes only
//! `FACTER_<NAME>` keys to Puppet's environment.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pvc_agent::decision::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(decision) = parse(data) else {
        return;
    };
    if decision.code != 0 {
        assert!(decision.run.is_none() && !decision.fact_run);
    }
    assert!(decision.check_interval >= Duration::from_secs(1));
    assert!(decision.check_interval <= Duration::from_secs(3600));
    for (key, _) in &decision.facter_env {
        assert!(key.len() > "FACTER_".len() && key.starts_with("FACTER_"));
    }
    for path in &decision.files_monitored {
        let text = path.to_str().expect("paths come from JSON strings");
        assert!(!text.is_empty() && !text.contains(char::is_whitespace));
    }
});
