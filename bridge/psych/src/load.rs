//! `load`: Ruby `YAML.safe_load(text, permitted_classes: [Symbol, Time,
//! ActiveSupport::HashWithIndifferentAccess], aliases: true)`, the way
//! Foreman reads its serialized columns, followed by `deep_stringify_keys`.
//!
//! Parsing is libyaml's own grammar (through `libyaml-safer`, a port of the
//! C library Psych binds), so the same texts are accepted and the same
//! scalar styles and tags come out. The events are built into a small node
//! tree, like Psych's `TreeBuilder`, because Psych's `ToRuby` visitor looks
//! at nodes (merge keys care whether the value is an alias, a mapping or a
//! sequence). `to_ruby` then ports `ToRuby`, and `ruby` applies Foreman's
//! `deep_stringify_keys` on the way to a `Value`.
//!
//! Where Ruby would produce an object a `Value` cannot hold, `load` keeps the
//! scalar's text as a `Str`: plain timestamps (`Time`), plain dates (Foreman
//! does not permit `Date`; Ruby would raise `DisallowedClass` instead) and
//! integers beyond i64 (Ruby Bignums). As hash keys they become Ruby's
//! `to_s` of the object (`2001-12-14 21:59:43 -0500`, `2024-01-01`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use libyaml_safer::{EventData, Parser, ScalarStyle};

use crate::to_ruby::ToRuby;
use crate::value::Value;

/// Why `load` failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// libyaml rejected the text (Ruby raises `Psych::SyntaxError`; the
    /// message reads like Psych's, without the `(<unknown>): ` prefix).
    #[error("{problem}{} at line {line} column {column}", context_suffix(.context))]
    Syntax {
        problem: String,
        /// What libyaml was parsing, e.g. "while parsing a flow sequence".
        context: Option<String>,
        /// 1-based; where the construct in `context` starts, if any.
        line: u64,
        /// 1-based.
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
    context.as_ref().map_or(String::new(), |c| format!(" {c}"))
}

/// Nesting deeper than this is refused: it keeps the recursive conversion
/// (and drops) far from the stack limit. Real columns nest a few levels.
const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mark {
    pub(crate) line: u64,
    pub(crate) column: u64,
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
pub(crate) enum Node {
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
    pub(crate) fn mark(&self) -> Mark {
        match self {
            Node::Scalar { mark, .. }
            | Node::Seq { mark, .. }
            | Node::Map { mark, .. }
            | Node::Alias { mark, .. } => *mark,
        }
    }

    pub(crate) fn anchor(&self) -> Option<&str> {
        match self {
            Node::Scalar { anchor, .. } | Node::Seq { anchor, .. } | Node::Map { anchor, .. } => {
                anchor.as_deref()
            }
            Node::Alias { .. } => None,
        }
    }

    pub(crate) fn tag(&self) -> Option<&str> {
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
    // Psych reports the context mark (the start of the enclosing construct).
    let mark = err
        .context_mark()
        .or_else(|| err.problem_mark())
        .map(Mark::from)
        .unwrap_or(Mark { line: 1, column: 1 });
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
    // libyaml-safer 0.3 panics on some malformed input: a `todo!` where C
    // libyaml accepts a tag directly followed by `,` in a flow collection
    // (`[!x, 1]`), an unwrap on a double-quoted scalar ending in a
    // backslash (`"\`, found by fuzzing). `load` must not panic, so these
    // become errors. This relies on the workspace's panic=unwind (see the
    // release profile); the panic hook still logs it.
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
    Ok(ToRuby::default().accept(&root)?.into_value())
}
