//! Stale-if-error: each name's last good document, served (marked stale)
//! when no database answers, for at most `cache.ttl_secs +
//! cache.stale_grace_secs` after it was loaded.
//!
//! Design: a second moka cache beside `docs`, the *keeper*, filled by every
//! successful load and never read while a load succeeds. Its entries live
//! `ttl + grace` from their load (moka's `time_to_live`), under the same
//! byte budget and weigher as `docs`. The bodies are the same `Bytes` as in
//! `docs` (a reference count), so the keeper costs memory only for the
//! documents that have already left `docs`.
//!
//! A load that fails because no database answers falls back to the kept
//! document inside the single-flight load of `docs`; that stale answer is
//! then cached in `docs` for a short while ([`retry_after`]), so a herd of
//! requests over a dead database costs one load attempt per host and
//! period, not one per request, and a database that comes back is used
//! within that period.
//!
//! What is never served stale: a "no such host" (a new host must not stay
//! hidden behind it; a name found missing also drops its kept document, so
//! a deleted host does not come back during an outage); failures that are
//! not "no database answers": a query the database refuses, data it cannot
//! decode, and Foreman's failures for hosts the bridge cannot compute
//! (Foreman documents are already served stale-while-revalidate within
//! their TTL; Foreman being down is not a database outage).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;

use super::{Doc, EncError};
use crate::store::foreman::ReadError;
use crate::store::StoreError;

/// Longest a stale answer stays in `docs` before the database is asked
/// again for that host.
pub const STALE_RETRY: Duration = Duration::from_secs(5);

/// One WARN per host per this period while its document is served stale.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Kept {
    doc: Doc,
    loaded: Instant,
}

/// The last good documents, for outages.
pub struct Keeper {
    kept: Cache<String, Kept>,
    /// Names warned about within `WARN_EVERY`.
    warned: Cache<String, ()>,
    /// `ttl + grace`: the oldest document ever served.
    limit: Duration,
}

impl Keeper {
    /// `None` when `grace` is zero: stale answers are off.
    pub fn new(ttl: Duration, grace: Duration, max_bytes: u64) -> Option<Keeper> {
        if grace.is_zero() {
            return None;
        }
        let limit = ttl.saturating_add(grace);
        Some(Keeper {
            kept: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, kept: &Kept| kept.doc.weight(key))
                .time_to_live(limit)
                .build(),
            warned: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(WARN_EVERY)
                .build(),
            limit,
        })
    }

    /// The oldest document served stale (`cache.ttl_secs +
    /// cache.stale_grace_secs`).
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Records the outcome of a successful load of `name`.
    pub async fn keep(&self, name: &str, doc: &Doc) {
        self.keep_loaded_at(name, doc, Instant::now()).await;
    }

    async fn keep_loaded_at(&self, name: &str, doc: &Doc, loaded: Instant) {
        match doc {
            Doc::Computed(_) | Doc::Foreman { .. } => {
                let kept = Kept {
                    doc: doc.clone(),
                    loaded,
                };
                self.kept.insert(name.to_owned(), kept).await;
            }
            Doc::NotFound => self.kept.invalidate(name).await,
            // A stale answer is not a load: the kept one stays as it is.
            Doc::Stale { .. } => {}
        }
    }

    /// `name`'s last good document as a [`Doc::Stale`], if one was loaded
    /// within the limit.
    pub async fn stale(&self, name: &str) -> Option<Doc> {
        let kept = self.kept.get(name).await?;
        (kept.loaded.elapsed() <= self.limit).then(|| Doc::Stale {
            doc: Arc::new(kept.doc),
            loaded: kept.loaded,
        })
    }

    /// True the first time in `WARN_EVERY` this is asked for `name`.
    pub async fn first_warning(&self, name: &str) -> bool {
        self.warned
            .entry(name.to_owned())
            .or_insert(())
            .await
            .is_fresh()
    }

    /// Runs pending cache maintenance (for tests and measurements).
    pub async fn sync(&self) {
        self.kept.run_pending_tasks().await;
    }
}

/// How long a stale answer loaded at `loaded` may stay in `docs` from
/// `now`: [`STALE_RETRY`], cut short so it is never served past `limit`.
pub fn retry_after(loaded: Instant, limit: Duration, now: Instant) -> Duration {
    let age = now.saturating_duration_since(loaded);
    STALE_RETRY.min(limit.saturating_sub(age))
}

/// Whether `error` means that no database answered (a stale document may
/// be served) rather than that one answered with a failure.
pub fn no_database_answers(error: &EncError) -> bool {
    match error {
        EncError::Store(StoreError::Unavailable(_)) => true,
        EncError::Store(StoreError::BadUrl { .. }) => false,
        EncError::Read(ReadError::Db(error)) => connection_lost(error),
        EncError::Read(ReadError::BadData { .. }) => false,
        EncError::NeedsForeman(_) | EncError::Foreman { .. } => false,
        EncError::Shared(inner) => no_database_answers(inner),
        EncError::Superseded(_) => false,
    }
}

/// A statement failed because its connection went away (not a failed
/// checkout: `Db` has already tried every server for that).
pub(super) fn lost_mid_load(error: &EncError) -> bool {
    match error {
        EncError::Read(ReadError::Db(error)) => connection_lost(error),
        EncError::Shared(inner) => lost_mid_load(inner),
        _ => false,
    }
}

/// A query that failed because the connection went away (closed, I/O
/// error, server shutting down or not accepting connections) rather than
/// because the server refused the query.
pub(super) fn connection_lost(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        // Class 08: connection exception; class 57: operator intervention
        // (admin_shutdown, crash_shutdown, cannot_connect_now, ...).
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57")
        }
        // Not the server's answer: the socket failed underneath.
        None => std::error::Error::source(error)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enc::Unsupported;
    use crate::foreman::ForemanError;
    use actix_web::web::Bytes;

    fn keeper(ttl: u64, grace: u64) -> Keeper {
        Keeper::new(
            Duration::from_secs(ttl),
            Duration::from_secs(grace),
            1024 * 1024,
        )
        .expect("a grace period")
    }

    fn computed(body: &'static str) -> Doc {
        Doc::Computed(Bytes::from_static(body.as_bytes()))
    }

    #[tokio::test]
    async fn a_kept_document_is_served_stale_with_its_age() {
        let keeper = keeper(1, 600);
        let loaded = Instant::now() - Duration::from_secs(30);
        keeper
            .keep_loaded_at("a.example.com", &computed("classes: {}\n"), loaded)
            .await;
        let doc = keeper.stale("a.example.com").await.expect("kept");
        assert_eq!(doc.body().map(|b| &b[..]), Some(&b"classes: {}\n"[..]));
        assert!(doc.stale_age().expect("stale") >= Duration::from_secs(30));
        assert_eq!(doc.source(), "bridge");
        assert!(keeper.stale("b.example.com").await.is_none());
    }

    #[tokio::test]
    async fn nothing_is_served_past_ttl_and_grace() {
        let keeper = keeper(1, 60);
        let loaded = Instant::now() - Duration::from_secs(62);
        keeper
            .keep_loaded_at("a.example.com", &computed("x\n"), loaded)
            .await;
        assert!(keeper.stale("a.example.com").await.is_none());
    }

    #[tokio::test]
    async fn a_missing_host_drops_its_kept_document_and_is_never_kept() {
        let keeper = keeper(1, 600);
        keeper.keep("a.example.com", &computed("x\n")).await;
        keeper.keep("a.example.com", &Doc::NotFound).await;
        assert!(keeper.stale("a.example.com").await.is_none());
        keeper.keep("b.example.com", &Doc::NotFound).await;
        assert!(keeper.stale("b.example.com").await.is_none());
    }

    #[tokio::test]
    async fn a_stale_answer_does_not_renew_the_kept_document() {
        let keeper = keeper(1, 600);
        let loaded = Instant::now() - Duration::from_secs(100);
        keeper
            .keep_loaded_at("a.example.com", &computed("x\n"), loaded)
            .await;
        let stale = keeper.stale("a.example.com").await.expect("kept");
        keeper.keep("a.example.com", &stale).await;
        let again = keeper.stale("a.example.com").await.expect("kept");
        assert!(again.stale_age().expect("stale") >= Duration::from_secs(100));
    }

    #[tokio::test]
    async fn one_warning_per_host_per_period() {
        let keeper = keeper(1, 600);
        assert!(keeper.first_warning("a.example.com").await);
        assert!(!keeper.first_warning("a.example.com").await);
        assert!(keeper.first_warning("b.example.com").await);
    }

    #[test]
    fn no_grace_no_keeper() {
        assert!(Keeper::new(Duration::from_secs(300), Duration::ZERO, 1 << 20).is_none());
        assert_eq!(
            keeper(300, 3600).limit(),
            Duration::from_secs(3900),
            "ttl + grace"
        );
    }

    #[test]
    fn stale_answers_are_retried_soon_and_never_outlive_the_limit() {
        let now = Instant::now();
        let limit = Duration::from_secs(600);
        assert_eq!(retry_after(now, limit, now), STALE_RETRY);
        let old = now - Duration::from_secs(598);
        assert_eq!(retry_after(old, limit, now), Duration::from_secs(2));
        let older = now - Duration::from_secs(700);
        assert_eq!(retry_after(older, limit, now), Duration::ZERO);
    }

    #[test]
    fn only_an_unreachable_database_allows_a_stale_answer() {
        let down = || EncError::Store(StoreError::Unavailable("primary: refused".into()));
        assert!(no_database_answers(&down()));
        assert!(no_database_answers(&EncError::Shared(Arc::new(down()))));
        let refused = [
            EncError::Store(StoreError::BadUrl {
                url: "x".into(),
                reason: "y".into(),
            }),
            EncError::Read(ReadError::BadData {
                what: "nics.type".into(),
                reason: "unknown".into(),
            }),
            EncError::NeedsForeman(Unsupported::new("expression")),
            EncError::Foreman {
                reason: Unsupported::new("expression"),
                error: ForemanError::Http("connection refused".into()),
            },
        ];
        for error in refused {
            assert!(!no_database_answers(&error), "{error}");
            assert!(!no_database_answers(&EncError::Shared(Arc::new(error))));
        }
    }
}
