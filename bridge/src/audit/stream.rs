//! A round of queued events → one `git fast-import` stream, pure apart from
//! the [`Tips`] it asks about each host's branch once. Per host, each
//! commit continues the previous one: the branch's tip in the repository
//! for the host's first event in the round, the previous commit's mark
//! after that; a host without a branch starts a parentless one.
//!
//! A facts event rewrites `facts.yaml` and a run event `last_run.yaml`;
//! fast-import starts each commit from its parent's tree, so the other file
//! is kept. An event whose file would not change (facts equal to the tip's,
//! as after a redone round) makes no commit, and an event at or before the
//! one the tip was built from (its trailer) was committed already.

use std::collections::HashMap;
use std::io::Write as _;

use serde_json::Value;

use super::layout::{self, FlatFacts};
use crate::certname::Certname;

/// The author and committer of every commit: fixed, so commit ids depend
/// only on the stored data.
pub const IDENTITY: &str = "pvc-bridge <pvc-bridge@localhost>";

/// One queued event, as stored.
pub use crate::store::pvc::audit::AuditEvent as Event;

/// A host's branch in the repository as the round starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub oid: String,
    /// The event its commit was built from (its trailer).
    pub last_event: Option<i64>,
}

/// What the repository holds, asked once per host and file per round.
pub trait Tips {
    /// The tip of `refs/heads/hosts/<certname>`, if the branch exists.
    fn tip(&mut self, certname: &str) -> anyhow::Result<Option<Tip>>;
    /// The text of `path` in that tip, if present.
    fn file(&mut self, certname: &str, path: &str) -> anyhow::Result<Option<String>>;
}

/// The branch of a host.
pub fn branch(certname: &str) -> String {
    format!("refs/heads/hosts/{certname}")
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// A commit in the stream.
    Commit,
    /// Its file would not change: no commit.
    Unchanged,
    /// The branch's tip already holds it.
    AlreadyCommitted,
    /// It cannot be committed (a name git refuses as a branch, a body that
    /// is not what the database writes); logged and dropped from the queue.
    Invalid(String),
}

/// Where a host's next commit continues from.
#[derive(Debug, Clone)]
enum Parent {
    None,
    Oid(String),
    Mark(u64),
}

/// A file of the host's current tree: not yet read, absent, or its text.
#[derive(Debug, Clone)]
enum Known<T> {
    Unread,
    Absent,
    Is(T),
}

struct Host {
    parent: Parent,
    last_event: Option<i64>,
    facts: Known<(String, HashMap<String, String>)>,
    run: Known<String>,
}

/// Counts of a round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub commits: u64,
    pub unchanged: u64,
    pub already: u64,
    pub invalid: u64,
}

/// Builds the stream of one round, event by event, in id order.
pub struct Planner {
    stream: Vec<u8>,
    hosts: HashMap<String, Host>,
    next_mark: u64,
    outcome: Outcome,
}

impl Default for Planner {
    fn default() -> Self {
        Planner::new()
    }
}

impl Planner {
    pub fn new() -> Planner {
        Planner {
            stream: b"feature done\n".to_vec(),
            hosts: HashMap::new(),
            next_mark: 1,
            outcome: Outcome::default(),
        }
    }

    /// Adds `event`; an error is the repository's (the round fails).
    pub fn add(&mut self, event: &Event, tips: &mut dyn Tips) -> anyhow::Result<Added> {
        let added = self.add_inner(event, tips)?;
        match &added {
            Added::Commit => self.outcome.commits += 1,
            Added::Unchanged => self.outcome.unchanged += 1,
            Added::AlreadyCommitted => self.outcome.already += 1,
            Added::Invalid(_) => self.outcome.invalid += 1,
        }
        Ok(added)
    }

    fn add_inner(&mut self, event: &Event, tips: &mut dyn Tips) -> anyhow::Result<Added> {
        if let Err(why) = valid_branch_name(&event.certname) {
            return Ok(Added::Invalid(why));
        }
        let body: Value = match serde_json::from_str(&event.body) {
            Ok(body) => body,
            Err(e) => return Ok(Added::Invalid(format!("body is not JSON: {e}"))),
        };
        let certname = event.certname.as_str();
        if !self.hosts.contains_key(certname) {
            let host = match tips.tip(certname)? {
                Some(tip) => Host {
                    parent: Parent::Oid(tip.oid),
                    last_event: tip.last_event,
                    facts: Known::Unread,
                    run: Known::Unread,
                },
                None => Host {
                    parent: Parent::None,
                    last_event: None,
                    facts: Known::Absent,
                    run: Known::Absent,
                },
            };
            self.hosts.insert(certname.to_owned(), host);
        }
        let host = self.hosts.get_mut(certname).expect("inserted above");
        if host.last_event.is_some_and(|last| event.id <= last) {
            return Ok(Added::AlreadyCommitted);
        }
        let (path, text, message) = match event.kind.as_str() {
            "facts" => {
                let Value::Object(facts) = &body else {
                    return Ok(Added::Invalid("facts body is not an object".into()));
                };
                let lines: FlatFacts = layout::flatten_facts(facts);
                let text = layout::render_facts(&lines);
                if let Known::Unread = host.facts {
                    host.facts = match tips.file(certname, layout::FACTS_FILE)? {
                        Some(old) => {
                            let parsed = layout::parse_facts(&old);
                            Known::Is((old, parsed))
                        }
                        None => Known::Absent,
                    };
                }
                let empty = HashMap::new();
                let old = match &host.facts {
                    Known::Is((old_text, _)) if *old_text == text => return Ok(Added::Unchanged),
                    Known::Is((_, parsed)) => parsed,
                    _ => &empty,
                };
                let diff = layout::diff_facts(old, &lines);
                let message = layout::facts_message(&diff, event.id);
                let parsed = lines.into_iter().collect();
                host.facts = Known::Is((text.clone(), parsed));
                (layout::FACTS_FILE, text, message)
            }
            "run" => {
                let run = layout::run_file(&body);
                if let Known::Unread = host.run {
                    host.run = match tips.file(certname, layout::RUN_FILE)? {
                        Some(old) => Known::Is(old),
                        None => Known::Absent,
                    };
                }
                if matches!(&host.run, Known::Is(old) if *old == run.text) {
                    return Ok(Added::Unchanged);
                }
                let message = layout::run_message(&run, event.id);
                host.run = Known::Is(run.text.clone());
                (layout::RUN_FILE, run.text, message)
            }
            other => return Ok(Added::Invalid(format!("unknown event kind {other:?}"))),
        };
        let mark = self.next_mark;
        self.next_mark += 1;
        // git takes no time before the epoch; a report's wild
        // `reported_at` must not stop the queue.
        let secs = event.at_ms.div_euclid(1000).max(0);
        let out = &mut self.stream;
        writeln!(out, "commit {}", branch(certname))?;
        writeln!(out, "mark :{mark}")?;
        writeln!(out, "author {IDENTITY} {secs} +0000")?;
        writeln!(out, "committer {IDENTITY} {secs} +0000")?;
        data(out, message.as_bytes())?;
        match &host.parent {
            Parent::None => {}
            Parent::Oid(oid) => writeln!(out, "from {oid}")?,
            Parent::Mark(m) => writeln!(out, "from :{m}")?,
        }
        writeln!(out, "M 100644 inline {path}")?;
        data(out, text.as_bytes())?;
        out.push(b'\n');
        host.parent = Parent::Mark(mark);
        host.last_event = Some(event.id);
        Ok(Added::Commit)
    }

    /// The stream to feed `git fast-import`.
    pub fn finish(mut self) -> (Vec<u8>, Outcome) {
        self.stream.extend_from_slice(b"done\n");
        (self.stream, self.outcome)
    }
}

fn data(out: &mut Vec<u8>, bytes: &[u8]) -> std::io::Result<()> {
    writeln!(out, "data {}", bytes.len())?;
    out.extend_from_slice(bytes);
    out.push(b'\n');
    Ok(())
}

/// A certname git takes as a branch name: hostname syntax (no spaces, no
/// `..`, no leading dot) and, as git requires of every ref, not ending in
/// `.lock`.
fn valid_branch_name(certname: &str) -> Result<(), String> {
    certname
        .parse::<Certname>()
        .map_err(|e| format!("{certname:?}: {e}"))?;
    if certname.ends_with(".lock") {
        return Err(format!(
            "{certname:?}: git refuses branch names ending in .lock"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Branches as a map: certname → (tip, files).
    #[derive(Default)]
    struct FakeRepo {
        tips: HashMap<String, (Tip, HashMap<String, String>)>,
        asked: Vec<String>,
    }

    impl Tips for FakeRepo {
        fn tip(&mut self, certname: &str) -> anyhow::Result<Option<Tip>> {
            self.asked.push(format!("tip {certname}"));
            Ok(self.tips.get(certname).map(|(tip, _)| tip.clone()))
        }
        fn file(&mut self, certname: &str, path: &str) -> anyhow::Result<Option<String>> {
            self.asked.push(format!("file {certname}:{path}"));
            Ok(self
                .tips
                .get(certname)
                .and_then(|(_, files)| files.get(path).cloned()))
        }
    }

    fn event(id: i64, certname: &str, kind: &str, at_ms: i64, body: Value) -> Event {
        Event {
            id,
            certname: certname.into(),
            kind: kind.into(),
            at_ms,
            body: body.to_string(),
        }
    }

    #[test]
    fn a_new_host_starts_a_parentless_branch_and_continues_it_by_mark() {
        let mut repo = FakeRepo::default();
        let mut planner = Planner::new();
        let e1 = event(
            1,
            "a.example.com",
            "facts",
            1_700_000_000_500,
            json!({"k": 1}),
        );
        let e2 = event(
            2,
            "a.example.com",
            "facts",
            1_700_000_060_000,
            json!({"k": 2}),
        );
        assert_eq!(planner.add(&e1, &mut repo).unwrap(), Added::Commit);
        assert_eq!(planner.add(&e2, &mut repo).unwrap(), Added::Commit);
        let (stream, outcome) = planner.finish();
        assert_eq!(outcome.commits, 2);
        let stream = String::from_utf8(stream).unwrap();
        let m1 = "facts: 0 changed, 1 added, 0 removed\n\nadded k\n\nAudit-Event: 1\n";
        let m2 = "facts: 1 changed, 0 added, 0 removed\n\nchanged k\n\nAudit-Event: 2\n";
        let expected = format!(
            "feature done\n\
             commit refs/heads/hosts/a.example.com\nmark :1\n\
             author {IDENTITY} 1700000000 +0000\ncommitter {IDENTITY} 1700000000 +0000\n\
             data {}\n{m1}\n\
             M 100644 inline facts.yaml\ndata 5\nk: 1\n\n\n\
             commit refs/heads/hosts/a.example.com\nmark :2\n\
             author {IDENTITY} 1700000060 +0000\ncommitter {IDENTITY} 1700000060 +0000\n\
             data {}\n{m2}\n\
             from :1\n\
             M 100644 inline facts.yaml\ndata 5\nk: 2\n\n\n\
             done\n",
            m1.len(),
            m2.len()
        );
        assert_eq!(stream, expected);
        // A host without a branch has no files to read.
        assert_eq!(repo.asked, vec!["tip a.example.com"]);
    }

    #[test]
    fn an_existing_branch_is_continued_from_its_tip_and_keeps_the_other_file() {
        let mut repo = FakeRepo::default();
        repo.tips.insert(
            "b.example.com".into(),
            (
                Tip {
                    oid: "0123456789abcdef0123456789abcdef01234567".into(),
                    last_event: Some(5),
                },
                HashMap::from([("facts.yaml".to_owned(), "k: 1\n".to_owned())]),
            ),
        );
        let mut planner = Planner::new();
        let run = json!({"reported_at": "x", "status": {"applied": 1},
            "logs": [{"log": {"level": "notice", "sources": {"source": "/Stage[main]/F[x]"},
                              "messages": {"message": "changed"}}}]});
        let e = event(6, "b.example.com", "run", 1_000, run);
        assert_eq!(planner.add(&e, &mut repo).unwrap(), Added::Commit);
        let (stream, _) = planner.finish();
        let stream = String::from_utf8(stream).unwrap();
        assert!(stream.contains(
            "from 0123456789abcdef0123456789abcdef01234567\nM 100644 inline last_run.yaml\n"
        ));
        assert!(!stream.contains("facts.yaml"));
    }

    #[test]
    fn events_the_tip_holds_and_facts_equal_to_the_tip_make_no_commit() {
        let mut repo = FakeRepo::default();
        repo.tips.insert(
            "c.example.com".into(),
            (
                Tip {
                    oid: "1111111111111111111111111111111111111111".into(),
                    last_event: Some(10),
                },
                HashMap::from([("facts.yaml".to_owned(), "k: 1\n".to_owned())]),
            ),
        );
        let mut planner = Planner::new();
        let old = event(9, "c.example.com", "facts", 0, json!({"k": 0}));
        assert_eq!(
            planner.add(&old, &mut repo).unwrap(),
            Added::AlreadyCommitted
        );
        let same = event(11, "c.example.com", "facts", 0, json!({"k": 1}));
        assert_eq!(planner.add(&same, &mut repo).unwrap(), Added::Unchanged);
        let changed = event(12, "c.example.com", "facts", 0, json!({"k": 3}));
        assert_eq!(planner.add(&changed, &mut repo).unwrap(), Added::Commit);
        let again = event(13, "c.example.com", "facts", 0, json!({"k": 3}));
        assert_eq!(planner.add(&again, &mut repo).unwrap(), Added::Unchanged);
        let (_, outcome) = planner.finish();
        assert_eq!(
            (outcome.commits, outcome.unchanged, outcome.already),
            (1, 2, 1)
        );
        // The tip and its facts were read once.
        assert_eq!(
            repo.asked,
            vec!["tip c.example.com", "file c.example.com:facts.yaml"]
        );
    }

    #[test]
    fn a_time_before_the_epoch_is_committed_at_the_epoch() {
        let mut repo = FakeRepo::default();
        let mut planner = Planner::new();
        let e = event(1, "a.example.com", "facts", -86_400_000, json!({"k": 1}));
        assert_eq!(planner.add(&e, &mut repo).unwrap(), Added::Commit);
        let (stream, _) = planner.finish();
        let stream = String::from_utf8(stream).unwrap();
        assert!(
            stream.contains(&format!("\ncommitter {IDENTITY} 0 +0000\n")),
            "{stream}"
        );
    }

    #[test]
    fn names_git_refuses_and_bodies_the_database_never_writes_are_invalid() {
        let mut repo = FakeRepo::default();
        let mut planner = Planner::new();
        for e in [
            event(1, "db.lock", "facts", 0, json!({})),
            event(2, "bad name", "facts", 0, json!({})),
            event(3, "a.example.com", "facts", 0, json!([1])),
            event(4, "a.example.com", "other", 0, json!({})),
        ] {
            assert!(matches!(
                planner.add(&e, &mut repo).unwrap(),
                Added::Invalid(_)
            ));
        }
        let (stream, outcome) = planner.finish();
        assert_eq!(outcome.invalid, 4);
        assert_eq!(stream, b"feature done\ndone\n");
    }
}
