//! The compile load on puppetserver, sampled from its own status API
//! (`/status/v1/services/jruby-metrics?level=debug`) for as long as the
//! agents run: catalog compiles holding a JRuby, and those waiting for one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The route of a catalog compile in `borrowed-instances` and
/// `requested-instances` (`puppet-v3-catalog-/*/`).
const CATALOG_ROUTE: &str = "puppet-v3-catalog";

/// What the samples showed.
#[derive(Debug, Clone, Default)]
pub struct Load {
    pub samples: u64,
    pub failed_samples: u64,
    /// Pool sizes reported (`num-jrubies`), lowest and highest.
    pub jrubies_min: Option<u64>,
    pub jrubies_max: Option<u64>,
    /// Catalog compiles holding a JRuby at once, at most.
    pub max_compiles: usize,
    /// Catalog compiles holding or waiting for a JRuby at once, at most.
    pub max_compile_demand: usize,
    /// Requests of any kind holding a JRuby at once, at most.
    pub max_borrowed: usize,
    /// Samples that saw a catalog compile in flight.
    pub samples_with_compile: u64,
    /// `borrow-count` of the last sample.
    pub borrow_count: u64,
    /// `average-wait-time` (ms to get a JRuby, puppetserver's decaying
    /// mean), highest seen.
    pub max_average_wait_ms: u64,
}

/// Catalog compiles among `instances` (a `borrowed-instances` or
/// `requested-instances` array).
fn catalog_requests(instances: Option<&Value>) -> usize {
    instances
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|i| {
                    i.pointer("/reason/request/route-id")
                        .and_then(Value::as_str)
                        .is_some_and(|r| r.starts_with(CATALOG_ROUTE))
                })
                .count()
        })
        .unwrap_or(0)
}

impl Load {
    /// Folds one jruby-metrics answer in.
    pub fn add(&mut self, status: &Value) -> anyhow::Result<()> {
        let metrics = status
            .pointer("/status/experimental/metrics")
            .ok_or_else(|| anyhow::anyhow!("no status.experimental.metrics in {status}"))?;
        let jrubies = metrics
            .get("num-jrubies")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow::anyhow!("no num-jrubies in {metrics}"))?;
        let borrowed = metrics.get("borrowed-instances");
        let compiles = catalog_requests(borrowed);
        let waiting = catalog_requests(metrics.get("requested-instances"));
        self.samples += 1;
        self.jrubies_min = Some(self.jrubies_min.map_or(jrubies, |m| m.min(jrubies)));
        self.jrubies_max = Some(self.jrubies_max.map_or(jrubies, |m| m.max(jrubies)));
        self.max_compiles = self.max_compiles.max(compiles);
        self.max_compile_demand = self.max_compile_demand.max(compiles + waiting);
        self.max_borrowed = self
            .max_borrowed
            .max(borrowed.and_then(Value::as_array).map_or(0, Vec::len));
        if compiles > 0 {
            self.samples_with_compile += 1;
        }
        if let Some(count) = metrics.get("borrow-count").and_then(Value::as_u64) {
            self.borrow_count = count;
        }
        if let Some(wait) = metrics.get("average-wait-time").and_then(Value::as_u64) {
            self.max_average_wait_ms = self.max_average_wait_ms.max(wait);
        }
        Ok(())
    }
}

/// Samples every `every` until stopped.
pub struct Sampler {
    load: Arc<Mutex<Load>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Polls `url` (the jruby-metrics status) with `http`.
    pub fn start(http: reqwest::Client, url: String, every: Duration) -> Sampler {
        let load = Arc::new(Mutex::new(Load::default()));
        let sink = Arc::clone(&load);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let answer = async {
                    let response = http
                        .get(&url)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await?;
                    anyhow::Ok(response.error_for_status()?.json::<Value>().await?)
                }
                .await;
                let mut load = sink.lock().unwrap();
                match answer.and_then(|status| load.add(&status)) {
                    Ok(()) => {}
                    Err(_) => load.failed_samples += 1,
                }
            }
        });
        Sampler { load, task }
    }

    /// What was seen so far.
    pub fn load(&self) -> Load {
        self.load.lock().unwrap().clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::Load;

    #[test]
    fn catalog_compiles_are_told_from_other_borrows() {
        let sample = serde_json::json!({"status": {"experimental": {"metrics": {
            "num-jrubies": 2,
            "borrow-count": 59,
            "average-wait-time": 62,
            "borrowed-instances": [
                {"reason": {"request": {"route-id": "puppet-v3-catalog-/*/"}}},
                {"reason": {"request": {"route-id": "puppet-v3-file_content-/*/"}}}
            ],
            "requested-instances": [
                {"reason": {"request": {"route-id": "puppet-v3-catalog-/*/"}}},
                {"reason": {"request": {"route-id": "puppet-v3-report-/*/"}}}
            ]
        }}}});
        let mut load = Load::default();
        load.add(&sample).unwrap();
        assert_eq!(load.max_compiles, 1);
        assert_eq!(load.max_compile_demand, 2);
        assert_eq!(load.max_borrowed, 2);
        assert_eq!(load.jrubies_max, Some(2));
        assert_eq!(load.borrow_count, 59);
        assert_eq!(load.max_average_wait_ms, 62);
        assert!(load.add(&serde_json::json!({"status": {}})).is_err());
    }
}
