//! The Ruby-shaped value tree the ENC is built from.
//!
//! Foreman builds `host.info` out of Ruby objects (Hash with insertion order,
//! Array, String, Integer, Float, true/false, nil, Symbol) and Psych dumps it.
//! `Value` mirrors exactly those types so that the emitter can reproduce
//! Psych's choices (quoting, `1.0` vs `1`, `:sym`) byte for byte.

/// A Ruby value as Psych loads and dumps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A Ruby Symbol, dumped by Psych as `:name`.
    Sym(String),
    Seq(Vec<Value>),
    Map(Map),
}

/// An insertion-ordered Ruby Hash whose keys are already stringified
/// (Foreman calls `deep_stringify_keys` before dumping).
///
/// Maps in an ENC are small (tens of keys), so a vector with linear lookup is
/// both faster and smaller than a hash map here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map(Vec<(String, Value)>);

impl Map {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// Ruby `hash[key] = value`: an existing key keeps its position.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(index).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.0.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    /// ActiveSupport `Hash#deep_merge!`: hashes on both sides merge
    /// recursively, anything else is replaced in place.
    pub fn deep_merge(&mut self, other: Map) {
        for (key, value) in other.0 {
            match (self.get_mut(&key), value) {
                (Some(Value::Map(mine)), Value::Map(theirs)) => mine.deep_merge(theirs),
                (Some(slot), value) => *slot = value,
                (None, value) => self.0.push((key, value)),
            }
        }
    }
}

impl FromIterator<(String, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut map = Map::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Value {
    pub fn str(s: impl Into<String>) -> Self {
        Value::Str(s.into())
    }

    /// `Value::Str` for `Some`, `Value::Null` for `None`.
    pub fn opt_str(s: Option<impl Into<String>>) -> Self {
        s.map_or(Value::Null, |s| Value::Str(s.into()))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// ActiveSupport's `present?`: nil, false, empty or whitespace-only
    /// strings and empty collections are blank.
    pub fn is_present(&self) -> bool {
        match self {
            Value::Null | Value::Bool(false) => false,
            Value::Str(s) => !s.trim().is_empty(),
            Value::Seq(v) => !v.is_empty(),
            Value::Map(m) => !m.is_empty(),
            _ => true,
        }
    }
}

impl Value {
    /// Ruby `to_s` of a scalar: nil → `""`, Floats as `Float#to_s`
    /// (`60.0`, `1.0e+16`, `Infinity`), a Symbol → its name. `None` for
    /// Arrays and Hashes, whose `to_s` is their `inspect`.
    pub fn to_ruby_s(&self) -> Option<String> {
        match self {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(crate::float::float_to_s(*f)),
            Value::Str(s) | Value::Sym(s) => Some(s.clone()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Map, Value};

    #[test]
    fn to_ruby_s_of_scalars() {
        let cases = [
            (Value::Null, Some("")),
            (Value::Bool(true), Some("true")),
            (Value::Int(-3), Some("-3")),
            (Value::Float(60.0), Some("60.0")),
            (Value::Float(1e16), Some("1.0e+16")),
            (Value::Float(f64::INFINITY), Some("Infinity")),
            (Value::Float(f64::NAN), Some("NaN")),
            (Value::str("x"), Some("x")),
            (Value::Sym("a".into()), Some("a")),
            (Value::Seq(vec![]), None),
            (Value::Map(Map::new()), None),
        ];
        for (value, expected) in cases {
            assert_eq!(value.to_ruby_s().as_deref(), expected, "{value:?}");
        }
    }
}
