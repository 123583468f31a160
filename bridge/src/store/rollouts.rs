//! Staged rollouts as Foreman's rollout plugin (`foreman_pvc`) keeps them in
//! Foreman's database: `foreman_pvc_rollouts`, their `foreman_pvc_waves` and
//! the frozen host list `foreman_pvc_wave_hosts`. Read-only, from a
//! replica, for the status page. The plugin is optional: without its tables
//! the read answers "not installed" instead of failing.

use tokio_postgres::{Client, Row};

use crate::schedule::Ts;

/// Rollouts finished (completed or aborted) this recently are still shown.
pub const RECENT_SECS: i64 = 3600;
/// At most this many rollouts are read (open ones first, newest first).
pub const MAX_ROLLOUTS: i64 = 50;

/// One rollout with its waves, ordered by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub id: i64,
    pub name: String,
    pub flag_name: String,
    pub flag_value: bool,
    /// `draft`, `running`, `paused`, `completed` or `aborted`.
    pub state: String,
    /// Position of the current wave (0 is the first).
    pub current_wave: Option<i32>,
    /// The current wave passed and the next one waits for a person.
    pub awaiting_approval: bool,
    pub status_reason: Option<String>,
    /// Hosts in the frozen host list.
    pub host_count: i32,
    pub updated: Ts,
    pub waves: Vec<WaveRow>,
}

/// One wave with its hosts counted by outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveRow {
    /// 0 is the first (canary) wave.
    pub position: i32,
    /// `pending`, `active`, `passed`, `failed` or `overridden`.
    pub state: String,
    pub deadline: Option<Ts>,
    /// Why the gate failed it.
    pub gate_reason: Option<String>,
    pub pending: i64,
    pub ok: i64,
    pub failed: i64,
    pub unreachable: i64,
}

/// The three tables the read needs; all present means the plugin is.
const INSTALLED: &str = "SELECT to_regclass('foreman_pvc_rollouts') IS NOT NULL \
       AND to_regclass('foreman_pvc_waves') IS NOT NULL \
       AND to_regclass('foreman_pvc_wave_hosts') IS NOT NULL";

/// Open rollouts and those finished in the last `$1` seconds, each wave
/// with its hosts counted by outcome. Timestamps are UTC without a zone,
/// as Rails writes them.
const ROLLOUTS: &str = "WITH shown AS ( \
       SELECT id, name, flag_name, flag_value, state, current_wave, awaiting_approval, \
              status_reason, host_count, updated_at \
       FROM foreman_pvc_rollouts \
       WHERE state IN ('running', 'paused') \
          OR (state IN ('completed', 'aborted') \
              AND updated_at > (now() AT TIME ZONE 'UTC') - make_interval(secs => $1::float8)) \
       ORDER BY state IN ('running', 'paused') DESC, updated_at DESC \
       LIMIT $2) \
     SELECT s.id, s.name, s.flag_name, s.flag_value, s.state, s.current_wave, \
            s.awaiting_approval, s.status_reason, s.host_count, \
            (extract(epoch FROM s.updated_at AT TIME ZONE 'UTC') * 1000)::int8 AS updated_ms, \
            w.position, w.state AS wave_state, w.gate_reason, \
            (extract(epoch FROM w.deadline_at AT TIME ZONE 'UTC') * 1000)::int8 AS deadline_ms, \
            c.pending, c.ok, c.failed, c.unreachable \
     FROM shown s \
     LEFT JOIN foreman_pvc_waves w ON w.rollout_id = s.id \
     LEFT JOIN LATERAL ( \
       SELECT count(*) FILTER (WHERE outcome = 'pending') AS pending, \
              count(*) FILTER (WHERE outcome = 'ok') AS ok, \
              count(*) FILTER (WHERE outcome = 'failed') AS failed, \
              count(*) FILTER (WHERE outcome = 'unreachable') AS unreachable \
       FROM foreman_pvc_wave_hosts h WHERE h.wave_id = w.id) c ON true \
     ORDER BY s.id, w.position";

/// The rollouts to show; `None` when the plugin's tables do not exist.
pub async fn load(client: &Client) -> Result<Option<Vec<RolloutRow>>, tokio_postgres::Error> {
    let installed: Option<bool> = client.query_one(INSTALLED, &[]).await?.get(0);
    if installed != Some(true) {
        return Ok(None);
    }
    // Not a cached statement: the tables come and go with the plugin.
    let rows = client
        .query(ROLLOUTS, &[&(RECENT_SECS as f64), &MAX_ROLLOUTS])
        .await?;
    Ok(Some(group(&rows)))
}

/// Joined rows (one per wave, ordered by rollout) into rollouts.
fn group(rows: &[Row]) -> Vec<RolloutRow> {
    let mut out: Vec<RolloutRow> = Vec::new();
    for row in rows {
        let id: i64 = row.get("id");
        if out.last().is_none_or(|r| r.id != id) {
            out.push(RolloutRow {
                id,
                name: row.get("name"),
                flag_name: row.get("flag_name"),
                flag_value: row.get("flag_value"),
                state: row.get("state"),
                current_wave: row.get("current_wave"),
                awaiting_approval: row.get("awaiting_approval"),
                status_reason: row.get("status_reason"),
                host_count: row.get("host_count"),
                updated: Ts(row.get("updated_ms")),
                waves: Vec::new(),
            });
        }
        // A rollout without waves yet (a draft) has one row of NULLs.
        let Some(position) = row.get::<_, Option<i32>>("position") else {
            continue;
        };
        let count = |name: &str| row.get::<_, Option<i64>>(name).unwrap_or(0);
        if let Some(rollout) = out.last_mut() {
            rollout.waves.push(WaveRow {
                position,
                state: row.get("wave_state"),
                deadline: row.get::<_, Option<i64>>("deadline_ms").map(Ts),
                gate_reason: row.get("gate_reason"),
                pending: count("pending"),
                ok: count("ok"),
                failed: count("failed"),
                unreachable: count("unreachable"),
            });
        }
    }
    out
}
