//! Each host's last report and last successful one, as this process
//! stored them: the scheduler keeps only when a host last *ran*, and the
//! status page also shows how long ago a run last *worked*.

use std::collections::HashMap;
use std::sync::Arc;

use crate::schedule::Ts;

/// Whether a report's exit code (Puppet's `--detailed-exitcodes`) is a run
/// that worked: 0 (no changes) or 2 (changes applied). `None` when the
/// report carries no exit code (it tells nothing either way).
pub fn succeeded(exit_code: Option<i32>) -> Option<bool> {
    exit_code.map(|code| code == 0 || code == 2)
}

/// A host's last report with an exit code, and its last successful one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub last_report: Option<Ts>,
    pub last_success: Option<Ts>,
}

#[derive(Debug, Default)]
pub struct Outcomes {
    hosts: HashMap<Arc<str>, Outcome>,
}

impl Outcomes {
    /// A report of `certname` at `at` with this exit code; one without an
    /// exit code is not recorded.
    pub fn record(&mut self, certname: &str, at: Ts, exit_code: Option<i32>) {
        let Some(ok) = succeeded(exit_code) else {
            return;
        };
        let entry = match self.hosts.get_mut(certname) {
            Some(entry) => entry,
            None => self.hosts.entry(Arc::from(certname)).or_default(),
        };
        // Reports replayed from the spool may arrive out of order.
        entry.last_report = entry.last_report.max(Some(at));
        if ok {
            entry.last_success = entry.last_success.max(Some(at));
        }
    }

    pub fn get(&self, certname: &str) -> Option<Outcome> {
        self.hosts.get(certname).copied()
    }

    /// Forgets hosts no longer in the fleet.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.hosts.retain(|name, _| keep(name));
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detailed_exit_codes() {
        assert_eq!(succeeded(Some(0)), Some(true));
        assert_eq!(succeeded(Some(2)), Some(true));
        for failed in [1, 4, 6] {
            assert_eq!(succeeded(Some(failed)), Some(false), "{failed}");
        }
        assert_eq!(succeeded(None), None);
    }

    #[test]
    fn a_failure_keeps_the_last_success() {
        let mut o = Outcomes::default();
        o.record("a.example.com", Ts(1000), Some(0));
        o.record("a.example.com", Ts(2000), Some(4));
        o.record("a.example.com", Ts(3000), None);
        assert_eq!(
            o.get("a.example.com"),
            Some(Outcome {
                last_report: Some(Ts(2000)),
                last_success: Some(Ts(1000)),
            })
        );
        // An older report replayed late moves nothing back.
        o.record("a.example.com", Ts(500), Some(2));
        assert_eq!(o.get("a.example.com").unwrap().last_success, Some(Ts(1000)));
        // Only failures: a report, no success.
        o.record("b.example.com", Ts(10), Some(1));
        assert_eq!(o.get("b.example.com").unwrap().last_success, None);
        assert_eq!(o.get("c.example.com"), None);
        o.retain(|name| name.starts_with('a'));
        assert_eq!(o.len(), 1);
    }
}
