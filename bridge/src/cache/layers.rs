//! Shared layers: what many hosts' ENCs read (settings and global
//! parameters, config group assignments, hostgroup and taxonomy chains,
//! domains, subnets, operating systems, owners, smart proxies, puppet
//! environments), cached once for all of them.
//!
//! A layer older than `cache.layer_ttl_secs` is refreshed in the background
//! while the old value keeps being served (refresh-ahead), so no request
//! waits for a layer that is merely old; only a layer never loaded (or
//! dropped) is loaded in the request, once however many requests want it.
//! The global layers and every hostgroup chain (in bulk) are loaded at
//! start and right after "invalidate all", before any request needs them.
//!
//! Each layer records what it was built from (`Dep`s): the change feed drops
//! exactly the layers a change affects, and a layer loaded from data older
//! than a gate on its dependencies is not cached (`gates`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::ClientWrapper as Client;
use futures::future::BoxFuture;
use futures::FutureExt;
use moka::future::Cache;

use super::gates::Gates;
use super::EncError;
use crate::changes::tables::{pack, Dep, Packed};
use crate::enc::model::{
    ConfigGroupAssignments, Domain, Globals, Hostgroup, Os, Owner, OwnerRef, Proxy, PuppetEnv,
    Subnet, Taxonomy,
};
use crate::store::foreman::{self as rows, SettingsOverrides};
use crate::store::{health, Db};

/// A connection and the WAL position its server had before the first
/// statement of this load (every row read on it is at least that new).
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub client: &'a Client,
    pub lsn: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Globals,
    ConfigGroups,
    HostgroupPath(i64),
    TaxonomyPath(i64),
    Domain(i64),
    Subnet(i64),
    Os(i64),
    Proxy(i64),
    Env(i64),
    Owner(OwnerRef),
}

#[derive(Clone)]
enum Layer {
    Globals(Arc<Globals>),
    ConfigGroups(Arc<ConfigGroupAssignments>),
    HostgroupPath(Arc<Vec<Arc<Hostgroup>>>),
    TaxonomyPath(Arc<Vec<Arc<Taxonomy>>>),
    Domain(Option<Arc<Domain>>),
    Subnet(Option<Arc<Subnet>>),
    Os(Option<Arc<Os>>),
    Proxy(Option<Arc<Proxy>>),
    Env(Option<Arc<PuppetEnv>>),
    Owner(Option<Arc<Owner>>),
}

#[derive(Clone)]
struct Entry {
    layer: Layer,
    deps: Arc<[Packed]>,
    loaded: Instant,
    refreshing: Arc<AtomicBool>,
}

impl Entry {
    fn new(key: &Key, layer: Layer) -> Entry {
        Entry {
            deps: pack(layer_deps(key, &layer)).into(),
            layer,
            loaded: Instant::now(),
            refreshing: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What a layer was built from. The global layer has none of its own: a
/// change to it affects everything and drops every layer.
fn layer_deps(key: &Key, layer: &Layer) -> Vec<Dep> {
    match (key, layer) {
        (_, Layer::HostgroupPath(path)) => path
            .iter()
            .flat_map(|hostgroup| {
                std::iter::once(Dep::Hostgroup(hostgroup.id)).chain(
                    hostgroup
                        .puppet
                        .as_ref()
                        .map(|facet| Dep::HostgroupFacet(facet.facet_id)),
                )
            })
            // The chain asked for, even when it no longer exists.
            .chain(match key {
                Key::HostgroupPath(id) => Some(Dep::Hostgroup(*id)),
                _ => None,
            })
            .chain([Dep::ConfigGroups])
            .collect(),
        (Key::TaxonomyPath(id), Layer::TaxonomyPath(path)) => path
            .iter()
            .map(|taxonomy| Dep::Taxonomy(taxonomy.id))
            .chain([Dep::Taxonomy(*id)])
            .collect(),
        (Key::Env(id), Layer::Env(env)) => std::iter::once(Dep::Env(*id))
            .chain(
                env.iter()
                    .flat_map(|env| env.keys.iter().map(|(_, key)| Dep::LookupKey(key.id))),
            )
            .collect(),
        (Key::Globals, _) => Vec::new(),
        (Key::ConfigGroups, _) => vec![Dep::ConfigGroups],
        (Key::Domain(id), _) => vec![Dep::Domain(*id)],
        (Key::Subnet(id), _) => vec![Dep::Subnet(*id)],
        (Key::Os(id), _) => vec![Dep::Os(*id)],
        (Key::Proxy(id), _) => vec![Dep::Proxy(*id)],
        (Key::Owner(_), _) => vec![Dep::Users],
        (Key::HostgroupPath(id), _) => vec![Dep::Hostgroup(*id)],
        (Key::TaxonomyPath(id), _) => vec![Dep::Taxonomy(*id)],
        (Key::Env(id), _) => vec![Dep::Env(*id)],
    }
}

pub struct Layers {
    db: Arc<Db>,
    gates: Arc<Gates>,
    cache: Cache<Key, Entry>,
    /// Age after which a layer is refreshed in the background.
    refresh_after: Duration,
    overrides: SettingsOverrides,
    /// Layers loaded from the database (in requests or in the background).
    pub loads: AtomicU64,
}

/// A typed getter for a layer that is one row (and its parameters) by id.
macro_rules! by_id {
    ($name:ident, $variant:ident, $ty:ty) => {
        pub async fn $name(
            self: &Arc<Self>,
            at: At<'_>,
            id: Option<i64>,
        ) -> Result<Option<Arc<$ty>>, EncError> {
            let Some(id) = id else { return Ok(None) };
            match self.get(at, Key::$variant(id)).await? {
                Layer::$variant(value) => Ok(value),
                _ => unreachable!("each Key variant holds the Layer variant of its name"),
            }
        }
    };
}

impl Layers {
    pub fn new(
        db: Arc<Db>,
        gates: Arc<Gates>,
        overrides: SettingsOverrides,
        refresh_after: Duration,
    ) -> Arc<Layers> {
        Arc::new(Layers {
            db,
            gates,
            // Unused layers (a deleted hostgroup, say) go after a while.
            cache: Cache::builder()
                .time_to_idle(refresh_after.saturating_mul(10))
                .support_invalidation_closures()
                .build(),
            refresh_after,
            overrides,
            loads: AtomicU64::new(0),
        })
    }

    /// Loads the layers every host needs, and every hostgroup chain in bulk,
    /// so no request waits for them.
    pub async fn prewarm(self: &Arc<Self>) -> Result<(), EncError> {
        let (client, lsn) = self.open().await?;
        let at = At {
            client: &client,
            lsn,
        };
        let (_, assignments) = futures::try_join!(self.globals(at), self.config_groups(at))?;
        let mut all = rows::load_all_hostgroups(&client).await?;
        self.loads.fetch_add(1, Ordering::Relaxed);
        // One Arc per hostgroup, shared by every chain it is part of.
        let mut shared = std::collections::HashMap::with_capacity(all.len());
        let mut paths = Vec::with_capacity(all.len());
        for (id, (mut hostgroup, path)) in all.drain() {
            fill_config_groups(&mut hostgroup, &assignments);
            shared.insert(id, Arc::new(hostgroup));
            paths.push((id, path));
        }
        for (id, path) in paths {
            let chain: Vec<Arc<Hostgroup>> = path
                .iter()
                .filter_map(|id| shared.get(id).cloned())
                .collect();
            let key = Key::HostgroupPath(id);
            let entry = Entry::new(&key, Layer::HostgroupPath(Arc::new(chain)));
            // A chain a change touched meanwhile is loaded when asked for.
            if self.gates.required(entry.deps.iter()) <= lsn {
                self.cache.insert(key, entry).await;
            }
        }
        Ok(())
    }

    /// A connection for a load outside a request, past every global gate,
    /// and its position.
    async fn open(&self) -> Result<(deadpool_postgres::Object, u64), EncError> {
        let need = self.gates.global();
        let (client, _) = if need > 0 {
            self.db.read_after(&health::format_lsn(need)).await?
        } else {
            self.db.read().await?
        };
        let lsn = rows::read_position(&client).await?;
        Ok((client, lsn))
    }

    /// Drops the layers built from any of `deps`.
    pub fn invalidate(&self, deps: Arc<HashSet<Packed>>) {
        let matched = self
            .cache
            .invalidate_entries_if(move |_, entry| entry.deps.iter().any(|d| deps.contains(d)));
        if matched.is_err() {
            // Only if closures were not enabled at build: never here.
            self.cache.invalidate_all();
        }
    }

    /// Drops every layer; they are loaded again as requests need them.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Drops every layer and loads the global ones again.
    pub async fn reset(self: &Arc<Self>) -> Result<(), EncError> {
        self.cache.invalidate_all();
        self.prewarm().await
    }

    /// Reloads the config group assignments now (a host's own config
    /// groups live in that shared layer), serving the old ones meanwhile.
    pub async fn reload_config_groups(self: &Arc<Self>) -> Result<(), EncError> {
        let (client, lsn) = self.open().await?;
        let at = At {
            client: &client,
            lsn,
        };
        let key = Key::ConfigGroups;
        let entry = Entry::new(&key, self.fetch(at, key.clone()).await?);
        self.cache.insert(key, entry).await;
        Ok(())
    }

    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }

    async fn get(self: &Arc<Self>, at: At<'_>, key: Key) -> Result<Layer, EncError> {
        if let Some(entry) = self.cache.get(&key).await {
            if entry.loaded.elapsed() >= self.refresh_after
                && !entry.refreshing.swap(true, Ordering::AcqRel)
            {
                self.refresh_in_background(key, entry.refreshing);
            }
            return Ok(entry.layer);
        }
        let entry = self
            .cache
            .try_get_with(key.clone(), async {
                let entry = Entry::new(&key, self.fetch(at, key.clone()).await?);
                // Loaded from rows older than a change to what it is built
                // from: not cached; the request loads again from newer data.
                let need = self.gates.required(entry.deps.iter());
                if at.lsn < need {
                    return Err(EncError::Superseded(need));
                }
                Ok(entry)
            })
            .await
            .map_err(EncError::Shared)?;
        Ok(entry.layer)
    }

    fn refresh_in_background(self: &Arc<Self>, key: Key, refreshing: Arc<AtomicBool>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let result = async {
                let (client, lsn) = this.open().await?;
                let at = At {
                    client: &client,
                    lsn,
                };
                let entry = Entry::new(&key, this.fetch(at, key.clone()).await?);
                let need = this.gates.required(entry.deps.iter());
                if lsn < need {
                    return Err(EncError::Superseded(need));
                }
                Ok(entry)
            }
            .await;
            match result {
                Ok(entry) => this.cache.insert(key, entry).await,
                Err(EncError::Superseded(_)) => {
                    // Changed meanwhile: a request loads it from newer data.
                    this.cache.invalidate(&key).await;
                }
                Err(error) => {
                    // Keep serving the old layer; a later request retries.
                    tracing::warn!(layer = ?key, %error, "refreshing a cached layer failed");
                    refreshing.store(false, Ordering::Release);
                }
            }
        });
    }

    /// Reads one layer from the database. Boxed: a hostgroup chain needs the
    /// config group layer and an owner the global one, through `get`.
    fn fetch<'a>(
        self: &'a Arc<Self>,
        at: At<'a>,
        key: Key,
    ) -> BoxFuture<'a, Result<Layer, EncError>> {
        let client = at.client;
        async move {
            self.loads.fetch_add(1, Ordering::Relaxed);
            Ok(match key {
                Key::Globals => {
                    Layer::Globals(Arc::new(rows::load_globals(client, &self.overrides).await?))
                }
                Key::ConfigGroups => Layer::ConfigGroups(Arc::new(
                    rows::load_config_group_assignments(client).await?,
                )),
                Key::HostgroupPath(id) => {
                    let assignments = self.config_groups(at).await?;
                    let mut path = rows::load_hostgroup_path(client, id).await?;
                    for hostgroup in &mut path {
                        fill_config_groups(hostgroup, &assignments);
                    }
                    Layer::HostgroupPath(Arc::new(path.into_iter().map(Arc::new).collect()))
                }
                Key::TaxonomyPath(id) => Layer::TaxonomyPath(Arc::new(
                    rows::load_taxonomy_path(client, id)
                        .await?
                        .into_iter()
                        .map(Arc::new)
                        .collect(),
                )),
                Key::Domain(id) => {
                    Layer::Domain(rows::load_domain(client, id).await?.map(Arc::new))
                }
                Key::Subnet(id) => {
                    Layer::Subnet(rows::load_subnet(client, id).await?.map(Arc::new))
                }
                Key::Os(id) => Layer::Os(rows::load_os(client, id).await?.map(Arc::new)),
                Key::Proxy(id) => Layer::Proxy(rows::load_proxy(client, id).await?.map(Arc::new)),
                Key::Env(id) => Layer::Env(rows::load_env(client, id).await?.map(Arc::new)),
                Key::Owner(owner) => {
                    let globals = self.globals(at).await?;
                    let foreman_host = &globals.settings.foreman_host;
                    Layer::Owner(
                        rows::load_owner(client, owner, foreman_host)
                            .await?
                            .map(Arc::new),
                    )
                }
            })
        }
        .boxed()
    }

    pub async fn globals(self: &Arc<Self>, at: At<'_>) -> Result<Arc<Globals>, EncError> {
        match self.get(at, Key::Globals).await? {
            Layer::Globals(globals) => Ok(globals),
            _ => unreachable!("Key::Globals holds Layer::Globals"),
        }
    }

    pub async fn config_groups(
        self: &Arc<Self>,
        at: At<'_>,
    ) -> Result<Arc<ConfigGroupAssignments>, EncError> {
        match self.get(at, Key::ConfigGroups).await? {
            Layer::ConfigGroups(assignments) => Ok(assignments),
            _ => unreachable!("Key::ConfigGroups holds Layer::ConfigGroups"),
        }
    }

    pub async fn hostgroup_path(
        self: &Arc<Self>,
        at: At<'_>,
        id: Option<i64>,
    ) -> Result<Arc<Vec<Arc<Hostgroup>>>, EncError> {
        let Some(id) = id else {
            return Ok(Arc::default());
        };
        match self.get(at, Key::HostgroupPath(id)).await? {
            Layer::HostgroupPath(path) => Ok(path),
            _ => unreachable!("Key::HostgroupPath holds Layer::HostgroupPath"),
        }
    }

    pub async fn taxonomy_path(
        self: &Arc<Self>,
        at: At<'_>,
        id: Option<i64>,
    ) -> Result<Arc<Vec<Arc<Taxonomy>>>, EncError> {
        let Some(id) = id else {
            return Ok(Arc::default());
        };
        match self.get(at, Key::TaxonomyPath(id)).await? {
            Layer::TaxonomyPath(path) => Ok(path),
            _ => unreachable!("Key::TaxonomyPath holds Layer::TaxonomyPath"),
        }
    }

    pub async fn owner(
        self: &Arc<Self>,
        at: At<'_>,
        owner: Option<OwnerRef>,
    ) -> Result<Option<Arc<Owner>>, EncError> {
        let Some(owner) = owner else { return Ok(None) };
        match self.get(at, Key::Owner(owner)).await? {
            Layer::Owner(owner) => Ok(owner),
            _ => unreachable!("Key::Owner holds Layer::Owner"),
        }
    }

    by_id!(domain, Domain, Domain);
    by_id!(subnet, Subnet, Subnet);
    by_id!(os, Os, Os);
    by_id!(proxy, Proxy, Proxy);
    by_id!(env, Env, PuppetEnv);
}

/// A hostgroup's config groups, from the shared assignments layer.
fn fill_config_groups(hostgroup: &mut Hostgroup, assignments: &ConfigGroupAssignments) {
    if let Some(puppet) = &mut hostgroup.puppet {
        puppet.config_groups = assignments
            .hostgroup_facets
            .get(&puppet.facet_id)
            .cloned()
            .unwrap_or_default();
    }
}
