//! The Puppet test environment (`tests/e2e/puppet/env.sh`): its
//! subcommands, and the `KEY=value` files it leaves behind (`server.env`,
//! `agent.env`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

/// The environment script.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/puppet/env.sh")
}

/// `env.sh <args>` to completion within `timeout`; its stdout. Its stderr
/// (diagnostics) goes to the test's. Stdout goes through a file, not a
/// pipe: a background process that kept the pipe open (puppetserver) would
/// otherwise hold the call until it exits.
pub async fn run(dir: &Path, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
    let out_file = dir.join(format!(
        "env-{}-{}.out",
        args.first().copied().unwrap_or("none"),
        std::process::id()
    ));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = std::fs::File::create(&out_file)
        .with_context(|| format!("creating {}", out_file.display()))?;
    let mut child = tokio::process::Command::new("bash")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", script().display()))?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.context("waiting for env.sh")?,
        Err(_) => {
            let _ = child.kill().await;
            bail!(
                "env.sh {} did not finish within {timeout:?}",
                args.join(" ")
            );
        }
    };
    let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    if !status.success() {
        bail!(
            "env.sh {} failed ({status}); stdout:\n{stdout}",
            args.join(" ")
        );
    }
    Ok(stdout)
}

/// `KEY=value` lines as a shell would read them: blank lines, `#`
/// comments and an `export ` prefix are skipped, one pair of surrounding
/// quotes is removed.
pub fn parse(text: &str) -> HashMap<String, String> {
    let mut values = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(open, close)| {
                value
                    .strip_prefix(*open)
                    .and_then(|v| v.strip_suffix(*close))
            })
            .unwrap_or(value);
        values.insert(key.trim().to_owned(), unquoted.to_owned());
    }
    values
}

/// A parsed `KEY=value` file whose keys are looked up with a message that
/// names the file.
pub struct EnvFile {
    path: PathBuf,
    values: HashMap<String, String>,
}

impl EnvFile {
    pub fn read(path: &Path) -> anyhow::Result<EnvFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(EnvFile {
            path: path.to_owned(),
            values: parse(&text),
        })
    }

    /// Parses `text` (the stdout of `env.sh cert`) as if it were `path`.
    pub fn from_text(path: &str, text: &str) -> EnvFile {
        EnvFile {
            path: PathBuf::from(path),
            values: parse(text),
        }
    }

    pub fn get(&self, key: &str) -> anyhow::Result<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .with_context(|| format!("{}: no {key}", self.path.display()))
    }

    pub fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        self.get(key).map(PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn shell_assignments_are_read_as_the_shell_reads_them() {
        let values =
            parse("# comment\nexport A=1\nB='two words'\nC=\"x=y\"\n\nD=/p/q\nnot a pair\n");
        assert_eq!(values["A"], "1");
        assert_eq!(values["B"], "two words");
        assert_eq!(values["C"], "x=y");
        assert_eq!(values["D"], "/p/q");
        assert_eq!(values.len(), 4);
    }
}
