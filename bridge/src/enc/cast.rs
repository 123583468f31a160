//! `Foreman::Parameters::Caster`: how a smart class parameter's value is
//! typed by its `key_type` before it goes into the ENC.
//!
//! Where Foreman would raise (`TypeError`, logged and turned into an odd
//! value) the bridge answers `Unsupported` so the host goes to Foreman.

use super::erb::Unsupported;
use super::model::KeyType;
use super::{Map, Value};

/// Casts `value` to `key_type` the way Foreman's `Caster#cast` does.
pub fn cast(key_type: KeyType, value: Value) -> Result<Value, Unsupported> {
    let type_error = || Unsupported::new("type cast");
    match key_type {
        KeyType::String => match value {
            Value::Seq(_) | Value::Map(_) => Err(Unsupported::new("string cast of a collection")),
            other => Ok(Value::Str(other.to_ruby_s().unwrap_or_default())),
        },
        KeyType::Integer => match value {
            Value::Int(_) => Ok(value),
            Value::Float(f) if f.is_finite() => Ok(Value::Int(f.trunc() as i64)),
            Value::Float(_) => Err(type_error()),
            Value::Str(s) => cast_integer_str(&s).map(Value::Int).ok_or_else(type_error),
            // Ruby's `if value.is_a?(String)` without else yields nil.
            _ => Ok(Value::Null),
        },
        KeyType::Real => match value {
            Value::Int(_) | Value::Float(_) => Ok(value),
            Value::Str(s) if is_ruby_real(&s) => s
                .trim_start_matches('+')
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| type_error()),
            Value::Str(s) => cast_integer_str(&s).map(Value::Int).ok_or_else(type_error),
            _ => Ok(Value::Null),
        },
        KeyType::Boolean => match value {
            Value::Str(ref s) if s.is_empty() => Ok(Value::Null),
            other => to_bool(&other).map(Value::Bool).ok_or_else(type_error),
        },
        KeyType::Array => match value {
            Value::Seq(_) => Ok(value),
            Value::Map(map) => Ok(Value::Seq(
                map.into_iter()
                    .map(|(k, v)| Value::Seq(vec![Value::Str(k), v]))
                    .collect(),
            )),
            Value::Str(s) => match load_yaml_or_json(&s)? {
                seq @ Value::Seq(_) => Ok(seq),
                _ => Err(type_error()),
            },
            _ => Err(type_error()),
        },
        KeyType::Hash => match value {
            Value::Map(_) => Ok(value),
            Value::Str(s) => match load_yaml_or_json(&s)? {
                map @ Value::Map(_) => Ok(map),
                _ => Err(type_error()),
            },
            _ => Err(type_error()),
        },
        KeyType::Json => match value {
            Value::Str(s) => load_json(&s),
            Value::Null => Ok(Value::Null),
            _ => Err(type_error()),
        },
        KeyType::Yaml => match value {
            Value::Str(s) => pvc_psych::load(&s).map_err(|_| type_error()),
            _ => Err(type_error()),
        },
    }
}

/// Integer casting of a String: hex, octal, then decimal.
fn cast_integer_str(s: &str) -> Option<i64> {
    // Ruby's ^/$ are line anchors; multi-line strings are left to Foreman.
    if s.contains('\n') {
        return None;
    }
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return i64::from_str_radix(hex, 16).ok();
        }
        return None;
    }
    if s.len() > 1 && s.starts_with('0') && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return i64::from_str_radix(&s[1..], 8).ok();
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    None
}

/// `/\A[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\Z/`.
fn is_ruby_real(s: &str) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (digits(int) && (frac.is_empty() || digits(frac))) || (int.is_empty() && digits(frac))
        }
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// `Foreman::Cast.to_bool`.
fn to_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Str(s) => {
            let lower = s.to_ascii_lowercase();
            if ["true", "t", "yes", "y", "on", "1"].contains(&lower.as_str()) {
                Some(true)
            } else if s.trim().is_empty()
                || ["false", "f", "no", "n", "off", "0"].contains(&lower.as_str())
            {
                Some(false)
            } else {
                None
            }
        }
        Value::Int(1) => Some(true),
        Value::Int(0) => Some(false),
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

/// `YAML.safe_load`, falling back to `JSON.load` on a YAML syntax error.
fn load_yaml_or_json(s: &str) -> Result<Value, Unsupported> {
    match pvc_psych::load(s) {
        Ok(value) => Ok(value),
        Err(_) => load_json(s),
    }
}

/// Ruby `JSON.load(string)`: nil for an empty string.
pub fn load_json(s: &str) -> Result<Value, Unsupported> {
    if s.trim().is_empty() {
        return Ok(Value::Null);
    }
    let json: serde_json::Value =
        serde_json::from_str(s).map_err(|_| Unsupported::new("invalid JSON"))?;
    Ok(from_json(json))
}

/// A JSON document as Ruby's `JSON.load` returns it (key order kept).
pub fn from_json(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(items) => Value::Seq(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(obj) => Value::Map(
            obj.into_iter()
                .map(|(k, v)| (k, from_json(v)))
                .collect::<Map>(),
        ),
    }
}

/// What `JSON.load(value.to_json)` gives back: symbols become strings.
pub fn json_round_trip(value: Value) -> Result<Value, Unsupported> {
    Ok(match value {
        Value::Sym(s) => Value::Str(s),
        Value::Float(f) if !f.is_finite() => {
            return Err(Unsupported::new("non-finite float in JSON"))
        }
        Value::Seq(items) => Value::Seq(
            items
                .into_iter()
                .map(json_round_trip)
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k, json_round_trip(v)?);
            }
            Value::Map(out)
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key_type: KeyType, input: Value, expected: Result<Value, ()>) {
        let got = cast(key_type, input.clone()).map_err(|_| ());
        assert_eq!(got, expected, "{key_type:?} {input:?}");
    }

    #[test]
    fn casts_like_foremans_caster() {
        use Value::*;
        check(KeyType::String, Int(5), Ok(Value::str("5")));
        check(KeyType::String, Null, Ok(Value::str("")));
        check(KeyType::Integer, Value::str("0x1F"), Ok(Int(31)));
        check(KeyType::Integer, Value::str("0755"), Ok(Int(493)));
        check(KeyType::Integer, Value::str("-12"), Ok(Int(-12)));
        check(KeyType::Integer, Value::str("12a"), Err(()));
        check(KeyType::Integer, Float(2.7), Ok(Int(2)));
        check(KeyType::Integer, Null, Ok(Null));
        check(KeyType::Real, Value::str("1e3"), Ok(Float(1000.0)));
        check(KeyType::Real, Value::str(".5"), Ok(Float(0.5)));
        check(KeyType::Real, Value::str("0x10"), Ok(Int(16)));
        check(KeyType::Boolean, Value::str("Yes"), Ok(Bool(true)));
        check(KeyType::Boolean, Value::str("off"), Ok(Bool(false)));
        check(KeyType::Boolean, Value::str(""), Ok(Null));
        check(KeyType::Boolean, Null, Ok(Bool(false)));
        check(KeyType::Boolean, Value::str("maybe"), Err(()));
        check(KeyType::Json, Value::str("{\"a\": [1, 2.5]}"), {
            let mut m = crate::enc::Map::new();
            m.insert("a", Seq(vec![Int(1), Float(2.5)]));
            Ok(Map(m))
        });
        check(KeyType::Array, Null, Err(()));
    }

    #[test]
    fn real_regex() {
        for ok in ["1", "1.", "1.5", ".5", "-1e5", "+2.0E-3"] {
            assert!(is_ruby_real(ok), "{ok}");
        }
        for bad in ["", ".", "e5", "1e", "1.2.3", "0x1"] {
            assert!(!is_ruby_real(bad), "{bad}");
        }
    }
}
