//! Foreman's own API, for the hosts the bridge cannot compute itself.
//!
//! `GET /api/v2/hosts/<name>/enc` answers `{"data": <host.info>}`: the same
//! hash `/node` dumps as YAML. Calls are bounded by a semaphore so a burst of
//! such hosts cannot flood Foreman.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::{ForemanConfig, Secret};
use crate::enc::{self, Value};

/// A failed call to Foreman.
#[derive(Debug, thiserror::Error)]
pub enum ForemanError {
    #[error("Foreman request failed: {0}")]
    Http(String),
    #[error("Foreman answered {status} for {what}")]
    Status { status: u16, what: String },
    #[error("Foreman answered an unexpected document: {0}")]
    Format(String),
    #[error("the Foreman account {login} is not an administrator: Foreman hides parameters it may not view, so its ENC answers would be incomplete")]
    NotAdmin { login: String },
}

#[derive(Debug, Default)]
pub struct ForemanStats {
    pub enc_requests: AtomicU64,
    pub enc_failures: AtomicU64,
}

pub struct ForemanClient {
    http: reqwest::Client,
    base: String,
    username: Option<String>,
    password: Option<Secret>,
    permits: Semaphore,
    pub stats: ForemanStats,
}

/// What Foreman said about one host.
pub enum EncAnswer {
    Found(String),
    NotFound,
}

impl ForemanClient {
    pub fn new(config: &ForemanConfig, url: &str) -> Result<Self, ForemanError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .connect_timeout(Duration::from_secs(config.timeout_secs.min(10)))
            .user_agent(concat!("pvc-bridge/", env!("CARGO_PKG_VERSION")));
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| ForemanError::Http(format!("reading {}: {e}", path.display())))
        };
        if let (Some(cert), Some(key)) = (&config.ssl_cert, &config.ssl_key) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| ForemanError::Http(format!("foreman.ssl_cert/ssl_key: {e}")))?;
            builder = builder.identity(identity);
        }
        if let Some(ca) = &config.ssl_ca {
            for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)
                .map_err(|e| ForemanError::Http(format!("foreman.ssl_ca: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ForemanError::Http(e.to_string()))?;
        Ok(ForemanClient {
            http,
            base: url.trim_end_matches('/').to_owned(),
            username: config.username.clone(),
            password: config.password.clone(),
            permits: Semaphore::new(config.max_concurrency.max(1)),
            stats: ForemanStats::default(),
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Accept", "application/json,version=2");
        match &self.username {
            Some(user) => request.basic_auth(user, self.password.as_ref().map(Secret::expose)),
            None => request,
        }
    }

    /// `POST <url><path>` with a JSON body, as Foreman's ENC script and
    /// report processor send it (`Accept: application/json,version=2`,
    /// `Content-Type: application/json`); what the answer means for the
    /// item. Not bounded by the ENC semaphore: the forwarder bounds itself.
    pub async fn post_json(&self, path: &str, body: Vec<u8>) -> crate::forward::Attempt {
        use crate::forward::Attempt;
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Accept", "application/json,version=2")
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(user) = &self.username {
            request = request.basic_auth(user, self.password.as_ref().map(Secret::expose));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Retry {
                    status: None,
                    error: format!("Foreman unreachable: {}", error.without_url()),
                }
            }
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Attempt::from_status(status, &body)
    }

    /// The host's ENC as Foreman computes it, dumped as `/node` would.
    pub async fn fetch_enc(&self, name: &str) -> Result<EncAnswer, ForemanError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ForemanError::Http(e.to_string()))?;
        self.stats.enc_requests.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_enc_inner(name).await;
        if result.is_err() {
            self.stats.enc_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn fetch_enc_inner(&self, name: &str) -> Result<EncAnswer, ForemanError> {
        let response = self
            .get(&format!("/api/v2/hosts/{name}/enc"))
            .send()
            .await
            .map_err(|e| ForemanError::Http(e.without_url().to_string()))?;
        let status = response.status();
        if status.as_u16() == 404 {
            return Ok(EncAnswer::NotFound);
        }
        if !status.is_success() {
            return Err(ForemanError::Status {
                status: status.as_u16(),
                what: format!("the ENC of {name}"),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ForemanError::Http(e.without_url().to_string()))?;
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ForemanError::Format(e.to_string()))?;
        let Some(data) = json.get("data").cloned() else {
            return Err(ForemanError::Format("no \"data\" key".into()));
        };
        match enc::cast::from_json(data) {
            Value::Map(info) => Ok(EncAnswer::Found(enc::to_yaml(info))),
            _ => Err(ForemanError::Format("\"data\" is not an object".into())),
        }
    }

    /// Start-up check: the account must be an administrator, or Foreman
    /// silently leaves out parameters it may not view.
    pub async fn check_account(&self) -> Result<(), ForemanError> {
        let response = self
            .get("/api/v2/current_user")
            .send()
            .await
            .map_err(|e| ForemanError::Http(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ForemanError::Status {
                status: status.as_u16(),
                what: "the current user".into(),
            });
        }
        let user: serde_json::Value = response
            .json()
            .await
            .map_err(|e| ForemanError::Format(e.to_string()))?;
        if user.get("admin").and_then(serde_json::Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(ForemanError::NotAdmin {
                login: user
                    .get("login")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("?")
                    .to_owned(),
            })
        }
    }
}
