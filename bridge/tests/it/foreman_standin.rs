//! A stand-in for Foreman's upload API (Foreman cannot run in CI): records
//! every request exactly as received (method, path, headers, body, time)
//! and answers as Foreman does — 201 with a JSON body — or with a status
//! chosen by the test. Optionally it creates the host in Foreman's `hosts`
//! table on the primary before answering a facts upload, as Foreman's
//! `import_host` does, so the ENC request that follows can find it.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// One request as Foreman would have received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lowercased names.
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
    pub at: Instant,
    /// What the stand-in answered.
    pub status: u16,
}

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 201, as Foreman after importing.
    Accept,
    /// This status (Foreman failing or refusing), nothing recorded as taken.
    Fail(u16),
}

struct Inner {
    requests: Mutex<Vec<Recorded>>,
    mode: Mutex<Mode>,
    /// Foreman's primary, when uploads are to create hosts in it.
    hosts_db: Mutex<Option<String>>,
}

/// Serves until the test's runtime ends.
pub struct StandIn {
    pub url: String,
    inner: Arc<Inner>,
}

impl StandIn {
    pub async fn start() -> StandIn {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Accept),
            hosts_db: Mutex::new(None),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = web::Data::from(Arc::clone(&inner));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(answer))
        })
        .workers(2)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        StandIn { url, inner }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// Facts uploads create their host in Foreman's `hosts` table at
    /// `primary_url` before the answer, as Foreman does.
    pub fn create_hosts_in(&self, primary_url: &str) {
        *self.inner.hosts_db.lock().unwrap() = Some(primary_url.to_owned());
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Requests answered 2xx so far (what Foreman took).
    pub fn taken(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 201)
            .collect()
    }

    /// Waits until `n` requests were taken; panics after `limit`.
    pub async fn wait_taken(&self, n: usize, limit: Duration) -> Vec<Recorded> {
        let start = Instant::now();
        loop {
            let taken = self.taken();
            if taken.len() >= n {
                return taken;
            }
            assert!(
                start.elapsed() < limit,
                "Foreman stand-in: {} of {n} requests taken after {limit:?}",
                taken.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(request: HttpRequest, body: web::Bytes, inner: web::Data<Inner>) -> HttpResponse {
    let at = Instant::now();
    let mode = *inner.mode.lock().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let status = match mode {
        Mode::Accept => 201,
        Mode::Fail(status) => status,
    };
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let path = request.path().to_owned();
    if status == 201 && path.ends_with("/hosts/facts") {
        let hosts_db = inner.hosts_db.lock().unwrap().clone();
        if let Some(url) = hosts_db {
            create_host(&url, &json).await;
        }
    }
    inner.requests.lock().unwrap().push(Recorded {
        method: request.method().as_str().to_owned(),
        path: path.clone(),
        headers,
        body: json.clone(),
        at,
        status,
    });
    if status != 201 {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .json(serde_json::json!({"error": {"message": "stand-in failing on purpose"}}));
    }
    // Foreman's answers: the host record (facts), the report (reports).
    let answer = if path.ends_with("/hosts/facts") {
        serde_json::json!({"id": 1, "name": json["name"], "certname": json["certname"]})
    } else {
        serde_json::json!({"id": 1, "host_name": json["config_report"]["host"],
                           "status": json["config_report"]["status"]})
    };
    HttpResponse::Created().json(answer)
}

/// `Host::Base.import_host`: find by certname, then name; else create.
async fn create_host(url: &str, payload: &serde_json::Value) {
    let name = payload["name"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let certname = payload["certname"]
        .as_str()
        .unwrap_or(&name)
        .to_ascii_lowercase();
    let client = pvc_testkit::cluster::connect(url)
        .await
        .expect("Foreman's primary");
    client
        .execute(
            "INSERT INTO hosts (name, certname, type, created_at, updated_at) \
             SELECT $1::text, $2::text, 'Host::Managed', now(), now() \
             WHERE NOT EXISTS (SELECT 1 FROM hosts WHERE certname = $2::text OR name = $1::text)",
            &[&name, &certname],
        )
        .await
        .expect("creating the host as Foreman would");
}
