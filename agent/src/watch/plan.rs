//! Which directories inotify must watch for a list of monitored paths, and
//! which monitored path an event's path belongs to.
//!
//! A monitored file is watched through its parent directory (not
//! recursively) and picked out by name: a watch on the file itself would
//! follow the old inode when an editor or a package manager replaces the
//! file by rename, and could not exist before the file does. A monitored
//! directory is watched recursively, and through its parent as well, so
//! that its own replacement is seen. A symlink is followed to what it names
//! (one more parent watch, or tree), its events reported under the
//! monitored path. Watched directories are canonical paths, so that one
//! directory is never watched twice under two names (inotify would hand
//! out one watch descriptor for both).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// How a directory is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Mode {
    /// The directory and its entries.
    Flat,
    /// The directory and everything below it.
    Recursive,
}

impl From<Mode> for notify::RecursiveMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Flat => notify::RecursiveMode::NonRecursive,
            Mode::Recursive => notify::RecursiveMode::Recursive,
        }
    }
}

/// The watches a list of monitored paths needs, and how to map events
/// back to those paths.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// Canonical directories to watch; none lies inside a recursive one.
    pub watches: BTreeMap<PathBuf, Mode>,
    /// An event on exactly this path → these monitored paths.
    exact: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    /// An event on this path or below → these monitored directories, with
    /// the rest of the event's path appended.
    trees: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    /// The directories each monitored path needs watched (before merging).
    needs: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    /// Monitored paths whose parent directory does not exist (yet).
    pub unreachable: BTreeSet<PathBuf>,
}

impl Plan {
    /// Looks at the file system now: what exists, what is a directory,
    /// where symlinks point.
    pub fn build(targets: &[PathBuf]) -> Plan {
        let mut plan = Plan::default();
        for target in targets {
            plan.add_target(target);
        }
        plan.watches = merge(std::mem::take(&mut plan.watches));
        plan
    }

    fn add_target(&mut self, target: &Path) {
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            // `/`: no parent to watch it through.
            if let Ok(root) = fs::canonicalize(target) {
                self.add_tree(target, root);
            }
            return;
        };
        let parent = match fs::canonicalize(parent) {
            Ok(parent) if parent.is_dir() => parent,
            _ => {
                self.unreachable.insert(target.to_path_buf());
                return;
            }
        };
        self.need(target, parent.clone(), Mode::Flat);
        let node = parent.join(name);
        self.add_exact(target, node.clone());
        let Ok(meta) = fs::symlink_metadata(&node) else {
            return;
        };
        if meta.file_type().is_symlink() {
            let Some(resolved) = resolve_link(&node) else {
                return;
            };
            if let Some(resolved_parent) = resolved.parent().filter(|p| p.is_dir()) {
                self.need(target, resolved_parent.to_path_buf(), Mode::Flat);
            }
            self.add_exact(target, resolved.clone());
            if resolved.is_dir() {
                self.add_tree(target, resolved);
            }
        } else if meta.is_dir() {
            self.add_tree(target, node);
        }
    }

    fn add_exact(&mut self, target: &Path, path: PathBuf) {
        self.exact
            .entry(path)
            .or_default()
            .insert(target.to_path_buf());
    }

    fn add_tree(&mut self, target: &Path, root: PathBuf) {
        self.need(target, root.clone(), Mode::Recursive);
        self.trees
            .entry(root)
            .or_default()
            .insert(target.to_path_buf());
    }

    fn need(&mut self, target: &Path, dir: PathBuf, mode: Mode) {
        self.needs
            .entry(target.to_path_buf())
            .or_default()
            .insert(dir.clone());
        let wanted = self.watches.entry(dir).or_insert(mode);
        *wanted = (*wanted).max(mode);
    }

    /// The directories `target` needs watched.
    pub fn needs(&self, target: &Path) -> impl Iterator<Item = &PathBuf> {
        self.needs.get(target).into_iter().flatten()
    }

    /// The monitored paths an event on `path` concerns: the monitored path
    /// itself, or for a monitored directory the path below it.
    pub fn map(&self, path: &Path) -> BTreeSet<PathBuf> {
        let mut found = BTreeSet::new();
        if let Some(targets) = self.exact.get(path) {
            found.extend(targets.iter().cloned());
        }
        for (root, targets) in &self.trees {
            let Ok(rest) = path.strip_prefix(root) else {
                continue;
            };
            for target in targets {
                found.insert(if rest.as_os_str().is_empty() {
                    target.clone()
                } else {
                    target.join(rest)
                });
            }
        }
        found
    }
}

/// Drops what a recursive watch already covers.
pub(super) fn merge(watches: BTreeMap<PathBuf, Mode>) -> BTreeMap<PathBuf, Mode> {
    let trees: Vec<PathBuf> = watches
        .iter()
        .filter(|(_, mode)| **mode == Mode::Recursive)
        .map(|(path, _)| path.clone())
        .collect();
    watches
        .into_iter()
        .filter(|(path, _)| !trees.iter().any(|t| path != t && path.starts_with(t)))
        .collect()
}

/// Whether `dir` is watched given the armed watches: itself, or inside a
/// recursive one.
pub(super) fn covered<'a>(
    dir: &Path,
    mut armed: impl Iterator<Item = (&'a PathBuf, Mode)>,
) -> bool {
    armed.any(|(path, mode)| path == dir || (mode == Mode::Recursive && dir.starts_with(path)))
}

/// Absolute, without `.`, repeated or trailing separators; sorted and
/// without duplicates. `..` is kept: it means what the file system says.
pub(super) fn normalize(paths: &[PathBuf], cwd: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths
        .iter()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| {
            let absolute = if p.is_absolute() {
                p.clone()
            } else {
                cwd.join(p)
            };
            absolute
                .components()
                .filter(|c| !matches!(c, Component::CurDir))
                .collect()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Where the symlink `link` points, canonical; for a dangling link, the
/// canonical parent of its target plus the target's name (so the target is
/// seen when it appears).
fn resolve_link(link: &Path) -> Option<PathBuf> {
    if let Ok(resolved) = fs::canonicalize(link) {
        return Some(resolved);
    }
    let content = fs::read_link(link).ok()?;
    let target = link.parent()?.join(content);
    let parent = fs::canonicalize(target.parent()?).ok()?;
    Some(parent.join(target.file_name()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn merge_drops_what_a_tree_covers() {
        let watches = BTreeMap::from([
            (p("/etc"), Mode::Flat),
            (p("/etc/ssh"), Mode::Recursive),
            (p("/etc/ssh/sshd_config.d"), Mode::Flat),
            (p("/etc/ssh/x/y"), Mode::Recursive),
            (p("/etc/sshd"), Mode::Flat),
        ]);
        let merged = merge(watches);
        assert_eq!(
            merged,
            BTreeMap::from([
                (p("/etc"), Mode::Flat),
                (p("/etc/ssh"), Mode::Recursive),
                (p("/etc/sshd"), Mode::Flat),
            ])
        );
    }

    #[test]
    fn map_picks_files_by_name_and_trees_by_prefix() {
        let mut plan = Plan::default();
        plan.add_exact(Path::new("/etc/hosts"), p("/etc/hosts"));
        plan.add_exact(Path::new("/etc/link"), p("/opt/real"));
        plan.add_tree(Path::new("/etc/sudoers.d"), p("/etc/sudoers.d"));
        plan.add_tree(Path::new("/etc/conf"), p("/srv/conf"));

        assert_eq!(plan.map(Path::new("/etc/hosts")), [p("/etc/hosts")].into());
        assert_eq!(plan.map(Path::new("/etc/hosts.tmp")), BTreeSet::new());
        assert_eq!(plan.map(Path::new("/opt/real")), [p("/etc/link")].into());
        assert_eq!(
            plan.map(Path::new("/etc/sudoers.d/admins")),
            [p("/etc/sudoers.d/admins")].into()
        );
        assert_eq!(
            plan.map(Path::new("/etc/sudoers.d")),
            [p("/etc/sudoers.d")].into()
        );
        assert_eq!(
            plan.map(Path::new("/srv/conf/a/b")),
            [p("/etc/conf/a/b")].into()
        );
        // A sibling sharing a name prefix is not inside the tree.
        assert_eq!(plan.map(Path::new("/etc/sudoers.dx")), BTreeSet::new());
    }

    #[test]
    fn covered_by_itself_or_a_recursive_ancestor() {
        let armed = [(p("/etc"), Mode::Flat), (p("/srv"), Mode::Recursive)];
        let iter = || armed.iter().map(|(p, m)| (p, *m));
        assert!(covered(Path::new("/etc"), iter()));
        assert!(!covered(Path::new("/etc/ssh"), iter()));
        assert!(covered(Path::new("/srv/a/b"), iter()));
        assert!(!covered(Path::new("/var"), iter()));
    }

    #[test]
    fn normalize_makes_absolute_sorted_unique() {
        let got = normalize(
            &[
                p("/etc//hosts"),
                p("rel/./f"),
                p("/etc/hosts/"),
                p(""),
                p("/a/../b"),
            ],
            Path::new("/work"),
        );
        assert_eq!(got, vec![p("/a/../b"), p("/etc/hosts"), p("/work/rel/f")]);
    }
}
