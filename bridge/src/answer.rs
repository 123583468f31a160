//! The `/host` answer: ordered `KEY='value'` pairs, rendered as shell the
//! agents `eval`, or as a JSON object of the same keys.
//!
//! The original agent `eval`s the body, so both halves are constrained:
//! - keys are [`AnswerKey`]s (`[A-Z_][A-Z0-9_]*`, at most 128 bytes), so a
//!   key can never be anything but a plain variable assignment;
//! - values are single-quoted, the only POSIX quoting with no special
//!   characters inside (`'` itself is written `'\''`), so `eval` in dash or
//!   bash yields the value's exact bytes and runs nothing (the integration
//!   tests, `tests/it/hosts.rs`, evaluate hostile values in real shells).
//!
//! A NUL byte cannot live in a shell variable (sh truncates or drops it), so
//! a value containing one cannot be answered faithfully: [`Answer::try_push`]
//! refuses it with an error, [`Answer::push`] drops the pair and logs it.
//! Pushing a key that is already present replaces its value in place, so the
//! shell (last assignment wins) and JSON (one member per key) renderings
//! always agree.

use std::fmt;
use std::str::FromStr;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// A variable name safe to emit: `[A-Z_][A-Z0-9_]*`, 1..=128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnswerKey(String);

/// Why a string is not an answer key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerKeyError {
    #[error("answer key is empty")]
    Empty,
    #[error("answer key is {0} bytes long, at most {MAX_KEY_LEN} are allowed")]
    TooLong(usize),
    #[error("answer key starts with a digit {0:?}: it must start with A-Z or '_'")]
    LeadingDigit(char),
    #[error("answer key contains {0:?}: only A-Z, 0-9 and '_' are allowed")]
    BadChar(char),
}

impl FromStr for AnswerKey {
    type Err = AnswerKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        validate_key(s)?;
        Ok(AnswerKey(s.to_owned()))
    }
}

impl TryFrom<String> for AnswerKey {
    type Error = AnswerKeyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate_key(&s)?;
        Ok(AnswerKey(s))
    }
}

impl TryFrom<&str> for AnswerKey {
    type Error = AnswerKeyError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

fn validate_key(s: &str) -> Result<(), AnswerKeyError> {
    let Some(first) = s.chars().next() else {
        return Err(AnswerKeyError::Empty);
    };
    if s.len() > MAX_KEY_LEN {
        return Err(AnswerKeyError::TooLong(s.len()));
    }
    if first.is_ascii_digit() {
        return Err(AnswerKeyError::LeadingDigit(first));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
    {
        Some(bad) => Err(AnswerKeyError::BadChar(bad)),
        None => Ok(()),
    }
}

impl AnswerKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AnswerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AnswerKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A value the shell cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value of {key} contains a NUL byte, which a shell variable cannot hold")]
pub struct NulInValue {
    pub key: AnswerKey,
}

/// The answer's pairs, in the order they were first pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pairs: Vec<(AnswerKey, String)>,
}

impl Answer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`; a pair whose value holds a NUL byte is dropped
    /// and logged (see the module doc).
    pub fn push(&mut self, key: AnswerKey, value: impl Into<String>) {
        if let Err(error) = self.try_push(key, value) {
            tracing::warn!(key = %error.key, "answer pair dropped: its value contains a NUL byte");
        }
    }

    /// Sets `key` to `value` (replacing an earlier value of the same key in
    /// place), or refuses a value holding a NUL byte.
    pub fn try_push(&mut self, key: AnswerKey, value: impl Into<String>) -> Result<(), NulInValue> {
        let value = value.into();
        if value.contains('\0') {
            return Err(NulInValue { key });
        }
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = value,
            None => self.pairs.push((key, value)),
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&AnswerKey, &str)> {
        self.pairs.iter().map(|(k, v)| (k, v.as_str()))
    }

    /// One `KEY='value'` line per pair, for `eval` in a POSIX shell.
    pub fn to_shell(&self) -> String {
        let size: usize = self
            .pairs
            .iter()
            .map(|(k, v)| k.0.len() + v.len() + 4)
            .sum();
        let mut out = String::with_capacity(size);
        for (key, value) in &self.pairs {
            out.push_str(key.as_str());
            out.push('=');
            push_single_quoted(&mut out, value);
            out.push('\n');
        }
        out
    }

    /// A JSON object of the same keys, in the same order, string values.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.pairs
                .iter()
                .map(|(k, v)| (k.0.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }
}

/// `'…'` with every `'` written as `'\''` (close, escaped quote, reopen):
/// inside single quotes POSIX sh gives no character a special meaning.
fn push_single_quoted(out: &mut String, value: &str) {
    out.push('\'');
    for (i, part) in value.split('\'').enumerate() {
        if i > 0 {
            out.push_str("'\\''");
        }
        out.push_str(part);
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AnswerKey {
        s.parse().unwrap()
    }

    #[test]
    fn keys_are_upper_case_words_of_at_most_128_bytes() {
        for ok in ["A", "_", "PVC_RUN", "FACTER_UPDATE_FLAG", "_9", "A1_B2"] {
            assert_eq!(AnswerKey::try_from(ok).unwrap().as_str(), ok);
        }
        let cases = [
            ("", AnswerKeyError::Empty),
            ("9A", AnswerKeyError::LeadingDigit('9')),
            ("a", AnswerKeyError::BadChar('a')),
            ("FACTER_a", AnswerKeyError::BadChar('a')),
            ("A B", AnswerKeyError::BadChar(' ')),
            ("A-B", AnswerKeyError::BadChar('-')),
            ("A$(X)", AnswerKeyError::BadChar('$')),
            ("A=B", AnswerKeyError::BadChar('=')),
            ("Ü", AnswerKeyError::BadChar('Ü')),
            ("A\n", AnswerKeyError::BadChar('\n')),
        ];
        for (input, error) in cases {
            assert_eq!(input.parse::<AnswerKey>(), Err(error), "{input:?}");
        }
        let longest = "K".repeat(MAX_KEY_LEN);
        assert!(AnswerKey::try_from(longest.clone()).is_ok());
        assert_eq!(
            AnswerKey::try_from(format!("{longest}K")),
            Err(AnswerKeyError::TooLong(129))
        );
        // The error names the problem in words a log reader understands.
        assert_eq!(
            "a".parse::<AnswerKey>().unwrap_err().to_string(),
            "answer key contains 'a': only A-Z, 0-9 and '_' are allowed"
        );
    }

    #[test]
    fn values_are_single_quoted() {
        let mut answer = Answer::new();
        answer.push(key("A"), "plain");
        answer.push(key("B"), "it's");
        answer.push(key("C"), "");
        answer.push(key("D"), "''");
        answer.push(key("E"), "$(x) `y` \\ \"q\"");
        assert_eq!(
            answer.to_shell(),
            "A='plain'\nB='it'\\''s'\nC=''\nD=''\\'''\\'''\nE='$(x) `y` \\ \"q\"'\n"
        );
    }

    #[test]
    fn a_repeated_key_replaces_its_value_in_place() {
        let mut answer = Answer::new();
        answer.push(key("A"), "1");
        answer.push(key("B"), "2");
        answer.push(key("A"), "3");
        assert_eq!(answer.to_shell(), "A='3'\nB='2'\n");
        assert_eq!(answer.to_json(), serde_json::json!({"A": "3", "B": "2"}));
        let keys: Vec<String> = answer
            .to_json()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["A", "B"], "JSON keeps the push order");
    }

    #[test]
    fn a_nul_byte_is_refused_and_the_pair_dropped() {
        let mut answer = Answer::new();
        assert_eq!(
            answer.try_push(key("A"), "x\0y"),
            Err(NulInValue { key: key("A") })
        );
        answer.push(key("B"), "\0");
        answer.push(key("C"), "ok");
        assert_eq!(answer.to_shell(), "C='ok'\n");
        assert_eq!(answer.get("B"), None);
        // An earlier good value is kept when a bad one is refused.
        answer.push(key("C"), "bad\0");
        assert_eq!(answer.get("C"), Some("ok"));
    }

    #[test]
    fn json_has_the_same_keys_and_string_values() {
        let mut answer = Answer::new();
        answer.push(key("PVC_RETURN"), "0");
        answer.push(key("X"), "a'b\n\"c\"");
        assert_eq!(
            answer.to_json(),
            serde_json::json!({"PVC_RETURN": "0", "X": "a'b\n\"c\""})
        );
    }
}
