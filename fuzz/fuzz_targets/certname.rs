//! `Certname`: every name the bridge is asked about (URL paths, `fqdn=`,
//! upload payloads, `/ppm`, client certificates). A name that parses is
//! hostname syntax and displays back as the very same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvc_bridge::certname::{Certname, MAX_LEN};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match text.parse::<Certname>() {
        Ok(certname) => {
            assert_eq!(certname.to_string(), text);
            assert_eq!(certname.as_str(), text);
            assert!(text.len() <= MAX_LEN);
            assert!(!text.starts_with('-'));
            for label in text.split('.') {
                assert!(!label.is_empty() && label.len() <= 63, "{text:?}");
                assert!(
                    label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "{text:?}"
                );
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
