//! `pvc-bridge audit <certname> [--since]`: a host's history from the
//! repository, newest first.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};

use super::git::GitRepo;
use crate::certname::Certname;

/// What printing a history found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    Printed,
    /// The host has a branch but nothing changed in the period asked.
    NothingSince,
    /// The repository has no branch for the host.
    NoBranch,
}

/// Writes the history of `certname` in the repository at `repo` to `out`:
/// per commit, newest first, its date, subject and body, then the diff of
/// `facts.yaml` / `last_run.yaml`. `since`: see [`parse_since`].
pub fn print_history(
    repo: &Path,
    certname: &Certname,
    since: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<History> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let since = since
        .map(|text| parse_since(text, now))
        .transpose()
        .context("--since")?;
    let git = GitRepo::new(repo);
    if !git.exists() {
        bail!("no audit repository at {} (audit.repo)", repo.display());
    }
    match git.history(certname.as_str(), since)? {
        Some(text) if text.is_empty() => Ok(History::NothingSince),
        Some(text) => {
            out.write_all(&text).context("writing the history")?;
            Ok(History::Printed)
        }
        None => Ok(History::NoBranch),
    }
}

/// `--since` as seconds since the epoch: a UTC date (`2026-11-01`), date
/// and time (`2026-11-01 06:00`, `2026-11-01T06:00:00Z`), or `<n> <unit>
/// ago` (seconds, minutes, hours, days, weeks) before `now`. Checked here:
/// git's own date parser takes anything, misspellings included, as some
/// date.
pub fn parse_since(text: &str, now: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Some(ago) = text.strip_suffix(" ago") {
        let (n, unit) = ago
            .trim()
            .split_once(' ')
            .with_context(|| format!("{text:?}: expected `<n> <unit> ago`"))?;
        let n: i64 = n
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .with_context(|| format!("{text:?}: {n:?} is not a count"))?;
        let unit = match unit.trim().trim_end_matches('s') {
            "second" => 1,
            "minute" => 60,
            "hour" => 3600,
            "day" => 86_400,
            "week" => 7 * 86_400,
            other => {
                bail!("{text:?}: unknown unit {other:?} (seconds, minutes, hours, days, weeks)")
            }
        };
        return Ok(now - n.saturating_mul(unit));
    }
    let bad = || format!("{text:?}: expected YYYY-MM-DD[ HH:MM[:SS]] (UTC) or `<n> <unit> ago`");
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix(" UTC"))
        .or_else(|| text.strip_suffix(" +0000"))
        .unwrap_or(text);
    let (date, time) = match text.split_once([' ', 'T']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let number = |s: &str, digits: usize| -> anyhow::Result<i64> {
        if s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit()) {
            bail!(bad());
        }
        Ok(s.parse()?)
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else { bail!(bad()) };
    let (y, m, d) = (number(y, 4)?, number(m, 2)?, number(d, 2)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        bail!("{text:?}: no such date");
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let parts: Vec<&str> = time.split(':').collect();
        let (h, min, s) = match parts[..] {
            [h, min] => (number(h, 2)?, number(min, 2)?, 0),
            [h, min, s] => (number(h, 2)?, number(min, 2)?, number(s, 2)?),
            _ => bail!(bad()),
        };
        if h > 23 || min > 59 || s > 59 {
            bail!("{text:?}: no such time");
        }
        secs += h * 3600 + min * 60 + s;
    }
    Ok(secs)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_760_765;

    #[test]
    fn dates_and_times_are_utc() {
        assert_eq!(parse_since("1970-01-01", NOW).unwrap(), 0);
        assert_eq!(parse_since("2026-11-27", NOW).unwrap(), 1_795_737_600);
        assert_eq!(parse_since("2026-11-27 06:00", NOW).unwrap(), 1_795_759_200);
        assert_eq!(
            parse_since("2026-11-27T06:00:00Z", NOW).unwrap(),
            1_795_759_200
        );
        assert_eq!(
            parse_since("2026-11-27 06:00:00 +0000", NOW).unwrap(),
            1_795_759_200
        );
        assert_eq!(parse_since("2024-02-29", NOW).unwrap(), 1_709_164_800);
        assert_eq!(parse_since("2100-01-01", NOW).unwrap(), 4_102_444_800);
    }

    #[test]
    fn relative_periods_count_back_from_now() {
        assert_eq!(parse_since("2 weeks ago", NOW).unwrap(), NOW - 14 * 86_400);
        assert_eq!(parse_since("1 day ago", NOW).unwrap(), NOW - 86_400);
        assert_eq!(parse_since("90 minutes ago", NOW).unwrap(), NOW - 5_400);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "garbage",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "26-11-01",
            "2026-11-01 25:00",
            "yesterday",
            "2 fortnights ago",
            "-1 days ago",
            "2026/11/01",
        ] {
            assert!(parse_since(bad, NOW).is_err(), "{bad:?} was taken");
        }
    }
}
