//! The Ruby objects `load` builds before Foreman's `deep_stringify_keys`.
//!
//! `Value` keys are already Strings, but until Foreman stringifies them a
//! loaded Hash has Ruby keys: `1`, `"1"` and `:a` are distinct, merge keys
//! and ActiveSupport's HashWithIndifferentAccess work on those, and an Array
//! or Hash key is stringified with `inspect`, which shows its inner keys
//! unstringified (`{false=>"y"}`). So loading builds this model and converts
//! it to `Value` only at the end.

use crate::float::float_to_s;
use crate::value::{Map, Value};

/// A loaded Ruby object of a class Foreman's `safe_load` permits.
#[derive(Debug, Clone)]
pub(crate) enum Ruby {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Sym(String),
    /// A Time, Date or Bignum: `Value` keeps the source text, keys use
    /// Ruby's `to_s`.
    Text {
        text: String,
        to_s: String,
    },
    Array(Vec<Ruby>),
    Hash(Hash),
}

/// An insertion-ordered Ruby Hash; `indifferent` for ActiveSupport's
/// HashWithIndifferentAccess, which stores Symbol keys as Strings and turns
/// Hash values into indifferent ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hash {
    entries: Vec<(Ruby, Ruby)>,
    indifferent: bool,
}

impl Hash {
    pub(crate) fn new(indifferent: bool) -> Self {
        Hash {
            entries: Vec::new(),
            indifferent,
        }
    }

    /// `hash[key] = value`: an existing (`eql?`) key keeps its position.
    pub(crate) fn set(&mut self, key: Ruby, value: Ruby) {
        let (key, value) = if self.indifferent {
            let key = match key {
                Ruby::Sym(name) => Ruby::Str(name),
                other => other,
            };
            (key, make_indifferent(value))
        } else {
            (key, value)
        };
        match self.entries.iter_mut().find(|(k, _)| eql(k, &key)) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// `hash.merge!(other)`.
    pub(crate) fn merge(&mut self, other: Hash) {
        for (k, v) in other.entries {
            self.set(k, v);
        }
    }
}

/// HWIA's `convert_value`: nested Hashes become indifferent (their Symbol
/// keys turn into Strings), also inside Arrays.
fn make_indifferent(value: Ruby) -> Ruby {
    match value {
        Ruby::Hash(hash) if !hash.indifferent => {
            let mut converted = Hash::new(true);
            for (k, v) in hash.entries {
                converted.set(k, v);
            }
            Ruby::Hash(converted)
        }
        Ruby::Array(items) => Ruby::Array(items.into_iter().map(make_indifferent).collect()),
        other => other,
    }
}

/// Ruby `eql?`, which Hash uses for keys: no Integer/Float or
/// String/Symbol cross-equality; `0.0` and `-0.0` are one key.
fn eql(a: &Ruby, b: &Ruby) -> bool {
    match (a, b) {
        (Ruby::Nil, Ruby::Nil) => true,
        (Ruby::Bool(x), Ruby::Bool(y)) => x == y,
        (Ruby::Int(x), Ruby::Int(y)) => x == y,
        // Psych returns the one Float::NAN object, which a Hash finds by
        // identity.
        (Ruby::Float(x), Ruby::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Ruby::Str(x), Ruby::Str(y)) | (Ruby::Sym(x), Ruby::Sym(y)) => x == y,
        (Ruby::Text { to_s: x, .. }, Ruby::Text { to_s: y, .. }) => x == y,
        (Ruby::Array(x), Ruby::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| eql(a, b))
        }
        (Ruby::Hash(x), Ruby::Hash(y)) => {
            x.entries.len() == y.entries.len()
                && x.entries
                    .iter()
                    .all(|(k, v)| y.entries.iter().any(|(k2, v2)| eql(k, k2) && eql(v, v2)))
        }
        _ => false,
    }
}

impl Ruby {
    /// Number of objects, for the alias-expansion budget.
    pub(crate) fn size(&self) -> usize {
        match self {
            Ruby::Array(items) => 1 + items.iter().map(Ruby::size).sum::<usize>(),
            Ruby::Hash(hash) => {
                1 + hash
                    .entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
            _ => 1,
        }
    }

    /// Foreman's `deep_stringify_keys`, into the `Value` tree.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Ruby::Nil => Value::Null,
            Ruby::Bool(b) => Value::Bool(b),
            Ruby::Int(i) => Value::Int(i),
            Ruby::Float(f) => Value::Float(f),
            Ruby::Str(s) | Ruby::Text { text: s, .. } => Value::Str(s),
            Ruby::Sym(s) => Value::Sym(s),
            Ruby::Array(items) => Value::Seq(items.into_iter().map(Ruby::into_value).collect()),
            Ruby::Hash(hash) => {
                let mut map = Map::with_capacity(hash.entries.len());
                for (k, v) in hash.entries {
                    map.insert(k.to_s(), v.into_value());
                }
                Value::Map(map)
            }
        }
    }

    /// Ruby `to_s`.
    pub(crate) fn to_s(&self) -> String {
        match self {
            Ruby::Nil => String::new(),
            Ruby::Bool(b) => b.to_string(),
            Ruby::Int(i) => i.to_string(),
            Ruby::Float(f) => float_to_s(*f),
            Ruby::Str(s) | Ruby::Sym(s) => s.clone(),
            Ruby::Text { to_s, .. } => to_s.clone(),
            Ruby::Array(_) | Ruby::Hash(_) => self.inspect(),
        }
    }

    /// Ruby 3.1 `inspect` (a Time/Date shows its `to_s` here, which for
    /// Time matches Ruby unless it has fractional seconds).
    fn inspect(&self) -> String {
        match self {
            Ruby::Nil => "nil".to_string(),
            Ruby::Str(s) => inspect_str(s),
            Ruby::Sym(s) => {
                let plain = s
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && s.chars().all(|c| c.is_alphanumeric() || c == '_');
                if plain {
                    format!(":{s}")
                } else {
                    format!(":{}", inspect_str(s))
                }
            }
            Ruby::Array(items) => {
                let parts: Vec<String> = items.iter().map(Ruby::inspect).collect();
                format!("[{}]", parts.join(", "))
            }
            Ruby::Hash(hash) => {
                let parts: Vec<String> = hash
                    .entries
                    .iter()
                    .map(|(k, v)| format!("{}=>{}", k.inspect(), v.inspect()))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            other => other.to_s(),
        }
    }
}

/// Ruby `String#inspect` for UTF-8 strings.
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
            // "#{", "#$" and "#@" would interpolate in a Ruby literal.
            '#' if matches!(chars.peek(), Some('{' | '$' | '@')) => out.push_str("\\#"),
            c if (c as u32) < 0x20 || c == '\x7F' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
