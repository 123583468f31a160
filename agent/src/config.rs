//! `/etc/pvc.conf`: `key=value` lines, the original agent's keys
//! (`host_endpoint`, `report_endpoint`, `facts_endpoint`, `info`,
//! `warnings`) and the new ones; Puppet's own settings as defaults.

use std::path::PathBuf;
use std::time::Duration;

/// TLS material: the node's Puppet certificate by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate (`hostcert`), presented to the bridge.
    pub cert: PathBuf,
    /// Its private key (`hostprivkey`).
    pub key: PathBuf,
    /// The Puppet CA (`localcacert`): the only root the bridge is checked
    /// against.
    pub ca: PathBuf,
    /// The CA's revocation list (`hostcrl`), when present.
    pub crl: Option<PathBuf>,
}

/// How Puppet and facter are run, and where Puppet keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuppetSettings {
    /// `puppet` and any leading arguments (`puppet_command`).
    pub puppet: Vec<String>,
    /// `facter` and any leading arguments (`facter_command`), e.g.
    /// `puppet facts show --render-as json`.
    pub facter: Vec<String>,
    /// A run still going after this is killed (`run_timeout`).
    pub run_timeout: Duration,
    /// `agent_catalog_run_lockfile`: a run in progress.
    pub run_lockfile: PathBuf,
    /// `agent_disabled_lockfile`: `puppet agent --disable`.
    pub disabled_lockfile: PathBuf,
    /// `lastrunfile`: `last_run_summary.yaml`.
    pub last_run_summary: PathBuf,
    /// `lastrunreport`: `last_run_report.yaml` (what the run changed, and
    /// when).
    pub last_run_report: PathBuf,
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `GET <host_endpoint>?fqdn=<certname>` (the original agent called
    /// `<host_endpoint>/<fqdn>`; the bridge serves both).
    pub host_endpoint: String,
    pub report_endpoint: String,
    pub facts_endpoint: String,
    pub certname: String,
    /// `None` only when plain HTTP is configured (`insecure_http=1`).
    pub tls: Option<TlsFiles>,
    pub puppet: PuppetSettings,
    /// Without a decision for this long, Puppet runs on its own
    /// (`fallback_interval`), at a time spread by the certname.
    pub fallback_interval: Duration,
    /// File-change runs per hour at most, and at once (`forced_runs_per_hour`,
    /// `forced_runs_burst`): a loop stops here.
    pub forced_runs_per_hour: u32,
    pub forced_runs_burst: u32,
    /// Undelivered reports and facts (`spool_dir`, `spool_max_bytes`).
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// The original agent's log switches: `info=1` logs each step,
    /// `warnings=1` the warnings.
    pub info: bool,
    pub warnings: bool,
}
