//! Psych's `Visitors::ToRuby` under Foreman's restricted class loader.
//!
//! Turns the parsed node tree into Ruby objects (`ruby::Ruby`) the way
//! `YAML.safe_load(text, permitted_classes: [Symbol, Time,
//! ActiveSupport::HashWithIndifferentAccess], aliases: true)` does:
//! untagged plain scalars go through `ScalarScanner#tokenize`, quoted ones
//! stay Strings, Ruby class tags are honoured for permitted classes and
//! refused (`DisallowedClass`) for the rest, `<<` merge keys follow
//! `revive_hash`. Branches keep the order of `to_ruby.rb` (Psych 4.0.x).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::load::{LoadError, Mark, Node};
use crate::ruby::{Hash, Ruby};
use crate::scanner::{tokenize, Token, TokenizeError};

/// Alias expansion copies subtrees (a `Value` cannot share them as Ruby
/// does); this bounds "billion laughs" documents.
const MAX_NODES: usize = 1_000_000;

const STR_TAG: &str = "tag:yaml.org,2002:str";
const HWIA: &str = "ActiveSupport::HashWithIndifferentAccess";
/// `permitted_classes` of Foreman's `safe_load`, as `Class#to_s` names them.
const PERMITTED: &[&str] = &["Symbol", "Time", HWIA];

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid built-in regex")
}

static STR_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!(?:str|ruby/string)(?::(.*))?$"));
static SYM_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!ruby/sym(?:bol)?:?(.*)?$"));
static SEQ_CLASS_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!(?:seq|ruby/array):(.*)$"));
static ARRAY_CLASS_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!ruby/array:(.*)$"));
static HASH_CLASS_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!(?:map|ruby/hash):(.*)$"));
static HASH_IVARS_TAGS: LazyLock<Regex> =
    LazyLock::new(|| re(r"^!ruby/hash-with-ivars(?::(.*))?$"));
static OBJECT_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!ruby/object:?(.*)?$"));
static STRUCT_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!ruby/struct:?(.*)?$"));
static EXCEPTION_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!ruby/exception:?(.*)?$"));
static MARSHALABLE_TAGS: LazyLock<Regex> = LazyLock::new(|| re(r"^!ruby/marshalable:(.*)$"));

/// `Some(group 1)` when `tag` matches (the group may be absent or empty).
fn capture<'t>(re: &Regex, tag: &'t str) -> Option<Option<&'t str>> {
    re.captures(tag)
        .map(|c| c.get(1).map(|m| m.as_str()).filter(|s| !s.is_empty()))
}

fn disallowed(class: &str, mark: Mark) -> LoadError {
    LoadError::DisallowedClass {
        class: class.to_string(),
        line: mark.line,
        column: mark.column,
    }
}

fn unsupported(message: impl Into<String>, mark: Mark) -> LoadError {
    LoadError::Unsupported {
        message: message.into(),
        line: mark.line,
        column: mark.column,
    }
}

fn invalid(err: TokenizeError, mark: Mark) -> LoadError {
    LoadError::InvalidValue {
        message: err.to_string(),
        line: mark.line,
        column: mark.column,
    }
}

/// `ClassLoader::Restricted#find`: `Ok(())` for a permitted class name.
fn resolve_class(name: &str, mark: Mark) -> Result<(), LoadError> {
    if PERMITTED.contains(&name) {
        Ok(())
    } else {
        Err(disallowed(name, mark))
    }
}

/// Psych `Visitors::ToRuby` state: the anchor table and a size budget.
#[derive(Default)]
pub(crate) struct ToRuby {
    /// Anchored objects by name; `None` while the anchored collection is
    /// still being built (Ruby would create a cycle, a tree cannot).
    anchors: HashMap<String, Option<Ruby>>,
    nodes: usize,
}

impl ToRuby {
    pub(crate) fn accept(&mut self, node: &Node) -> Result<Ruby, LoadError> {
        let value = match node {
            Node::Alias { anchor, mark } => match self.anchors.get(anchor) {
                Some(Some(value)) => {
                    self.nodes += value.size();
                    value.clone()
                }
                Some(None) => return Err(unsupported(format!("recursive alias *{anchor}"), *mark)),
                None => {
                    return Err(LoadError::BadAlias {
                        anchor: anchor.clone(),
                        line: mark.line,
                        column: mark.column,
                    })
                }
            },
            Node::Scalar {
                value,
                tag,
                quoted,
                mark,
                ..
            } => {
                self.nodes += 1;
                deserialize(value, tag.as_deref(), *quoted, *mark)?
            }
            Node::Seq {
                anchor,
                tag,
                children,
                mark,
            } => {
                self.nodes += 1;
                self.open_anchor(anchor);
                self.sequence(tag.as_deref(), children, *mark)?
            }
            Node::Map {
                anchor,
                tag,
                children,
                mark,
            } => {
                self.nodes += 1;
                self.open_anchor(anchor);
                self.mapping(tag.as_deref(), anchor.as_deref(), children, *mark)?
            }
        };
        if self.nodes > MAX_NODES {
            return Err(unsupported(
                format!("more than {MAX_NODES} nodes after alias expansion"),
                node.mark(),
            ));
        }
        if let Some(anchor) = node.anchor() {
            self.anchors.insert(anchor.to_string(), Some(value.clone()));
        }
        Ok(value)
    }

    fn open_anchor(&mut self, anchor: &Option<String>) {
        if let Some(anchor) = anchor {
            self.anchors.insert(anchor.clone(), None);
        }
    }

    /// `ToRuby#visit_Psych_Nodes_Sequence`.
    fn sequence(
        &mut self,
        tag: Option<&str>,
        children: &[Node],
        mark: Mark,
    ) -> Result<Ruby, LoadError> {
        match tag {
            Some("!omap" | "tag:yaml.org,2002:omap") => {
                // A Psych::Omap (a Hash): `map[accept(a.children.first)] =
                // accept a.children.last` for each entry collection.
                let mut map = Hash::new(false);
                for child in children {
                    let (first, last) = match child {
                        Node::Map {
                            children: pairs, ..
                        } => (pairs.first().map(|p| &p.0), pairs.last().map(|p| &p.1)),
                        Node::Seq {
                            children: items, ..
                        } => (items.first(), items.last()),
                        _ => (None, None),
                    };
                    let (Some(first), Some(last)) = (first, last) else {
                        return Err(unsupported("!omap entry without children", child.mark()));
                    };
                    let key = self.accept(first)?;
                    let value = self.accept(last)?;
                    map.set(key, value);
                }
                Ok(Ruby::Hash(map))
            }
            Some(tag) => {
                if let Some(Some(class)) = capture(&SEQ_CLASS_TAGS, tag) {
                    resolve_class(class, mark)?;
                    return Err(unsupported(format!("an Array subclass {class}"), mark));
                }
                self.list(children)
            }
            None => self.list(children),
        }
    }

    fn list(&mut self, children: &[Node]) -> Result<Ruby, LoadError> {
        children
            .iter()
            .map(|c| self.accept(c))
            .collect::<Result<_, _>>()
            .map(Ruby::Array)
    }

    /// `ToRuby#visit_Psych_Nodes_Mapping`.
    fn mapping(
        &mut self,
        tag: Option<&str>,
        anchor: Option<&str>,
        children: &[(Node, Node)],
        mark: Mark,
    ) -> Result<Ruby, LoadError> {
        let Some(tag) = tag else {
            return self.revive_hash(Hash::new(false), anchor, children);
        };
        if let Some(class) = capture(&STRUCT_TAGS, tag) {
            return Err(disallowed(class.unwrap_or("Struct"), mark));
        }
        if let Some(class) = capture(&OBJECT_TAGS, tag) {
            return match class {
                Some("Hash") => self.revive_hash(Hash::new(false), anchor, children),
                Some(class) => {
                    resolve_class(class, mark)?;
                    Err(unsupported(format!("a !ruby/object:{class}"), mark))
                }
                None => Err(disallowed("Object", mark)),
            };
        }
        if let Some(class) = capture(&STR_TAGS, tag).or_else(|| (tag == STR_TAG).then_some(None)) {
            if let Some(class) = class {
                resolve_class(class, mark)?;
                return Err(unsupported(format!("a String subclass {class}"), mark));
            }
            // A String with instance variables: the `str` entry is the string.
            let mut string = None;
            for (key, value) in children {
                if self.accept(key)?.to_s() == "str" {
                    string = Some(self.accept(value)?);
                }
            }
            return string.ok_or_else(|| unsupported("!ruby/string mapping without str", mark));
        }
        if let Some(Some(class)) = capture(&ARRAY_CLASS_TAGS, tag) {
            resolve_class(class, mark)?;
            return Err(unsupported(format!("an Array subclass {class}"), mark));
        }
        if tag == "!ruby/range" {
            return Err(disallowed("Range", mark));
        }
        if let Some(class) = capture(&EXCEPTION_TAGS, tag) {
            return Err(disallowed(class.unwrap_or("Exception"), mark));
        }
        if matches!(tag, "!set" | "tag:yaml.org,2002:set") {
            return Err(disallowed("Psych::Set", mark));
        }
        if let Some(class) = capture(&HASH_IVARS_TAGS, tag) {
            if let Some(class) = class {
                resolve_class(class, mark)?;
            }
            let mut hash = Hash::new(class == Some(HWIA));
            for (key, value) in children {
                // Psych reads the raw key text here; `ivars` are dropped.
                if !matches!(key, Node::Scalar { value, .. } if value == "elements") {
                    continue;
                }
                let Node::Map {
                    children: elements, ..
                } = value
                else {
                    return Err(unsupported(
                        "hash-with-ivars elements that are not a mapping",
                        value.mark(),
                    ));
                };
                if let Ruby::Hash(revived) = self.revive_hash(hash.clone(), None, elements)? {
                    hash = revived;
                }
            }
            return Ok(Ruby::Hash(hash));
        }
        if let Some(Some(class)) = capture(&HASH_CLASS_TAGS, tag) {
            resolve_class(class, mark)?;
            return self.revive_hash(Hash::new(class == HWIA), anchor, children);
        }
        if matches!(tag, "!omap" | "tag:yaml.org,2002:omap") {
            return Err(disallowed("Psych::Omap", mark));
        }
        if let Some(Some(class)) = capture(&MARSHALABLE_TAGS, tag) {
            return Err(disallowed(class, mark));
        }
        self.revive_hash(Hash::new(false), anchor, children)
    }

    /// `ToRuby#revive_hash`, including YAML merge keys (`<<`). `anchor` is
    /// the hash's own anchor: `<<: *self` merges what it holds so far.
    fn revive_hash(
        &mut self,
        mut hash: Hash,
        anchor: Option<&str>,
        children: &[(Node, Node)],
    ) -> Result<Ruby, LoadError> {
        for (k, v) in children {
            let key = self.accept(k)?;
            let is_merge = matches!(&key, Ruby::Str(s) if s == "<<") && k.tag() != Some(STR_TAG);
            if !is_merge {
                let val = self.accept(v)?;
                hash.set(key, val);
                continue;
            }
            let val = self.accept_merge_source(v, anchor, &hash)?;
            match (v, val) {
                (Node::Alias { .. } | Node::Map { .. }, Ruby::Hash(other)) => hash.merge(other),
                (Node::Seq { .. }, Ruby::Array(items))
                    if items.iter().all(|i| matches!(i, Ruby::Hash(_))) =>
                {
                    // Earlier maps win: merge them in reverse into one hash.
                    let mut merged = Hash::new(false);
                    for item in items.into_iter().rev() {
                        if let Ruby::Hash(h) = item {
                            merged.merge(h);
                        }
                    }
                    hash.merge(merged);
                }
                // `merge!` raises TypeError on a non-Hash, and Psych then
                // stores the value under "<<" like any key.
                (_, val) => hash.set(key, val),
            }
        }
        Ok(Ruby::Hash(hash))
    }
}

impl ToRuby {
    /// The value of a `<<` key. Ruby registers a Hash before filling it, so
    /// an alias to the enclosing hash's own anchor is that hash as built so
    /// far; a `Value` tree can only take a copy, which is all a merge needs.
    fn accept_merge_source(
        &mut self,
        node: &Node,
        own_anchor: Option<&str>,
        partial: &Hash,
    ) -> Result<Ruby, LoadError> {
        let is_self = |n: &Node| matches!(n, Node::Alias { anchor, .. } if Some(anchor.as_str()) == own_anchor);
        match node {
            n if is_self(n) => Ok(Ruby::Hash(partial.clone())),
            Node::Seq {
                anchor: None,
                tag: None,
                children,
                ..
            } if children.iter().any(is_self) => children
                .iter()
                .map(|c| {
                    if is_self(c) {
                        Ok(Ruby::Hash(partial.clone()))
                    } else {
                        self.accept(c)
                    }
                })
                .collect::<Result<_, _>>()
                .map(Ruby::Array),
            _ => self.accept(node),
        }
    }
}

/// `ToRuby#deserialize` for a scalar node.
fn deserialize(
    value: &str,
    tag: Option<&str>,
    quoted: bool,
    mark: Mark,
) -> Result<Ruby, LoadError> {
    if quoted {
        return Ok(Ruby::Str(value.to_string()));
    }
    let Some(tag) = tag else {
        return tokenize_to_ruby(value, mark);
    };
    match tag {
        "!binary" | "tag:yaml.org,2002:binary" => {
            // Ruby keeps the bytes as an ASCII-8BIT String; a `Value` string
            // is UTF-8, so undecodable bytes are replaced.
            let bytes = base64_decode(value);
            Ok(Ruby::Str(String::from_utf8_lossy(&bytes).into_owned()))
        }
        STR_TAG => Ok(Ruby::Str(value.to_string())),
        "!ruby/object:BigDecimal" => Err(disallowed("BigDecimal", mark)),
        "!ruby/object:DateTime" => Err(disallowed("DateTime", mark)),
        "!ruby/object:Complex" => Err(disallowed("Complex", mark)),
        "!ruby/object:Rational" => Err(disallowed("Rational", mark)),
        "!ruby/regexp" => Err(disallowed("Regexp", mark)),
        "!ruby/range" => Err(disallowed("Range", mark)),
        "!ruby/encoding" => Err(unsupported("a Ruby Encoding", mark)),
        "!ruby/class" | "!ruby/module" => {
            resolve_class(value, mark)?;
            Err(unsupported("a Ruby Class", mark))
        }
        "tag:yaml.org,2002:float" | "!float" => kernel_float(value, mark).map(Ruby::Float),
        _ => {
            if let Some(class) = capture(&STR_TAGS, tag) {
                return match class {
                    Some(class) => {
                        resolve_class(class, mark)?;
                        Err(unsupported(format!("a String subclass {class}"), mark))
                    }
                    None => Ok(Ruby::Str(value.to_string())),
                };
            }
            if SYM_TAGS.is_match(tag) {
                return Ok(Ruby::Sym(value.to_string()));
            }
            tokenize_to_ruby(value, mark)
        }
    }
}

/// `ScalarScanner#tokenize` as a Ruby object. Times, Dates (which Foreman
/// does not even permit) and Bignums keep their text (see `Ruby::Text`).
fn tokenize_to_ruby(text: &str, mark: Mark) -> Result<Ruby, LoadError> {
    Ok(match tokenize(text).map_err(|e| invalid(e, mark))? {
        Token::Null => Ruby::Nil,
        Token::Bool(b) => Ruby::Bool(b),
        Token::Int(i) => Ruby::Int(i),
        Token::Float(f) => Ruby::Float(f),
        Token::Sym(s) => Ruby::Sym(s),
        Token::Str => Ruby::Str(text.to_string()),
        Token::BigInt(to_s) | Token::Time(to_s) | Token::Date(to_s) => Ruby::Text {
            text: text.to_string(),
            to_s,
        },
    })
}

/// `Float(@ss.tokenize(value))` for `!!float` scalars.
fn kernel_float(text: &str, mark: Mark) -> Result<f64, LoadError> {
    let type_error = |what: &str| LoadError::InvalidValue {
        message: format!("can't convert {what} into Float"),
        line: mark.line,
        column: mark.column,
    };
    match tokenize(text).map_err(|e| invalid(e, mark))? {
        Token::Int(i) => Ok(i as f64),
        Token::Float(f) => Ok(f),
        Token::BigInt(digits) => digits.parse().map_err(|_| type_error("Integer")),
        Token::Null => Err(type_error("nil")),
        Token::Bool(b) => Err(type_error(if b { "true" } else { "false" })),
        Token::Sym(_) => Err(type_error("Symbol")),
        Token::Time(_) => Err(type_error("Time")),
        Token::Date(_) => Err(type_error("Date")),
        Token::Str => strict_float(text).ok_or_else(|| {
            invalid(
                TokenizeError {
                    kind: "Float",
                    text: text.to_string(),
                },
                mark,
            )
        }),
    }
}

static STRICT_FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[+-]?(?:[0-9]+(?:_[0-9]+)*)?(?:\.[0-9]+(?:_[0-9]+)*)?(?:[eE][+-]?[0-9]+(?:_[0-9]+)*)?$",
    )
    .expect("valid regex")
});
static STRICT_HEX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([+-]?)0[xX]([0-9a-fA-F]+(?:_[0-9a-fA-F]+)*)$").expect("valid regex")
});

/// Ruby `Kernel#Float(string)`: surrounding whitespace allowed, `_` only
/// between digits, a digit needed before any `.` part or exponent.
fn strict_float(text: &str) -> Option<f64> {
    let s = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0B');
    if let Some(c) = STRICT_HEX.captures(s) {
        let digits: String = c[2].chars().filter(|c| *c != '_').collect();
        let v = u128::from_str_radix(&digits, 16).ok()? as f64;
        return Some(if &c[1] == "-" { -v } else { v });
    }
    let body = s.trim_start_matches(['+', '-']);
    if !STRICT_FLOAT.is_match(s) || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let mantissa = body.split(['e', 'E']).next().unwrap_or("");
    if !mantissa.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    s.replace('_', "").parse().ok()
}

/// Ruby `unpack('m')`: lenient base64 (skips characters outside the
/// alphabet, stops at padding).
fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
