//! `POST /ppm`: the original pvc capacity push (`status.rb` on a Passenger
//! puppetmaster). An accepted push names a valid certname and gives a
//! sample that never has more idle processes than it has processes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvc_bridge::certname::Certname;
use pvc_bridge::schedule::status::parse_ppm;

fuzz_target!(|data: &[u8]| {
    let push = match parse_ppm(data) {
        Ok(push) => push,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let certname: Certname = push.fqdn.parse().expect("fqdn is a certname");
    assert_eq!(certname.as_str(), push.fqdn);
    assert!(push.sample.free <= push.sample.jrubies);
    assert_eq!(push.sample.avg_free, None);
    if let Some(load) = push.system_load {
        assert!(load.is_finite() && load >= 0.0);
    }
});
