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
//! A host the bridge cannot compute (see `enc::erb`) is fetched from
//! Foreman's API and served stale-while-revalidate; without a Foreman URL it
//! is answered 503 with the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use moka::future::Cache;
use moka::Expiry;

use crate::config::CacheConfig;
use crate::enc::build::Prepared;
use crate::enc::model::{
    ConfigGroupAssignments, Domain, Globals, HostInput, Hostgroup, Os, Owner, OwnerRef, Proxy,
    PuppetEnv, PuppetHostFacet, Subnet, Taxonomy,
};
use crate::enc::{self, Unsupported};
use crate::foreman::{EncAnswer, ForemanClient, ForemanError};
use crate::store::foreman::{self as rows, ReadError, SettingsOverrides};
use crate::store::{Db, StoreError};

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
}

impl Doc {
    /// The YAML body, `None` for an unknown host.
    pub fn body(&self) -> Option<&Bytes> {
        match self {
            Doc::Computed(body) | Doc::Foreman { body, .. } => Some(body),
            Doc::NotFound => None,
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
    pub layer_loads: AtomicU64,
    pub foreman_fallbacks: AtomicU64,
    /// Unsupported constructs seen, by label.
    pub unsupported: Mutex<HashMap<&'static str, u64>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum LayerKey {
    Globals,
    HostgroupPath(i64),
    TaxonomyPath(i64),
    Domain(i64),
    Subnet(i64),
    Os(i64),
    Proxy(i64),
    Env(i64),
    Owner(OwnerRef),
    ConfigGroups,
}

#[derive(Clone)]
enum Layer {
    Globals(Arc<Globals>),
    HostgroupPath(Arc<Vec<Arc<Hostgroup>>>),
    TaxonomyPath(Arc<Vec<Arc<Taxonomy>>>),
    Domain(Option<Arc<Domain>>),
    Subnet(Option<Arc<Subnet>>),
    Os(Option<Arc<Os>>),
    Proxy(Option<Arc<Proxy>>),
    Env(Option<Arc<PuppetEnv>>),
    Owner(Option<Arc<Owner>>),
    ConfigGroups(Arc<ConfigGroupAssignments>),
}

struct DocExpiry {
    ttl: Duration,
    not_found_ttl: Duration,
}

impl Expiry<String, Doc> for DocExpiry {
    fn expire_after_create(&self, _key: &String, value: &Doc, _now: Instant) -> Option<Duration> {
        Some(match value {
            Doc::NotFound => self.not_found_ttl,
            _ => self.ttl,
        })
    }
}

/// A getter for a layer that is one row (and its parameters) by id.
macro_rules! by_id_layer {
    ($name:ident, $variant:ident, $ty:ty, $load:ident) => {
        async fn $name(
            &self,
            client: &deadpool_postgres::ClientWrapper,
            id: Option<i64>,
        ) -> Result<Option<Arc<$ty>>, EncError> {
            let Some(id) = id else { return Ok(None) };
            let load = async {
                Ok(Layer::$variant(
                    rows::$load(client, id).await?.map(Arc::new),
                ))
            };
            match self.layer(LayerKey::$variant(id), load).await? {
                Layer::$variant(value) => Ok(value),
                _ => unreachable!("each LayerKey variant holds the Layer variant of its name"),
            }
        }
    };
}

pub struct EncService {
    db: Arc<Db>,
    foreman: Option<Arc<ForemanClient>>,
    docs: Cache<String, Doc>,
    layers: Cache<LayerKey, Layer>,
    overrides: SettingsOverrides,
    foreman_refresh: Duration,
    pub stats: EncStats,
}

type Shared<E> = Arc<E>;

impl EncService {
    pub fn new(
        db: Arc<Db>,
        foreman: Option<Arc<ForemanClient>>,
        overrides: SettingsOverrides,
        config: &CacheConfig,
    ) -> Arc<Self> {
        let docs = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &String, doc: &Doc| doc.weight(key))
            .expire_after(DocExpiry {
                ttl: Duration::from_secs(config.ttl_secs),
                not_found_ttl: Duration::from_secs(config.not_found_ttl_secs),
            })
            .build();
        let layers = Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(Duration::from_secs(config.layer_ttl_secs))
            .build();
        Arc::new(EncService {
            db,
            foreman,
            docs,
            layers,
            overrides,
            foreman_refresh: Duration::from_secs(config.foreman_refresh_secs),
            stats: EncStats::default(),
        })
    }

    /// The document for `name` (a certname or host name), from the cache or
    /// loaded once however many callers ask at the same time.
    pub async fn document(self: &Arc<Self>, name: &str) -> Result<Doc, Shared<EncError>> {
        if let Some(doc) = self.docs.get(name).await {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            self.maybe_refresh(name, &doc);
            return Ok(doc);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let this = Arc::clone(self);
        let owned = name.to_owned();
        self.docs
            // Boxed: the load future is large, and actix workers run on
            // threads with small stacks.
            .try_get_with(
                name.to_owned(),
                Box::pin(async move { this.load(&owned).await }),
            )
            .await
    }

    /// Drops the cached document of one name, and the config group
    /// assignments (a host's own, which are read as one shared table).
    pub async fn invalidate(&self, name: &str) {
        self.docs.invalidate(name).await;
        self.layers.invalidate(&LayerKey::ConfigGroups).await;
    }

    /// Drops every cached document and layer.
    pub fn invalidate_all(&self) {
        self.docs.invalidate_all();
        self.layers.invalidate_all();
    }

    /// Number of cached documents and their weight in bytes.
    pub fn cache_size(&self) -> (u64, u64) {
        (self.docs.entry_count(), self.docs.weighted_size())
    }

    /// Runs pending cache maintenance (evictions, counts); for tests and
    /// measurements.
    pub async fn sync(&self) {
        self.docs.run_pending_tasks().await;
        self.layers.run_pending_tasks().await;
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
                Ok(doc) => this.docs.insert(name, doc).await,
                Err(error) => {
                    // Keep serving the old document; try again on a later hit.
                    tracing::warn!(host.certname = %name, %error, "refreshing a Foreman ENC failed");
                    refreshing.store(false, Ordering::Release);
                }
            }
        });
    }

    async fn load(&self, name: &str) -> Result<Doc, EncError> {
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        match self.compute(name).await? {
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

    async fn compute(&self, name: &str) -> Result<Computed, EncError> {
        let (client, _role) = self.db.read().await?;
        let Some(host) = rows::find_host(&client, name).await? else {
            return Ok(Computed::Doc(Doc::NotFound));
        };
        let (globals, assignments) =
            futures::try_join!(self.globals(&client), self.config_groups(&client))?;
        let (parts, hostgroup_path, organization_path, location_path, os, puppet_proxy, ca_proxy) =
            futures::try_join!(
                async {
                    rows::load_host_parts(&client, host.id)
                        .await
                        .map_err(EncError::from)
                },
                self.hostgroup_path(&client, host.hostgroup_id, &assignments),
                self.taxonomy_path(&client, host.organization_id),
                self.taxonomy_path(&client, host.location_id),
                self.os(&client, host.operatingsystem_id),
                self.proxy(&client, host.puppet_proxy_id),
                self.proxy(&client, host.puppet_ca_proxy_id),
            )?;
        let env_id = parts.facet.as_ref().and_then(|f| f.environment_id);
        let (owner, environment) = futures::try_join!(
            self.owner(&client, host.owner, &globals.settings.foreman_host),
            self.env(&client, env_id),
        )?;
        let mut nics = Vec::with_capacity(parts.nics.len());
        for row in parts.nics {
            let mut nic = row.nic;
            let (subnet, subnet6, domain) = futures::try_join!(
                self.subnet(&client, row.subnet_id),
                self.subnet(&client, row.subnet6_id),
                self.domain(&client, row.domain_id),
            )?;
            nic.subnet = subnet;
            nic.subnet6 = subnet6;
            nic.domain = domain;
            nics.push(nic);
        }
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

    async fn layer<F>(&self, key: LayerKey, load: F) -> Result<Layer, EncError>
    where
        F: std::future::Future<Output = Result<Layer, EncError>>,
    {
        self.layers
            .try_get_with(key, async {
                self.stats.layer_loads.fetch_add(1, Ordering::Relaxed);
                load.await
            })
            .await
            .map_err(EncError::Shared)
    }

    async fn config_groups(
        &self,
        client: &deadpool_postgres::ClientWrapper,
    ) -> Result<Arc<ConfigGroupAssignments>, EncError> {
        let load = async {
            let assignments = rows::load_config_group_assignments(client).await?;
            Ok(Layer::ConfigGroups(Arc::new(assignments)))
        };
        match self.layer(LayerKey::ConfigGroups, load).await? {
            Layer::ConfigGroups(a) => Ok(a),
            _ => unreachable!("LayerKey::ConfigGroups holds Layer::ConfigGroups"),
        }
    }

    async fn globals(
        &self,
        client: &deadpool_postgres::ClientWrapper,
    ) -> Result<Arc<Globals>, EncError> {
        let load = async {
            let globals = rows::load_globals(client, &self.overrides).await?;
            Ok(Layer::Globals(Arc::new(globals)))
        };
        match self.layer(LayerKey::Globals, load).await? {
            Layer::Globals(g) => Ok(g),
            _ => unreachable!("LayerKey::Globals holds Layer::Globals"),
        }
    }

    async fn hostgroup_path(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        id: Option<i64>,
        assignments: &ConfigGroupAssignments,
    ) -> Result<Arc<Vec<Arc<Hostgroup>>>, EncError> {
        let Some(id) = id else {
            return Ok(Arc::default());
        };
        let load = async {
            let mut path = rows::load_hostgroup_path(client, id).await?;
            for hostgroup in &mut path {
                if let Some(puppet) = &mut hostgroup.puppet {
                    puppet.config_groups = assignments
                        .hostgroup_facets
                        .get(&puppet.facet_id)
                        .cloned()
                        .unwrap_or_default();
                }
            }
            Ok(Layer::HostgroupPath(Arc::new(
                path.into_iter().map(Arc::new).collect(),
            )))
        };
        match self.layer(LayerKey::HostgroupPath(id), load).await? {
            Layer::HostgroupPath(p) => Ok(p),
            _ => unreachable!("LayerKey::HostgroupPath holds Layer::HostgroupPath"),
        }
    }

    async fn taxonomy_path(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        id: Option<i64>,
    ) -> Result<Arc<Vec<Arc<Taxonomy>>>, EncError> {
        let Some(id) = id else {
            return Ok(Arc::default());
        };
        let load = async {
            let path = rows::load_taxonomy_path(client, id).await?;
            Ok(Layer::TaxonomyPath(Arc::new(
                path.into_iter().map(Arc::new).collect(),
            )))
        };
        match self.layer(LayerKey::TaxonomyPath(id), load).await? {
            Layer::TaxonomyPath(p) => Ok(p),
            _ => unreachable!("LayerKey::TaxonomyPath holds Layer::TaxonomyPath"),
        }
    }

    by_id_layer!(domain, Domain, Domain, load_domain);

    by_id_layer!(subnet, Subnet, Subnet, load_subnet);

    by_id_layer!(os, Os, Os, load_os);

    by_id_layer!(proxy, Proxy, Proxy, load_proxy);

    by_id_layer!(env, Env, PuppetEnv, load_env);

    async fn owner(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        owner: Option<OwnerRef>,
        foreman_host: &str,
    ) -> Result<Option<Arc<Owner>>, EncError> {
        let Some(owner) = owner else { return Ok(None) };
        let load = async {
            Ok(Layer::Owner(
                rows::load_owner(client, owner, foreman_host)
                    .await?
                    .map(Arc::new),
            ))
        };
        match self.layer(LayerKey::Owner(owner), load).await? {
            Layer::Owner(o) => Ok(o),
            _ => unreachable!("LayerKey::Owner holds Layer::Owner"),
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
