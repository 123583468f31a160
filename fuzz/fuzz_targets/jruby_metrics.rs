//! puppetserver's status API (`/status/v1/services/jruby-metrics?level=debug`
//! or all services), as the bridge polls it from each server. An accepted
//! document gives a sample whose counts and averages are usable: no more
//! idle instances than instances, averages finite and not negative.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvc_bridge::schedule::status::parse_jruby_metrics;

fuzz_target!(|data: &[u8]| {
    let sample = match parse_jruby_metrics(data) {
        Ok(sample) => sample,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    assert!(sample.free <= sample.jrubies);
    for average in [sample.avg_borrow_ms, sample.avg_wait_ms] {
        assert!(average.is_finite() && average >= 0.0);
    }
    let free = sample
        .avg_free
        .expect("the status API has average-free-jrubies");
    assert!(free.is_finite() && free >= 0.0);
});
