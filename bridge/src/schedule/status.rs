//! What a puppetserver says about its JRuby pool, whatever the source:
//! the status API (`/status/v1/services/jruby-metrics?level=debug`), the
//! original pvc push (`POST /ppm`), or static configuration.
//!
//! Pure: bytes in, a [`ServerSample`] or a [`StatusError`] whose text names
//! the field and what was wrong with it. The HTTP side lives in
//! `crate::servers` (polling) and `crate::http` (`/ppm`).
//!
//! # What puppetserver's figures mean
//! From puppetserver's `jruby_metrics_core.clj` (`v1-status`) and
//! trapperkeeper-metrics, which builds a plain Dropwizard `MetricRegistry`,
//! so every histogram and timer keeps Dropwizard's default reservoir: an
//! exponentially decaying sample (1028 values, α = 0.015) weighted towards
//! roughly the last five minutes.
//!
//! | field | kind |
//! |---|---|
//! | `num-jrubies` | gauge: the configured pool size (`max-active-instances`) |
//! | `num-free-jrubies` | now: instances idle at the moment of the request |
//! | `requested-instances` | now: requests asking for an instance and not served yet |
//! | `borrow-count` | all-time: successful borrows since the server started |
//! | `average-free-jrubies` | **recent**: mean of the free count sampled every 5 s by a background job, so a time average over about the last five minutes |
//! | `average-requested-jrubies` | **recent**: the same for the number of waiting requests |
//! | `average-borrow-time` | **recent**, per request: mean of the borrow timer, fed when an instance is returned with how long it was held (the service time), whole milliseconds (truncated) |
//! | `average-wait-time` | **recent**, per request: mean of the wait timer, fed when a request gets its instance (or gives up) with how long it waited (the queueing delay), whole milliseconds (truncated) |
//!
//! The two timers change only when requests happen: an idle server goes on
//! reporting the figures of its last busy minutes, and a server that has
//! served nothing since it started reports 0.

use serde_json::{Map, Value};

use crate::certname::Certname;

/// Bodies larger than this are refused unread: jruby-metrics is about
/// 1.2 KB, all services about 7 KB, a `/ppm` push about 330 bytes; the
/// in-flight lists grow with the pool but not by three orders of magnitude.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// One reading of a server's JRuby pool. Counts are instantaneous; the
/// averages are the server's own (see the module doc for their windows).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerSample {
    /// Pool size (`num-jrubies`).
    pub jrubies: u32,
    /// Idle instances right now (`num-free-jrubies`), never above `jrubies`.
    pub free: u32,
    /// Requests waiting for an instance (`requested-instances`).
    pub queued: u32,
    /// Mean time a request holds an instance, ms (`average-borrow-time`).
    /// 0 means unknown: nothing served recently, or a `/ppm` push.
    pub avg_borrow_ms: f64,
    /// Mean wait to borrow, ms (`average-wait-time`); 0 also when unknown.
    pub avg_wait_ms: f64,
    /// Cumulative borrows (`borrow-count`); requests processed for `/ppm`.
    pub borrow_count: u64,
    /// The pool is locked for a flush/reload (code deploy): not an outage.
    pub pool_locked: bool,
    /// Time-averaged idle instances over about the last five minutes
    /// (`average-free-jrubies`); `None` when the source has no such figure.
    pub avg_free: Option<f64>,
}

/// Why a status document gave no sample. The text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("body is {len} bytes, over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("not a puppetserver status document: {0}")]
    NotStatus(String),
    #[error("{service} is {state:?}, not \"running\"{}", detail_suffix(.detail))]
    NotRunning {
        service: String,
        state: String,
        /// The server's own explanation when it gave one (a string `status`).
        detail: Option<String>,
    },
    #[error("jruby-metrics status has no metrics at detail level {level:?}: ask for level=debug (/status/v1/services/jruby-metrics?level=debug)")]
    NoMetrics { level: String },
    #[error("{path} is missing")]
    Missing { path: String },
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

fn detail_suffix(detail: &Option<String>) -> String {
    match detail {
        Some(text) => format!(": {}", clip(text, 200)),
        None => String::new(),
    }
}

/// A sample from puppetserver's status API: either
/// `/status/v1/services/jruby-metrics?level=debug` (one service) or
/// `/status/v1/services?level=debug` (all services, keyed by name).
pub fn parse_jruby_metrics(body: &[u8]) -> Result<ServerSample, StatusError> {
    let root = parse_body(body)?;
    let root = root.as_object().ok_or_else(|| {
        StatusError::NotStatus(format!("expected a JSON object, found {}", describe(&root)))
    })?;
    let service = if root.contains_key("state") || root.contains_key("service_status_version") {
        if let Some(name) = root.get("service_name") {
            let name = string(name, "service_name")?;
            if name != "jruby-metrics" {
                return Err(StatusError::NotStatus(format!(
                    "this is the status of {:?}, not of \"jruby-metrics\"",
                    clip(name, 40)
                )));
            }
        }
        Node::root(root)
    } else if root.contains_key("jruby-metrics") {
        Node::root(root).object("jruby-metrics")?
    } else {
        return Err(StatusError::NotStatus(
            "neither one service's status (no \"state\") nor /status/v1/services (no \"jruby-metrics\")"
                .to_owned(),
        ));
    };

    let state = string(service.get("state")?, &service.path("state"))?;
    if state != "running" {
        let detail = service
            .map
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Err(StatusError::NotRunning {
            service: "jruby-metrics".to_owned(),
            state: clip(state, 40),
            detail,
        });
    }
    let status = service.object("status")?;
    if !status.map.contains_key("experimental") {
        // puppetserver fills `experimental` only at level=debug.
        let level = match service.map.get("detail_level") {
            Some(Value::String(level)) if level == "debug" => None,
            Some(Value::String(level)) => Some(clip(level, 40)),
            _ => Some("(not given)".to_owned()),
        };
        if let Some(level) = level {
            return Err(StatusError::NoMetrics { level });
        }
    }
    let experimental = status.object("experimental")?;
    let lock = experimental.object("jruby-pool-lock-status")?;
    let lock_state = string(lock.get("current-state")?, &lock.path("current-state"))?;
    let metrics = experimental.object("metrics")?;

    let jrubies = metrics.count_u32("num-jrubies")?;
    // The pool never holds more idle instances than its size; clamp rather
    // than refuse, as a refused sample takes the server out of rotation.
    let free = metrics.count_u32("num-free-jrubies")?.min(jrubies);
    let queued = match metrics.map.get("requested-instances") {
        Some(Value::Array(waiting)) => u32::try_from(waiting.len()).unwrap_or(u32::MAX),
        Some(other) => {
            return Err(StatusError::WrongType {
                path: metrics.path("requested-instances"),
                expected: "an array",
                found: describe(other),
            })
        }
        // Older servers or trimmed documents: the recent average instead.
        None => match metrics.map.get("average-requested-jrubies") {
            Some(_) => metrics.non_negative("average-requested-jrubies")?.round() as u32,
            None => {
                return Err(StatusError::Missing {
                    path: format!(
                        "{} (and average-requested-jrubies)",
                        metrics.path("requested-instances")
                    ),
                })
            }
        },
    };
    Ok(ServerSample {
        jrubies,
        free,
        queued,
        avg_borrow_ms: metrics.non_negative("average-borrow-time")?,
        avg_wait_ms: metrics.non_negative("average-wait-time")?,
        borrow_count: metrics.count_u64("borrow-count")?,
        // ":requested" (a flush waits for borrowed instances) and
        // ":acquired" (the flush runs) both hold new borrows back.
        pool_locked: lock_state != ":not-in-use",
        avg_free: Some(metrics.non_negative("average-free-jrubies")?),
    })
}

/// The original pvc capacity push (`POST /ppm`, from `status.rb` on a
/// Passenger puppetmaster), mapped to the JRuby model.
#[derive(Debug, Clone, PartialEq)]
pub struct PpmPush {
    /// The puppetmaster that pushed (validated as a certname).
    pub fqdn: String,
    pub sample: ServerSample,
    /// 1-minute load average.
    pub system_load: Option<f64>,
    pub cpus: Option<u32>,
}

/// Parses exactly what the original `status.rb` sends: every count an
/// integer (it calls `to_i` on each), `system_load` a float, `cpus` an
/// integer, `fqdn` a string. A Passenger application process serves one
/// request at a time, like a JRuby instance, so:
/// - capacity (`jrubies`) = `application_enabled_process_count`,
/// - busy = `application_active_processes` (the sum of the processes'
///   sessions), so `free` = capacity − busy,
/// - `queued` = `application_get_wait_list_size` +
///   `global_get_wait_list_size` (requests waiting for a process of the
///   application, and for the pool to make room for one),
/// - `borrow_count` = `application_processed`.
///
/// Passenger reports no service or wait times: `avg_borrow_ms` and
/// `avg_wait_ms` are 0 (unknown) and `avg_free` is `None`. Passenger also
/// spawns processes on demand, so an idle master may enable fewer than it
/// could run; the push carries no maximum.
pub fn parse_ppm(body: &[u8]) -> Result<PpmPush, StatusError> {
    let root = parse_body(body)?;
    let root = root.as_object().ok_or_else(|| StatusError::WrongType {
        path: "the /ppm body".to_owned(),
        expected: "a JSON object",
        found: describe(&root),
    })?;
    let push = Node::root(root);

    // status.rb posts only when passenger-status answered (then it is 1).
    if push.map.contains_key("passenger_active") && push.count_u64("passenger_active")? == 0 {
        return Err(StatusError::Invalid {
            path: "passenger_active".to_owned(),
            reason: "0: Passenger is not running on that server".to_owned(),
        });
    }
    let fqdn_text = string(push.get("fqdn")?, "fqdn")?;
    // `hostname` (status.rb's fallback off Linux) ends with a newline.
    let fqdn = fqdn_text
        .trim()
        .parse::<Certname>()
        .map_err(|error| StatusError::Invalid {
            path: "fqdn".to_owned(),
            reason: format!("{:?}: {error}", clip(fqdn_text, 80)),
        })?;

    let jrubies = push.count_u32("application_enabled_process_count")?;
    let busy = push.count_u32("application_active_processes")?;
    let queued = push
        .count_u32("application_get_wait_list_size")?
        .saturating_add(push.count_u32("global_get_wait_list_size")?);
    let borrow_count = push.count_u64("application_processed")?;
    // Sent but not used: checked so a broken pusher is noticed.
    for key in [
        "global_process_count",
        "application_real_memory",
        "application_vmsize",
    ] {
        if push.map.contains_key(key) {
            push.count_u64(key)?;
        }
    }
    let system_load = match push.map.get("system_load") {
        Some(_) => Some(push.non_negative("system_load")?),
        None => None,
    };
    let cpus = match push.map.get("cpus") {
        Some(_) => Some(push.count_u32("cpus")?),
        None => None,
    };
    Ok(PpmPush {
        fqdn: fqdn.as_str().to_owned(),
        sample: ServerSample {
            jrubies,
            free: jrubies.saturating_sub(busy),
            queued,
            avg_borrow_ms: 0.0,
            avg_wait_ms: 0.0,
            borrow_count,
            pool_locked: false,
            avg_free: None,
        },
        system_load,
        cpus,
    })
}

fn parse_body(body: &[u8]) -> Result<Value, StatusError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(StatusError::TooLarge {
            len: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    serde_json::from_slice(body).map_err(|error| StatusError::NotJson(error.to_string()))
}

/// A JSON object and where it is in the document, for error messages.
struct Node<'a> {
    map: &'a Map<String, Value>,
    /// Dotted path of this object, empty at the root.
    at: String,
}

impl<'a> Node<'a> {
    fn root(map: &'a Map<String, Value>) -> Node<'a> {
        Node {
            map,
            at: String::new(),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    fn get(&self, key: &str) -> Result<&'a Value, StatusError> {
        self.map.get(key).ok_or_else(|| StatusError::Missing {
            path: self.path(key),
        })
    }

    fn object(&self, key: &str) -> Result<Node<'a>, StatusError> {
        match self.get(key)? {
            Value::Object(map) => Ok(Node {
                map,
                at: self.path(key),
            }),
            other => Err(StatusError::WrongType {
                path: self.path(key),
                expected: "an object",
                found: describe(other),
            }),
        }
    }

    /// A whole number ≥ 0 (counts, gauges).
    fn count_u64(&self, key: &str) -> Result<u64, StatusError> {
        let value = self.get(key)?;
        if let Some(count) = value.as_u64() {
            return Ok(count);
        }
        match value {
            Value::Number(number) if number.is_i64() => Err(StatusError::Invalid {
                path: self.path(key),
                reason: format!("must be 0 or more, found {number}"),
            }),
            other => Err(StatusError::WrongType {
                path: self.path(key),
                expected: "a whole number",
                found: describe(other),
            }),
        }
    }

    fn count_u32(&self, key: &str) -> Result<u32, StatusError> {
        let count = self.count_u64(key)?;
        u32::try_from(count).map_err(|_| StatusError::Invalid {
            path: self.path(key),
            reason: format!("{count} is over {}", u32::MAX),
        })
    }

    /// Any number ≥ 0 (averages, load).
    fn non_negative(&self, key: &str) -> Result<f64, StatusError> {
        match self.get(key)? {
            Value::Number(number) => {
                let value = number.as_f64().unwrap_or(f64::NAN);
                if value >= 0.0 && value.is_finite() {
                    Ok(value)
                } else {
                    Err(StatusError::Invalid {
                        path: self.path(key),
                        reason: format!("must be 0 or more, found {number}"),
                    })
                }
            }
            other => Err(StatusError::WrongType {
                path: self.path(key),
                expected: "a number",
                found: describe(other),
            }),
        }
    }
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, StatusError> {
    value.as_str().ok_or_else(|| StatusError::WrongType {
        path: path.to_owned(),
        expected: "a string",
        found: describe(value),
    })
}

/// A JSON value in a few words, for "found …" in error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("boolean {flag}"),
        Value::Number(number) => format!("number {number}"),
        Value::String(text) => format!("string {:?}", clip(text, 40)),
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// At most `max` characters of server-supplied text.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const JRUBY_METRICS: &str = include_str!("testdata/jruby-metrics-debug.json");
    const SERVICES: &str = include_str!("testdata/services-debug.json");
    const SERVICES_TRIMMED: &str = include_str!("testdata/services-debug-trimmed.json");
    const PPM: &str = include_str!("testdata/ppm-status-rb.json");

    /// Sample 1's figures (4 agents on 2 JRubies).
    fn sample1_expected() -> ServerSample {
        ServerSample {
            jrubies: 2,
            free: 0,
            queued: 2,
            avg_borrow_ms: 182.0,
            avg_wait_ms: 62.0,
            borrow_count: 59,
            pool_locked: false,
            // serde_json's float parsing may miss the literal by an ulp;
            // `assert_sample` compares this one with a tolerance.
            avg_free: Some(1.3342801437212344),
        }
    }

    fn assert_sample(actual: &ServerSample, expected: &ServerSample) {
        match (actual.avg_free, expected.avg_free) {
            (Some(a), Some(e)) => assert!((a - e).abs() < 1e-12, "avg_free {a} != {e}"),
            (a, e) => assert_eq!(a, e, "avg_free"),
        }
        let without_avg_free = |sample: &ServerSample| ServerSample {
            avg_free: None,
            ..sample.clone()
        };
        assert_eq!(without_avg_free(actual), without_avg_free(expected));
    }

    fn doc(text: &str) -> Value {
        serde_json::from_str(text).expect("test document is JSON")
    }

    /// `doc` with the value at JSON pointer `at` replaced (or removed).
    fn edit(mut doc: Value, at: &str, value: Option<Value>) -> Vec<u8> {
        let (parent, key) = at.rsplit_once('/').expect("pointer");
        let parent = doc
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{parent} is an object in the test document"));
        match value {
            Some(value) => parent.insert(key.to_owned(), value),
            None => parent.remove(key),
        };
        serde_json::to_vec(&doc).expect("serialise")
    }

    fn metrics_edit(key: &str, value: Option<Value>) -> Vec<u8> {
        edit(
            doc(JRUBY_METRICS),
            &format!("/status/experimental/metrics/{key}"),
            value,
        )
    }

    fn jruby_error(body: &[u8]) -> String {
        match parse_jruby_metrics(body) {
            Ok(sample) => panic!("expected an error, got {sample:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn ppm_error(body: &[u8]) -> String {
        match parse_ppm(body) {
            Ok(push) => panic!("expected an error, got {push:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn real_jruby_metrics_sample() {
        let sample = parse_jruby_metrics(JRUBY_METRICS.as_bytes()).unwrap();
        assert_sample(&sample, &sample1_expected());
    }

    #[test]
    fn real_all_services_document() {
        let sample = parse_jruby_metrics(SERVICES.as_bytes()).unwrap();
        assert_sample(&sample, &sample1_expected());
    }

    #[test]
    fn trimmed_all_services_document_is_refused_naming_jruby_metrics() {
        assert_eq!(
            jruby_error(SERVICES_TRIMMED.as_bytes()),
            r#"jruby-metrics: expected an object, found string "(see sample 1)""#
        );
    }

    #[test]
    fn pool_flush_is_a_lock_not_an_outage() {
        for state in [":requested", ":acquired", ":something-new"] {
            let body = edit(
                doc(JRUBY_METRICS),
                "/status/experimental/jruby-pool-lock-status/current-state",
                Some(json!(state)),
            );
            let sample = parse_jruby_metrics(&body).unwrap();
            let expected = ServerSample {
                pool_locked: true,
                ..sample1_expected()
            };
            assert_sample(&sample, &expected);
        }
        // The same in the all-services form.
        let body = edit(
            doc(SERVICES),
            "/jruby-metrics/status/experimental/jruby-pool-lock-status/current-state",
            Some(json!(":acquired")),
        );
        assert!(parse_jruby_metrics(&body).unwrap().pool_locked);
    }

    #[test]
    fn a_service_not_running_is_an_error_naming_its_state() {
        let body = edit(doc(JRUBY_METRICS), "/state", Some(json!("starting")));
        assert_eq!(
            jruby_error(&body),
            r#"jruby-metrics is "starting", not "running""#
        );
        // What trapperkeeper answers when the status callback times out.
        let mut timed_out = doc(JRUBY_METRICS);
        timed_out["state"] = json!("unknown");
        timed_out["status"] = json!("Status check timed out after 60 seconds");
        assert_eq!(
            jruby_error(&serde_json::to_vec(&timed_out).unwrap()),
            r#"jruby-metrics is "unknown", not "running": Status check timed out after 60 seconds"#
        );
        let body = edit(doc(SERVICES), "/jruby-metrics/state", Some(json!("error")));
        assert_eq!(
            jruby_error(&body),
            r#"jruby-metrics is "error", not "running""#
        );
        let body = edit(doc(JRUBY_METRICS), "/state", None);
        assert_eq!(jruby_error(&body), "state is missing");
    }

    #[test]
    fn level_info_says_to_use_level_debug() {
        // puppetserver's answer to ?level=info (and without a level).
        let info = json!({
            "service_version": "7.9.5", "service_status_version": 1,
            "detail_level": "info", "state": "running", "status": {},
            "active_alerts": [], "service_name": "jruby-metrics"
        });
        let error = parse_jruby_metrics(&serde_json::to_vec(&info).unwrap()).unwrap_err();
        assert_eq!(
            error,
            StatusError::NoMetrics {
                level: "info".to_owned()
            }
        );
        assert!(error.to_string().contains("ask for level=debug"), "{error}");
        // A debug document without its metrics is a missing field instead.
        let body = edit(doc(JRUBY_METRICS), "/status/experimental", None);
        assert_eq!(jruby_error(&body), "status.experimental is missing");
    }

    #[test]
    fn queue_length_falls_back_to_the_average() {
        let body = metrics_edit("requested-instances", None);
        // 0.32 waiting on average rounds to none.
        assert_eq!(parse_jruby_metrics(&body).unwrap().queued, 0);
        let mut no_list = doc(JRUBY_METRICS);
        let metrics = &mut no_list["status"]["experimental"]["metrics"];
        metrics
            .as_object_mut()
            .unwrap()
            .remove("requested-instances");
        metrics["average-requested-jrubies"] = json!(2.6);
        let sample = parse_jruby_metrics(&serde_json::to_vec(&no_list).unwrap()).unwrap();
        assert_eq!(sample.queued, 3);
    }

    #[test]
    fn queue_length_missing_entirely() {
        let mut neither = doc(JRUBY_METRICS);
        let metrics = neither["status"]["experimental"]["metrics"]
            .as_object_mut()
            .unwrap();
        metrics.remove("requested-instances");
        metrics.remove("average-requested-jrubies");
        assert_eq!(
            jruby_error(&serde_json::to_vec(&neither).unwrap()),
            "status.experimental.metrics.requested-instances (and average-requested-jrubies) is missing"
        );
    }

    #[test]
    fn wrong_types_are_named_with_their_path() {
        let metrics = "status.experimental.metrics";
        let cases: Vec<(&str, Option<Value>, String)> = vec![
            (
                "num-jrubies",
                Some(json!("2")),
                format!(r#"{metrics}.num-jrubies: expected a whole number, found string "2""#),
            ),
            (
                "num-jrubies",
                Some(json!(2.5)),
                format!("{metrics}.num-jrubies: expected a whole number, found number 2.5"),
            ),
            (
                "num-free-jrubies",
                Some(json!(-1)),
                format!("{metrics}.num-free-jrubies: must be 0 or more, found -1"),
            ),
            (
                "num-jrubies",
                Some(json!(5_000_000_000u64)),
                format!("{metrics}.num-jrubies: 5000000000 is over 4294967295"),
            ),
            (
                "borrow-count",
                Some(Value::Null),
                format!("{metrics}.borrow-count: expected a whole number, found null"),
            ),
            (
                "average-borrow-time",
                Some(json!("182")),
                format!(r#"{metrics}.average-borrow-time: expected a number, found string "182""#),
            ),
            (
                "average-wait-time",
                Some(json!(-3.5)),
                format!("{metrics}.average-wait-time: must be 0 or more, found -3.5"),
            ),
            (
                "requested-instances",
                Some(json!({})),
                format!("{metrics}.requested-instances: expected an array, found an object"),
            ),
            (
                "average-free-jrubies",
                None,
                format!("{metrics}.average-free-jrubies is missing"),
            ),
        ];
        for (key, value, expected) in cases {
            assert_eq!(jruby_error(&metrics_edit(key, value)), expected, "{key}");
        }
        let body = edit(
            doc(JRUBY_METRICS),
            "/status/experimental/metrics",
            Some(json!([])),
        );
        assert_eq!(
            jruby_error(&body),
            "status.experimental.metrics: expected an object, found an array of 0"
        );
        let body = edit(
            doc(JRUBY_METRICS),
            "/status/experimental/jruby-pool-lock-status/current-state",
            Some(json!(false)),
        );
        assert_eq!(
            jruby_error(&body),
            "status.experimental.jruby-pool-lock-status.current-state: expected a string, found boolean false"
        );
        // In the all-services form the path starts at the service's name.
        let body = edit(
            doc(SERVICES),
            "/jruby-metrics/status/experimental/metrics/num-jrubies",
            Some(json!("2")),
        );
        assert_eq!(
            jruby_error(&body),
            r#"jruby-metrics.status.experimental.metrics.num-jrubies: expected a whole number, found string "2""#
        );
    }

    #[test]
    fn free_count_never_exceeds_the_pool() {
        let sample =
            parse_jruby_metrics(&metrics_edit("num-free-jrubies", Some(json!(7)))).unwrap();
        assert_eq!((sample.jrubies, sample.free), (2, 2));
    }

    #[test]
    fn documents_that_are_not_jruby_metrics() {
        assert!(jruby_error(b"running").starts_with("body is not JSON: "));
        assert!(jruby_error(b"").starts_with("body is not JSON: "));
        assert_eq!(
            jruby_error(b"[1]"),
            "not a puppetserver status document: expected a JSON object, found an array of 1"
        );
        // puppetserver's 404 for an unknown service.
        assert_eq!(
            jruby_error(br#"{"kind":"service-not-found","msg":"No status information found for service jruby"}"#),
            r#"not a puppetserver status document: neither one service's status (no "state") nor /status/v1/services (no "jruby-metrics")"#
        );
        let master = edit(doc(JRUBY_METRICS), "/service_name", Some(json!("master")));
        assert_eq!(
            jruby_error(&master),
            r#"not a puppetserver status document: this is the status of "master", not of "jruby-metrics""#
        );
        let mut huge = JRUBY_METRICS.as_bytes().to_vec();
        huge.resize(MAX_BODY_BYTES + 1, b' ');
        assert_eq!(
            jruby_error(&huge),
            format!(
                "body is {} bytes, over the {MAX_BODY_BYTES}-byte limit",
                MAX_BODY_BYTES + 1
            )
        );
        // Trailing whitespace within the limit is still the real sample.
        huge.truncate(MAX_BODY_BYTES);
        assert_sample(&parse_jruby_metrics(&huge).unwrap(), &sample1_expected());
    }

    #[test]
    fn server_text_in_errors_is_clipped() {
        let long = "x".repeat(500);
        let body = edit(doc(JRUBY_METRICS), "/state", Some(json!(long)));
        let text = jruby_error(&body);
        assert!(text.len() < 120, "{text}");
        assert!(text.contains("xxxx…"), "{text}");
    }

    #[test]
    fn real_ppm_push_from_status_rb() {
        let push = parse_ppm(PPM.as_bytes()).unwrap();
        assert_eq!(
            push,
            PpmPush {
                fqdn: "puppet01.example.com".to_owned(),
                sample: ServerSample {
                    jrubies: 4,
                    // 3 of the 4 enabled processes are in a session.
                    free: 1,
                    // 3 waiting for the application + 1 in the global queue.
                    queued: 4,
                    avg_borrow_ms: 0.0,
                    avg_wait_ms: 0.0,
                    borrow_count: 5192,
                    pool_locked: false,
                    avg_free: None,
                },
                system_load: Some(1.56),
                cpus: Some(2),
            }
        );
    }

    fn ppm_edit(key: &str, value: Option<Value>) -> Vec<u8> {
        edit(doc(PPM), &format!("/{key}"), value)
    }

    #[test]
    fn ppm_counts_must_be_the_integers_status_rb_sends() {
        let cases: Vec<(&str, Option<Value>, &str)> = vec![
            (
                "application_enabled_process_count",
                Some(json!("4")),
                r#"application_enabled_process_count: expected a whole number, found string "4""#,
            ),
            (
                "application_active_processes",
                Some(json!(-1)),
                "application_active_processes: must be 0 or more, found -1",
            ),
            (
                "global_get_wait_list_size",
                None,
                "global_get_wait_list_size is missing",
            ),
            (
                "application_processed",
                Some(json!(1.5)),
                "application_processed: expected a whole number, found number 1.5",
            ),
            (
                "application_vmsize",
                Some(json!("")),
                r#"application_vmsize: expected a whole number, found string """#,
            ),
            (
                "system_load",
                Some(json!(-0.5)),
                "system_load: must be 0 or more, found -0.5",
            ),
            (
                "system_load",
                Some(json!("1.56")),
                r#"system_load: expected a number, found string "1.56""#,
            ),
            (
                "cpus",
                Some(json!(2.0)),
                "cpus: expected a whole number, found number 2.0",
            ),
            (
                "passenger_active",
                Some(json!(0)),
                "passenger_active: 0: Passenger is not running on that server",
            ),
        ];
        for (key, value, expected) in cases {
            assert_eq!(ppm_error(&ppm_edit(key, value)), expected, "{key}");
        }
    }

    #[test]
    fn ppm_fqdn_is_a_certname() {
        // `hostname` off Linux keeps its newline.
        let push = parse_ppm(&ppm_edit("fqdn", Some(json!("puppet02.example.com\n")))).unwrap();
        assert_eq!(push.fqdn, "puppet02.example.com");
        assert_eq!(
            ppm_error(&ppm_edit("fqdn", Some(json!("puppet 01")))),
            r#"fqdn: "puppet 01": certname contains ' ': only letters, digits, '-', '_' and '.' are allowed"#
        );
        assert_eq!(
            ppm_error(&ppm_edit("fqdn", Some(json!("")))),
            r#"fqdn: "": certname is empty"#
        );
        assert_eq!(ppm_error(&ppm_edit("fqdn", None)), "fqdn is missing");
        assert_eq!(
            ppm_error(&ppm_edit("fqdn", Some(json!(42)))),
            "fqdn: expected a string, found number 42"
        );
    }

    #[test]
    fn ppm_optional_fields_and_overload() {
        let mut minimal = doc(PPM);
        let fields = minimal.as_object_mut().unwrap();
        for key in [
            "passenger_active",
            "global_process_count",
            "application_real_memory",
            "application_vmsize",
            "system_load",
            "cpus",
        ] {
            fields.remove(key);
        }
        let push = parse_ppm(&serde_json::to_vec(&minimal).unwrap()).unwrap();
        assert_eq!((push.system_load, push.cpus), (None, None));
        assert_eq!(push.sample.jrubies, 4);
        // More sessions than enabled processes (a process being disabled).
        let busy = parse_ppm(&ppm_edit("application_active_processes", Some(json!(6)))).unwrap();
        assert_eq!(busy.sample.free, 0);
    }

    #[test]
    fn ppm_body_shape_and_size() {
        assert!(ppm_error(b"passenger_active=1").starts_with("body is not JSON: "));
        assert_eq!(
            ppm_error(b"\"x\""),
            r#"the /ppm body: expected a JSON object, found string "x""#
        );
        let mut huge = PPM.as_bytes().to_vec();
        huge.resize(MAX_BODY_BYTES + 1, b' ');
        assert!(ppm_error(&huge).contains("over the 1048576-byte limit"));
    }
}
