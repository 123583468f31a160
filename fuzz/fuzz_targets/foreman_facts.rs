//! `POST /api/hosts/facts`: Foreman's payload as the stock ENC script sends
//! it. An accepted upload has a valid lower-case certname (the payload's
//! `certname`, else its `name`) and a host name that is one too; the texts
//! stored for it re-read as the same facts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvc_bridge::certname::Certname;
use pvc_bridge::writes::parse_foreman_facts;

fuzz_target!(|data: &[u8]| {
    let Ok(upload) = parse_foreman_facts(data) else {
        return;
    };
    let payload: serde_json::Value =
        serde_json::from_slice(data.trim_ascii()).expect("an accepted payload is JSON");
    let named = ["certname", "name"]
        .iter()
        .find_map(|key| payload[*key].as_str().filter(|s| !s.is_empty()))
        .expect("an accepted payload names the host");
    assert_eq!(upload.certname.as_str(), named.to_ascii_lowercase());
    assert!(upload.name.parse::<Certname>().is_ok(), "{:?}", upload.name);
    assert_eq!(upload.name, upload.name.to_ascii_lowercase());
    assert_eq!(
        serde_json::Value::Object(upload.facts.clone()),
        payload["facts"]
    );
    pvc_fuzz::check_prepared(&upload);
});
