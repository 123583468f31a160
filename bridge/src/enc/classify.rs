//! Smart class parameter values: Foreman's `Classification::ValuesHashQuery`
//! (which lookup value wins, or how they merge) and
//! `ClassificationResult#[]` (default, omit, ERB, cast).

use super::cast;
use super::erb::{self, ErbHost, Unsupported};
use super::model::{KeyType, LookupKey, LookupValue};
use super::{Map, Value};

/// The elements whose values make a match more specific when longer.
const MATCHERS_INHERITANCE: [&str; 3] = ["hostgroup", "organization", "location"];

/// A value chosen for a key, before ERB and casting.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// Cast with the key's type.
    Value(Value),
    /// Foreman passes yaml/json values through their text form and parses
    /// it back; the object is what comes back.
    Serialized(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub raw: Raw,
    /// `omit` of the winning lookup value: leave the parameter out.
    pub managed: bool,
}

/// `ValuesHashQuery#calculate_value` for one key over the lookup values
/// whose match string is one of the host's.
pub fn value_for_key(
    key: &LookupKey,
    path: &str,
    candidates: Vec<&LookupValue>,
) -> Result<Option<Found>, Unsupported> {
    let sorted = sort_lookup_values(path, candidates)?;
    if !key.merge_overrides {
        let Some(first) = sorted.first() else {
            return Ok(None);
        };
        return Ok(Some(Found {
            raw: before_type_cast(key.key_type, first.value.clone()),
            managed: first.omit,
        }));
    }
    let default = key.merge_default.then(|| key.default_value.clone());
    let active = sorted.iter().filter(|lv| !lv.omit);
    let merged = match key.key_type {
        KeyType::Array => {
            let mut values = match default {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Seq(items)) => items,
                Some(_) => return Err(Unsupported::new("array merge of a non-array default")),
            };
            for lv in active {
                let Value::Seq(items) = &lv.value else {
                    return Err(Unsupported::new("array merge of a non-array value"));
                };
                values.extend(items.iter().cloned());
                if key.avoid_duplicates {
                    dedup(&mut values);
                }
            }
            (!values.is_empty()).then_some(Value::Seq(values))
        }
        KeyType::Hash | KeyType::Yaml | KeyType::Json => {
            let mut values = match default {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Map(map)) => map,
                Some(_) => return Err(Unsupported::new("hash merge of a non-hash default")),
            };
            // Lowest priority first, so higher ones win the deep merge.
            for lv in active.rev() {
                let Value::Map(map) = &lv.value else {
                    return Err(Unsupported::new("hash merge of a non-hash value"));
                };
                values.deep_merge(map.clone());
            }
            (!values.is_empty()).then_some(Value::Map(values))
        }
        _ => return Err(Unsupported::new("merge_overrides on a scalar key")),
    };
    Ok(merged.map(|value| Found {
        raw: match key.key_type {
            KeyType::Yaml => Raw::Serialized(value),
            KeyType::Json => Raw::Serialized(value),
            _ => Raw::Value(value),
        },
        managed: false,
    }))
}

/// `ClassificationResult#[]`: the value the ENC shows, `None` to leave the
/// key out.
pub fn result(
    key: &LookupKey,
    found: Option<Found>,
    host: &dyn ErbHost,
) -> Result<Option<Value>, Unsupported> {
    let found = found.unwrap_or_else(|| Found {
        raw: before_type_cast(key.key_type, key.default_value.clone()),
        managed: key.omit,
    });
    if found.managed {
        return Ok(None);
    }
    let value = match found.raw {
        Raw::Serialized(value) => {
            let value = erb::render_value(value, host)?;
            match key.key_type {
                KeyType::Json => cast::json_round_trip(value)?,
                _ => value,
            }
        }
        Raw::Value(value) => {
            let late_validation = matches!(&value, Value::Str(s) if erb::contains_erb(s));
            if late_validation && key.has_validator {
                return Err(Unsupported::new("validator on an ERB value"));
            }
            let value = erb::render_value(value, host)?;
            // Caster takes the key's default when handed nil.
            let value = if value == Value::Null {
                if key.key_type == KeyType::Yaml && key.default_value != Value::Null {
                    return Err(Unsupported::new("yaml cast of a nil value"));
                }
                key.default_value.clone()
            } else {
                value
            };
            cast::cast(key.key_type, value)?
        }
    };
    Ok((value != Value::Null).then_some(value))
}

/// yaml/json keys go through `value_before_type_cast`, unless the value is an
/// ERB string (returned raw, rendered and parsed later).
fn before_type_cast(key_type: KeyType, value: Value) -> Raw {
    let serialized = matches!(key_type, KeyType::Yaml | KeyType::Json);
    match value {
        Value::Str(s) if erb::contains_erb(&s) => Raw::Value(Value::Str(s)),
        Value::Null => Raw::Value(Value::Null),
        value if serialized => Raw::Serialized(value),
        value => Raw::Value(value),
    }
}

/// `sort_by [index of the matcher's elements in the path, -specificity]`.
fn sort_lookup_values<'a>(
    path: &str,
    candidates: Vec<&'a LookupValue>,
) -> Result<Vec<&'a LookupValue>, Unsupported> {
    let rules: Vec<&str> = path.split_whitespace().collect();
    let mut keyed = Vec::with_capacity(candidates.len());
    for lv in candidates {
        let mut elements = Vec::new();
        let mut specific = 0usize;
        for part in lv.matcher.split(',') {
            let mut kv = part.split('=');
            let element = kv.next().unwrap_or("");
            let value = kv.next().unwrap_or("");
            elements.push(element);
            if MATCHERS_INHERITANCE.contains(&element) {
                specific += value.chars().count() + 1;
            }
        }
        let index = rules.iter().position(|r| *r == elements.join(","));
        keyed.push((index, specific, lv));
    }
    // Ruby cannot compare nil with an Integer: Foreman fails on this mix.
    if keyed.len() > 1 && keyed.iter().any(|(i, _, _)| i.is_none()) {
        return Err(Unsupported::new("lookup value outside the key's path"));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    Ok(keyed.into_iter().map(|(_, _, lv)| lv).collect())
}

/// Ruby `Array#|` on one array: keep first occurrences.
fn dedup(values: &mut Vec<Value>) {
    let mut out: Vec<Value> = Vec::with_capacity(values.len());
    for v in values.drain(..) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    *values = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoHost;
    impl ErbHost for NoHost {
        fn name(&self) -> &str {
            "h"
        }
        fn shortname(&self) -> Option<String> {
            None
        }
        fn domain_name(&self) -> Option<String> {
            None
        }
        fn hostgroup_title(&self) -> Option<String> {
            None
        }
        fn param(&self, _: &str) -> Result<Option<Value>, Unsupported> {
            Ok(None)
        }
    }

    fn seq(items: &[&str]) -> Value {
        Value::Seq(items.iter().map(|s| Value::str(*s)).collect())
    }

    fn key(key_type: KeyType, default: Value) -> LookupKey {
        LookupKey {
            id: 1,
            key: "k".into(),
            key_type,
            default_value: default,
            path: None,
            merge_overrides: true,
            avoid_duplicates: false,
            merge_default: false,
            omit: false,
            has_validator: false,
            has_values: true,
        }
    }

    fn lv(matcher: &str, value: Value, omit: bool) -> LookupValue {
        LookupValue {
            lookup_key_id: 1,
            matcher: matcher.into(),
            value,
            omit,
        }
    }

    const PATH: &str = "fqdn\nhostgroup\nos";

    fn check(key: &LookupKey, values: &[LookupValue]) -> Option<Value> {
        let found = value_for_key(key, PATH, values.iter().collect()).unwrap();
        result(key, found, &NoHost).unwrap()
    }

    #[test]
    fn arrays_concatenate_by_priority_and_skip_omitted_values() {
        let values = [
            lv("os=Debian 12", seq(&["os"]), false),
            lv("hostgroup=a", seq(&["hg", "x"]), false),
            lv("fqdn=h", seq(&["x"]), true),
        ];
        let mut k = key(KeyType::Array, seq(&["x", "x", "d"]));
        assert_eq!(check(&k, &values), Some(seq(&["hg", "x", "os"])));
        k.merge_default = true;
        assert_eq!(
            check(&k, &values),
            Some(seq(&["x", "x", "d", "hg", "x", "os"]))
        );
        k.avoid_duplicates = true;
        assert_eq!(check(&k, &values), Some(seq(&["x", "d", "hg", "os"])));
        // merge_default with nothing matching keeps the default as it is.
        assert_eq!(check(&k, &[]), Some(seq(&["x", "x", "d"])));
    }

    #[test]
    fn hashes_deep_merge_with_higher_priority_winning() {
        let map = |pairs: &[(&str, Value)]| {
            Value::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            )
        };
        let values = [
            lv(
                "os=Debian 12",
                map(&[("a", Value::Int(1)), ("n", map(&[("x", Value::Int(1))]))]),
                false,
            ),
            lv(
                "hostgroup=a",
                map(&[("a", Value::Int(2)), ("n", map(&[("y", Value::Int(2))]))]),
                false,
            ),
        ];
        let k = key(KeyType::Hash, Value::Null);
        assert_eq!(
            check(&k, &values),
            Some(map(&[
                ("a", Value::Int(2)),
                ("n", map(&[("x", Value::Int(1)), ("y", Value::Int(2))]))
            ]))
        );
    }

    #[test]
    fn the_first_match_wins_even_when_it_omits() {
        let mut k = key(KeyType::String, Value::str("d"));
        k.merge_overrides = false;
        let values = [
            lv("hostgroup=a", Value::str("hg"), false),
            lv("fqdn=h", Value::str("mine"), true),
        ];
        assert_eq!(check(&k, &values), None);
        assert_eq!(check(&k, &values[..1]), Some(Value::str("hg")));
        assert_eq!(check(&k, &[]), Some(Value::str("d")));
        k.omit = true;
        assert_eq!(check(&k, &[]), None);
    }
}
