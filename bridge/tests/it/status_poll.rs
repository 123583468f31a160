//! Capacity sources against a stand-in serving real puppetserver status JSON.
//!
//! The stand-in answers like puppetserver's status API: the saved real
//! jruby-metrics document, then the same during a JRuby pool flush, then
//! 503 while the service starts, then 500s, then nothing at all (stopped).
//! A second stand-in never answers. The poller's sink must see each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvc_bridge::schedule::status::parse_jruby_metrics;
use pvc_bridge::schedule::ServerSample;
use pvc_bridge::servers::{self, PollResult, StatusTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const JRUBY_METRICS: &str = include_str!("../../src/schedule/testdata/jruby-metrics-debug.json");
const STATUS_PATH: &str = "/status/v1/services/jruby-metrics?level=debug";
/// Guards against a hang only; no assertion depends on it.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// 200 with the saved real document.
    Sample,
    /// 200 with the document as it reads during a pool flush.
    FlushLocked,
    /// 503 with the document of a service that is starting, as
    /// trapperkeeper answers for a state other than running.
    Starting,
    /// 500 with a plain-text body.
    Error500,
    /// Reads the request and never answers.
    Silence,
}

/// `text` with `from` replaced once; the replacement must happen.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the saved sample contains {from}");
    text.replacen(from, to, 1)
}

fn response(answer: Answer) -> Option<String> {
    let (status, content_type, body) = match answer {
        Answer::Sample => ("200 OK", "application/json", JRUBY_METRICS.to_owned()),
        Answer::FlushLocked => (
            "200 OK",
            "application/json",
            replaced(JRUBY_METRICS, "\":not-in-use\"", "\":acquired\""),
        ),
        Answer::Starting => (
            "503 Service Unavailable",
            "application/json",
            replaced(
                JRUBY_METRICS,
                "\"state\": \"running\"",
                "\"state\": \"starting\"",
            ),
        ),
        Answer::Error500 => (
            "500 Internal Server Error",
            "text/plain",
            "Internal Server Error".to_owned(),
        ),
        Answer::Silence => return None,
    };
    Some(format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// A one-route HTTP/1.1 server on 127.0.0.1.
struct StandIn {
    base_url: String,
    answer: Arc<Mutex<Answer>>,
    paths: Arc<Mutex<Vec<String>>>,
    accept: Option<JoinHandle<()>>,
}

impl StandIn {
    async fn start(answer: Answer) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let answer = Arc::new(Mutex::new(answer));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (answer, paths) = (Arc::clone(&answer), Arc::clone(&paths));
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let current = *answer.lock().unwrap();
                    tokio::spawn(serve(stream, current, Arc::clone(&paths)));
                }
            }
        });
        StandIn {
            base_url,
            answer,
            paths,
            accept: Some(accept),
        }
    }

    fn target(&self, name: &str) -> StatusTarget {
        StatusTarget {
            name: name.to_owned(),
            base_url: self.base_url.clone(),
        }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Closes the listening socket: new connections are refused.
    async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            // The listener is dropped once the aborted task has ended.
            let _ = accept.await;
        }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, answer: Answer, paths: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    // "GET /status/v1/... HTTP/1.1"
    if let Some(target) = head.split_whitespace().nth(1) {
        paths.lock().unwrap().push(target.to_owned());
    }
    match response(answer) {
        Some(text) => {
            let _ = stream.write_all(text.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        // Hold the connection open without a word.
        None => std::future::pending::<()>().await,
    }
}

/// The next result the sink got for `server`.
async fn next_for(
    results: &mut mpsc::UnboundedReceiver<(String, PollResult)>,
    server: &str,
) -> PollResult {
    loop {
        let (name, result) = tokio::time::timeout(PATIENCE, results.recv())
            .await
            .unwrap_or_else(|_| panic!("no poll result for {server} in {PATIENCE:?}"))
            .expect("the poller holds the sink");
        if name == server {
            return result;
        }
    }
}

/// What the status parser makes of the saved real document (its figures
/// are checked against the document in `schedule::status`'s own tests).
fn parsed_sample() -> ServerSample {
    parse_jruby_metrics(JRUBY_METRICS.as_bytes()).expect("the saved sample parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_reports_samples_a_pool_flush_and_failures() {
    let mut puppet01 = StandIn::start(Answer::Sample).await;
    let silent = StandIn::start(Answer::Silence).await;
    let (sender, mut results) = mpsc::unbounded_channel();
    let sink = Arc::new(move |name: &str, result: PollResult| {
        let _ = sender.send((name.to_owned(), result));
    });
    let poller = servers::spawn(
        vec![puppet01.target("puppet01"), silent.target("silent")],
        None,
        Duration::from_millis(20),
        Duration::from_millis(500),
        sink,
    )
    .expect("spawn");

    // The real document.
    let expected = parsed_sample();
    assert!(!expected.pool_locked);
    match next_for(&mut results, "puppet01").await {
        PollResult::Ok(sample) => assert_eq!(sample, expected),
        PollResult::Failed(reason) => panic!("first poll failed: {reason}"),
    }

    // A pool flush: a sample, locked, not a failure.
    puppet01.answer(Answer::FlushLocked);
    loop {
        match next_for(&mut results, "puppet01").await {
            PollResult::Ok(sample) if !sample.pool_locked => continue,
            PollResult::Ok(sample) => {
                let locked = ServerSample {
                    pool_locked: true,
                    ..expected.clone()
                };
                assert_eq!(sample, locked);
                break;
            }
            PollResult::Failed(reason) => panic!("a pool flush is no failure: {reason}"),
        }
    }

    // The service is starting: 503, and the reason says why.
    puppet01.answer(Answer::Starting);
    loop {
        match next_for(&mut results, "puppet01").await {
            PollResult::Ok(_) => continue,
            PollResult::Failed(reason) => {
                assert_eq!(
                    reason,
                    r#"HTTP 503 Service Unavailable: jruby-metrics is "starting", not "running""#
                );
                break;
            }
        }
    }

    puppet01.answer(Answer::Error500);
    loop {
        match next_for(&mut results, "puppet01").await {
            PollResult::Failed(reason) if reason.starts_with("HTTP 503") => continue,
            PollResult::Failed(reason) => {
                assert_eq!(reason, "HTTP 500 Internal Server Error");
                break;
            }
            PollResult::Ok(sample) => panic!("a sample after the 503s: {sample:?}"),
        }
    }

    // Stopped: the connection is refused.
    puppet01.stop().await;
    loop {
        match next_for(&mut results, "puppet01").await {
            PollResult::Failed(reason) if reason.starts_with("HTTP 500") => continue,
            PollResult::Failed(reason) => {
                assert!(reason.contains("connect"), "{reason}");
                assert!(
                    !reason.contains("http://"),
                    "no URL in the reason: {reason}"
                );
                break;
            }
            PollResult::Ok(sample) => panic!("a sample from a stopped server: {sample:?}"),
        }
    }

    // The server that never answers times out, every time.
    for _ in 0..2 {
        assert_eq!(
            next_for(&mut results, "silent").await,
            PollResult::Failed("no answer within 500ms".to_owned())
        );
    }

    poller.abort();
    let paths = puppet01.paths();
    assert!(!paths.is_empty());
    assert!(paths.iter().all(|path| path == STATUS_PATH), "{paths:?}");
    assert!(silent.paths().iter().all(|path| path == STATUS_PATH));
}
