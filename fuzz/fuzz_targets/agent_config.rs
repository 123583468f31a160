//! pvc-agent's `/etc/pvc.conf` (`key=value` lines with shell quoting, as
//! the original agent sourced it), with Puppet's own settings empty. A
//! configuration is refused with at least one located reason, or accepted.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pvc_agent::config::{load, PuppetDefaults};

/// Puppet answers nothing: what the file leaves out stays unset.
struct NoPuppet;

impl PuppetDefaults for NoPuppet {
    fn settings(&self, _names: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }
}

fn config_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("pvc-fuzz-agent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir.join("pvc.conf")
    })
}

fuzz_target!(|data: &[u8]| {
    let file = config_file();
    std::fs::write(file, data).expect("writing the configuration");
    if let Err(error) = load(file, &NoPuppet) {
        assert!(!error.problems.is_empty());
        for problem in &error.problems {
            assert!(!problem.origin.is_empty() && !problem.message.is_empty());
        }
    }
});
