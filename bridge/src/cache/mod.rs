//! The ENC service: moka caches in front of the replica reads.
//!
//! - `docs`: the rendered document per requested name, with single-flight on
//!   a miss (`try_get_with`: however many puppetservers ask for a cold host at
//!   once, one load runs), a byte budget and a TTL as a backstop.
//! - `layers`: what many hosts share (settings and global parameters,
//!   hostgroup and taxonomy chains, domains, subnets, operating systems,
//!   owners, smart proxies, puppet environments), so a cold host only costs
//!   the queries for its own rows.
//!
//! Layers are refreshed ahead of their expiry in the background (`layers`).
//!
//! A host the bridge cannot compute (see `enc::erb`) is fetched from
//! Foreman's API and served stale-while-revalidate; without a Foreman URL it
//! is answered 503 with the reason.
//!
//! When no database answers, a host's last good document is served marked
//! stale for up to `cache.stale_grace_secs` past its TTL (`stale`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use moka::future::Cache;
use moka::Expiry;

use crate::config::CacheConfig;
use crate::enc::build::Prepared;
use crate::enc::model::{HostInput, PuppetHostFacet};
use crate::enc::{self, Unsupported};
use crate::foreman::{EncAnswer, ForemanClient, ForemanError};

mod layers;
mod stale;
use crate::store::foreman::{self as rows, ReadError, SettingsOverrides};
use crate::store::{Db, StoreError};
use layers::Layers;
use stale::Keeper;

/// A cached answer for one name.
#[derive(Clone, Debug)]
pub enum Doc {
    /// Computed by the bridge. `Bytes`: a hit clones a reference count, the
    /// body is never copied on the hot path.
    Computed(Bytes),
    /// Fetched from Foreman's API.
    Foreman {
        body: Bytes,
        fetched: Instant,
        refreshing: Arc<AtomicBool>,
    },
    NotFound,
    /// The last good document (`Computed` or `Foreman`), loaded at
    /// `loaded`, served because no database answers (see `stale`).
    Stale {
        doc: Arc<Doc>,
        loaded: Instant,
    },
}

impl Doc {
    /// The YAML body, `None` for an unknown host.
    pub fn body(&self) -> Option<&Bytes> {
        match self {
            Doc::Computed(body) | Doc::Foreman { body, .. } => Some(body),
            Doc::NotFound => None,
            Doc::Stale { doc, .. } => doc.body(),
        }
    }

    /// Who rendered the body: `"foreman"` (its API) or `"bridge"`.
    pub fn source(&self) -> &'static str {
        match self {
            Doc::Foreman { .. } => "foreman",
            Doc::Computed(_) | Doc::NotFound => "bridge",
            Doc::Stale { doc, .. } => doc.source(),
        }
    }

    /// For a stale answer, how long ago its document was loaded.
    pub fn stale_age(&self) -> Option<Duration> {
        match self {
            Doc::Stale { loaded, .. } => Some(loaded.elapsed()),
            _ => None,
        }
    }

    fn weight(&self, key: &str) -> u32 {
        // Entry overhead (moka node, Arc, key) is about 100 bytes.
        let body = self.body().map_or(0, |b| b.len());
        u32::try_from(body + key.len() + 100).unwrap_or(u32::MAX)
    }
}

/// Why no document could be produced.
#[derive(Debug, thiserror::Error)]
pub enum EncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading Foreman's tables: {0}")]
    Read(#[from] ReadError),
    #[error("this host needs Foreman to render its ENC ({0}) and no foreman.url is configured")]
    NeedsForeman(Unsupported),
    #[error("this host needs Foreman to render its ENC ({reason}): {error}")]
    Foreman {
        reason: Unsupported,
        error: ForemanError,
    },
    #[error(transparent)]
    Shared(Arc<EncError>),
}

/// Counters for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct EncStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Host loads from the database (one per cold name, thanks to
    /// single-flight).
    pub loads: AtomicU64,
    pub foreman_fallbacks: AtomicU64,
    /// Answers served stale because no database answered.
    pub stale_served: AtomicU64,
    /// Unsupported constructs seen, by label.
    pub unsupported: Mutex<HashMap<&'static str, u64>>,
}

struct DocExpiry {
    ttl: Duration,
    not_found_ttl: Duration,
    /// `ttl + stale grace`: no stale answer is served past it.
    stale_limit: Duration,
}

impl Expiry<String, Doc> for DocExpiry {
    fn expire_after_create(&self, _key: &String, value: &Doc, now: Instant) -> Option<Duration> {
        Some(match value {
            Doc::NotFound => self.not_found_ttl,
            Doc::Stale { loaded, .. } => stale::retry_after(*loaded, self.stale_limit, now),
            Doc::Computed(_) | Doc::Foreman { .. } => self.ttl,
        })
    }
}

pub struct EncService {
    db: Arc<Db>,
    foreman: Option<Arc<ForemanClient>>,
    docs: Cache<String, Doc>,
    /// Names whose data changed by a write this bridge made (Foreman's
    /// import of their facts), with the primary's WAL position after it:
    /// their next loads read a replica that has replayed it, or the primary.
    fences: Cache<String, Arc<str>>,
    layers: Arc<Layers>,
    /// Last good documents for outages; `None` with no grace period.
    keeper: Option<Keeper>,
    foreman_refresh: Duration,
    pub stats: EncStats,
}

impl EncService {
    pub fn new(
        db: Arc<Db>,
        foreman: Option<Arc<ForemanClient>>,
        overrides: SettingsOverrides,
        config: &CacheConfig,
    ) -> Arc<Self> {
        let ttl = Duration::from_secs(config.ttl_secs);
        let keeper = Keeper::new(
            ttl,
            Duration::from_secs(config.stale_grace_secs),
            config.max_bytes,
        );
        let docs = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &String, doc: &Doc| doc.weight(key))
            .expire_after(DocExpiry {
                ttl,
                not_found_ttl: Duration::from_secs(config.not_found_ttl_secs),
                stale_limit: keeper.as_ref().map_or(ttl, Keeper::limit),
            })
            .build();
        let layers = Layers::new(
            Arc::clone(&db),
            overrides,
            Duration::from_secs(config.layer_ttl_secs),
        );
        Arc::new(EncService {
            db,
            foreman,
            docs,
            // Long enough for any replica that is in use at all to replay.
            fences: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            layers,
            keeper,
            foreman_refresh: Duration::from_secs(config.foreman_refresh_secs),
            stats: EncStats::default(),
        })
    }

    /// The document for `name` (a certname or host name), from the cache or
    /// loaded once however many callers ask at the same time.
    /// A [`Doc::Stale`] answer means no database answered; see `stale`.
    pub async fn document(self: &Arc<Self>, name: &str) -> Result<Doc, Arc<EncError>> {
        let doc = match self.docs.get(name).await {
            Some(doc) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                self.maybe_refresh(name, &doc);
                doc
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                let this = Arc::clone(self);
                let owned = name.to_owned();
                self.docs
                    // Boxed: the load future is large, and actix workers run
                    // on threads with small stacks.
                    .try_get_with(
                        name.to_owned(),
                        Box::pin(async move { this.load_or_stale(&owned).await }),
                    )
                    .await?
            }
        };
        if matches!(doc, Doc::Stale { .. }) {
            self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
        }
        Ok(doc)
    }

    /// The oldest document served stale when no database answers
    /// (`cache.ttl_secs + cache.stale_grace_secs`); `None` when stale
    /// answers are off.
    pub fn stale_limit(&self) -> Option<Duration> {
        self.keeper.as_ref().map(Keeper::limit)
    }

    /// Drops the cached document of one name. The host's config groups live
    /// in a shared layer (Foreman cannot look them up per host cheaply), so
    /// that layer is reloaded first.
    pub async fn invalidate(&self, name: &str) -> Result<(), EncError> {
        self.layers.reload_config_groups().await?;
        self.docs.invalidate(name).await;
        Ok(())
    }

    /// `names` changed on the primary up to WAL position `lsn`: their cached
    /// documents are dropped and their next loads read data at least that
    /// new (read-your-writes for the ENC request that follows a facts
    /// upload).
    pub async fn fence(&self, names: &[&str], lsn: &str) {
        let lsn: Arc<str> = Arc::from(lsn);
        for name in names {
            self.fences
                .insert((*name).to_owned(), Arc::clone(&lsn))
                .await;
            self.docs.invalidate(*name).await;
        }
    }

    /// Drops every cached document and layer, then loads the global layers
    /// again so the next requests do not all wait for them.
    pub async fn invalidate_all(&self) -> Result<(), EncError> {
        self.docs.invalidate_all();
        self.layers.reset().await
    }

    /// Drops every cached document but keeps the shared layers: each host's
    /// next request recomputes it from the replica without reloading them.
    pub fn invalidate_documents(&self) {
        self.docs.invalidate_all();
    }

    /// Loads the layers every host needs (at start).
    pub async fn prewarm(&self) -> Result<(), EncError> {
        self.layers.prewarm().await
    }

    /// Shared layers loaded from the database so far.
    pub fn layer_loads(&self) -> u64 {
        self.layers.loads.load(Ordering::Relaxed)
    }

    /// Number of cached documents and their weight in bytes.
    pub fn cache_size(&self) -> (u64, u64) {
        (self.docs.entry_count(), self.docs.weighted_size())
    }

    /// Runs pending cache maintenance (evictions, counts); for tests and
    /// measurements.
    pub async fn sync(&self) {
        self.docs.run_pending_tasks().await;
        self.layers.sync().await;
        if let Some(keeper) = &self.keeper {
            keeper.sync().await;
        }
    }

    fn maybe_refresh(self: &Arc<Self>, name: &str, doc: &Doc) {
        let Doc::Foreman {
            fetched,
            refreshing,
            ..
        } = doc
        else {
            return;
        };
        if fetched.elapsed() < self.foreman_refresh || refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        let name = name.to_owned();
        let refreshing = Arc::clone(refreshing);
        tokio::spawn(async move {
            match Box::pin(this.load(&name)).await {
                Ok(doc) => {
                    if let Some(keeper) = &this.keeper {
                        keeper.keep(&name, &doc).await;
                    }
                    this.docs.insert(name, doc).await
                }
                Err(error) => {
                    // Keep serving the old document; try again on a later hit.
                    tracing::warn!(host.certname = %name, %error, "refreshing a Foreman ENC failed");
                    refreshing.store(false, Ordering::Release);
                }
            }
        });
    }

    /// Loads `name`; when no database answers, its last good document
    /// instead (within the grace period), marked stale.
    async fn load_or_stale(&self, name: &str) -> Result<Doc, EncError> {
        let loaded = match self.load(name).await {
            // The connection went away mid-load (a replica stopping ends
            // its sessions one by one, so another pooled connection to it
            // may be about to go too): once more, on the primary. A failed
            // checkout (`StoreError`) is not retried: `Db` has already
            // tried every server for that.
            Err(error) if stale::lost_mid_load(&error) => {
                tracing::info!(host.certname = %name, %error, "connection lost while loading an ENC, loading it again from the primary");
                self.load_from(name, true).await
            }
            other => other,
        };
        let error = match loaded {
            Ok(doc) => {
                if let Some(keeper) = &self.keeper {
                    keeper.keep(name, &doc).await;
                }
                return Ok(doc);
            }
            Err(error) => error,
        };
        let Some(keeper) = &self.keeper else {
            return Err(error);
        };
        if !stale::no_database_answers(&error) {
            return Err(error);
        }
        let Some(doc) = keeper.stale(name).await else {
            return Err(error);
        };
        if keeper.first_warning(name).await {
            let age_secs = doc.stale_age().unwrap_or_default().as_secs();
            tracing::warn!(host.certname = %name, age_secs, %error,
                "no database answers: serving the last good ENC, marked stale");
        }
        Ok(doc)
    }

    async fn load(&self, name: &str) -> Result<Doc, EncError> {
        self.load_from(name, false).await
    }

    async fn load_from(&self, name: &str, primary: bool) -> Result<Doc, EncError> {
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        match self.compute(name, primary).await? {
            Computed::Doc(doc) => Ok(doc),
            Computed::Unsupported(host_name, reason) => {
                {
                    let mut seen = self.stats.unsupported.lock().expect("stats lock");
                    *seen.entry(reason.construct).or_default() += 1;
                }
                let Some(foreman) = &self.foreman else {
                    tracing::warn!(host.certname = %name, reason = %reason, "ENC needs Foreman, none configured");
                    return Err(EncError::NeedsForeman(reason));
                };
                tracing::info!(host.certname = %name, reason = %reason, "fetching ENC from Foreman");
                self.stats.foreman_fallbacks.fetch_add(1, Ordering::Relaxed);
                match foreman.fetch_enc(&host_name).await {
                    Ok(EncAnswer::Found(body)) => Ok(Doc::Foreman {
                        body: stored(body),
                        fetched: Instant::now(),
                        refreshing: Arc::new(AtomicBool::new(false)),
                    }),
                    Ok(EncAnswer::NotFound) => Ok(Doc::NotFound),
                    Err(error) => Err(EncError::Foreman { reason, error }),
                }
            }
        }
    }

    async fn compute(&self, name: &str, primary: bool) -> Result<Computed, EncError> {
        let layers = &self.layers;
        let (client, _role) = match self.fences.get(name).await {
            _ if primary => (self.db.write().await?, crate::store::PoolRole::Primary),
            Some(lsn) => self.db.read_after(&lsn).await?,
            None => self.db.read().await?,
        };
        let Some(host) = rows::find_host(&client, name).await? else {
            return Ok(Computed::Doc(Doc::NotFound));
        };
        let (globals, assignments) =
            futures::try_join!(layers.globals(&client), layers.config_groups(&client))?;
        // One round trip: the host's own rows and every layer it names.
        let (parts, hostgroup_path, (organization_path, location_path), os, proxies, owner, env) =
            futures::try_join!(
                async {
                    rows::load_host_parts(&client, host.id)
                        .await
                        .map_err(EncError::from)
                },
                layers.hostgroup_path(&client, host.hostgroup_id),
                async {
                    futures::try_join!(
                        layers.taxonomy_path(&client, host.organization_id),
                        layers.taxonomy_path(&client, host.location_id),
                    )
                },
                layers.os(&client, host.operatingsystem_id),
                async {
                    futures::try_join!(
                        layers.proxy(&client, host.puppet_proxy_id),
                        layers.proxy(&client, host.puppet_ca_proxy_id),
                    )
                },
                layers.owner(&client, host.owner),
                layers.env(&client, host.environment_id),
            )?;
        let (puppet_proxy, ca_proxy) = proxies;
        // The interfaces' subnets and domains, all at once (usually cached).
        let nic_layers = futures::future::try_join_all(parts.nics.iter().map(|row| async {
            futures::try_join!(
                layers.subnet(&client, row.subnet_id),
                layers.subnet(&client, row.subnet6_id),
                layers.domain(&client, row.domain_id),
            )
        }))
        .await?;
        let nics = parts
            .nics
            .into_iter()
            .zip(nic_layers)
            .map(|(row, (subnet, subnet6, domain))| {
                let mut nic = row.nic;
                nic.subnet = subnet;
                nic.subnet6 = subnet6;
                nic.domain = domain;
                nic
            })
            .collect();
        // The facet's environment was read with the host row; only a facet
        // that still exists gives the host an environment.
        let environment = parts.facet.as_ref().and(env);
        let host_name = host.name.clone();
        let input = HostInput {
            puppet: parts.facet.map(|facet| PuppetHostFacet {
                environment,
                class_ids: facet.class_ids,
                config_groups: assignments
                    .host_facets
                    .get(&facet.id)
                    .cloned()
                    .unwrap_or_default(),
            }),
            host,
            nics,
            host_params: parts.params,
            globals,
            hostgroup_path: (*hostgroup_path).clone(),
            organization_path: (*organization_path).clone(),
            location_path: (*location_path).clone(),
            os,
            owner,
            puppet_proxy,
            puppet_ca_proxy: ca_proxy,
        };
        let unsupported = |reason| Ok(Computed::Unsupported(host_name.clone(), reason));
        let prepared = match Prepared::new(&input) {
            Ok(prepared) => prepared,
            Err(reason) => return unsupported(reason),
        };
        let fact_names = match prepared.fact_names() {
            Ok(names) => names,
            Err(reason) => return unsupported(reason),
        };
        let facts = if fact_names.is_empty() {
            HashMap::new()
        } else {
            rows::load_facts(&client, input.host.id, &fact_names).await?
        };
        let matches = match prepared.matches(&facts) {
            Ok(matches) => matches,
            Err(reason) => return unsupported(reason),
        };
        let values = rows::load_lookup_values(&client, &prepared.key_ids(), &matches).await?;
        match prepared.finish(&values) {
            Ok(info) => Ok(Computed::Doc(Doc::Computed(stored(enc::to_yaml(info))))),
            Err(reason) => unsupported(reason),
        }
    }
}

/// A body as it is kept in the cache: without the spare capacity the
/// emitter's growing buffer left (up to half of it), which would otherwise
/// stay allocated for the entry's lifetime.
fn stored(mut body: String) -> Bytes {
    body.shrink_to_fit();
    Bytes::from(body)
}

enum Computed {
    Doc(Doc),
    /// (host name for Foreman's API, why the bridge cannot compute it)
    Unsupported(String, Unsupported),
}
