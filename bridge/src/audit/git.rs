//! The bare repository, through the `git` binary (blocking; callers run it
//! on tokio's blocking pool): create it and its id, read branch tips with
//! one `git cat-file --batch` per round, write a round with one
//! `git fast-import`, delete the host branches for a rebuild, keep the pack
//! count down, print a host's history.
//!
//! Every command runs with the system and user configuration ignored, so
//! nothing of the machine's git setup changes what is written or printed.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context};

use super::layout::{self, FACTS_FILE, RUN_FILE};
use super::stream::{branch, Tip, Tips};

/// Where the host branches live.
const HOSTS_PREFIX: &str = "refs/heads/hosts/";
/// The repository's id, in its own config.
const ID_KEY: &str = "pvc.repoid";
/// More packs than this and a round ends with a geometric repack (merges
/// the small packs each round leaves; cheap, unlike a full `gc`).
const MAX_PACKS: usize = 16;

/// A bare repository at a path.
#[derive(Debug, Clone)]
pub struct GitRepo {
    path: PathBuf,
}

/// `git` with the machine's configuration left out.
fn git() -> Command {
    let mut command = Command::new("git");
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null());
    command
}

/// Runs `command`; its stdout on success, else an error with its stderr.
fn run(mut command: Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let output = command
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("{what}: cannot run git (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "{what}: git failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// Fails unless a `git` binary runs.
pub fn check_git() -> anyhow::Result<String> {
    let mut command = git();
    command.arg("--version");
    let out = run(command, "git --version")?;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}

impl GitRepo {
    pub fn new(path: impl Into<PathBuf>) -> GitRepo {
        GitRepo { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn git(&self) -> Command {
        let mut command = git();
        command.arg("--git-dir").arg(&self.path);
        command
    }

    /// Whether a repository is there (`HEAD` and `objects/`).
    pub fn exists(&self) -> bool {
        self.path.join("HEAD").is_file() && self.path.join("objects").is_dir()
    }

    /// The repository's id: created with the repository (`git init --bare`)
    /// when missing, and set when the repository has none.
    pub fn open_or_init(&self) -> anyhow::Result<String> {
        if !self.exists() {
            self.check_empty_dir()?;
            let mut command = git();
            command.args(["init", "--bare", "--quiet"]).arg(&self.path);
            run(command, "creating the audit repository")?;
            tracing::info!(repo = %self.path.display(), "created the audit repository");
        }
        if let Some(id) = self.repo_id()? {
            return Ok(id);
        }
        let id = random_id()?;
        let mut command = self.git();
        command.args(["config", ID_KEY, &id]);
        run(command, "setting the audit repository's id")?;
        Ok(id)
    }

    /// A directory that is not a repository is used only when empty (a
    /// fresh volume's `lost+found` aside): never write into someone's data.
    fn check_empty_dir(&self) -> anyhow::Result<()> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", self.path.display()))?;
            if entry.file_name() != "lost+found" {
                bail!(
                    "{} is neither a git repository nor empty: refusing to create the audit repository there",
                    self.path.display()
                );
            }
        }
        Ok(())
    }

    /// The id in the repository's config, if set.
    pub fn repo_id(&self) -> anyhow::Result<Option<String>> {
        let output = self
            .git()
            .args(["config", "--get", ID_KEY])
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .context("reading the audit repository's id: cannot run git")?;
        match output.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            )),
            // Exit 1: the key is not set.
            Some(1) => Ok(None),
            _ => bail!(
                "reading the audit repository's id: git failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }

    /// Every host branch.
    pub fn host_branches(&self) -> anyhow::Result<Vec<String>> {
        let mut command = self.git();
        command.args(["for-each-ref", "--format=%(refname)", HOSTS_PREFIX]);
        let out = run(command, "listing the host branches")?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Deletes every host branch (one `update-ref` transaction); how many.
    pub fn delete_host_branches(&self) -> anyhow::Result<usize> {
        let refs = self.host_branches()?;
        if refs.is_empty() {
            return Ok(0);
        }
        let mut input = String::from("start\n");
        for name in &refs {
            input.push_str(&format!("delete {name}\n"));
        }
        input.push_str("commit\n");
        let mut command = self.git();
        command.args(["update-ref", "--stdin"]);
        feed(command, input.as_bytes(), "deleting the host branches")?;
        Ok(refs.len())
    }

    /// Runs one `git fast-import` over `stream` (which ends with `done`).
    pub fn fast_import(&self, stream: &[u8]) -> anyhow::Result<()> {
        // Always a pack (by default a small import is loosened into one
        // file per object, which nothing here would ever pack again).
        let mut command = git();
        command
            .args(["-c", "fastimport.unpackLimit=0", "--git-dir"])
            .arg(&self.path)
            .args(["fast-import", "--quiet"]);
        feed(command, stream, "git fast-import")
    }

    /// A reader of branch tips and their files for one round.
    pub fn cat_file(&self) -> anyhow::Result<CatFile> {
        let mut child = self
            .git()
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting git cat-file --batch")?;
        let stdin = child.stdin.take().context("cat-file stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("cat-file stdout")?);
        Ok(CatFile {
            child,
            stdin: Some(stdin),
            stdout,
        })
    }

    /// Merges small packs when there are many (`git repack --geometric`);
    /// whether it ran.
    pub fn maybe_repack(&self) -> anyhow::Result<bool> {
        let packs = match std::fs::read_dir(self.path.join("objects/pack")) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
                .count(),
            Err(_) => return Ok(false),
        };
        if packs <= MAX_PACKS {
            return Ok(false);
        }
        let mut command = self.git();
        command.args(["repack", "-d", "-q", "--geometric=2"]);
        run(command, "repacking the audit repository")?;
        Ok(true)
    }

    /// `git log -p` of a host's branch, newest first: date, subject and
    /// body, then the diff of its files. `None` when the host has no branch.
    /// `since`: seconds since the epoch.
    pub fn history(&self, certname: &str, since: Option<i64>) -> anyhow::Result<Option<Vec<u8>>> {
        let name = branch(certname);
        let mut check = self.git();
        check.args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{name}^{{commit}}"),
        ]);
        let exists = check
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run git (is it installed?)")?;
        if !exists.success() {
            return Ok(None);
        }
        let mut command = self.git();
        command.args([
            "log",
            "-p",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--date=iso",
            // `format:` separates entries with a blank line.
            "--pretty=format:%ad  %s%n%n%b",
        ]);
        if let Some(since) = since {
            command.arg(format!("--max-age={since}"));
        }
        command.arg(&name).arg("--");
        run(command, "reading the host's history").map(Some)
    }
}

/// Runs `command` with `input` on its stdin (written from another thread,
/// so a chatty stderr cannot block it).
fn feed(mut command: Command, input: &[u8], what: &str) -> anyhow::Result<()> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{what}: cannot run git (is it installed?)"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(input));
        let output = child.wait_with_output();
        (writer.join(), output)
    });
    let (written, output) = output;
    let output = output.with_context(|| format!("{what}: waiting for git"))?;
    if !output.status.success() {
        bail!(
            "{what}: git failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).with_context(|| format!("{what}: writing to git")),
        Err(_) => bail!("{what}: the writer thread panicked"),
    }
}

/// 128 random bits, hex.
fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the repository id")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A running `git cat-file --batch`.
pub struct CatFile {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl CatFile {
    /// The object `spec` names: (oid, type, content), or `None` when
    /// missing.
    fn object(&mut self, spec: &str) -> anyhow::Result<Option<(String, String, Vec<u8>)>> {
        let stdin = self.stdin.as_mut().context("cat-file closed")?;
        stdin
            .write_all(format!("{spec}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .context("asking git cat-file")?;
        let mut header = String::new();
        self.stdout
            .read_line(&mut header)
            .context("reading git cat-file")?;
        let header = header.trim_end();
        if header.is_empty() {
            bail!("git cat-file ended unexpectedly");
        }
        if header.ends_with(" missing") || header.ends_with(" ambiguous") {
            return Ok(None);
        }
        let mut parts = header.split(' ');
        let (oid, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let size: usize = parts
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("git cat-file answered {header:?}"))?;
        let (oid, kind) = (oid.to_owned(), kind.to_owned());
        let mut content = vec![0; size + 1];
        self.stdout
            .read_exact(&mut content)
            .context("reading git cat-file")?;
        content.pop(); // the LF after the content
        Ok(Some((oid, kind, content)))
    }
}

impl Tips for CatFile {
    fn tip(&mut self, certname: &str) -> anyhow::Result<Option<Tip>> {
        // `<ref>^{commit}`: the header names the commit itself.
        let spec = format!("{}^{{commit}}", branch(certname));
        Ok(self.object(&spec)?.map(|(oid, _, content)| {
            let text = String::from_utf8_lossy(&content);
            // The message follows the first blank line.
            let message = text.split_once("\n\n").map(|(_, m)| m).unwrap_or("");
            Tip {
                last_event: layout::event_of_message(message),
                oid,
            }
        }))
    }

    fn file(&mut self, certname: &str, path: &str) -> anyhow::Result<Option<String>> {
        debug_assert!(path == FACTS_FILE || path == RUN_FILE);
        match self.object(&format!("{}:{path}", branch(certname)))? {
            Some((_, kind, content)) if kind == "blob" => {
                Ok(Some(String::from_utf8_lossy(&content).into_owned()))
            }
            _ => Ok(None),
        }
    }
}

impl Drop for CatFile {
    fn drop(&mut self) {
        // Closing stdin ends it.
        self.stdin.take();
        let _ = self.child.wait();
    }
}
