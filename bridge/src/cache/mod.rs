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
//!
//! Every document and layer records what it was built from (`Dep`s). The
//! change feed (`changes`) calls [`EncService::changed`]: exactly the
//! entries built from what changed are dropped, and none is cached again
//! from a server that has not replayed the change (`gates`).

use std::collections::{HashMap, HashSet};
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

mod gates;
mod layers;
mod stale;
use crate::changes::tables::{pack, Affects, Dep, Packed};
use crate::store::foreman::{self as rows, ReadError, SettingsOverrides};
use crate::store::health::format_lsn;
use crate::store::{Db, StoreError};
pub use gates::Gates;
use layers::At;
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
    /// Loaded from rows older than a change seen in the feed meanwhile; the
    /// load is repeated on a server at or past this WAL position.
    #[error("the data changed while it was being read (loading again past {})", format_lsn(*.0))]
    Superseded(u64),
}

impl EncError {
    /// The position to load again past, when this is [`EncError::Superseded`].
    fn superseded(&self) -> Option<u64> {
        match self {
            EncError::Superseded(position) => Some(*position),
            EncError::Shared(inner) => inner.superseded(),
            _ => None,
        }
    }
}

/// A cached document and what it was built from (packed: 4 bytes each).
#[derive(Clone, Debug)]
struct Cached {
    doc: Doc,
    deps: Box<[Packed]>,
}

impl Cached {
    fn weight(&self, key: &str) -> u32 {
        let deps = self.deps.len() * std::mem::size_of::<Packed>() + 16;
        self.doc
            .weight(key)
            .saturating_add(u32::try_from(deps).unwrap_or(u32::MAX))
    }
}

/// Where a load reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Any usable replica.
    Any,
    /// A server that has replayed this WAL position.
    After(u64),
    Primary,
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
    /// Loads repeated because the feed showed a change newer than the rows
    /// they had read.
    pub superseded_loads: AtomicU64,
    /// Invalidations by the change feed: targeted ones, and everything.
    pub changes_targeted: AtomicU64,
    pub changes_everything: AtomicU64,
    /// Unsupported constructs seen, by label.
    pub unsupported: Mutex<HashMap<&'static str, u64>>,
}

struct DocExpiry {
    ttl: Duration,
    not_found_ttl: Duration,
    /// `ttl + stale grace`: no stale answer is served past it.
    stale_limit: Duration,
}

impl Expiry<String, Cached> for DocExpiry {
    fn expire_after_create(&self, _key: &String, value: &Cached, now: Instant) -> Option<Duration> {
        Some(match &value.doc {
            Doc::NotFound => self.not_found_ttl,
            Doc::Stale { loaded, .. } => stale::retry_after(*loaded, self.stale_limit, now),
            Doc::Computed(_) | Doc::Foreman { .. } => self.ttl,
        })
    }
}

pub struct EncService {
    db: Arc<Db>,
    foreman: Option<Arc<ForemanClient>>,
    docs: Cache<String, Cached>,
    gates: Arc<Gates>,
    /// Names whose data changed by a write this bridge made (Foreman's
    /// import of their facts), with the primary's WAL position after it:
    /// their next loads read a replica that has replayed it, or the primary.
    fences: Cache<String, Arc<str>>,
    layers: Arc<Layers>,
    /// Last good documents for outages; `None` with no grace period.
    keeper: Option<Keeper>,
    foreman_refresh: Duration,
    /// `cache.documents`: `false` builds every answer from the database.
    cache_documents: bool,
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
            .weigher(|key: &String, cached: &Cached| cached.weight(key))
            .expire_after(DocExpiry {
                ttl,
                not_found_ttl: Duration::from_secs(config.not_found_ttl_secs),
                stale_limit: keeper.as_ref().map_or(ttl, Keeper::limit),
            })
            .support_invalidation_closures()
            .build();
        let gates = Arc::new(Gates::default());
        let layers = Layers::new(
            Arc::clone(&db),
            Arc::clone(&gates),
            overrides,
            Duration::from_secs(config.layer_ttl_secs),
        );
        Arc::new(EncService {
            db,
            foreman,
            docs,
            gates,
            // Long enough for any replica that is in use at all to replay.
            fences: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            layers,
            keeper,
            foreman_refresh: Duration::from_secs(config.foreman_refresh_secs),
            cache_documents: config.documents,
            stats: EncStats::default(),
        })
    }

    /// The document for `name` (a certname or host name), from the cache or
    /// loaded once however many callers ask at the same time.
    /// A [`Doc::Stale`] answer means no database answered; see `stale`.
    pub async fn document(self: &Arc<Self>, name: &str) -> Result<Doc, Arc<EncError>> {
        if !self.cache_documents {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            let doc = Box::pin(self.load_or_stale(name))
                .await
                .map_err(Arc::new)?
                .doc;
            if matches!(doc, Doc::Stale { .. }) {
                self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(doc);
        }
        let doc = match self.docs.get(name).await {
            Some(cached) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                self.maybe_refresh(name, &cached.doc);
                cached.doc
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
                    .doc
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

    /// The change feed saw changes up to WAL position `position`: drops the
    /// documents and layers built from what they affect, and keeps them
    /// from being cached again from older data. Everything is dropped for a
    /// global change; the documents are then loaded again one by one as
    /// puppetservers ask for them (bounded by the pool size), the shared
    /// layers once.
    pub fn changed(&self, affects: &Affects, position: u64) {
        match affects {
            Affects::All => {
                self.gates.raise_all(position);
                self.docs.invalidate_all();
                self.layers.invalidate_all();
                self.stats
                    .changes_everything
                    .fetch_add(1, Ordering::Relaxed);
            }
            Affects::Some(deps) => {
                self.gates.raise(deps, position, Instant::now());
                let deps: Arc<HashSet<Packed>> = Arc::new(deps.iter().map(Dep::packed).collect());
                self.layers.invalidate(Arc::clone(&deps));
                let matched = self.docs.invalidate_entries_if(move |_, cached| {
                    cached.deps.iter().any(|dep| deps.contains(dep))
                });
                if matched.is_err() {
                    self.docs.invalidate_all();
                }
                self.stats.changes_targeted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets gates older than any load (called by the feed now and then).
    pub fn prune_gates(&self) {
        self.gates.prune(Instant::now());
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
                Ok(cached) => {
                    if let Some(keeper) = &this.keeper {
                        keeper.keep(&name, &cached.doc).await;
                    }
                    this.docs.insert(name, cached).await
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
    async fn load_or_stale(&self, name: &str) -> Result<Cached, EncError> {
        let loaded = match self.load(name).await {
            // The connection went away mid-load (a replica stopping ends
            // its sessions one by one, so another pooled connection to it
            // may be about to go too): once more, on the primary. A failed
            // checkout (`StoreError`) is not retried: `Db` has already
            // tried every server for that.
            Err(error) if stale::lost_mid_load(&error) => {
                tracing::info!(host.certname = %name, %error, "connection lost while loading an ENC, loading it again from the primary");
                self.load_gated(name, Route::Primary).await
            }
            other => other,
        };
        let error = match loaded {
            Ok(cached) => {
                if let Some(keeper) = &self.keeper {
                    keeper.keep(name, &cached.doc).await;
                }
                return Ok(cached);
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
        Ok(Cached {
            doc,
            deps: pack([Dep::host_name(name)]),
        })
    }

    /// Where the next load of `name` must read: past its fence (a write of
    /// this bridge), past a gate on its name and past every global gate.
    async fn route(&self, name: &str) -> Route {
        let fence = self
            .fences
            .get(name)
            .await
            .and_then(|lsn| crate::store::health::parse_lsn(&lsn))
            .unwrap_or(0);
        let need = fence.max(self.gates.required(&[Dep::host_name(name).packed()]));
        if need > 0 {
            Route::After(need)
        } else {
            Route::Any
        }
    }

    async fn load(&self, name: &str) -> Result<Cached, EncError> {
        let route = self.route(name).await;
        self.load_gated(name, route).await
    }

    /// Loads `name` until the rows read are at least as new as every change
    /// the feed has shown for what the document is built from: again past
    /// the newest such change, then from the primary.
    async fn load_gated(&self, name: &str, mut route: Route) -> Result<Cached, EncError> {
        const ATTEMPTS: usize = 5;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let need = match self.load_from(name, route).await {
                Ok((cached, lsn)) => {
                    let need = self.gates.required(cached.deps.iter());
                    if lsn >= need {
                        return Ok(cached);
                    }
                    need
                }
                Err(error) => match error.superseded() {
                    Some(need) => need,
                    None => return Err(error),
                },
            };
            self.stats.superseded_loads.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(host.certname = %name, past = %format_lsn(need), "loaded from rows older than a change; loading again");
            last = Some(need);
            route = match route {
                Route::Any => Route::After(need),
                Route::After(_) | Route::Primary => Route::Primary,
            };
        }
        Err(EncError::Superseded(last.unwrap_or_default()))
    }

    /// One load: the document, what it was built from, and the position the
    /// server had replayed before the first row was read.
    async fn load_from(&self, name: &str, route: Route) -> Result<(Cached, u64), EncError> {
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        let (computed, deps, lsn) = self.compute(name, route).await?;
        let deps = pack(deps);
        let doc = match computed {
            Computed::Doc(doc) => doc,
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
                // Foreman renders from its own database, at least as new as
                // the rows read here.
                match foreman.fetch_enc(&host_name).await {
                    Ok(EncAnswer::Found(body)) => Doc::Foreman {
                        body: stored(body),
                        fetched: Instant::now(),
                        refreshing: Arc::new(AtomicBool::new(false)),
                    },
                    Ok(EncAnswer::NotFound) => Doc::NotFound,
                    Err(error) => return Err(EncError::Foreman { reason, error }),
                }
            }
        };
        Ok((Cached { doc, deps }, lsn))
    }

    async fn compute(
        &self,
        name: &str,
        route: Route,
    ) -> Result<(Computed, Vec<Dep>, u64), EncError> {
        let layers = &self.layers;
        let (client, _role) = match route {
            Route::Primary => (self.db.write().await?, crate::store::PoolRole::Primary),
            Route::After(lsn) => self.db.read_after(&format_lsn(lsn)).await?,
            Route::Any => self.db.read().await?,
        };
        // The position first: the statements after it see at least its data.
        let (lsn, host) =
            futures::try_join!(rows::read_position(&client), rows::find_host(&client, name))?;
        let mut deps = vec![Dep::host_name(name)];
        let Some(host) = host else {
            return Ok((Computed::Doc(Doc::NotFound), deps, lsn));
        };
        let at = At {
            client: &client,
            lsn,
        };
        let (globals, assignments) =
            futures::try_join!(layers.globals(at), layers.config_groups(at))?;
        // One round trip: the host's own rows and every layer it names.
        let (parts, hostgroup_path, (organization_path, location_path), os, proxies, owner, env) =
            futures::try_join!(
                async {
                    rows::load_host_parts(&client, host.id)
                        .await
                        .map_err(EncError::from)
                },
                layers.hostgroup_path(at, host.hostgroup_id),
                async {
                    futures::try_join!(
                        layers.taxonomy_path(at, host.organization_id),
                        layers.taxonomy_path(at, host.location_id),
                    )
                },
                layers.os(at, host.operatingsystem_id),
                async {
                    futures::try_join!(
                        layers.proxy(at, host.puppet_proxy_id),
                        layers.proxy(at, host.puppet_ca_proxy_id),
                    )
                },
                layers.owner(at, host.owner),
                layers.env(at, host.environment_id),
            )?;
        let (puppet_proxy, ca_proxy) = proxies;
        deps.extend(host_deps(&host, &parts, &hostgroup_path));
        deps.extend(organization_path.iter().map(|t| Dep::Taxonomy(t.id)));
        deps.extend(location_path.iter().map(|t| Dep::Taxonomy(t.id)));
        // The interfaces' subnets and domains, all at once (usually cached).
        let nic_layers = futures::future::try_join_all(parts.nics.iter().map(|row| async {
            futures::try_join!(
                layers.subnet(at, row.subnet_id),
                layers.subnet(at, row.subnet6_id),
                layers.domain(at, row.domain_id),
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
        let unsupported =
            |reason, deps| Ok((Computed::Unsupported(host_name.clone(), reason), deps, lsn));
        let prepared = match Prepared::new(&input) {
            Ok(prepared) => prepared,
            Err(reason) => return unsupported(reason, deps),
        };
        deps.extend(prepared.key_ids().into_iter().map(Dep::LookupKey));
        let fact_names = match prepared.fact_names() {
            Ok(names) => names,
            Err(reason) => return unsupported(reason, deps),
        };
        let facts = if fact_names.is_empty() {
            HashMap::new()
        } else {
            rows::load_facts(&client, input.host.id, &fact_names).await?
        };
        let matches = match prepared.matches(&facts) {
            Ok(matches) => matches,
            Err(reason) => return unsupported(reason, deps),
        };
        let values = rows::load_lookup_values(&client, &prepared.key_ids(), &matches).await?;
        match prepared.finish(&values) {
            Ok(info) => Ok((
                Computed::Doc(Doc::Computed(stored(enc::to_yaml(info)))),
                deps,
                lsn,
            )),
            Err(reason) => unsupported(reason, deps),
        }
    }
}

/// What a host's document is built from besides its taxonomies and lookup
/// keys: its own rows, its hostgroup chain, the layers its row names, and
/// the global ones.
fn host_deps(
    host: &crate::enc::model::HostRow,
    parts: &rows::HostParts,
    hostgroup_path: &[Arc<crate::enc::model::Hostgroup>],
) -> Vec<Dep> {
    let mut deps = vec![
        Dep::Host(host.id),
        Dep::host_name(&host.name),
        Dep::ConfigGroups,
    ];
    deps.extend(host.certname.as_deref().map(Dep::host_name));
    deps.extend(parts.facet.as_ref().map(|facet| Dep::HostFacet(facet.id)));
    for hostgroup in hostgroup_path {
        deps.push(Dep::Hostgroup(hostgroup.id));
        deps.extend(
            hostgroup
                .puppet
                .as_ref()
                .map(|f| Dep::HostgroupFacet(f.facet_id)),
        );
    }
    deps.extend(host.hostgroup_id.map(Dep::Hostgroup));
    deps.extend(host.operatingsystem_id.map(Dep::Os));
    deps.extend(host.puppet_proxy_id.map(Dep::Proxy));
    deps.extend(host.puppet_ca_proxy_id.map(Dep::Proxy));
    deps.extend(host.environment_id.map(Dep::Env));
    if host.owner.is_some() {
        deps.push(Dep::Users);
    }
    for nic in &parts.nics {
        deps.extend(nic.subnet_id.map(Dep::Subnet));
        deps.extend(nic.subnet6_id.map(Dep::Subnet));
        deps.extend(nic.domain_id.map(Dep::Domain));
    }
    deps.sort();
    deps.dedup();
    deps
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
