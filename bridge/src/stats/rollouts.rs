//! Staged rollouts (Foreman's rollout plugin) as the status page shows
//! them: per rollout its current wave "k of n" with that wave's hosts by
//! outcome, and the whole rollout's. Pure: the rows `store::rollouts`
//! read in, the summary out.

use serde::Serialize;

use crate::store::rollouts::{RolloutRow, WaveRow};

/// Rollout states counted in `/metrics`, as the plugin names them
/// (drafts are not read).
pub const STATES: [&str; 4] = ["running", "paused", "completed", "aborted"];

/// What the read found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The plugin's tables were read.
    Read,
    /// Foreman's database has no rollout tables.
    NotInstalled,
    /// The read failed (the reason is in `error`).
    Unavailable,
}

/// Hosts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HostOutcomes {
    pub pending: u64,
    pub ok: u64,
    pub failed: u64,
    pub unreachable: u64,
    pub total: u64,
}

impl HostOutcomes {
    fn of(wave: &WaveRow) -> HostOutcomes {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let (pending, ok, failed, unreachable) = (
            n(wave.pending),
            n(wave.ok),
            n(wave.failed),
            n(wave.unreachable),
        );
        HostOutcomes {
            pending,
            ok,
            failed,
            unreachable,
            total: pending + ok + failed + unreachable,
        }
    }

    fn add(&mut self, other: HostOutcomes) {
        self.pending += other.pending;
        self.ok += other.ok;
        self.failed += other.failed;
        self.unreachable += other.unreachable;
        self.total += other.total;
    }

    /// `(outcome, hosts)` as labelled in `/metrics`.
    pub fn labelled(&self) -> [(&'static str, u64); 4] {
        [
            ("pending", self.pending),
            ("ok", self.ok),
            ("failed", self.failed),
            ("unreachable", self.unreachable),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaveView {
    /// 1 is the first (canary) wave.
    pub number: usize,
    pub state: String,
    pub hosts: HostOutcomes,
    pub deadline_ms: Option<i64>,
    /// It passed and the next wave waits for a person to promote it.
    pub awaiting_approval: bool,
    pub gate_reason: Option<String>,
}

impl WaveView {
    fn of(wave: &WaveRow, awaiting_approval: bool) -> WaveView {
        WaveView {
            number: usize::try_from(wave.position).unwrap_or(0) + 1,
            state: wave.state.clone(),
            hosts: HostOutcomes::of(wave),
            deadline_ms: wave.deadline.map(|t| t.0),
            awaiting_approval,
            gate_reason: wave.gate_reason.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    pub name: String,
    pub flag_name: String,
    pub flag_value: bool,
    pub state: String,
    pub status_reason: Option<String>,
    /// Paused because the gate failed its current wave (not by hand).
    pub paused_by_failures: bool,
    pub waves: usize,
    /// The current wave ("k of `waves`"), if one has started.
    pub current: Option<WaveView>,
    /// Every wave's hosts together.
    pub hosts: HostOutcomes,
    pub updated_ms: i64,
}

impl RolloutView {
    fn of(row: &RolloutRow) -> RolloutView {
        let mut hosts = HostOutcomes::default();
        for wave in &row.waves {
            hosts.add(HostOutcomes::of(wave));
        }
        let current = row
            .current_wave
            .and_then(|position| row.waves.iter().find(|w| w.position == position))
            .map(|wave| WaveView::of(wave, row.awaiting_approval && row.state == "running"));
        let paused_by_failures =
            row.state == "paused" && current.as_ref().is_some_and(|w| w.state == "failed");
        RolloutView {
            name: row.name.clone(),
            flag_name: row.flag_name.clone(),
            flag_value: row.flag_value,
            state: row.state.clone(),
            status_reason: row.status_reason.clone(),
            paused_by_failures,
            waves: row.waves.len(),
            current,
            hosts,
            updated_ms: row.updated.0,
        }
    }
}

/// The rollouts panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollouts {
    pub source: Source,
    pub error: Option<String>,
    /// Rollouts shown, by state ([`STATES`], in that order); completed and
    /// aborted ones count while shown (the last hour).
    pub by_state: Vec<(String, usize)>,
    pub paused_by_failures: usize,
    /// Open rollouts first, then the recently finished.
    pub rollouts: Vec<RolloutView>,
}

impl Rollouts {
    /// From the read: `Ok(None)` when the plugin is not installed.
    pub fn of(read: Result<Option<Vec<RolloutRow>>, String>) -> Rollouts {
        let (source, error, rows) = match read {
            Ok(Some(rows)) => (Source::Read, None, rows),
            Ok(None) => (Source::NotInstalled, None, Vec::new()),
            Err(error) => (Source::Unavailable, Some(error), Vec::new()),
        };
        let mut rollouts: Vec<RolloutView> = rows.iter().map(RolloutView::of).collect();
        let open = |r: &RolloutView| r.state == "running" || r.state == "paused";
        // Stable: within each group the read's order (newest first) stays.
        rollouts.sort_by_key(|r| !open(r));
        let by_state = STATES
            .iter()
            .map(|s| {
                let n = rollouts.iter().filter(|r| r.state == *s).count();
                ((*s).to_owned(), n)
            })
            .collect();
        Rollouts {
            source,
            error,
            by_state,
            paused_by_failures: rollouts.iter().filter(|r| r.paused_by_failures).count(),
            rollouts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Ts;

    fn wave(position: i32, state: &str, counts: [i64; 4]) -> WaveRow {
        WaveRow {
            position,
            state: state.into(),
            deadline: Some(Ts(1_000 + i64::from(position))),
            gate_reason: None,
            pending: counts[0],
            ok: counts[1],
            failed: counts[2],
            unreachable: counts[3],
        }
    }

    fn rollout(name: &str, state: &str, current: Option<i32>, waves: Vec<WaveRow>) -> RolloutRow {
        RolloutRow {
            id: 1,
            name: name.into(),
            flag_name: "update_flag".into(),
            flag_value: true,
            state: state.into(),
            current_wave: current,
            awaiting_approval: false,
            status_reason: None,
            host_count: 0,
            updated: Ts(5_000),
            waves,
        }
    }

    #[test]
    fn current_wave_and_overall_counts() {
        let read = vec![
            rollout(
                "done",
                "completed",
                Some(0),
                vec![wave(0, "passed", [0, 3, 0, 0])],
            ),
            rollout(
                "kernel",
                "running",
                Some(1),
                vec![
                    wave(0, "passed", [0, 2, 0, 0]),
                    wave(1, "active", [5, 3, 1, 1]),
                    wave(2, "pending", [20, 0, 0, 0]),
                ],
            ),
        ];
        let r = Rollouts::of(Ok(Some(read)));
        assert_eq!(r.source, Source::Read);
        // Open rollouts first.
        assert_eq!(r.rollouts[0].name, "kernel");
        let kernel = &r.rollouts[0];
        assert_eq!(kernel.waves, 3);
        let current = kernel.current.as_ref().unwrap();
        assert_eq!((current.number, current.state.as_str()), (2, "active"));
        assert_eq!(
            current.hosts,
            HostOutcomes {
                pending: 5,
                ok: 3,
                failed: 1,
                unreachable: 1,
                total: 10
            }
        );
        assert_eq!(current.deadline_ms, Some(1_001));
        assert_eq!(
            kernel.hosts,
            HostOutcomes {
                pending: 25,
                ok: 5,
                failed: 1,
                unreachable: 1,
                total: 32
            }
        );
        assert!(!kernel.paused_by_failures);
        let by_state: Vec<(&str, usize)> =
            r.by_state.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        assert_eq!(
            by_state,
            [
                ("running", 1),
                ("paused", 0),
                ("completed", 1),
                ("aborted", 0)
            ]
        );
        assert_eq!(r.paused_by_failures, 0);
    }

    #[test]
    fn paused_by_the_gate_or_by_hand_and_awaiting_approval() {
        let mut gate = rollout(
            "gate",
            "paused",
            Some(0),
            vec![wave(0, "failed", [0, 1, 2, 0])],
        );
        gate.waves[0].gate_reason = Some("2 of 3 hosts failed".into());
        let by_hand = rollout(
            "hand",
            "paused",
            Some(0),
            vec![wave(0, "active", [1, 0, 0, 0])],
        );
        let mut approval = rollout(
            "approval",
            "running",
            Some(0),
            vec![
                wave(0, "passed", [0, 4, 0, 0]),
                wave(1, "pending", [8, 0, 0, 0]),
            ],
        );
        approval.awaiting_approval = true;
        let r = Rollouts::of(Ok(Some(vec![gate, by_hand, approval])));
        let flags: Vec<(bool, bool)> = r
            .rollouts
            .iter()
            .map(|v| {
                let w = v.current.as_ref().unwrap();
                (v.paused_by_failures, w.awaiting_approval)
            })
            .collect();
        assert_eq!(flags, [(true, false), (false, false), (false, true)]);
        assert_eq!(r.paused_by_failures, 1);
        assert_eq!(
            r.rollouts[0]
                .current
                .as_ref()
                .unwrap()
                .gate_reason
                .as_deref(),
            Some("2 of 3 hosts failed")
        );
    }

    #[test]
    fn not_installed_and_unavailable() {
        let none = Rollouts::of(Ok(None));
        assert_eq!(
            (none.source, none.rollouts.len()),
            (Source::NotInstalled, 0)
        );
        assert!(none.by_state.iter().all(|(_, n)| *n == 0));
        let failed = Rollouts::of(Err("timeout".into()));
        assert_eq!(failed.source, Source::Unavailable);
        assert_eq!(failed.error.as_deref(), Some("timeout"));
        // A rollout with no wave started yet has no current wave.
        let fresh = Rollouts::of(Ok(Some(vec![rollout("new", "running", None, vec![])])));
        assert_eq!(fresh.rollouts[0].current, None);
        assert_eq!(fresh.rollouts[0].hosts.total, 0);
    }
}
