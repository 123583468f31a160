//! Reading what the host directory needs from Foreman's tables: every
//! `Host::Managed` host with the ids its parameter levels hang off, the
//! parameters whose names matter, and the taxonomy and hostgroup trees.
//!
//! The whole fleet costs four queries, issued together on one connection
//! (tokio-postgres pipelines them): one round trip however many hosts.
//! Parameters are filtered by name in SQL, so only the few that matter cross
//! the wire; values are decoded like Foreman's YAML column coder.

use futures::try_join;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::enc::model::KeyType;
use crate::hosts::rows::{FleetRows, HostRow, Level, ParamFilter, ParamRow, TreeRow};
use crate::store::foreman::{decode_yaml_column, ReadError};

/// The host's columns plus the primary interface's domain and subnets.
/// Joins keep only ids of rows that exist, as the ENC only finds those.
macro_rules! host_columns {
    () => {
        "h.id::int8 AS id, h.name, h.certname, h.hostgroup_id::int8 AS hostgroup_id, \
         h.organization_id::int8 AS organization_id, h.location_id::int8 AS location_id, \
         os.id::int8 AS os_id, d.id::int8 AS domain_id, s.id::int8 AS subnet_id, \
         s6.id::int8 AS subnet6_id"
    };
}

macro_rules! level_joins {
    () => {
        " LEFT JOIN operatingsystems os ON os.id = h.operatingsystem_id \
          LEFT JOIN domains d ON d.id = n.domain_id \
          LEFT JOIN subnets s ON s.id = n.subnet_id \
          LEFT JOIN subnets s6 ON s6.id = n.subnet6_id"
    };
}

/// Name filter on `parameters p`: `$N` exact names, `$N+1` the prefix.
/// `starts_with`, not `LIKE`: the default prefix holds `_`, a LIKE wildcard.
macro_rules! name_filter {
    ($names:literal, $prefix:literal) => {
        concat!(
            "(p.name = ANY($",
            $names,
            "::text[]) OR starts_with(p.name, $",
            $prefix,
            "::text))"
        )
    };
}

macro_rules! param_columns {
    () => {
        "p.type, p.reference_id::int8 AS reference_id, p.name, p.value, p.key_type"
    };
}

/// A summary of exactly what the directory is built from: a digest of the
/// hosts' and primary interfaces' columns it reads (Foreman saves hosts all
/// the time — `last_report`, facts — so their `updated_at` would change
/// at every check), and counts plus newest `updated_at` of parameters,
/// hostgroups and taxonomies (saved only when edited). Unchanged, the
/// directory need not be rebuilt; a raw SQL edit that leaves `updated_at`
/// alone is caught by the periodic full rebuild.
const FINGERPRINT: &str = "SELECT concat_ws('|', \
     (SELECT md5(coalesce(string_agg(concat_ws(',', id, name, certname, hostgroup_id, \
             organization_id, location_id, operatingsystem_id), ';' ORDER BY id), '')) \
        FROM hosts WHERE type = 'Host::Managed'), \
     (SELECT md5(coalesce(string_agg(concat_ws(',', id, host_id, identifier, domain_id, \
             subnet_id, subnet6_id), ';' ORDER BY id), '')) FROM nics WHERE \"primary\"), \
     (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '') FROM parameters), \
     (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '') FROM hostgroups), \
     (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '') FROM taxonomies))";

/// The fingerprint of the directory's tables now.
pub async fn fingerprint(client: &Client) -> Result<String, ReadError> {
    Ok(client.query_one(FINGERPRINT, &[]).await?.get(0))
}

/// Every managed host, ordered by id.
const FLEET_HOSTS: &str = concat!(
    "SELECT ",
    host_columns!(),
    " FROM hosts h \
     LEFT JOIN (SELECT DISTINCT ON (host_id) host_id, domain_id, subnet_id, subnet6_id \
                FROM nics WHERE \"primary\" ORDER BY host_id, identifier, id) n \
       ON n.host_id = h.id",
    level_joins!(),
    " WHERE h.type = 'Host::Managed' ORDER BY h.id"
);

/// Every parameter of a known level whose name matters. Unordered: only the
/// winner of each name counts, and sorting 100K rows by name under the
/// database collation would be most of this query's time.
const FLEET_PARAMS: &str = concat!(
    "SELECT ",
    param_columns!(),
    " FROM parameters p WHERE p.type = ANY($1::text[]) AND ",
    name_filter!("2", "3")
);

const ALL_TAXONOMIES: &str = "SELECT id::int8 AS id, ancestry, title FROM taxonomies \
                              WHERE type IN ('Organization', 'Location')";

const ALL_HOSTGROUPS: &str = "SELECT id::int8 AS id, ancestry, title FROM hostgroups";

/// One host by certname, else by name (`find_host`'s order, lowest id on a
/// tie), with the ancestry of its hostgroup and taxonomies.
const ONE_HOST: &str = concat!(
    "SELECT ",
    host_columns!(),
    ", hg.ancestry AS hostgroup_ancestry, org.ancestry AS organization_ancestry, \
       loc.ancestry AS location_ancestry \
     FROM hosts h \
     LEFT JOIN LATERAL (SELECT domain_id, subnet_id, subnet6_id FROM nics \
                        WHERE host_id = h.id AND \"primary\" ORDER BY identifier, id LIMIT 1) n \
       ON true",
    level_joins!(),
    " LEFT JOIN hostgroups hg ON hg.id = h.hostgroup_id \
      LEFT JOIN taxonomies org ON org.id = h.organization_id \
      LEFT JOIN taxonomies loc ON loc.id = h.location_id \
     WHERE h.type = 'Host::Managed' AND (h.certname = $1 OR h.name = $1) \
     ORDER BY CASE WHEN h.certname = $1 THEN 0 ELSE 1 END, h.id LIMIT 1"
);

/// The global parameters and those of the given (type, owner) pairs, driven
/// from the pairs so the (type, reference_id, name) index serves them.
const CHAIN_PARAMS: &str = concat!(
    "SELECT ",
    param_columns!(),
    " FROM unnest($1::text[], $2::int8[]) AS k(type, ref) \
     JOIN parameters p ON p.type = k.type AND p.reference_id = k.ref WHERE ",
    name_filter!("3", "4"),
    " UNION ALL SELECT ",
    param_columns!(),
    " FROM parameters p WHERE p.type = 'CommonParameter' AND ",
    name_filter!("3", "4")
);

const SOME_TAXONOMIES: &str =
    "SELECT id::int8 AS id, ancestry, title FROM taxonomies WHERE id = ANY($1::int8[])";

const SOME_HOSTGROUPS: &str =
    "SELECT id::int8 AS id, ancestry, title FROM hostgroups WHERE id = ANY($1::int8[])";

/// The whole fleet, in one round trip.
pub async fn load_fleet(client: &Client, filter: &ParamFilter) -> Result<FleetRows, ReadError> {
    let types: Vec<&str> = Level::TYPES.iter().map(|(name, _)| *name).collect();
    let param_args: [&(dyn ToSql + Sync); 3] = [&types, &filter.names, &filter.prefix];
    let (hosts, params, taxonomies, hostgroups) = try_join!(
        client.query(FLEET_HOSTS, &[]),
        client.query(FLEET_PARAMS, &param_args),
        client.query(ALL_TAXONOMIES, &[]),
        client.query(ALL_HOSTGROUPS, &[]),
    )?;
    Ok(FleetRows {
        hosts: hosts.iter().map(host_from_row).collect(),
        params: params.iter().filter_map(param_from_row).collect(),
        taxonomies: taxonomies.iter().map(tree_from_row).collect(),
        hostgroups: hostgroups.iter().map(tree_from_row).collect(),
    })
}

/// One host (by certname, else by name) and exactly the rows its
/// resolution needs, in two round trips. `None` for an unknown host.
pub async fn load_one(
    client: &Client,
    filter: &ParamFilter,
    name: &str,
) -> Result<Option<FleetRows>, ReadError> {
    let Some(row) = client.query_opt(ONE_HOST, &[&name]).await? else {
        return Ok(None);
    };
    let host = host_from_row(&row);
    let hostgroup_ids = path_ids(row.get("hostgroup_ancestry"), host.hostgroup_id);
    let organization_ids = path_ids(row.get("organization_ancestry"), host.organization_id);
    let location_ids = path_ids(row.get("location_ancestry"), host.location_id);

    let mut owners: Vec<(&str, i64)> = Vec::new();
    let mut add = |level: Level, ids: &[i64]| {
        owners.extend(ids.iter().map(|id| (level.as_type(), *id)));
    };
    add(Level::Organization, &organization_ids);
    add(Level::Location, &location_ids);
    let subnets: Vec<i64> = [host.subnet_id, host.subnet6_id]
        .into_iter()
        .flatten()
        .collect();
    add(
        Level::Domain,
        &host.domain_id.into_iter().collect::<Vec<_>>(),
    );
    add(Level::Subnet, &subnets);
    add(Level::Os, &host.os_id.into_iter().collect::<Vec<_>>());
    add(Level::Hostgroup, &hostgroup_ids);
    add(Level::Host, &[host.id]);
    let (types, refs): (Vec<&str>, Vec<i64>) = owners.into_iter().unzip();
    let taxonomy_ids: Vec<i64> = organization_ids.into_iter().chain(location_ids).collect();

    let param_args: [&(dyn ToSql + Sync); 4] = [&types, &refs, &filter.names, &filter.prefix];
    let taxonomy_args: [&(dyn ToSql + Sync); 1] = [&taxonomy_ids];
    let hostgroup_args: [&(dyn ToSql + Sync); 1] = [&hostgroup_ids];
    let (params, taxonomies, hostgroups) = try_join!(
        client.query(CHAIN_PARAMS, &param_args),
        client.query(SOME_TAXONOMIES, &taxonomy_args),
        client.query(SOME_HOSTGROUPS, &hostgroup_args),
    )?;
    Ok(Some(FleetRows {
        hosts: vec![host],
        params: params.iter().filter_map(param_from_row).collect(),
        taxonomies: taxonomies.iter().map(tree_from_row).collect(),
        hostgroups: hostgroups.iter().map(tree_from_row).collect(),
    }))
}

/// Ancestor ids (root first) then the leaf; empty without a leaf.
fn path_ids(ancestry: Option<&str>, leaf: Option<i64>) -> Vec<i64> {
    let Some(leaf) = leaf else {
        return Vec::new();
    };
    let mut ids: Vec<i64> = ancestry
        .unwrap_or("")
        .split('/')
        .filter_map(|id| id.parse().ok())
        .collect();
    ids.push(leaf);
    ids
}

fn host_from_row(row: &Row) -> HostRow {
    HostRow {
        id: row.get("id"),
        name: row.get::<_, Option<String>>("name").unwrap_or_default(),
        certname: row.get("certname"),
        hostgroup_id: row.get("hostgroup_id"),
        organization_id: row.get("organization_id"),
        location_id: row.get("location_id"),
        os_id: row.get("os_id"),
        domain_id: row.get("domain_id"),
        subnet_id: row.get("subnet_id"),
        subnet6_id: row.get("subnet6_id"),
    }
}

/// `None` for a type no level reads (the SQL already leaves those out).
fn param_from_row(row: &Row) -> Option<ParamRow> {
    let level = Level::from_type(row.get::<_, Option<&str>>("type")?)?;
    let name: String = row.get::<_, Option<String>>("name")?;
    let value = decode_yaml_column(row.get("value"), &name).map_err(|e| e.to_string());
    Some(ParamRow {
        level,
        reference_id: row.get("reference_id"),
        key_type: KeyType::parse(row.get("key_type")),
        name,
        value,
    })
}

fn tree_from_row(row: &Row) -> TreeRow {
    TreeRow {
        id: row.get("id"),
        ancestry: row.get("ancestry"),
        title: row.get::<_, Option<String>>("title").unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::path_ids;

    #[test]
    fn paths_are_ancestors_root_first_then_the_leaf() {
        assert_eq!(path_ids(Some("1/2"), Some(3)), [1, 2, 3]);
        assert_eq!(path_ids(None, Some(3)), [3]);
        assert_eq!(path_ids(Some("1/2"), None), Vec::<i64>::new());
    }
}
