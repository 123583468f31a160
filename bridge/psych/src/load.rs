//! `load`: Ruby `YAML.safe_load(text, permitted_classes: [Symbol, Time,
//! ActiveSupport::HashWithIndifferentAccess], aliases: true)`, the way
//! Foreman reads its serialized columns, followed by `deep_stringify_keys`.
//!
//! Parsing is libyaml's own grammar (through `libyaml-safer`, a port of the
//! C library Psych binds), so the same texts are accepted and the same
//! scalar styles and tags come out. The events are built into a small node
//! tree, like Psych's `TreeBuilder`, because Psych's `ToRuby` visitor looks
//! at nodes (merge keys care whether the value is an alias, a mapping or a
//! sequence). `to_value` then ports `ToRuby` for the classes Foreman permits.
//!
//! Where Ruby would produce an object a `Value` cannot hold, `load` keeps the
//! scalar's text as a `Str`: plain timestamps (`Time`), plain dates (Foreman
//! does not permit `Date`; Ruby would raise `DisallowedClass` instead) and
//! integers beyond i64 (Ruby Bignums).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

use libyaml_safer::{EventData, Parser, ScalarStyle};
use regex::Regex;

use crate::float::float_to_s;
use crate::scanner::{tokenize, Token, TokenizeError};
use crate::value::{Map, Value};

/// Why `load` failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// libyaml rejected the text (Ruby raises `Psych::SyntaxError`).
    #[error("YAML syntax error at line {line} column {column}: {problem}{}", context_suffix(.context))]
    Syntax {
        problem: String,
        context: Option<String>,
        /// 1-based, as Psych reports it.
        line: u64,
        /// 1-based, as Psych reports it.
        column: u64,
    },
    /// A tag names a class outside Foreman's permitted list
    /// (Ruby raises `Psych::DisallowedClass`).
    #[error("tried to load unspecified class: {class} (line {line} column {column})")]
    DisallowedClass {
        class: String,
        line: u64,
        column: u64,
    },
    /// `*name` before any `&name` (Ruby raises `Psych::BadAlias`).
    #[error("unknown alias: {anchor} (line {line} column {column})")]
    BadAlias {
        anchor: String,
        line: u64,
        column: u64,
    },
    /// Ruby's `Float()`/`Integer()` rejected a scalar that Psych's scanner
    /// sent their way (Ruby raises `ArgumentError`/`TypeError`).
    #[error("{message} (line {line} column {column})")]
    InvalidValue {
        message: String,
        line: u64,
        column: u64,
    },
    /// Valid for Ruby, but not representable as a `Value` (a recursive
    /// alias, an Encoding, ...), or beyond this crate's nesting/size limits.
    #[error("unsupported YAML: {message} (line {line} column {column})")]
    Unsupported {
        message: String,
        line: u64,
        column: u64,
    },
}

fn context_suffix(context: &Option<String>) -> String {
    context
        .as_ref()
        .map_or(String::new(), |c| format!(" ({c})"))
}

/// Nesting deeper than this is refused: it keeps the recursive conversion
/// (and drops) far from the stack limit. Real columns nest a few levels.
const MAX_DEPTH: usize = 256;
/// Alias expansion copies subtrees (a `Value` cannot share them as Ruby
/// does); this bounds "billion laughs" documents.
const MAX_NODES: usize = 1_000_000;

const STR_TAG: &str = "tag:yaml.org,2002:str";
/// `permitted_classes` of Foreman's `safe_load`, as `Class#to_s` names them.
const PERMITTED: &[&str] = &["Symbol", "Time", "ActiveSupport::HashWithIndifferentAccess"];

#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    line: u64,
    column: u64,
}

impl From<libyaml_safer::Mark> for Mark {
    fn from(m: libyaml_safer::Mark) -> Self {
        Mark {
            line: m.line + 1,
            column: m.column + 1,
        }
    }
}

/// Psych's `Nodes::*`, reduced to what `ToRuby` reads.
#[derive(Debug)]
enum Node {
    Scalar {
        value: String,
        tag: Option<String>,
        /// libyaml's `quoted_implicit`: a quoted/block scalar without tag.
        quoted: bool,
        anchor: Option<String>,
        mark: Mark,
    },
    Seq {
        tag: Option<String>,
        anchor: Option<String>,
        children: Vec<Node>,
        mark: Mark,
    },
    Map {
        tag: Option<String>,
        anchor: Option<String>,
        children: Vec<(Node, Node)>,
        mark: Mark,
    },
    Alias {
        anchor: String,
        mark: Mark,
    },
}

impl Node {
    fn mark(&self) -> Mark {
        match self {
            Node::Scalar { mark, .. }
            | Node::Seq { mark, .. }
            | Node::Map { mark, .. }
            | Node::Alias { mark, .. } => *mark,
        }
    }

    fn tag(&self) -> Option<&str> {
        match self {
            Node::Scalar { tag, .. } | Node::Seq { tag, .. } | Node::Map { tag, .. } => {
                tag.as_deref()
            }
            Node::Alias { .. } => None,
        }
    }
}

/// A collection being built while its events arrive.
enum Open {
    Seq {
        tag: Option<String>,
        anchor: Option<String>,
        children: Vec<Node>,
        mark: Mark,
    },
    Map {
        tag: Option<String>,
        anchor: Option<String>,
        children: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        mark: Mark,
    },
}

impl Open {
    fn push(&mut self, node: Node) {
        match self {
            Open::Seq { children, .. } => children.push(node),
            Open::Map {
                children,
                pending_key,
                ..
            } => match pending_key.take() {
                Some(key) => children.push((key, node)),
                None => *pending_key = Some(node),
            },
        }
    }

    fn close(self) -> Node {
        match self {
            Open::Seq {
                tag,
                anchor,
                children,
                mark,
            } => Node::Seq {
                tag,
                anchor,
                children,
                mark,
            },
            Open::Map {
                tag,
                anchor,
                children,
                mark,
                ..
            } => Node::Map {
                tag,
                anchor,
                children,
                mark,
            },
        }
    }
}

fn syntax_error(err: &libyaml_safer::Error) -> LoadError {
    let mark = err.problem_mark().map(Mark::from).unwrap_or_default();
    LoadError::Syntax {
        problem: err.problem().to_string(),
        context: err.context().map(str::to_string),
        line: mark.line,
        column: mark.column,
    }
}

/// Psych `parse`: the root node of the first document, `None` for a stream
/// without documents. Later documents are not read, as in Psych, which
/// returns as soon as the first one ends.
fn parse_first_document(text: &str) -> Result<Option<Node>, LoadError> {
    let mut input = text.as_bytes();
    let mut parser = Parser::new();
    // Psych declares a Ruby String's encoding up front, so libyaml does no
    // BOM detection: a leading BOM is skipped by the scanner as a character
    // and the line's `---` is then not at column 0 any more.
    parser.set_encoding(libyaml_safer::Encoding::Utf8);
    parser.set_input_string(&mut input);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = parser.parse().map_err(|e| syntax_error(&e))?;
        let mark = Mark::from(event.start_mark);
        let finished = match event.data {
            EventData::StreamStart { .. } | EventData::DocumentStart { .. } => None,
            EventData::StreamEnd | EventData::DocumentEnd { .. } => return Ok(root),
            EventData::Alias { anchor } => Some(Node::Alias { anchor, mark }),
            EventData::Scalar {
                anchor,
                tag,
                value,
                quoted_implicit,
                style,
                ..
            } => {
                // libyaml sets `quoted_implicit` only for untagged non-plain
                // scalars; Psych's `Scalar#quoted` is exactly that flag.
                let quoted = quoted_implicit && style != ScalarStyle::Plain;
                Some(Node::Scalar {
                    value,
                    tag,
                    quoted,
                    anchor,
                    mark,
                })
            }
            EventData::SequenceStart { anchor, tag, .. } => {
                stack.push(Open::Seq {
                    tag,
                    anchor,
                    children: Vec::new(),
                    mark,
                });
                None
            }
            EventData::MappingStart { anchor, tag, .. } => {
                stack.push(Open::Map {
                    tag,
                    anchor,
                    children: Vec::new(),
                    pending_key: None,
                    mark,
                });
                None
            }
            EventData::SequenceEnd | EventData::MappingEnd => stack.pop().map(Open::close),
        };
        if stack.len() > MAX_DEPTH {
            return Err(LoadError::Unsupported {
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
                line: mark.line,
                column: mark.column,
            });
        }
        if let Some(node) = finished {
            match stack.last_mut() {
                Some(open) => open.push(node),
                None => root = Some(node),
            }
        }
    }
}

/// Ruby `YAML.safe_load` as Foreman calls it, then `deep_stringify_keys`.
pub fn load(text: &str) -> Result<Value, LoadError> {
    // libyaml-safer 0.3 panics (a `todo`) where C libyaml accepts a tag
    // directly followed by `,` in a flow collection (`[!x, 1]`); `load`
    // must not panic, so that case becomes an error.
    let parsed =
        catch_unwind(AssertUnwindSafe(|| parse_first_document(text))).unwrap_or_else(|_| {
            Err(LoadError::Unsupported {
                message: "the YAML parser gave up on this text".to_string(),
                line: 0,
                column: 0,
            })
        });
    let Some(root) = parsed? else {
        // Psych.parse returns false for an empty stream; safe_load then
        // returns its fallback, nil.
        return Ok(Value::Null);
    };
    let mut ruby = ToRuby::default();
    ruby.accept(&root)
}

/// Psych `Visitors::ToRuby` with Foreman's restricted class loader.
#[derive(Default)]
struct ToRuby {
    /// Anchored values by name; `None` while the anchored collection is
    /// still being built (an alias to it would be a cycle).
    anchors: HashMap<String, Option<(Value, usize)>>,
    nodes: usize,
}

static STR_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!(?:str|ruby/string)(?::(.*))?$").expect("valid regex"));
static SYM_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!ruby/sym(bol)?:?(.*)?$").expect("valid regex"));
static SEQ_CLASS_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!(?:seq|ruby/array):(.*)$").expect("valid regex"));
static HASH_CLASS_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!(?:map|ruby/hash):(.*)$").expect("valid regex"));
static HASH_IVARS_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!ruby/hash-with-ivars(?::(.*))?$").expect("valid regex"));
static OBJECT_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!ruby/object:?(.*)?$").expect("valid regex"));
static STRUCT_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!ruby/struct:?(.*)?$").expect("valid regex"));
static EXCEPTION_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!ruby/exception:?(.*)?$").expect("valid regex"));
static MARSHALABLE_TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!ruby/marshalable:(.*)$").expect("valid regex"));

fn capture<'t>(re: &Regex, tag: &'t str) -> Option<Option<&'t str>> {
    re.captures(tag)
        .map(|c| c.get(c.len() - 1).map(|m| m.as_str()))
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

/// `ClassLoader::Restricted#load`: `Ok(())` for a permitted class name.
fn resolve_class(name: &str, mark: Mark) -> Result<(), LoadError> {
    if PERMITTED.contains(&name) {
        Ok(())
    } else {
        Err(disallowed(name, mark))
    }
}

impl ToRuby {
    fn accept(&mut self, node: &Node) -> Result<Value, LoadError> {
        let before = self.nodes;
        let value = match node {
            Node::Alias { anchor, mark } => match self.anchors.get(anchor) {
                Some(Some((value, size))) => {
                    self.nodes += size;
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
            Node::Scalar { .. } => {
                self.nodes += 1;
                self.scalar(node)?
            }
            Node::Seq { anchor, .. } | Node::Map { anchor, .. } => {
                self.nodes += 1;
                if let Some(anchor) = anchor {
                    self.anchors.insert(anchor.clone(), None);
                }
                if matches!(node, Node::Seq { .. }) {
                    self.sequence(node)?
                } else {
                    self.mapping(node)?
                }
            }
        };
        if self.nodes > MAX_NODES {
            return Err(unsupported(
                format!("more than {MAX_NODES} nodes after alias expansion"),
                node.mark(),
            ));
        }
        let anchor = match node {
            Node::Scalar { anchor, .. } | Node::Seq { anchor, .. } | Node::Map { anchor, .. } => {
                anchor.as_ref()
            }
            Node::Alias { .. } => None,
        };
        if let Some(anchor) = anchor {
            let size = (self.nodes - before).max(1);
            self.anchors
                .insert(anchor.clone(), Some((value.clone(), size)));
        }
        Ok(value)
    }

    /// `ToRuby#deserialize`.
    fn scalar(&mut self, node: &Node) -> Result<Value, LoadError> {
        let Node::Scalar {
            value,
            tag,
            quoted,
            mark,
            ..
        } = node
        else {
            return Err(unsupported("not a scalar", node.mark()));
        };
        let mark = *mark;
        if *quoted {
            return Ok(Value::Str(value.clone()));
        }
        let Some(tag) = tag.as_deref() else {
            return resolve_plain(value, mark);
        };
        match tag {
            "!binary" | "tag:yaml.org,2002:binary" => {
                let bytes = base64_decode(value)
                    .ok_or_else(|| unsupported("invalid base64 in !binary", mark))?;
                // Ruby keeps the bytes as an ASCII-8BIT String; a `Str` must
                // be UTF-8, so undecodable bytes are replaced.
                Ok(Value::Str(String::from_utf8_lossy(&bytes).into_owned()))
            }
            STR_TAG => Ok(Value::Str(value.clone())),
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
            "tag:yaml.org,2002:float" | "!float" => {
                ruby_kernel_float(value, mark).map(Value::Float)
            }
            _ => {
                if let Some(class) = capture(&STR_TAGS, tag) {
                    return match class {
                        Some(class) => {
                            resolve_class(class, mark)?;
                            Err(unsupported(format!("a String subclass {class}"), mark))
                        }
                        None => Ok(Value::Str(value.clone())),
                    };
                }
                if SYM_TAGS.is_match(tag) {
                    return Ok(Value::Sym(value.clone()));
                }
                resolve_plain(value, mark)
            }
        }
    }

    /// `ToRuby#visit_Psych_Nodes_Sequence`.
    fn sequence(&mut self, node: &Node) -> Result<Value, LoadError> {
        let Node::Seq {
            tag,
            children,
            mark,
            ..
        } = node
        else {
            return Err(unsupported("not a sequence", node.mark()));
        };
        match tag.as_deref() {
            Some("!omap" | "tag:yaml.org,2002:omap") => {
                // Psych builds a Psych::Omap (a Hash) from one-pair maps.
                let mut map = Map::new();
                for child in children {
                    let Node::Map {
                        children: pairs, ..
                    } = child
                    else {
                        return Err(unsupported(
                            "!omap entry that is not a mapping",
                            child.mark(),
                        ));
                    };
                    let (Some((first, _)), Some((_, last))) = (pairs.first(), pairs.last()) else {
                        return Err(unsupported("empty !omap entry", child.mark()));
                    };
                    let key = self.accept(first)?;
                    let value = self.accept(last)?;
                    map.insert(ruby_to_s(&key), value);
                }
                Ok(Value::Map(map))
            }
            Some(t) => {
                if let Some(Some(class)) = capture(&SEQ_CLASS_TAGS, t) {
                    resolve_class(class, *mark)?;
                    return Err(unsupported(format!("an Array subclass {class}"), *mark));
                }
                self.list(children)
            }
            None => self.list(children),
        }
    }

    fn list(&mut self, children: &[Node]) -> Result<Value, LoadError> {
        children
            .iter()
            .map(|c| self.accept(c))
            .collect::<Result<_, _>>()
            .map(Value::Seq)
    }

    /// `ToRuby#visit_Psych_Nodes_Mapping`.
    fn mapping(&mut self, node: &Node) -> Result<Value, LoadError> {
        let Node::Map {
            tag,
            children,
            mark,
            ..
        } = node
        else {
            return Err(unsupported("not a mapping", node.mark()));
        };
        let mark = *mark;
        let Some(tag) = tag.as_deref() else {
            return self.revive_hash(children);
        };
        if let Some(class) = capture(&STRUCT_TAGS, tag) {
            return Err(disallowed(
                class.filter(|c| !c.is_empty()).unwrap_or("Struct"),
                mark,
            ));
        }
        if let Some(class) = capture(&OBJECT_TAGS, tag) {
            return match class.filter(|c| !c.is_empty()) {
                Some("Hash") => self.revive_hash(children),
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
            // A String with instance variables: keep the string.
            for (key, value) in children {
                if matches!(key, Node::Scalar { value, .. } if value == "str") {
                    return self.accept(value);
                }
            }
            return Err(unsupported("!ruby/string mapping without str", mark));
        }
        if let Some(Some(class)) =
            capture(&SEQ_CLASS_TAGS, tag).filter(|_| tag.starts_with("!ruby/array:"))
        {
            resolve_class(class, mark)?;
            return Err(unsupported(format!("an Array subclass {class}"), mark));
        }
        if tag == "!ruby/range" {
            return Err(disallowed("Range", mark));
        }
        if let Some(class) = capture(&EXCEPTION_TAGS, tag) {
            return Err(disallowed(
                class.filter(|c| !c.is_empty()).unwrap_or("Exception"),
                mark,
            ));
        }
        if matches!(tag, "!set" | "tag:yaml.org,2002:set") {
            return Err(disallowed("Psych::Set", mark));
        }
        if let Some(class) = capture(&HASH_IVARS_TAGS, tag) {
            if let Some(class) = class {
                resolve_class(class, mark)?;
            }
            // Only the `elements` entry holds the hash; `ivars` are dropped.
            let mut result = Map::new();
            for (key, value) in children {
                if matches!(key, Node::Scalar { value, .. } if value == "elements") {
                    let Node::Map {
                        children: elements, ..
                    } = value
                    else {
                        return Err(unsupported(
                            "hash-with-ivars elements that are not a mapping",
                            value.mark(),
                        ));
                    };
                    if let Value::Map(m) = self.revive_hash(elements)? {
                        for (k, v) in m {
                            result.insert(k, v);
                        }
                    }
                }
            }
            return Ok(Value::Map(result));
        }
        if let Some(Some(class)) = capture(&HASH_CLASS_TAGS, tag) {
            // `ActiveSupport::HashWithIndifferentAccess` stringifies symbol
            // keys, which `deep_stringify_keys` does anyway.
            resolve_class(class, mark)?;
            return self.revive_hash(children);
        }
        if matches!(tag, "!omap" | "tag:yaml.org,2002:omap") {
            return Err(disallowed("Psych::Omap", mark));
        }
        if let Some(Some(class)) = capture(&MARSHALABLE_TAGS, tag) {
            return Err(disallowed(class, mark));
        }
        self.revive_hash(children)
    }

    /// `ToRuby#revive_hash`, including YAML merge keys (`<<`).
    fn revive_hash(&mut self, children: &[(Node, Node)]) -> Result<Value, LoadError> {
        let mut hash = Map::with_capacity(children.len());
        for (k, v) in children {
            let key = self.accept(k)?;
            let val = self.accept(v)?;
            let is_merge = matches!(&key, Value::Str(s) if s == "<<") && k.tag() != Some(STR_TAG);
            if !is_merge {
                hash.insert(ruby_to_s(&key), val);
                continue;
            }
            match (v, val) {
                (Node::Alias { .. } | Node::Map { .. }, Value::Map(other)) => {
                    for (kk, vv) in other {
                        hash.insert(kk, vv);
                    }
                }
                (Node::Seq { .. }, Value::Seq(items))
                    if items.iter().all(|i| matches!(i, Value::Map(_))) =>
                {
                    // Earlier maps win: merge them in reverse into one hash.
                    let mut merged = Map::new();
                    for item in items.into_iter().rev() {
                        if let Value::Map(m) = item {
                            for (kk, vv) in m {
                                merged.insert(kk, vv);
                            }
                        }
                    }
                    for (kk, vv) in merged {
                        hash.insert(kk, vv);
                    }
                }
                // Ruby's merge! raises TypeError on a non-Hash and Psych
                // then stores the value under "<<" as a plain key.
                (_, val) => hash.insert("<<".to_string(), val),
            }
        }
        Ok(Value::Map(hash))
    }
}

/// `ScalarScanner#tokenize` turned into a `Value` (see the module doc for
/// what is kept as text).
fn resolve_plain(text: &str, mark: Mark) -> Result<Value, LoadError> {
    Ok(match tokenize(text).map_err(|e| invalid(e, mark))? {
        Token::Null => Value::Null,
        Token::Bool(b) => Value::Bool(b),
        Token::Int(i) => Value::Int(i),
        Token::Float(f) => Value::Float(f),
        Token::Sym(s) => Value::Sym(s),
        Token::Str | Token::BigInt | Token::Time | Token::Date => Value::Str(text.to_string()),
    })
}

/// `Float(@ss.tokenize(value))` for `!!float` scalars.
fn ruby_kernel_float(text: &str, mark: Mark) -> Result<f64, LoadError> {
    let type_error = |what: &str| LoadError::InvalidValue {
        message: format!("can't convert {what} into Float"),
        line: mark.line,
        column: mark.column,
    };
    match tokenize(text).map_err(|e| invalid(e, mark))? {
        Token::Int(i) => Ok(i as f64),
        Token::Float(f) => Ok(f),
        Token::BigInt => text
            .chars()
            .filter(|c| *c != '_' && *c != ',')
            .collect::<String>()
            .parse()
            .map_err(|_| type_error("Integer")),
        Token::Null => Err(type_error("nil")),
        Token::Bool(b) => Err(type_error(if b { "true" } else { "false" })),
        Token::Sym(_) => Err(type_error("Symbol")),
        Token::Time | Token::Date => Err(type_error("Time")),
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

/// Ruby `to_s` of a loaded key, as `deep_stringify_keys` applies it.
fn ruby_to_s(value: &Value) -> String {
    value.to_ruby_s().unwrap_or_else(|| ruby_inspect(value))
}

/// Ruby 3.1 `inspect`, which is `to_s` for Arrays and Hashes used as keys.
fn ruby_inspect(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_to_s(*f),
        Value::Str(s) => inspect_str(s),
        Value::Sym(s) => {
            let simple = s
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_alphanumeric() || c == '_');
            if simple {
                format!(":{s}")
            } else {
                format!(":{}", inspect_str(s))
            }
        }
        Value::Seq(items) => {
            let parts: Vec<String> = items.iter().map(ruby_inspect).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Map(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}=>{}", inspect_str(k), ruby_inspect(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

fn inspect_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x0C' => out.push_str("\\f"),
            '\x0B' => out.push_str("\\v"),
            '\x08' => out.push_str("\\b"),
            '\x07' => out.push_str("\\a"),
            '\x1B' => out.push_str("\\e"),
            '#' if matches!(chars.peek(), Some('{' | '$' | '@')) => out.push_str("\\#"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Ruby `unpack('m')`: lenient base64 (skips characters outside the
/// alphabet, stops at padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
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
    Some(out)
}
