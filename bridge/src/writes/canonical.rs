//! The canonical form of a fact set: volatile facts removed, object keys
//! sorted at every level, compact JSON. Two uploads whose canonical forms are
//! equal carry the same facts as far as Foreman and the ENC are concerned, so
//! the digest over it does not flap with uptime or free memory.

use serde_json::{Map, Value};

/// Patterns of facts left out of the digest: dotted paths whose segments may
/// hold `*` (any run of characters, never crossing a dot). A pattern matches
/// a fact and removes its whole subtree: `memory.*.available*` removes
/// `memory.system.available` and `memory.system.available_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolatileFacts {
    patterns: Vec<Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("volatile fact pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl VolatileFacts {
    pub fn new(patterns: &[String]) -> Result<VolatileFacts, PatternError> {
        let mut parsed = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            let error = |reason| PatternError {
                pattern: pattern.clone(),
                reason,
            };
            if pattern.trim() != pattern || pattern.is_empty() {
                return Err(error("empty or padded with spaces"));
            }
            let segments: Vec<String> = pattern.split('.').map(str::to_owned).collect();
            if segments.iter().any(String::is_empty) {
                return Err(error("an empty segment (two dots, or a dot at an end)"));
            }
            parsed.push(segments);
        }
        Ok(VolatileFacts { patterns: parsed })
    }

    /// Whether the fact at `path` (its keys from the top) is volatile.
    fn matches(&self, path: &[&str]) -> bool {
        self.patterns.iter().any(|pattern| {
            pattern.len() == path.len()
                && pattern
                    .iter()
                    .zip(path)
                    .all(|(glob, key)| glob_match(glob.as_bytes(), key.as_bytes()))
        })
    }

    /// The longest pattern: deeper keys cannot match, so need no check.
    fn depth(&self) -> usize {
        self.patterns.iter().map(Vec::len).max().unwrap_or(0)
    }
}

/// `*` matches any run of bytes; everything else matches itself. Greedy
/// with one backtrack point, so a long fact name costs O(len × pattern), not
/// exponential time, whatever the pattern.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    // After the last `*`: where the pattern resumes, and the text position
    // that star has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g + 1, t));
            g += 1;
        } else if g < glob.len() && glob[g] == text[t] {
            g += 1;
            t += 1;
        } else if let Some((resume, consumed)) = star {
            g = resume;
            t = consumed + 1;
            star = Some((resume, consumed + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

/// `facts` without the volatile ones (a copy; objects only are walked, an
/// array's elements have no fact names).
pub fn stable_facts(facts: &Map<String, Value>, volatile: &VolatileFacts) -> Map<String, Value> {
    let mut path = Vec::new();
    strip(facts, volatile, volatile.depth(), &mut path)
}

fn strip<'a>(
    object: &'a Map<String, Value>,
    volatile: &VolatileFacts,
    depth: usize,
    path: &mut Vec<&'a str>,
) -> Map<String, Value> {
    let mut out = Map::with_capacity(object.len());
    for (key, value) in object {
        path.push(key);
        if !volatile.matches(path) {
            let kept = match value {
                Value::Object(child) if path.len() < depth => {
                    Value::Object(strip(child, volatile, depth, path))
                }
                other => other.clone(),
            };
            out.insert(key.clone(), kept);
        }
        path.pop();
    }
    out
}

/// Only the facts `patterns` match (each with its whole subtree): the part
/// of a fact set the ENC depends on.
pub fn selected_facts(facts: &Map<String, Value>, patterns: &VolatileFacts) -> Map<String, Value> {
    let mut path = Vec::new();
    select(facts, patterns, patterns.depth(), &mut path)
}

fn select<'a>(
    object: &'a Map<String, Value>,
    patterns: &VolatileFacts,
    depth: usize,
    path: &mut Vec<&'a str>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        path.push(key);
        if patterns.matches(path) {
            out.insert(key.clone(), value.clone());
        } else if let Value::Object(child) = value {
            if path.len() < depth {
                let kept = select(child, patterns, depth, path);
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Object(kept));
                }
            }
        }
        path.pop();
    }
    out
}

/// Compact JSON with the keys of every object sorted (byte order), so equal
/// fact sets give equal text whatever order they arrived in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(4096);
    write_value(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The canonical JSON of `facts` minus the `volatile` ones — with `only`,
/// just the facts it matches (each with its subtree, volatile facts still
/// removed; objects left empty by the selection dropped) — written in one
/// pass: the same text as `canonical_json` of [`stable_facts`] (and of
/// [`selected_facts`] of those), without building either tree. Each upload
/// needs two of these; copying a 30 KB fact tree twice per upload was most
/// of the bridge's CPU.
pub fn canonical_facts(
    facts: &Map<String, Value>,
    volatile: &VolatileFacts,
    only: Option<&VolatileFacts>,
) -> String {
    let mut out = Vec::with_capacity(8192);
    let mut walk = Walk {
        volatile,
        volatile_depth: volatile.depth(),
        only: only.map(|o| (o, o.depth())),
        path: Vec::new(),
        out: &mut out,
    };
    walk.object(facts, walk.only.is_some());
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

struct Walk<'a, 'f> {
    volatile: &'a VolatileFacts,
    volatile_depth: usize,
    only: Option<(&'a VolatileFacts, usize)>,
    path: Vec<&'f str>,
    out: &'a mut Vec<u8>,
}

impl<'f> Walk<'_, 'f> {
    /// Writes `object`; `selecting`: no ancestor matched `only` yet, so a
    /// member is written only if it or something below it matches. Returns
    /// whether any member was written.
    fn object(&mut self, object: &'f Map<String, Value>, selecting: bool) -> bool {
        let mut keys: Vec<&'f String> = object.keys().collect();
        keys.sort_unstable();
        self.out.push(b'{');
        let mut wrote = false;
        for key in keys {
            self.path.push(key);
            let volatile =
                self.path.len() <= self.volatile_depth && self.volatile.matches(&self.path);
            if !volatile {
                let mark = self.out.len();
                if wrote {
                    self.out.push(b',');
                }
                serde_json::to_writer(&mut *self.out, key).expect("writing to a Vec");
                self.out.push(b':');
                let value = &object[key.as_str()];
                let kept = match self.only {
                    Some((only, depth)) if selecting => {
                        if self.path.len() <= depth && only.matches(&self.path) {
                            self.member(value, false);
                            true
                        } else if let (Value::Object(child), true) =
                            (value, self.path.len() < depth)
                        {
                            self.object(child, true)
                        } else {
                            false
                        }
                    }
                    _ => {
                        self.member(value, false);
                        true
                    }
                };
                if kept {
                    wrote = true;
                } else {
                    self.out.truncate(mark);
                }
            }
            self.path.pop();
        }
        self.out.push(b'}');
        wrote
    }

    /// A value below a kept key: objects still lose their volatile facts.
    fn member(&mut self, value: &'f Value, selecting: bool) {
        match value {
            Value::Object(child) if self.path.len() < self.volatile_depth => {
                self.object(child, selecting);
            }
            other => write_value(other, self.out),
        }
    }
}

/// Canonical JSON of any value (arrays' objects sorted too; nothing removed).
fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("writing to a Vec");
                out.push(b':');
                write_value(&object[key.as_str()], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn volatile(patterns: &[&str]) -> VolatileFacts {
        VolatileFacts::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .expect("patterns")
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().expect("object").clone()
    }

    #[test]
    fn keys_are_sorted_at_every_level() {
        let a = json!({"b": {"y": 1, "x": [ {"q": 1, "p": 2} ]}, "a": "s"});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":"s","b":{"x":[{"p":2,"q":1}],"y":1}}"#
        );
    }

    #[test]
    fn volatile_patterns_remove_subtrees_and_globs_stay_within_a_segment() {
        let facts = object(json!({
            "uptime": "1 day", "uptime_seconds": 86400, "kernel": "Linux",
            "memory": {"system": {"available": "1 GiB", "available_bytes": 1, "total": "2 GiB"}},
            "load_averages": {"1m": 0.5},
            "uptimes": {"x": 1},
            "os": {"uptime": "kept: only top-level uptime* is volatile"}
        }));
        let stable = stable_facts(
            &facts,
            &volatile(&["uptime*", "memory.*.available*", "load_averages"]),
        );
        assert_eq!(
            Value::Object(stable),
            json!({
                "kernel": "Linux",
                "memory": {"system": {"total": "2 GiB"}},
                "os": {"uptime": "kept: only top-level uptime* is volatile"}
            })
        );
    }

    #[test]
    fn glob_matches_like_a_shell_within_a_segment() {
        assert!(glob_match(b"a*b*c", b"aXXbYc"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"a*c", b"ab"));
        assert!(!glob_match(b"abc", b"abcd"));
        assert!(glob_match(b"a*", b"a"));
        assert!(glob_match(b"*x*y", b"axbxcy"));
        assert!(!glob_match(b"*x*y", b"axbxc"));
        assert!(!glob_match(b"", b"a"));
        let long = vec![b'a'; 10_000];
        assert!(!glob_match(b"*a*a*a*a*a*b", &long), "fails fast");
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for bad in ["", "a..b", ".a", "a.", " a"] {
            let error = VolatileFacts::new(&[bad.to_string()]).expect_err(bad);
            assert_eq!(error.pattern, bad);
        }
    }

    #[test]
    fn the_default_list_keeps_real_facts_and_drops_noise() {
        let defaults = VolatileFacts::new(&crate::config::default_volatile_facts()).expect("ok");
        let facts = object(json!({
            "system_uptime": {"seconds": 1}, "memoryfree_mb": 1.0, "swapfree": "1",
            "memory": {"swap": {"available_bytes": 1, "used": "1", "capacity": "1%", "total": "2"}},
            "ipaddress": "10.0.0.1", "_timestamp": "2026-01-01"
        }));
        assert_eq!(
            Value::Object(stable_facts(&facts, &defaults)),
            json!({"memory": {"swap": {"total": "2"}}, "ipaddress": "10.0.0.1"})
        );
    }

    #[test]
    fn the_enc_facts_are_the_subtrees_the_patterns_name() {
        let defaults = VolatileFacts::new(&crate::config::default_enc_facts()).expect("ok");
        let facts = object(json!({
            "os": {"name": "Debian", "release": {"full": "12.5"}},
            "networking": {"ip": "10.0.0.1", "fqdn": "a.example.com"},
            "ipaddress_eth0": "10.0.0.1", "foreman_location": "dc1",
            "processors": {"count": 4}, "kernelversion": "6.1"
        }));
        assert_eq!(
            Value::Object(selected_facts(&facts, &defaults)),
            json!({
                "os": {"name": "Debian", "release": {"full": "12.5"}},
                "networking": {"ip": "10.0.0.1", "fqdn": "a.example.com"},
                "ipaddress_eth0": "10.0.0.1", "foreman_location": "dc1"
            })
        );
        let nested = volatile(&["a.b"]);
        let facts = object(json!({"a": {"b": 1, "c": 2}, "d": {"b": 3}}));
        assert_eq!(
            Value::Object(selected_facts(&facts, &nested)),
            json!({"a": {"b": 1}})
        );
    }

    #[test]
    fn the_one_pass_writer_matches_the_tree_copies() {
        let volatile = VolatileFacts::new(&crate::config::default_volatile_facts()).expect("ok");
        let enc = VolatileFacts::new(&crate::config::default_enc_facts()).expect("ok");
        let nested = self::volatile(&["a.b", "z"]);
        let facts = object(json!({
            "zeta": 1, "alpha": {"y": [ {"b": 1, "a": 2} ], "x": "\u{e9}\n\"q\""},
            "os": {"release": {"full": "12.5"}, "name": "Debian"},
            "memory": {"system": {"available_bytes": 1, "total": 2}, "swap": {"used": 1}},
            "networking": {"interfaces": {"eth0": {"ip": "10.0.0.1"}}, "ip": "10.0.0.1"},
            "ipaddress_eth0": "10.0.0.1", "uptime_seconds": 5, "empty": {},
            "a": {"b": 1, "c": {"d": 2}}, "z": 3, "foreman_location": "dc1",
            "system_uptime": {"seconds": 5}
        }));
        for (volatile, enc) in [(&volatile, &enc), (&nested, &enc), (&volatile, &nested)] {
            let stable = stable_facts(&facts, volatile);
            assert_eq!(
                canonical_facts(&facts, volatile, None),
                canonical_json(&Value::Object(stable.clone()))
            );
            assert_eq!(
                canonical_facts(&facts, volatile, Some(enc)),
                canonical_json(&Value::Object(selected_facts(&stable, enc)))
            );
        }
    }
}
