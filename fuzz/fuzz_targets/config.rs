//! The bridge's configuration file (`--config bridge.toml`): TOML text
//! through the same loader and validation as `pvc-bridge serve`, with no
//! environment. A configuration is refused with at least one reason, or
//! accepted.
//!
//! File keys (`*_file`, `*_dir`) name files the loader reads; inputs that
//! could name a device or a kernel file (`/dev/zero` reads forever) or
//! hide one behind a TOML escape or `..` are skipped: choosing such a file
//! is an operator's mistake, not a parser bug. (Relative paths stay under
//! the working directory.)
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The file each input is written to, in a directory of its own.
fn config_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pvc-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir.join("bridge.toml")
    })
}

fn unsafe_path(data: &[u8]) -> bool {
    [&b"/dev"[..], b"/proc", b"/sys", b"..", b"\\u", b"\\U"]
        .iter()
        .any(|needle| data.windows(needle.len()).any(|w| w == *needle))
}

fuzz_target!(|data: &[u8]| {
    pvc_fuzz::let_caught_yaml_panics_pass();
    if unsafe_path(data) {
        return;
    }
    let file = config_file();
    std::fs::write(file, data).expect("writing the configuration");
    if let Err(error) = pvc_bridge::config::load_from(Some(file), std::iter::empty()) {
        assert!(!error.0.is_empty() && error.0.iter().all(|reason| !reason.is_empty()));
    }
});
