//! `FileWatch` against real inotify on fresh directories under the temp
//! directory. Timeouts only turn a hang into a failure; "nothing else was
//! reported" is shown by a later change coming back alone.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::FileWatch;

/// A fresh directory, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pvc-agent-watch-test.{}.{}.{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// A file with content, its directories created.
    fn file(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

async fn next(watch: &mut FileWatch) -> Vec<PathBuf> {
    tokio::time::timeout(Duration::from_secs(10), watch.changed())
        .await
        .expect("no change reported within 10 s")
}

fn watching(paths: &[PathBuf]) -> FileWatch {
    let mut watch = FileWatch::new().unwrap();
    watch.set_paths(paths);
    watch
}

/// Write `tmp`, then rename it over `path`, as editors and package
/// managers do.
fn replace_by_rename(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp-new");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_modified_file_is_reported() {
    let dir = Scratch::new("modify");
    let f = dir.file("f.conf", "a");
    let other = dir.file("other.conf", "a");
    let mut watch = watching(std::slice::from_ref(&f));
    fs::write(&other, "b").unwrap();
    fs::write(&f, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![f]);
}

#[tokio::test]
async fn a_file_replaced_by_rename_is_seen_every_time() {
    let dir = Scratch::new("rename");
    let f = dir.file("sshd_config", "a");
    let mut watch = watching(std::slice::from_ref(&f));
    replace_by_rename(&f, "b");
    assert_eq!(next(&mut watch).await, vec![f.clone()]);
    replace_by_rename(&f, "c");
    assert_eq!(next(&mut watch).await, vec![f.clone()]);
    // And an ordinary write to the new file too.
    fs::write(&f, "d").unwrap();
    assert_eq!(next(&mut watch).await, vec![f]);
}

#[tokio::test]
async fn a_deleted_and_recreated_file_is_seen_both_times() {
    let dir = Scratch::new("delete");
    let f = dir.file("f", "a");
    let mut watch = watching(std::slice::from_ref(&f));
    fs::remove_file(&f).unwrap();
    assert_eq!(next(&mut watch).await, vec![f.clone()]);
    fs::write(&f, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![f.clone()]);
    fs::write(&f, "c").unwrap();
    assert_eq!(next(&mut watch).await, vec![f]);
}

#[tokio::test]
async fn a_file_created_later_is_seen() {
    let dir = Scratch::new("later");
    let f = dir.path("not-yet");
    let mut watch = watching(std::slice::from_ref(&f));
    fs::write(dir.path("unrelated"), "x").unwrap();
    fs::write(&f, "a").unwrap();
    assert_eq!(next(&mut watch).await, vec![f]);
}

#[tokio::test]
async fn a_file_whose_directory_is_created_later_is_seen_on_a_later_call() {
    let dir = Scratch::new("later-dir");
    let f = dir.path("d/e/f");
    let g = dir.file("g", "a");
    let mut watch = watching(&[f.clone(), g.clone()]);
    dir.file("d/e/f", "a");
    // Nothing watches d/e yet: the next call arms it and counts the file
    // as changed, since it changed unseen.
    watch.set_paths(&[f.clone(), g.clone()]);
    assert_eq!(next(&mut watch).await, vec![f.clone()]);
    fs::write(&f, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![f]);
    fs::write(&g, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![g]);
}

#[tokio::test]
async fn a_directory_is_watched_recursively() {
    let dir = Scratch::new("tree");
    let d = dir.path("conf.d");
    dir.file("conf.d/sub/existing", "a");
    let mut watch = watching(std::slice::from_ref(&d));
    let new = dir.file("conf.d/sub/new", "a");
    assert_eq!(next(&mut watch).await, vec![new]);

    // A subdirectory created after the watch started is watched too.
    let created = dir.path("conf.d/created");
    fs::create_dir(&created).unwrap();
    assert_eq!(next(&mut watch).await, vec![created.clone()]);
    let inside = created.join("x");
    fs::write(&inside, "a").unwrap();
    assert_eq!(next(&mut watch).await, vec![inside]);
}

#[tokio::test]
async fn a_replaced_directory_is_watched_again() {
    let dir = Scratch::new("tree-replaced");
    let d = dir.path("conf.d");
    dir.file("conf.d/a", "a");
    let mut watch = watching(std::slice::from_ref(&d));
    fs::rename(&d, dir.path("old")).unwrap();
    dir.file("conf.d.new/b", "b");
    fs::rename(dir.path("conf.d.new"), &d).unwrap();
    let seen = next(&mut watch).await;
    assert!(seen.contains(&d), "{seen:?}");
    let c = d.join("c");
    fs::write(&c, "c").unwrap();
    // The old directory, moved away, is no longer what is watched.
    fs::write(dir.path("old/a"), "changed").unwrap();
    assert_eq!(next(&mut watch).await, vec![c]);
}

#[tokio::test]
async fn a_symlink_is_followed_to_what_it_names() {
    let dir = Scratch::new("symlink");
    let real = dir.file("real/resolv.conf", "a");
    let link = dir.path("etc/resolv.conf");
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut watch = watching(std::slice::from_ref(&link));
    fs::write(&real, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![link.clone()]);
    // The link itself replaced is seen as well.
    fs::remove_file(&link).unwrap();
    fs::write(&link, "plain").unwrap();
    assert_eq!(next(&mut watch).await, vec![link]);
}

#[tokio::test]
async fn a_burst_of_writes_is_one_change() {
    let dir = Scratch::new("burst");
    let f = dir.file("f", "0");
    let g = dir.file("g", "0");
    let mut watch = watching(&[f.clone(), g.clone()]);
    for i in 0..20 {
        fs::write(&f, i.to_string()).unwrap();
    }
    assert_eq!(next(&mut watch).await, vec![f]);
    fs::write(&g, "1").unwrap();
    assert_eq!(next(&mut watch).await, vec![g]);
}

#[tokio::test]
async fn set_paths_rearms() {
    let dir = Scratch::new("rearm");
    let a = dir.file("one/a", "a");
    let b = dir.file("two/b", "b");
    let c = dir.file("three/c", "c");
    let mut watch = watching(&[a.clone(), b.clone()]);
    watch.set_paths(&[b.clone(), c.clone()]);
    fs::write(&a, "changed").unwrap();
    fs::write(&c, "changed").unwrap();
    assert_eq!(next(&mut watch).await, vec![c]);
    fs::write(&b, "changed").unwrap();
    assert_eq!(next(&mut watch).await, vec![b]);
}

#[tokio::test]
async fn an_attribute_change_counts() {
    let dir = Scratch::new("chmod");
    let f = dir.file("sudoers", "a");
    let mut watch = watching(std::slice::from_ref(&f));
    fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(next(&mut watch).await, vec![f]);
}

#[tokio::test]
async fn reading_does_not_count() {
    let dir = Scratch::new("read");
    let f = dir.file("f", "a");
    let g = dir.file("g", "a");
    let mut watch = watching(&[f.clone(), g.clone()]);
    let _ = fs::read(&f).unwrap();
    fs::write(&g, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![g]);
}

#[tokio::test]
async fn puppets_own_restore_is_not_tampering_nor_a_change_afterwards() {
    let dir = Scratch::new("restore");
    let f = dir.file("f", "a");
    let g = dir.file("g", "a");
    let mut watch = watching(&[f.clone(), g.clone()]);
    watch.run_started();
    replace_by_rename(&f, "as in the catalog");
    let written = BTreeMap::from([(f.clone(), SystemTime::now())]);
    assert_eq!(watch.run_finished(&written), Vec::<PathBuf>::new());
    fs::write(&g, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![g]);
}

#[tokio::test]
async fn puppets_temp_file_in_a_watched_directory_is_not_tampering() {
    let dir = Scratch::new("restore-tree");
    let d = dir.path("conf.d");
    let f = dir.file("conf.d/f", "a");
    let mut watch = watching(std::slice::from_ref(&d));
    watch.run_started();
    replace_by_rename(&f, "as in the catalog");
    let written = BTreeMap::from([(f.clone(), SystemTime::now())]);
    assert_eq!(watch.run_finished(&written), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn a_write_after_puppets_is_tampering() {
    let dir = Scratch::new("tamper");
    let f = dir.file("f", "a");
    let mut watch = watching(std::slice::from_ref(&f));
    watch.run_started();
    // Puppet wrote it well before; someone else writes it now.
    let written = BTreeMap::from([(f.clone(), SystemTime::now() - Duration::from_secs(5))]);
    fs::write(&f, "someone else").unwrap();
    assert_eq!(watch.run_finished(&written), vec![f]);
}

#[tokio::test]
async fn a_change_during_the_run_puppet_did_not_write_is_tampering() {
    let dir = Scratch::new("unwritten");
    let f = dir.file("f", "a");
    let g = dir.file("g", "a");
    let mut watch = watching(&[f.clone(), g.clone()]);
    watch.run_started();
    fs::write(&f, "someone else").unwrap();
    assert_eq!(watch.run_finished(&BTreeMap::new()), vec![f]);
    // Not reported again afterwards.
    fs::write(&g, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![g]);
}

#[tokio::test]
async fn a_file_removed_during_the_run_is_tampering() {
    let dir = Scratch::new("removed");
    let f = dir.file("f", "a");
    let mut watch = watching(std::slice::from_ref(&f));
    watch.run_started();
    let written = BTreeMap::from([(f.clone(), SystemTime::now())]);
    fs::remove_file(&f).unwrap();
    assert_eq!(watch.run_finished(&written), vec![f]);
}

#[tokio::test]
async fn changes_before_the_run_are_covered_by_it() {
    let dir = Scratch::new("before");
    let f = dir.file("f", "a");
    let g = dir.file("g", "a");
    let mut watch = watching(&[f.clone(), g.clone()]);
    fs::write(&f, "before the run").unwrap();
    watch.run_started();
    assert_eq!(watch.run_finished(&BTreeMap::new()), Vec::<PathBuf>::new());
    fs::write(&g, "b").unwrap();
    assert_eq!(next(&mut watch).await, vec![g]);
}
