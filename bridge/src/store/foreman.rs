//! Reading Foreman's tables: the only place that knows Foreman's schema.
//!
//! Every function takes a client of a read replica and returns decoded model
//! types. Queries keep Foreman's own `ORDER BY`s on text columns so orders
//! follow the database collation exactly as Foreman's do. Independent queries
//! are issued concurrently on one connection: tokio-postgres pipelines them,
//! so a cold host costs a few round trips, not one per table.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::ClientWrapper as Client;
use futures::try_join;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::enc::model::{
    ConfigGroupAssignments, Domain, Globals, HostRow, Hostgroup, KeyType, LookupKey, LookupValue,
    Nic, NicKind, Os, Owner, OwnerRef, Param, Proxy, PuppetEnv, PuppetGroupFacet, RootPassSetting,
    Settings, Subnet, Taxonomy,
};
use crate::enc::{Map, Value};

/// Ids of a hostgroup and its ancestors (`ancestry` is root-first ids).
/// Compared as integers so the primary key index serves the lookup.
macro_rules! hostgroup_path_cte {
    () => {
        "WITH path AS (SELECT unnest(string_to_array(ancestry, '/')::int8[] || id::int8) AS id \
         FROM hostgroups WHERE id = $1::int8)"
    };
}

/// Ids of a taxonomy and its ancestors.
macro_rules! taxonomy_path_cte {
    () => {
        "WITH path AS (SELECT unnest(string_to_array(ancestry, '/')::int8[] || id::int8) AS id \
         FROM taxonomies WHERE id = $1::int8)"
    };
}

/// A failure reading Foreman's data.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// A stored value Foreman itself could not load either.
    #[error("{what}: {reason}")]
    BadData { what: String, reason: String },
}

type Result<T> = std::result::Result<T, ReadError>;

/// Runs `sql` as a statement prepared once per connection (deadpool's
/// statement cache): the server parses and plans each query text once, not
/// on every cold host.
async fn query(
    client: &Client,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, args).await
}

async fn query_opt(
    client: &Client,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> std::result::Result<Option<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query_opt(&statement, args).await
}

/// The WAL position this connection's server has: replayed (a replica) or
/// inserted (the primary: with `synchronous_commit = off` a visible commit
/// can be past the written position). Every later statement on the
/// connection sees at least the data of that position.
pub async fn read_position(client: &Client) -> Result<u64> {
    let row = query_opt(
        client,
        "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_insert_lsn() END)::text",
        &[],
    )
    .await?;
    let text: Option<String> = row.and_then(|row| row.get(0));
    Ok(text
        .as_deref()
        .and_then(crate::store::health::parse_lsn)
        .unwrap_or(0))
}

/// Foreman's YAML column coder: text not starting with `---` is a plain
/// string (rows older than typed parameters), NULL is nil.
pub fn decode_yaml_column(text: Option<&str>, what: &str) -> Result<Value> {
    match text {
        None => Ok(Value::Null),
        Some(text) if !text.starts_with("---") => Ok(Value::str(text)),
        Some(text) => pvc_psych::load(text).map_err(|e| ReadError::BadData {
            what: what.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn params_from_rows(rows: &[Row], what: &str) -> Result<Vec<Param>> {
    rows.iter()
        .map(|row| {
            let name: String = row.get("name");
            let value = decode_yaml_column(row.get("value"), &format!("{what} parameter {name}"))?;
            Ok(Param { name, value })
        })
        .collect()
}

/// `Host.find_by(certname:)`, then `friendly.find` (name, then numeric id).
pub async fn find_host(client: &Client, name: &str) -> Result<Option<HostRow>> {
    let id: Option<i64> = if name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    };
    let row = query_opt(
        client,
            "SELECT h.id::int8 AS id, h.name, h.certname, h.comment, h.root_pass, \
                    h.hostgroup_id::int8 AS hostgroup_id, \
                    h.operatingsystem_id::int8 AS operatingsystem_id, \
                    h.organization_id::int8 AS organization_id, h.location_id::int8 AS location_id, \
                    r.name AS realm, a.name AS architecture, h.owner_type, \
                    h.owner_id::int8 AS owner_id, h.puppet_proxy_id::int8 AS puppet_proxy_id, \
                    h.puppet_ca_proxy_id::int8 AS puppet_ca_proxy_id, \
                    (SELECT f.environment_id::int8 FROM host_puppet_facets f \
                     WHERE f.host_id = h.id ORDER BY f.id LIMIT 1) AS environment_id \
             FROM hosts h \
             LEFT JOIN realms r ON r.id = h.realm_id \
             LEFT JOIN architectures a ON a.id = h.architecture_id \
             WHERE h.type = 'Host::Managed' AND (h.certname = $1 OR h.name = $1 OR h.id = $2::int8) \
             ORDER BY CASE WHEN h.certname = $1 THEN 0 WHEN h.name = $1 THEN 1 ELSE 2 END \
             LIMIT 1",
            &[&name, &id],
        )
        .await?;
    Ok(row.map(|row| {
        let owner_id: Option<i64> = row.get("owner_id");
        let owner = match (row.get::<_, Option<&str>>("owner_type"), owner_id) {
            (Some("User"), Some(id)) => Some(OwnerRef::User(id)),
            (Some("Usergroup"), Some(id)) => Some(OwnerRef::Usergroup(id)),
            _ => None,
        };
        HostRow {
            id: row.get("id"),
            name: row.get("name"),
            certname: row.get("certname"),
            comment: row.get::<_, Option<String>>("comment").unwrap_or_default(),
            root_pass: row.get("root_pass"),
            hostgroup_id: row.get("hostgroup_id"),
            operatingsystem_id: row.get("operatingsystem_id"),
            organization_id: row.get("organization_id"),
            location_id: row.get("location_id"),
            realm: row.get("realm"),
            architecture: row.get("architecture"),
            owner,
            puppet_proxy_id: row.get("puppet_proxy_id"),
            puppet_ca_proxy_id: row.get("puppet_ca_proxy_id"),
            environment_id: row.get("environment_id"),
        }
    }))
}

/// A `nics` row with its subnet and domain still as ids.
#[derive(Debug, Clone)]
pub struct NicRow {
    pub nic: Nic,
    pub subnet_id: Option<i64>,
    pub subnet6_id: Option<i64>,
    pub domain_id: Option<i64>,
}

/// The host's puppet facet: its id (config groups hang off it), environment
/// id, class ids.
#[derive(Debug, Clone, Default)]
pub struct FacetRow {
    pub id: i64,
    pub environment_id: Option<i64>,
    pub class_ids: Vec<i64>,
}

/// What belongs to the host alone: interfaces, parameters, puppet facet.
pub struct HostParts {
    pub nics: Vec<NicRow>,
    pub params: Vec<Param>,
    pub facet: Option<FacetRow>,
}

pub async fn load_host_parts(client: &Client, host_id: i64) -> Result<HostParts> {
    let args: [&(dyn ToSql + Sync); 1] = [&host_id];
    let nics = query(
        client,
        "SELECT type, name, ip, ip6, mac, identifier, attrs, virtual, link, managed, \"primary\", \
                provision, subnet_id::int8 AS subnet_id, subnet6_id::int8 AS subnet6_id, \
                domain_id::int8 AS domain_id, tag, attached_to, mode, attached_devices, \
                bond_options, provider, username \
         FROM nics WHERE host_id = $1::int8 ORDER BY identifier, id",
        &args,
    );
    let params = query(
        client,
        "SELECT name, value FROM parameters \
         WHERE type = 'HostParameter' AND reference_id = $1::int8 ORDER BY name",
        &args,
    );
    let facet = query(
        client,
        "SELECT id::int8 AS id, environment_id::int8 AS environment_id FROM host_puppet_facets \
         WHERE host_id = $1::int8 ORDER BY id LIMIT 1",
        &args,
    );
    let classes = query(
        client,
        "SELECT hc.puppetclass_id::int8 AS id FROM host_classes hc \
         JOIN host_puppet_facets f ON f.id = hc.host_puppet_facet_id WHERE f.host_id = $1::int8",
        &args,
    );
    let (nics, params, facet, classes) = try_join!(nics, params, facet, classes)?;
    let nics = nics.iter().map(nic_from_row).collect::<Result<Vec<_>>>()?;
    let facet = facet.first().map(|row| FacetRow {
        id: row.get("id"),
        environment_id: row.get("environment_id"),
        class_ids: classes.iter().map(|r| r.get("id")).collect(),
    });
    Ok(HostParts {
        nics,
        params: params_from_rows(&params, "host")?,
        facet,
    })
}

fn nic_from_row(row: &Row) -> Result<NicRow> {
    let kind = match row.get::<_, Option<&str>>("type") {
        Some("Nic::BMC") => NicKind::Bmc,
        Some("Nic::Bond") => NicKind::Bond,
        Some("Nic::Bridge") => NicKind::Bridge,
        Some("Nic::Managed") | None => NicKind::Managed,
        Some(other) => {
            return Err(ReadError::BadData {
                what: "nics.type".into(),
                reason: format!("unknown interface type {other}"),
            })
        }
    };
    let attrs = match decode_yaml_column(row.get("attrs"), "nics.attrs")? {
        Value::Null => Value::Map(Map::new()),
        other => other,
    };
    Ok(NicRow {
        nic: Nic {
            kind,
            name: row.get("name"),
            ip: row.get("ip"),
            ip6: row.get("ip6"),
            mac: row.get("mac"),
            identifier: row.get("identifier"),
            attrs,
            virtual_: row.get("virtual"),
            link: row.get("link"),
            managed: row.get("managed"),
            primary: row.get("primary"),
            provision: row.get("provision"),
            subnet: None,
            subnet6: None,
            domain: None,
            tag: row.get("tag"),
            attached_to: row.get("attached_to"),
            mode: row.get("mode"),
            attached_devices: row.get("attached_devices"),
            bond_options: row.get("bond_options"),
            provider: row.get("provider"),
            username: row.get("username"),
        },
        subnet_id: row.get("subnet_id"),
        subnet6_id: row.get("subnet6_id"),
        domain_id: row.get("domain_id"),
    })
}

/// Values of the named facts of a host (`fact_names` × `fact_values`).
pub async fn load_facts(
    client: &Client,
    host_id: i64,
    names: &[String],
) -> Result<HashMap<String, String>> {
    let rows = query(
        client,
        "SELECT fn.name, fv.value FROM fact_values fv \
             JOIN fact_names fn ON fn.id = fv.fact_name_id \
             WHERE fv.host_id = $1::int8 AND fn.name = ANY($2) ORDER BY fv.id",
        &[&host_id, &names],
    )
    .await?;
    let mut facts = HashMap::new();
    for row in rows {
        let name: String = row.get("name");
        let value: Option<String> = row.get("value");
        facts.entry(name).or_insert(value.unwrap_or_default());
    }
    Ok(facts)
}

/// `LookupValue.where(match: matches, lookup_key_id: keys)`.
pub async fn load_lookup_values(
    client: &Client,
    key_ids: &[i64],
    matches: &[String],
) -> Result<Vec<LookupValue>> {
    if key_ids.is_empty() || matches.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(
        client,
        "SELECT lookup_key_id::int8 AS lookup_key_id, match, value, omit FROM lookup_values \
             WHERE lookup_key_id = ANY($1::int8[]) AND match = ANY($2) ORDER BY id",
        &[&key_ids, &matches],
    )
    .await?;
    rows.iter()
        .map(|row| {
            let matcher: String = row.get("match");
            Ok(LookupValue {
                lookup_key_id: row.get("lookup_key_id"),
                value: decode_yaml_column(row.get("value"), &format!("lookup value {matcher}"))?,
                omit: row.get::<_, Option<bool>>("omit").unwrap_or(false),
                matcher,
            })
        })
        .collect()
}

/// Settings the bridge cannot read from Foreman's database.
#[derive(Debug, Clone, Default)]
pub struct SettingsOverrides {
    /// Like Foreman's `settings.yaml`: name → value, beating the database.
    pub values: HashMap<String, Value>,
    /// Contents of the files `server_ca_file` / `ssl_ca_file` name.
    pub server_ca: Option<String>,
    pub ssl_ca: Option<String>,
    /// Foreman's `foreman_url` default (it derives it from its own fqdn).
    pub foreman_url: Option<String>,
    /// A crypted root password to use for the `root_pass` setting.
    pub root_pass: Option<String>,
}

/// Global settings, common parameters, config group classes.
pub async fn load_globals(client: &Client, overrides: &SettingsOverrides) -> Result<Globals> {
    let setting_names: &[&str] = &SETTING_NAMES;
    let names: [&(dyn ToSql + Sync); 1] = [&setting_names];
    let settings = query(
        client,
        "SELECT name, value FROM settings WHERE name = ANY($1)",
        &names,
    );
    let common = query(
        client,
        "SELECT name, value FROM parameters WHERE type = 'CommonParameter' ORDER BY name",
        &[],
    );
    let cg_classes = query(
        client,
        "SELECT config_group_id::int8 AS cg, puppetclass_id::int8 AS pc \
         FROM config_group_classes ORDER BY id",
        &[],
    );
    let (settings, common, cg_classes) = try_join!(settings, common, cg_classes)?;
    let mut stored = HashMap::new();
    for row in &settings {
        let name: String = row.get("name");
        let text: Option<String> = row.get("value");
        stored.insert(name, text);
    }
    let mut config_group_classes: HashMap<i64, Vec<i64>> = HashMap::new();
    for row in &cg_classes {
        config_group_classes
            .entry(row.get("cg"))
            .or_default()
            .push(row.get("pc"));
    }
    Ok(Globals {
        settings: resolve_settings(&stored, overrides)?,
        common_params: params_from_rows(&common, "global")?,
        config_group_classes,
    })
}

const SETTING_NAMES: [&str; 11] = [
    "interpolate_erb_in_parameters",
    "matchers_inheritance",
    "Default_parameters_Lookup_Path",
    "enc_environment",
    "ignore_puppet_facts_for_provisioning",
    "bmc_credentials_accessible",
    "foreman_url",
    "root_pass",
    "server_ca_file",
    "ssl_ca_file",
    "safemode_render",
];

/// Foreman's `Setting[name]`: settings.yaml override, database row, default.
fn resolve_settings(
    stored: &HashMap<String, Option<String>>,
    overrides: &SettingsOverrides,
) -> Result<Settings> {
    let lookup = |name: &str| -> Result<Option<Value>> {
        if let Some(value) = overrides.values.get(name) {
            return Ok(Some(value.clone()));
        }
        match stored.get(name) {
            Some(Some(text)) if text.starts_with("encrypted-") => {
                Ok(Some(Value::Sym("encrypted".into())))
            }
            Some(Some(text)) => pvc_psych::load(text)
                .map(Some)
                .map_err(|e| ReadError::BadData {
                    what: format!("setting {name}"),
                    reason: e.to_string(),
                }),
            _ => Ok(None),
        }
    };
    let flag = |name: &str, default: bool| -> Result<bool> {
        Ok(match lookup(name)? {
            Some(Value::Bool(b)) => b,
            _ => default,
        })
    };
    let mut settings = Settings {
        interpolate_erb_in_parameters: flag("interpolate_erb_in_parameters", true)?,
        matchers_inheritance: flag("matchers_inheritance", true)?,
        enc_environment: flag("enc_environment", true)?,
        ignore_puppet_facts_for_provisioning: flag("ignore_puppet_facts_for_provisioning", false)?,
        bmc_credentials_accessible: flag("bmc_credentials_accessible", false)?,
        ..Settings::default()
    };
    if let Some(Value::Seq(path)) = lookup("Default_parameters_Lookup_Path")? {
        settings.default_lookup_path = path
            .iter()
            .map(|rule| match rule {
                Value::Seq(parts) => parts
                    .iter()
                    .filter_map(Value::to_ruby_s)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_ruby_s().unwrap_or_default(),
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    let foreman_url = match lookup("foreman_url")? {
        Some(Value::Str(url)) => Some(url),
        _ => overrides.foreman_url.clone(),
    };
    settings.foreman_host = foreman_url
        .as_deref()
        .and_then(crate::enc::build::url_host)
        .unwrap_or_default();
    settings.root_pass = match (&overrides.root_pass, lookup("root_pass")?) {
        (Some(crypted), _) => RootPassSetting::Crypted(crypted.clone()),
        (None, None | Some(Value::Null)) => RootPassSetting::Unset,
        (None, Some(Value::Str(s))) if is_crypted(&s) => RootPassSetting::Crypted(s),
        (None, Some(Value::Str(s))) if s.trim().is_empty() => RootPassSetting::Unset,
        (None, Some(_)) => RootPassSetting::Unusable,
    };
    // Foreman reads these files on its own host: the bridge needs their
    // contents in its configuration when Foreman has them set.
    for (name, configured, slot) in [
        (
            "server_ca_file",
            &overrides.server_ca,
            &mut settings.server_ca,
        ),
        ("ssl_ca_file", &overrides.ssl_ca, &mut settings.ssl_ca),
    ] {
        match (configured, lookup(name)?) {
            (Some(contents), _) => *slot = Some(contents.clone()),
            (None, None | Some(Value::Null)) => *slot = None,
            (None, Some(_)) => {
                return Err(ReadError::BadData {
                    what: format!("setting {name}"),
                    reason: "set in Foreman but its file contents are not configured \
                             (enc.server_ca_file / enc.ssl_ca_file)"
                        .into(),
                })
            }
        }
    }
    Ok(settings)
}

/// GNU crypt form `$id$salt$hash`, which Foreman passes through as is.
fn is_crypted(s: &str) -> bool {
    let mut parts = s.split('$');
    parts.next() == Some("")
        && parts
            .next()
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_some_and(|salt| !salt.is_empty())
        && parts.next().is_some_and(|hash| !hash.is_empty())
}

/// Every `host_config_groups` row, by facet (see `ConfigGroupAssignments`).
pub async fn load_config_group_assignments(client: &Client) -> Result<ConfigGroupAssignments> {
    let rows = query(
        client,
        "SELECT hcg.host_type, hcg.host_id::int8 AS facet_id, cg.id::int8 AS id, cg.name \
             FROM host_config_groups hcg JOIN config_groups cg ON cg.id = hcg.config_group_id \
             WHERE hcg.host_type IN ('ForemanPuppet::HostPuppetFacet', \
                                     'ForemanPuppet::HostgroupPuppetFacet') \
             ORDER BY cg.name, hcg.id",
        &[],
    )
    .await?;
    let mut assignments = ConfigGroupAssignments::default();
    for row in rows {
        let map = match row.get::<_, &str>("host_type") {
            "ForemanPuppet::HostPuppetFacet" => &mut assignments.host_facets,
            _ => &mut assignments.hostgroup_facets,
        };
        map.entry(row.get("facet_id"))
            .or_default()
            .push((row.get("id"), row.get("name")));
    }
    Ok(assignments)
}

/// Ids root first: the `ancestry` column (ancestor ids, root first, joined
/// by `/`; NULL for a root), then the leaf itself.
fn ancestry_path(ancestry: Option<&str>, leaf_id: i64) -> Vec<i64> {
    let mut order: Vec<i64> = ancestry
        .unwrap_or("")
        .split('/')
        .filter_map(|id| id.parse().ok())
        .collect();
    order.push(leaf_id);
    order
}

/// A hostgroup and its ancestors, root first (ancestry ids, then self).
pub async fn load_hostgroup_path(client: &Client, leaf_id: i64) -> Result<Vec<Hostgroup>> {
    let args: [&(dyn ToSql + Sync); 1] = [&leaf_id];
    let rows = query(
        client,
        concat!(
            hostgroup_path_cte!(),
            " SELECT hg.id::int8 AS id, hg.name, hg.title, hg.root_pass, hg.ancestry, \
                    (SELECT f.id::int8 FROM hostgroup_puppet_facets f \
                     WHERE f.hostgroup_id = hg.id ORDER BY f.id LIMIT 1) AS facet_id \
             FROM hostgroups hg WHERE hg.id IN (SELECT id FROM path)"
        ),
        &args,
    );
    let params = query(
        client,
        concat!(
            hostgroup_path_cte!(),
            " SELECT reference_id::int8 AS owner, name, value FROM parameters \
             WHERE type = 'GroupParameter' AND reference_id IN (SELECT id FROM path) ORDER BY name"
        ),
        &args,
    );
    let classes = query(
        client,
        concat!(
            hostgroup_path_cte!(),
            // Driven from the path so the planner walks the indexes instead
            // of hashing every hostgroup facet.
            " SELECT f.hostgroup_id::int8 AS owner, hc.puppetclass_id::int8 AS id \
             FROM path JOIN hostgroup_puppet_facets f ON f.hostgroup_id = path.id \
             JOIN hostgroup_classes hc ON hc.hostgroup_puppet_facet_id = f.id"
        ),
        &args,
    );
    let (rows, params, classes) = try_join!(rows, params, classes)?;
    let mut hostgroups = hostgroups_from_rows(&rows, &params, &classes)?;
    let Some((_, order)) = hostgroups.get(&leaf_id) else {
        return Ok(Vec::new());
    };
    let order = order.clone();
    Ok(order
        .iter()
        .filter_map(|id| hostgroups.remove(id).map(|(hostgroup, _)| hostgroup))
        .collect())
}

/// Every hostgroup with its path (ancestor ids root first, then itself), in
/// three queries: loading all chains at once is far cheaper than one chain
/// per hostgroup when thousands of hosts arrive at once.
pub async fn load_all_hostgroups(client: &Client) -> Result<HashMap<i64, (Hostgroup, Vec<i64>)>> {
    let rows = query(
        client,
        "SELECT hg.id::int8 AS id, hg.name, hg.title, hg.root_pass, hg.ancestry, \
                (SELECT f.id::int8 FROM hostgroup_puppet_facets f \
                 WHERE f.hostgroup_id = hg.id ORDER BY f.id LIMIT 1) AS facet_id \
         FROM hostgroups hg",
        &[],
    );
    let params = query(
        client,
        "SELECT reference_id::int8 AS owner, name, value FROM parameters \
         WHERE type = 'GroupParameter' ORDER BY name",
        &[],
    );
    let classes = query(
        client,
        "SELECT f.hostgroup_id::int8 AS owner, hc.puppetclass_id::int8 AS id \
         FROM hostgroup_classes hc \
         JOIN hostgroup_puppet_facets f ON f.id = hc.hostgroup_puppet_facet_id",
        &[],
    );
    let (rows, params, classes) = try_join!(rows, params, classes)?;
    hostgroups_from_rows(&rows, &params, &classes)
}

/// Hostgroups (with their parameters, facet and classes) by id, each with
/// its path ids. Parameter rows must come ordered by name.
fn hostgroups_from_rows(
    rows: &[Row],
    params: &[Row],
    classes: &[Row],
) -> Result<HashMap<i64, (Hostgroup, Vec<i64>)>> {
    let mut params_of: HashMap<i64, Vec<Row>> = HashMap::new();
    for row in params {
        params_of
            .entry(row.get("owner"))
            .or_default()
            .push(row.clone());
    }
    let mut classes_of: HashMap<i64, Vec<i64>> = HashMap::new();
    for row in classes {
        classes_of
            .entry(row.get("owner"))
            .or_default()
            .push(row.get("id"));
    }
    let mut hostgroups = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.get("id");
        let facet_id: Option<i64> = row.get("facet_id");
        let own_params = params_of.remove(&id).unwrap_or_default();
        let hostgroup = Hostgroup {
            id,
            name: row.get::<_, Option<String>>("name").unwrap_or_default(),
            title: row.get::<_, Option<String>>("title").unwrap_or_default(),
            root_pass: row.get("root_pass"),
            params: params_from_rows(&own_params, "hostgroup")?,
            // Config groups come from the shared assignments layer.
            puppet: facet_id.map(|facet_id| PuppetGroupFacet {
                facet_id,
                class_ids: classes_of.remove(&id).unwrap_or_default(),
                config_groups: Vec::new(),
            }),
        };
        hostgroups.insert(id, (hostgroup, ancestry_path(row.get("ancestry"), id)));
    }
    Ok(hostgroups)
}

/// A location or organization and its ancestors, root first.
pub async fn load_taxonomy_path(client: &Client, leaf_id: i64) -> Result<Vec<Taxonomy>> {
    let args: [&(dyn ToSql + Sync); 1] = [&leaf_id];
    let rows = query(
        client,
        concat!(
            taxonomy_path_cte!(),
            " SELECT t.id::int8 AS id, t.name, t.title, t.ancestry, t.type \
             FROM taxonomies t WHERE t.id IN (SELECT id FROM path)"
        ),
        &args,
    );
    let params = query(
        client,
        concat!(
            taxonomy_path_cte!(),
            " SELECT reference_id::int8 AS owner, name, value FROM parameters \
             WHERE type IN ('OrganizationParameter', 'LocationParameter') \
               AND reference_id IN (SELECT id FROM path) ORDER BY name"
        ),
        &args,
    );
    let (rows, params) = try_join!(rows, params)?;
    let Some(leaf) = rows.iter().find(|r| r.get::<_, i64>("id") == leaf_id) else {
        return Ok(Vec::new());
    };
    let order = ancestry_path(leaf.get("ancestry"), leaf_id);
    let mut path = Vec::with_capacity(order.len());
    for id in order {
        let Some(row) = rows.iter().find(|r| r.get::<_, i64>("id") == id) else {
            continue;
        };
        let own: Vec<Row> = params
            .iter()
            .filter(|r| r.get::<_, i64>("owner") == id)
            .cloned()
            .collect();
        path.push(Taxonomy {
            id,
            name: row.get::<_, Option<String>>("name").unwrap_or_default(),
            title: row.get::<_, Option<String>>("title").unwrap_or_default(),
            params: params_from_rows(&own, "taxonomy")?,
        });
    }
    Ok(path)
}

/// One row of `sql` (which takes the id as `$1`) and the parameters of type
/// `param_type` attached to the same id, in one round trip.
async fn row_with_params(
    client: &Client,
    id: i64,
    sql: &str,
    param_type: &str,
    what: &str,
) -> Result<Option<(Row, Vec<Param>)>> {
    let args: [&(dyn ToSql + Sync); 2] = [&id, &param_type];
    let row = query_opt(client, sql, &args[..1]);
    let params = query(
        client,
        "SELECT name, value FROM parameters \
         WHERE type = $2 AND reference_id = $1::int8 ORDER BY name",
        &args,
    );
    let (row, params) = try_join!(row, params)?;
    match row {
        Some(row) => Ok(Some((row, params_from_rows(&params, what)?))),
        None => Ok(None),
    }
}

pub async fn load_domain(client: &Client, id: i64) -> Result<Option<Domain>> {
    let sql = "SELECT name, fullname FROM domains WHERE id = $1::int8";
    let Some((row, params)) = row_with_params(client, id, sql, "DomainParameter", "domain").await?
    else {
        return Ok(None);
    };
    Ok(Some(Domain {
        id,
        name: row.get("name"),
        fullname: row.get("fullname"),
        params,
    }))
}

pub async fn load_subnet(client: &Client, id: i64) -> Result<Option<Subnet>> {
    let sql = "SELECT name, network, mask, gateway, dns_primary, dns_secondary, \"from\", \"to\", \
                      boot_mode, ipam, vlanid::int8 AS vlanid, mtu::int8 AS mtu, \
                      nic_delay::int8 AS nic_delay, type, description \
               FROM subnets WHERE id = $1::int8";
    let Some((row, params)) = row_with_params(client, id, sql, "SubnetParameter", "subnet").await?
    else {
        return Ok(None);
    };
    let text = |c: &str| Value::opt_str(row.get::<_, Option<String>>(c));
    let int = |c: &str| row.get::<_, Option<i64>>(c).map_or(Value::Null, Value::Int);
    let mut export = Map::with_capacity(15);
    for column in [
        "name",
        "network",
        "mask",
        "gateway",
        "dns_primary",
        "dns_secondary",
    ] {
        export.insert(column, text(column));
    }
    export.insert("from", text("from"));
    export.insert("to", text("to"));
    export.insert("boot_mode", text("boot_mode"));
    export.insert("ipam", text("ipam"));
    export.insert("vlanid", int("vlanid"));
    export.insert("mtu", int("mtu"));
    export.insert("nic_delay", int("nic_delay"));
    let network_type = match row.get::<_, Option<&str>>("type") {
        Some("Subnet::Ipv4") => Value::str("IPv4"),
        Some("Subnet::Ipv6") => Value::str("IPv6"),
        _ => Value::Null,
    };
    export.insert("network_type", network_type);
    export.insert("description", text("description"));
    Ok(Some(Subnet { id, export, params }))
}

pub async fn load_os(client: &Client, id: i64) -> Result<Option<Os>> {
    let sql = "SELECT name, major, minor, password_hash FROM operatingsystems WHERE id = $1::int8";
    let Some((row, params)) =
        row_with_params(client, id, sql, "OsParameter", "operating system").await?
    else {
        return Ok(None);
    };
    Ok(Some(Os {
        id,
        name: row.get("name"),
        major: row.get::<_, Option<String>>("major").unwrap_or_default(),
        minor: row.get::<_, Option<String>>("minor").unwrap_or_default(),
        password_hash: row.get("password_hash"),
        params,
    }))
}

pub async fn load_proxy(client: &Client, id: i64) -> Result<Option<Proxy>> {
    let row = query_opt(
        client,
        "SELECT url FROM smart_proxies WHERE id = $1::int8",
        &[&id],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    let features = query(
        client,
        "SELECT f.name, spf.settings FROM smart_proxy_features spf \
             JOIN features f ON f.id = spf.feature_id WHERE spf.smart_proxy_id = $1::int8",
        &[&id],
    )
    .await?;
    let url: Option<String> = row.get("url");
    let mut proxy = Proxy {
        id,
        hostname: url
            .as_deref()
            .and_then(crate::enc::build::url_host)
            .unwrap_or_default(),
        url_present: url.as_deref().is_some_and(|u| !u.trim().is_empty()),
        ..Proxy::default()
    };
    for feature in features {
        let settings: Option<String> = feature.get("settings");
        let puppet_url = settings
            .as_deref()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v.get("puppet_url")?.as_str().map(str::to_owned));
        match feature.get::<_, &str>("name") {
            "Puppet" => proxy.puppet_url = puppet_url,
            "Puppet CA" => proxy.puppet_ca_url = puppet_url,
            _ => {}
        }
    }
    Ok(Some(proxy))
}

pub async fn load_env(client: &Client, id: i64) -> Result<Option<PuppetEnv>> {
    let args: [&(dyn ToSql + Sync); 1] = [&id];
    let env = query_opt(
        client,
        "SELECT name FROM environments WHERE id = $1::int8",
        &args,
    );
    let classes = query(
        client,
        "SELECT DISTINCT pc.id::int8 AS id, pc.name FROM puppetclasses pc \
         JOIN environment_classes ec ON ec.puppetclass_id = pc.id \
         WHERE ec.environment_id = $1::int8 ORDER BY pc.name",
        &args,
    );
    let keys = query(
        client,
        "SELECT ec.puppetclass_id::int8 AS class_id, k.id::int8 AS id, k.key, k.key_type, \
                k.default_value, k.path, k.merge_overrides, k.avoid_duplicates, k.merge_default, \
                k.omit, k.validator_type, \
                EXISTS (SELECT 1 FROM lookup_values lv WHERE lv.lookup_key_id = k.id) AS has_values \
         FROM lookup_keys k JOIN environment_classes ec ON ec.puppetclass_lookup_key_id = k.id \
         WHERE k.type = 'ForemanPuppet::PuppetclassLookupKey' AND k.override \
           AND ec.environment_id = $1::int8 \
         ORDER BY k.key, ec.id",
        &args,
    );
    let (env, classes, keys) = try_join!(env, classes, keys)?;
    let Some(env) = env else { return Ok(None) };
    let mut seen = std::collections::HashSet::new();
    let mut key_list = Vec::new();
    for row in &keys {
        let key_id: i64 = row.get("id");
        if !seen.insert(key_id) {
            continue;
        }
        let key: String = row.get("key");
        let validator: Option<String> = row.get("validator_type");
        key_list.push((
            row.get::<_, i64>("class_id"),
            Arc::new(LookupKey {
                id: key_id,
                key_type: KeyType::parse(row.get("key_type")),
                default_value: decode_yaml_column(
                    row.get("default_value"),
                    &format!("default of smart class parameter {key}"),
                )?,
                path: row.get("path"),
                merge_overrides: row.get("merge_overrides"),
                avoid_duplicates: row.get("avoid_duplicates"),
                merge_default: row.get("merge_default"),
                omit: row.get::<_, Option<bool>>("omit").unwrap_or(false),
                has_validator: validator.is_some_and(|v| !v.trim().is_empty()),
                has_values: row.get("has_values"),
                key,
            }),
        ));
    }
    Ok(Some(PuppetEnv {
        id,
        name: env.get("name"),
        classes: classes
            .iter()
            .map(|r| (r.get("id"), r.get("name")))
            .collect(),
        keys: key_list,
    }))
}

/// A user's or usergroup's `owner_*`, `ssh_authorized_keys` and
/// `foreman_users` export. `foreman_host` is the host of `foreman_url`
/// (Foreman rewrites every ssh key comment to `login@that host`).
pub async fn load_owner(
    client: &Client,
    owner: OwnerRef,
    foreman_host: &str,
) -> Result<Option<Owner>> {
    const USER_COLUMNS: &str =
        "u.id::int8 AS id, u.login, u.firstname, u.lastname, u.mail, u.description";
    match owner {
        OwnerRef::User(id) => {
            let user = query_opt(
                client,
                &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1::int8"),
                &[&id],
            )
            .await?;
            let Some(user) = user else { return Ok(None) };
            let user = UserRow::from(&user);
            let keys = load_ssh_keys(client, &[user.id]).await?;
            let export = user.export(keys.get(&user.id).map(Vec::as_slice), foreman_host);
            let mut foreman_users = Map::new();
            foreman_users.insert(user.login.clone(), Value::Map(export));
            Ok(Some(Owner {
                name: user.name(),
                email: Value::opt_str(user.mail.clone()),
                ssh_authorized_keys: user.authorized_keys(keys.get(&user.id), foreman_host),
                foreman_users,
            }))
        }
        OwnerRef::Usergroup(id) => {
            let group = query_opt(
                client,
                "SELECT name FROM usergroups WHERE id = $1::int8",
                &[&id],
            )
            .await?;
            let Some(group) = group else { return Ok(None) };
            let args: [&(dyn ToSql + Sync); 1] = [&id];
            let direct_sql = format!(
                "SELECT {USER_COLUMNS} FROM users u JOIN usergroup_members m \
                 ON m.member_id = u.id AND m.member_type = 'User' \
                 WHERE m.usergroup_id = $1::int8 ORDER BY u.firstname, u.id"
            );
            let cached_sql = format!(
                "SELECT {USER_COLUMNS} FROM users u JOIN cached_usergroup_members c \
                 ON c.user_id = u.id WHERE c.usergroup_id = $1::int8 \
                 ORDER BY u.firstname, u.id"
            );
            // Direct members, ordered as User's default scope orders them.
            let direct = query(client, &direct_sql, &args);
            // All members through nested groups (Foreman's cache table).
            let cached = query(client, &cached_sql, &args);
            let (direct, cached) = try_join!(direct, cached)?;
            let direct: Vec<UserRow> = direct.iter().map(UserRow::from).collect();
            let mut all: Vec<UserRow> = Vec::new();
            for user in cached.iter().map(UserRow::from) {
                if !all.iter().any(|u| u.id == user.id) {
                    all.push(user);
                }
            }
            let ids: Vec<i64> = all.iter().map(|u| u.id).collect();
            let keys = load_ssh_keys(client, &ids).await?;
            let mut foreman_users = Map::new();
            for user in &all {
                let export = user.export(keys.get(&user.id).map(Vec::as_slice), foreman_host);
                foreman_users.insert(user.login.clone(), Value::Map(export));
            }
            // Usergroup#ssh_keys: all users, uniq, sorted by name.downcase.
            let mut sorted: Vec<&UserRow> = all.iter().collect();
            sorted.sort_by_key(|u| u.name().to_lowercase());
            let ssh_authorized_keys = sorted
                .iter()
                .flat_map(|u| u.authorized_keys(keys.get(&u.id), foreman_host))
                .collect();
            Ok(Some(Owner {
                name: group.get("name"),
                email: Value::Seq(
                    direct
                        .iter()
                        .map(|u| Value::opt_str(u.mail.clone()))
                        .collect(),
                ),
                ssh_authorized_keys,
                foreman_users,
            }))
        }
    }
}

async fn load_ssh_keys(client: &Client, user_ids: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
    let rows = query(
        client,
        "SELECT user_id::int8 AS user_id, key FROM ssh_keys \
             WHERE user_id = ANY($1::int8[]) ORDER BY id",
        &[&user_ids],
    )
    .await?;
    let mut keys: HashMap<i64, Vec<String>> = HashMap::new();
    for row in rows {
        let key: Option<String> = row.get("key");
        keys.entry(row.get("user_id"))
            .or_default()
            .push(key.unwrap_or_default());
    }
    Ok(keys)
}

struct UserRow {
    id: i64,
    login: String,
    firstname: Option<String>,
    lastname: Option<String>,
    mail: Option<String>,
    description: Option<String>,
}

impl From<&Row> for UserRow {
    fn from(row: &Row) -> Self {
        UserRow {
            id: row.get("id"),
            login: row.get::<_, Option<String>>("login").unwrap_or_default(),
            firstname: row.get("firstname"),
            lastname: row.get("lastname"),
            mail: row.get("mail"),
            description: row.get("description"),
        }
    }
}

impl UserRow {
    /// `User#name`: "first last" (a trailing space when last is empty), or
    /// the login when both are empty.
    fn name(&self) -> String {
        let joined = format!(
            "{} {}",
            self.firstname.as_deref().unwrap_or(""),
            self.lastname.as_deref().unwrap_or("")
        );
        if joined.trim().is_empty() {
            self.login.clone()
        } else {
            joined
        }
    }

    /// `User#fullname`: non-blank parts joined with a space.
    fn fullname(&self) -> String {
        [&self.firstname, &self.lastname]
            .into_iter()
            .filter_map(|p| p.as_deref().filter(|p| !p.trim().is_empty()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `SshKey#to_export` for each of the user's keys.
    fn authorized_keys(&self, keys: Option<&Vec<String>>, foreman_host: &str) -> Vec<String> {
        keys.into_iter()
            .flatten()
            .map(|key| {
                let mut parts = key.split_whitespace();
                let kind = parts.next().unwrap_or("");
                let base64 = parts.next().unwrap_or("");
                format!("{kind} {base64} {}@{foreman_host}", self.login)
            })
            .collect()
    }

    /// `User#to_export` (the value under the login).
    fn export(&self, keys: Option<&[String]>, foreman_host: &str) -> Map {
        let mut out = Map::with_capacity(7);
        out.insert("firstname", Value::opt_str(self.firstname.clone()));
        out.insert("lastname", Value::opt_str(self.lastname.clone()));
        out.insert("mail", Value::opt_str(self.mail.clone()));
        out.insert("description", Value::opt_str(self.description.clone()));
        out.insert("fullname", Value::Str(self.fullname()));
        out.insert("name", Value::str(&self.login));
        let keys = keys
            .unwrap_or_default()
            .iter()
            .map(|key| {
                let mut parts = key.split_whitespace();
                let mut entry = Map::with_capacity(3);
                entry.insert("type", Value::opt_str(parts.next()));
                entry.insert("key", Value::opt_str(parts.next()));
                entry.insert(
                    "comment",
                    Value::Str(format!("{}@{foreman_host}", self.login)),
                );
                Value::Map(entry)
            })
            .collect();
        out.insert("ssh_authorized_keys", Value::Seq(keys));
        out
    }
}
