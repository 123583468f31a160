//! The `puppet agent` command line for a run, and which of the bridge's
//! variables go into its environment.

use crate::decision::RunMode;

use super::RunRequest;

/// `agent --onetime --no-daemonize --detailed-exitcodes --no-splay
/// --no-usecacheonfailure [--server S] [--use_cached_catalog]`.
///
/// A granted run must neither sleep out its lease (`--no-splay`) nor
/// quietly apply an old catalog when the compile fails
/// (`--no-usecacheonfailure`). With `--server`, the CA and report servers
/// are pinned to what puppet.conf resolves them to (`ca_server`,
/// `report_server`): Puppet defaults both to `$server`, so the granted
/// compile server would otherwise also become the CA and report server.
pub(super) fn agent_args(
    request: &RunRequest,
    ca_server: Option<&str>,
    report_server: Option<&str>,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "agent",
        "--onetime",
        "--no-daemonize",
        "--detailed-exitcodes",
        "--no-splay",
        "--no-usecacheonfailure",
    ]
    .map(String::from)
    .into();
    if let Some(server) = &request.server {
        args.push("--server".into());
        args.push(server.clone());
        for (flag, pinned) in [
            ("--ca_server", ca_server),
            ("--report_server", report_server),
        ] {
            if let Some(pinned) = pinned {
                args.push(flag.into());
                args.push(pinned.into());
            }
        }
    }
    if request.mode == RunMode::CachedCatalog {
        args.push("--use_cached_catalog".into());
    }
    args
}

/// The pairs whose name is `FACTER_[A-Za-z0-9_]+` (and whose value can be
/// passed at all), and the names of the others: nothing else of the
/// environment is the bridge's to set.
pub(super) fn facter_env(pairs: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (name, value) in pairs {
        if is_facter_name(name) && !value.contains('\0') {
            kept.push((name.clone(), value.clone()));
        } else {
            dropped.push(name.clone());
        }
    }
    (kept, dropped)
}

fn is_facter_name(name: &str) -> bool {
    name.strip_prefix("FACTER_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facter_names() {
        for good in ["FACTER_role", "FACTER_e2e_outdir", "FACTER_X9", "FACTER__"] {
            assert!(is_facter_name(good), "{good}");
        }
        for bad in [
            "FACTER_",
            "facter_role",
            "PATH",
            "LD_PRELOAD",
            "FACTER_role-x",
            "FACTER_a b",
            "FACTER_é",
            "XFACTER_a",
        ] {
            assert!(!is_facter_name(bad), "{bad}");
        }
        let (kept, dropped) = facter_env(&[
            ("FACTER_role".into(), "web".into()),
            ("FACTER_nul".into(), "a\0b".into()),
            ("PATH".into(), "/tmp".into()),
        ]);
        assert_eq!(kept, vec![("FACTER_role".to_owned(), "web".to_owned())]);
        assert_eq!(dropped, vec!["FACTER_nul".to_owned(), "PATH".to_owned()]);
    }
}
