//! `POST /facts/<certname>`: the first line of the input is the certname
//! from the URL, the rest the body (facter JSON, or the original agent's
//! base64 of it). An accepted upload has a valid lower-case certname and
//! host name; a JSON body and its base64 give the same upload; the texts
//! stored for it re-read as the same facts (see `pvc_fuzz::check_prepared`).
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use pvc_bridge::certname::Certname;
use pvc_bridge::writes::parse_facts_body;

fuzz_target!(|data: &[u8]| {
    let (name, body) = pvc_fuzz::split_line(data);
    let name = String::from_utf8_lossy(name);
    let Ok(upload) = parse_facts_body(&name, body) else {
        return;
    };
    assert_eq!(upload.certname.as_str(), name.to_ascii_lowercase());
    assert_eq!(
        upload.certname.as_str().parse::<Certname>().as_ref(),
        Ok(&upload.certname)
    );
    assert!(!upload.name.is_empty() && upload.name.len() <= 255);
    assert_eq!(upload.name, upload.name.to_ascii_lowercase());
    pvc_fuzz::check_prepared(&upload);
    if body.trim_ascii().first() == Some(&b'{') {
        let encoded = base64::engine::general_purpose::STANDARD.encode(body);
        assert_eq!(parse_facts_body(&name, encoded.as_bytes()), Ok(upload));
    }
});
