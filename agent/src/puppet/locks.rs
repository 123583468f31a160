//! Puppet's own locks, judged as Puppet judges them, so that a run Puppet
//! would refuse is reported instead of started:
//!
//! - `agent_disabled.lock` (`puppet agent --disable [msg]`): exists →
//!   disabled; JSON `{"disabled_message": "..."}` carries the reason.
//!   Checked first, as Puppet does.
//! - `agent_catalog_run.lock`: the PID of the running agent. Puppet treats
//!   it as stale (and deletes it) when the content is not a number, the
//!   PID is not alive, or the process is not Puppet (`ps -o comm=` matches
//!   `puppet(-.*)?$`, or `ruby` with `puppet` in its arguments):
//!   `Puppet::Util::Pidlock#clear_if_stale`. A lock we cannot judge does
//!   not block: Puppet checks again and says so (see
//!   [`skipped_from_output`]); blocking wrongly would stop enforcement.

use std::path::Path;

use super::Skipped;

/// Puppet's own wording, so the report reads as Puppet's would.
const CLIENT: &str = "Puppet configuration client";

pub(super) fn check(disabled_lockfile: &Path, run_lockfile: &Path) -> Option<Skipped> {
    if let Ok(contents) = std::fs::read(disabled_lockfile) {
        return Some(Skipped::Disabled {
            message: disabled_message(&contents),
        });
    }
    let pid = parse_pid(&std::fs::read_to_string(run_lockfile).ok()?)?;
    is_puppet_process(pid).then_some(Skipped::Locked { pid: Some(pid) })
}

/// The one-line reason a skipped run reports, as Puppet logs it.
pub(super) fn describe(skipped: &Skipped, run_lockfile: &Path) -> String {
    match skipped {
        Skipped::Disabled { message } => format!(
            "Notice: Skipping run of {CLIENT}; administratively disabled (Reason: '{}'); \
             Use 'puppet agent --enable' to re-enable.",
            message.as_deref().unwrap_or("reason not specified")
        ),
        Skipped::Locked { pid } => format!(
            "Notice: Run of {CLIENT} already in progress; skipping ({} exists{})",
            run_lockfile.display(),
            pid.map(|p| format!(", pid {p}")).unwrap_or_default()
        ),
    }
}

/// A run Puppet itself refused (exit 1), from what it printed.
pub(super) fn skipped_from_output(output: &str) -> Option<Skipped> {
    if output.contains(&format!("Run of {CLIENT} already in progress; skipping")) {
        return Some(Skipped::Locked { pid: None });
    }
    let at = output.find("administratively disabled (Reason: '")?;
    let rest = &output[at + "administratively disabled (Reason: '".len()..];
    Some(Skipped::Disabled {
        message: rest.find("');").map(|end| rest[..end].to_owned()),
    })
}

/// `{"disabled_message": "..."}`; an unreadable file still disables.
fn disabled_message(contents: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(contents).ok()?;
    value.get("disabled_message")?.as_str().map(str::to_owned)
}

fn parse_pid(contents: &str) -> Option<u32> {
    contents.trim().parse().ok().filter(|&pid| pid > 0)
}

/// Alive and Puppet, by `/proc/<pid>/comm` and `cmdline` (what `ps -o
/// comm=` and `-o args=` show). Unknown counts as no.
fn is_puppet_process(pid: u32) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let Ok(comm) = std::fs::read_to_string(proc.join("comm")) else {
        return false;
    };
    let args = std::fs::read(proc.join("cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default();
    let state = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    // A zombie is not a run in progress (kill(0) would still say alive, but
    // its lock is as good as released).
    if state
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    {
        return false;
    }
    looks_like_puppet(comm.trim_end_matches('\n'), &args)
}

/// `procname =~ /ruby/ && args =~ /puppet/ || procname =~ /puppet(-.*)?$/`.
fn looks_like_puppet(comm: &str, args: &str) -> bool {
    (comm.contains("ruby") && args.contains("puppet"))
        || comm.ends_with("puppet")
        || comm.contains("puppet-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puppet_names_as_puppet_judges_them() {
        assert!(looks_like_puppet(
            "puppet",
            "/usr/bin/ruby /usr/bin/puppet agent"
        ));
        assert!(looks_like_puppet(
            "ruby",
            "/usr/bin/ruby /usr/bin/puppet agent --onetime"
        ));
        assert!(looks_like_puppet("puppet-agent", ""));
        assert!(!looks_like_puppet(
            "ruby",
            "/usr/bin/ruby /opt/app/server.rb"
        ));
        assert!(!looks_like_puppet("nginx", "nginx: worker process"));
        assert!(!looks_like_puppet("puppetserver", "java puppet"));
    }

    #[test]
    fn lock_contents() {
        assert_eq!(parse_pid("6914\n"), Some(6914));
        assert_eq!(parse_pid(""), None);
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("pid"), None);
        assert_eq!(
            disabled_message(br#"{"disabled_message":"e2e maintenance window"}"#).as_deref(),
            Some("e2e maintenance window")
        );
        assert_eq!(disabled_message(b"{}"), None);
        assert_eq!(disabled_message(b"not json"), None);
    }

    #[test]
    fn puppet_refusals_in_its_output() {
        let disabled = "Notice: Skipping run of Puppet configuration client; administratively \
            disabled (Reason: 'e2e maintenance window');\nUse 'puppet agent --enable' to re-enable.\n";
        assert_eq!(
            skipped_from_output(disabled),
            Some(Skipped::Disabled {
                message: Some("e2e maintenance window".into())
            })
        );
        let locked = "Notice: Run of Puppet configuration client already in progress; skipping  \
            (/var/lib/puppet/state/agent_catalog_run.lock exists)\n";
        assert_eq!(
            skipped_from_output(locked),
            Some(Skipped::Locked { pid: None })
        );
        assert_eq!(
            skipped_from_output("Error: Could not retrieve catalog"),
            None
        );
        // What we report for a skip is what Puppet's own output would be.
        let ours = describe(
            &Skipped::Disabled {
                message: Some("window".into()),
            },
            Path::new("/x"),
        );
        assert_eq!(
            skipped_from_output(&ours),
            Some(Skipped::Disabled {
                message: Some("window".into())
            })
        );
    }
}
