//! One child in its own process group: stdin null, output streamed to the
//! caller while it runs, and on timeout the whole group (Puppet's execs,
//! package managers, service scripts) gets SIGTERM, then SIGKILL.
//!
//! Signals go through the `kill` command: the crate forbids `unsafe`, and
//! no signal crate is worth a dependency for two calls per timeout.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::time::{sleep, sleep_until, Instant};

/// From SIGTERM to SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(10);
/// After the child exits, how long its output is still read: something it
/// started may hold the pipe open for good.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// How often a terminated group is checked for survivors.
const GROUP_POLL: Duration = Duration::from_millis(100);

/// Where a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Out,
    Err,
}

/// stderr into the same pipe as stdout (interleaved as written), or its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stderr {
    Merged,
    Separate,
}

#[derive(Debug)]
pub(super) struct Ended {
    /// `None` only when the child could not be waited for.
    pub status: Option<ExitStatus>,
    /// Signalled after `timeout`.
    pub timed_out: bool,
}

/// Runs `command` in a new process group until it exits or `timeout`
/// passes, handing each chunk of output to `sink`. Errs only when it
/// cannot be started.
pub(super) async fn run_in_group(
    command: &mut Command,
    timeout: Duration,
    stderr: Stderr,
    mut sink: impl FnMut(Stream, &[u8]),
) -> io::Result<Ended> {
    let (out_tx, mut out_rx) = pipe::pipe()?;
    let out_fd = out_tx.into_blocking_fd()?;
    let mut err_rx = match stderr {
        Stderr::Merged => {
            command.stderr(Stdio::from(out_fd.try_clone()?));
            None
        }
        Stderr::Separate => {
            let (err_tx, err_rx) = pipe::pipe()?;
            command.stderr(Stdio::from(err_tx.into_blocking_fd()?));
            Some(err_rx)
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_fd))
        .process_group(0);
    let spawned = command.spawn();
    // Our copies of the write ends: closed now, or the pipes never end.
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = spawned?;
    let Some(pgid) = child.id() else {
        // Already reaped: nothing to wait for or signal.
        return Ok(Ended {
            status: child.try_wait()?,
            timed_out: false,
        });
    };
    let mut guard = GroupGuard(Some(pgid));

    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 4 * 1024];
    let mut out_open = true;
    let mut err_open = err_rx.is_some();
    let mut timed_out = false;
    let mut wake = Instant::now() + timeout;
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            read = out_rx.read(&mut out_buf), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => sink(Stream::Out, &out_buf[..n]),
            },
            read = read_some(&mut err_rx, &mut err_buf), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => sink(Stream::Err, &err_buf[..n]),
            },
            () = sleep_until(wake) => match kill_at {
                None => {
                    timed_out = true;
                    tracing::warn!(pgid, "still running after {} s: SIGTERM to its process group", timeout.as_secs());
                    signal_group(pgid, "TERM").await;
                    let at = Instant::now() + KILL_AFTER;
                    kill_at = Some(at);
                    wake = at;
                }
                Some(_) => {
                    tracing::warn!(pgid, "still running {} s after SIGTERM: SIGKILL", KILL_AFTER.as_secs());
                    signal_group(pgid, "KILL").await;
                    // Nothing left to escalate to: wait for the exit.
                    wake = Instant::now() + Duration::from_secs(24 * 3600);
                }
            },
        }
    };

    if let Some(kill_at) = kill_at {
        // The leader is gone; what it started in its group goes too.
        while group_alive(pgid).await && Instant::now() < kill_at {
            sleep(GROUP_POLL).await;
        }
        if group_alive(pgid).await {
            signal_group(pgid, "KILL").await;
        }
    }
    guard.0 = None;

    let grace = Instant::now() + OUTPUT_GRACE;
    while out_open || err_open {
        tokio::select! {
            read = out_rx.read(&mut out_buf), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => sink(Stream::Out, &out_buf[..n]),
            },
            read = read_some(&mut err_rx, &mut err_buf), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => sink(Stream::Err, &err_buf[..n]),
            },
            () = sleep_until(grace) => {
                tracing::debug!(pgid, "output still open {} s after the exit; not read further", OUTPUT_GRACE.as_secs());
                break;
            }
        }
    }
    Ok(Ended { status, timed_out })
}

async fn read_some(rx: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> io::Result<usize> {
    match rx {
        Some(rx) => rx.read(buf).await,
        None => Ok(0),
    }
}

/// Sends `SIGsignal` to process group `pgid`. Failures (the group is
/// already gone) are only logged.
async fn signal_group(pgid: u32, signal: &str) {
    let status = Command::new(kill_command())
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !status.as_ref().is_ok_and(ExitStatus::success) {
        tracing::debug!(pgid, signal, ?status, "kill found no process to signal");
    }
}

fn kill_command() -> &'static str {
    if std::path::Path::new("/bin/kill").exists() {
        "/bin/kill"
    } else {
        "kill"
    }
}

/// Whether any process of group `pgid` is still running. Zombies do not
/// count: an orphan is reaped by whoever adopted it, which may be never.
async fn group_alive(pgid: u32) -> bool {
    match tokio::task::spawn_blocking(move || group_members_running(pgid)).await {
        Ok(Ok(alive)) => alive,
        // No /proc to look at: ask the kernel, zombies included.
        _ => Command::new(kill_command())
            .args(["-0".into(), "--".into(), format!("-{pgid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success()),
    }
}

fn group_members_running(pgid: u32) -> io::Result<bool> {
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Gone since the listing: not running.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((state, group)) = parse_stat(&stat) {
            if group == pgid && state != 'Z' && state != 'X' {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// `/proc/<pid>/stat`: `pid (comm) state ppid pgrp …`; comm may hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// A run abandoned half-way (its future dropped, e.g. the daemon stops)
/// does not leave Puppet running unattended.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = std::process::Command::new(kill_command())
                .args(["-TERM".into(), "--".into(), format!("-{pgid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(
            parse_stat("4242 (sleep) S 4241 4240 4240 0 -1 4194560 88 0 0 0"),
            Some(('S', 4240))
        );
        assert_eq!(
            parse_stat("17 (odd) name (x)) Z 1 99 99 0"),
            Some(('Z', 99))
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 0 notanumber"), None);
    }
}
