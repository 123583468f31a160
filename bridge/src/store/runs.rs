//! Reads the run service needs besides the `pvc` schema's own API: host
//! selections for converge requests (Foreman's tables) and the leases other
//! bridge processes ended.

use deadpool_postgres::ClientWrapper as Client;

use crate::schedule::Ts;

/// Certnames (or names) of the hosts in the hostgroup titled `title` and in
/// every hostgroup below it, as Foreman's `hostgroup_title` search does.
pub async fn hosts_in_hostgroup(client: &Client, title: &str) -> anyhow::Result<Vec<String>> {
    let statement = client
        .prepare_cached(
            // A hostgroup's title is its full path ("base/web"), so the
            // descendants are the titles below it.
            "SELECT COALESCE(NULLIF(h.certname, ''), h.name) AS certname FROM hosts h \
             JOIN hostgroups g ON g.id = h.hostgroup_id \
             WHERE h.type = 'Host::Managed' \
               AND (g.title = $1 OR starts_with(g.title, $1 || '/')) \
             ORDER BY 1",
        )
        .await?;
    let rows = client.query(&statement, &[&title]).await?;
    Ok(rows.iter().map(|r| r.get("certname")).collect())
}

/// Certnames of the hosts in the Puppet environment `name` (foreman_puppet).
pub async fn hosts_in_environment(client: &Client, name: &str) -> anyhow::Result<Vec<String>> {
    let statement = client
        .prepare_cached(
            "SELECT COALESCE(NULLIF(h.certname, ''), h.name) AS certname FROM hosts h \
             JOIN host_puppet_facets f ON f.host_id = h.id \
             JOIN environments e ON e.id = f.environment_id \
             WHERE h.type = 'Host::Managed' AND e.name = $1 ORDER BY 1",
        )
        .await?;
    let rows = client.query(&statement, &[&name]).await?;
    Ok(rows.iter().map(|r| r.get("certname")).collect())
}

/// A lease that ended (report or expiry) after some time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedLease {
    pub run_id: String,
    pub certname: String,
    pub ended: Ts,
}

/// Leases ended after `after`, oldest first: runs other bridge processes
/// saw finish.
pub async fn leases_ended_since(
    client: &Client,
    after: Ts,
    limit: i64,
) -> anyhow::Result<Vec<EndedLease>> {
    let statement = client
        .prepare_cached(
            "SELECT run_id::text AS run_id, certname, \
                    (extract(epoch FROM ended) * 1000)::int8 AS ended \
             FROM pvc.leases WHERE ended > to_timestamp($1::float8 / 1000) \
             ORDER BY ended LIMIT $2",
        )
        .await?;
    let rows = client
        .query(&statement, &[&(after.0 as f64), &limit])
        .await?;
    Ok(rows
        .iter()
        .map(|r| EndedLease {
            run_id: r.get("run_id"),
            certname: r.get("certname"),
            ended: Ts(r.get("ended")),
        })
        .collect())
}
