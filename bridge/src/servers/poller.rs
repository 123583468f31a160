//! One loop per puppetserver: every `interval`, `GET` its jruby-metrics
//! status, bounded by `timeout`, and hand the result to the sink. The loops
//! are independent, so a server that hangs delays no other.
//!
//! Logging stays quiet at scale: a good poll is DEBUG; a run of failures is
//! one WARN when it starts and one INFO when it ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use super::{tls, PollResult, Sink, StatusTarget, TlsFiles};
use crate::schedule::status::{parse_jruby_metrics, StatusError, MAX_BODY_BYTES};
use crate::schedule::ServerSample;

/// Starts polling every target each `interval` (the first poll at once),
/// each poll bounded by `timeout`. Certificates are read here, so a bad
/// file fails the call, not the first poll. Must be called within a tokio
/// runtime; aborting the returned handle stops every loop. With no
/// targets the task ends at once.
pub fn spawn(
    targets: Vec<StatusTarget>,
    tls: Option<TlsFiles>,
    interval: Duration,
    timeout: Duration,
    sink: Sink,
) -> anyhow::Result<JoinHandle<()>> {
    if interval.is_zero() {
        bail!("the status poll interval must be more than 0");
    }
    if timeout.is_zero() {
        bail!("the status poll timeout must be more than 0");
    }
    let runtime = tokio::runtime::Handle::try_current()
        .context("the status poller must be started within a tokio runtime")?;
    let mut names = HashSet::new();
    let mut polled = Vec::with_capacity(targets.len());
    for target in targets {
        if target.name.is_empty() {
            bail!("a status target has an empty name");
        }
        if !names.insert(target.name.clone()) {
            bail!("status target {:?} is listed twice", target.name);
        }
        let url = status_url(&target.base_url)
            .with_context(|| format!("status target {:?}", target.name))?;
        polled.push(Polled {
            shown: redacted(&url),
            name: target.name,
            url,
        });
    }
    let client = tls::client(tls.as_ref())?;
    Ok(runtime.spawn(run(client, polled, interval, timeout, sink)))
}

/// A target ready to poll.
struct Polled {
    name: String,
    url: reqwest::Url,
    /// `url` without credentials, for logs.
    shown: String,
}

async fn run(
    client: reqwest::Client,
    targets: Vec<Polled>,
    interval: Duration,
    timeout: Duration,
    sink: Sink,
) {
    // Dropping the set (the handle aborted) aborts every loop.
    let mut loops = JoinSet::new();
    for target in targets {
        loops.spawn(poll_loop(
            client.clone(),
            target,
            interval,
            timeout,
            Arc::clone(&sink),
        ));
    }
    while let Some(ended) = loops.join_next().await {
        if let Err(error) = ended {
            if error.is_panic() {
                tracing::error!(%error, "a status poll loop panicked; that server is no longer polled");
            }
        }
    }
}

async fn poll_loop(
    client: reqwest::Client,
    target: Polled,
    interval: Duration,
    timeout: Duration,
    sink: Sink,
) {
    let mut ticker = tokio::time::interval(interval);
    // A poll slower than the interval delays the next one; no bursts.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failures = FailureRun::default();
    loop {
        ticker.tick().await;
        let result = poll_once(&client, &target.url, timeout).await;
        log(
            &target,
            failures.record(matches!(result, PollResult::Ok(_))),
            &result,
        );
        sink(&target.name, result);
    }
}

fn log(target: &Polled, change: Change, result: &PollResult) {
    let name = target.name.as_str();
    match (change, result) {
        (Change::Healthy, PollResult::Ok(sample))
        | (Change::Recovered { .. }, PollResult::Ok(sample)) => {
            tracing::debug!(
                server.name = name,
                jrubies = sample.jrubies,
                free = sample.free,
                queued = sample.queued,
                pool_locked = sample.pool_locked,
                "status of {name}: {} of {} JRubies free, {} waiting",
                sample.free,
                sample.jrubies,
                sample.queued
            );
            if let Change::Recovered { failures } = change {
                tracing::info!(
                    server.name = name,
                    failures,
                    "status of {name} readable again after {failures} failed polls"
                );
            }
        }
        (Change::FirstFailure, PollResult::Failed(reason)) => {
            tracing::warn!(
                server.name = name,
                url = %target.shown,
                reason = %reason,
                "cannot read the status of {name}: {reason}"
            );
        }
        (Change::StillFailing { failures }, PollResult::Failed(reason)) => {
            tracing::debug!(
                server.name = name,
                failures,
                reason = %reason,
                "status of {name} still unreadable: {reason}"
            );
        }
        _ => {}
    }
}

async fn poll_once(client: &reqwest::Client, url: &reqwest::Url, timeout: Duration) -> PollResult {
    match tokio::time::timeout(timeout, fetch(client, url)).await {
        Ok(Ok(sample)) => PollResult::Ok(sample),
        Ok(Err(reason)) => PollResult::Failed(reason),
        Err(_elapsed) => PollResult::Failed(format!("no answer within {timeout:?}")),
    }
}

async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> Result<ServerSample, String> {
    let response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(describe_error)?;
    let status = response.status();
    let body = read_limited(response).await;
    if !status.is_success() {
        // puppetserver answers 503 with the status document when the
        // service is not running; its state says more than the code.
        let why = match body.as_deref().map(parse_jruby_metrics) {
            Ok(Err(error @ StatusError::NotRunning { .. })) => format!(": {error}"),
            _ => String::new(),
        };
        return Err(format!("HTTP {status}{why}"));
    }
    parse_jruby_metrics(&body?).map_err(|error| format!("bad status document: {error}"))
}

/// The body, refused past `MAX_BODY_BYTES` without reading it all.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_large = || format!("body over the {MAX_BODY_BYTES}-byte limit");
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe_error)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error and its causes on one line, without the URL (it may carry
/// credentials). reqwest's own text ("error sending request") says little;
/// the causes say connection refused, certificate unknown, and so on.
fn describe_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `{base_url}/status/v1/services/jruby-metrics?level=debug`.
fn status_url(base_url: &str) -> anyhow::Result<reqwest::Url> {
    // The parse error, not the text: a URL may hold a password.
    let base = reqwest::Url::parse(base_url)
        .map_err(|error| anyhow::anyhow!("base_url is not a URL: {error}"))?;
    if !matches!(base.scheme(), "https" | "http") {
        bail!("base_url: scheme {:?}, expected https", base.scheme());
    }
    if base.query().is_some() || base.fragment().is_some() {
        bail!("base_url must end at the path: no query or fragment");
    }
    let mut url = base.clone();
    url.set_path(&format!(
        "{}/status/v1/services/jruby-metrics",
        base.path().trim_end_matches('/')
    ));
    url.set_query(Some("level=debug"));
    Ok(url)
}

fn redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    // Only fails for URLs without a host, which `status_url` refuses.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Counts consecutive failures so that a run of them logs twice, not once
/// per poll.
#[derive(Debug, Default)]
struct FailureRun {
    failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Healthy,
    FirstFailure,
    StillFailing { failures: u64 },
    Recovered { failures: u64 },
}

impl FailureRun {
    fn record(&mut self, ok: bool) -> Change {
        match (ok, self.failures) {
            (true, 0) => Change::Healthy,
            (true, failures) => {
                self.failures = 0;
                Change::Recovered { failures }
            }
            (false, 0) => {
                self.failures = 1;
                Change::FirstFailure
            }
            (false, _) => {
                self.failures += 1;
                Change::StillFailing {
                    failures: self.failures,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_changes_state_twice() {
        let mut run = FailureRun::default();
        let changes: Vec<Change> = [true, false, false, false, true, true, false, true]
            .into_iter()
            .map(|ok| run.record(ok))
            .collect();
        assert_eq!(
            changes,
            vec![
                Change::Healthy,
                Change::FirstFailure,
                Change::StillFailing { failures: 2 },
                Change::StillFailing { failures: 3 },
                Change::Recovered { failures: 3 },
                Change::Healthy,
                Change::FirstFailure,
                Change::Recovered { failures: 1 },
            ]
        );
    }

    #[test]
    fn status_url_from_base_url() {
        let cases = [
            (
                "https://puppet01.example.com:8140",
                "https://puppet01.example.com:8140/status/v1/services/jruby-metrics?level=debug",
            ),
            (
                "https://puppet01.example.com:8140/",
                "https://puppet01.example.com:8140/status/v1/services/jruby-metrics?level=debug",
            ),
            (
                "https://lb.example.com/puppet01/",
                "https://lb.example.com/puppet01/status/v1/services/jruby-metrics?level=debug",
            ),
            (
                "http://127.0.0.1:18140",
                "http://127.0.0.1:18140/status/v1/services/jruby-metrics?level=debug",
            ),
        ];
        for (base, expected) in cases {
            assert_eq!(status_url(base).unwrap().as_str(), expected, "{base}");
        }
    }

    #[test]
    fn bad_base_urls_are_refused_without_echoing_them() {
        let cases = [
            (
                "puppet01:8140",
                "base_url: scheme \"puppet01\", expected https",
            ),
            (
                "ftp://puppet01.example.com",
                "base_url: scheme \"ftp\", expected https",
            ),
            (
                "https://puppet01.example.com:8140/?level=info",
                "base_url must end at the path: no query or fragment",
            ),
            (
                "https://user:s3cret@[::1",
                "base_url is not a URL: invalid IPv6 address",
            ),
        ];
        for (base, expected) in cases {
            let error = status_url(base).unwrap_err().to_string();
            assert_eq!(error, expected, "{base}");
            assert!(!error.contains("s3cret"));
        }
    }

    #[test]
    fn logs_show_urls_without_credentials() {
        let url = status_url("https://monitor:s3cret@puppet01.example.com:8140").unwrap();
        assert_eq!(
            redacted(&url),
            "https://puppet01.example.com:8140/status/v1/services/jruby-metrics?level=debug"
        );
    }

    fn target(name: &str, base_url: &str) -> StatusTarget {
        StatusTarget {
            name: name.to_owned(),
            base_url: base_url.to_owned(),
        }
    }

    fn no_sink() -> Sink {
        Arc::new(|_: &str, _: PollResult| {})
    }

    fn spawn_error(targets: Vec<StatusTarget>, interval: Duration, timeout: Duration) -> String {
        match spawn(targets, None, interval, timeout, no_sink()) {
            Ok(handle) => {
                handle.abort();
                panic!("expected an error");
            }
            Err(error) => format!("{error:#}"),
        }
    }

    #[tokio::test]
    async fn spawn_checks_its_arguments() {
        let second = Duration::from_secs(1);
        let good = || target("puppet01", "https://puppet01.example.com:8140");
        assert_eq!(
            spawn_error(vec![good()], Duration::ZERO, second),
            "the status poll interval must be more than 0"
        );
        assert_eq!(
            spawn_error(vec![good()], second, Duration::ZERO),
            "the status poll timeout must be more than 0"
        );
        assert_eq!(
            spawn_error(vec![good(), good()], second, second),
            "status target \"puppet01\" is listed twice"
        );
        assert_eq!(
            spawn_error(vec![target("", "https://x")], second, second),
            "a status target has an empty name"
        );
        assert_eq!(
            spawn_error(vec![good(), target("puppet02", "puppet02")], second, second),
            "status target \"puppet02\": base_url is not a URL: relative URL without a base"
        );
        // No targets: nothing to do, the task ends.
        let handle = spawn(Vec::new(), None, second, second, no_sink()).unwrap();
        handle.await.unwrap();
    }

    #[test]
    fn spawn_needs_a_runtime() {
        let error = spawn(
            Vec::new(),
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
            no_sink(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the status poller must be started within a tokio runtime"
        );
    }
}
