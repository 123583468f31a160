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
//! Keys are also confined to the answer's two namespaces, `PVC_*` and
//! `FACTER_*`, so no answer can set a variable the shell itself uses (`IFS`,
//! `PATH`, `ENV`, bash's `_`).
//!
//! The original agent evaluates the body *unquoted* (`eval $r`): the text is
//! split on blanks and every field glob-expanded before `eval` sees it, so a
//! `*`, `?` or `[` anywhere in it could be replaced by the name of a file a
//! local user created — one that closes the quote and runs a command as
//! root. The shell rendering therefore leaves out every pair whose value
//! holds one of them ([`is_shell_safe`]); the JSON rendering (what pvc-agent
//! reads) carries them.
//!
//! A NUL byte cannot live in a shell variable (sh truncates or drops it), so
//! a value containing one cannot be answered faithfully: [`Answer::try_push`]
//! refuses it with an error, [`Answer::push`] drops the pair and logs it.
//! Pushing a key that is already present replaces its value in place, so the
//! shell (last assignment wins) and JSON (one member per key) renderings
//! agree on every pair the shell form carries.

use std::fmt;
use std::str::FromStr;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// The namespaces a key must be in.
pub const KEY_PREFIXES: [&str; 2] = ["PVC_", "FACTER_"];

/// Whether a value may appear in the shell rendering: no glob character,
/// which the original agent's unquoted `eval $r` would expand.
pub fn is_shell_safe(value: &str) -> bool {
    !value.contains(['*', '?', '['])
}

/// A variable name safe to emit: `PVC_` or `FACTER_` then `[A-Z0-9_]+`,
/// at most 128 bytes.
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
    #[error("answer key {0:?} is outside the answer's namespaces: it must be PVC_… or FACTER_…")]
    Namespace(String),
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
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(AnswerKeyError::BadChar(bad));
    }
    if !KEY_PREFIXES
        .iter()
        .any(|prefix| s.len() > prefix.len() && s.starts_with(prefix))
    {
        return Err(AnswerKeyError::Namespace(s.to_owned()));
    }
    Ok(())
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

    /// The pairs the shell rendering carries: those whose value
    /// [`is_shell_safe`].
    pub fn shell_pairs(&self) -> impl Iterator<Item = (&AnswerKey, &str)> {
        self.iter().filter(|(_, v)| is_shell_safe(v))
    }

    /// The keys the shell rendering leaves out (see the module doc).
    pub fn shell_omitted(&self) -> impl Iterator<Item = &AnswerKey> {
        self.iter()
            .filter(|(_, v)| !is_shell_safe(v))
            .map(|(k, _)| k)
    }

    /// One `KEY='value'` line per shell-safe pair, for `eval` in a POSIX
    /// shell, quoted or not.
    pub fn to_shell(&self) -> String {
        let size: usize = self
            .pairs
            .iter()
            .map(|(k, v)| k.0.len() + v.len() + 4)
            .sum();
        let mut out = String::with_capacity(size);
        for (key, value) in self.shell_pairs() {
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
    fn keys_are_upper_case_words_in_the_answer_namespaces() {
        for ok in [
            "PVC_RUN",
            "FACTER_UPDATE_FLAG",
            "PVC_9",
            "FACTER_A1_B2",
            "PVC__",
        ] {
            assert_eq!(AnswerKey::try_from(ok).unwrap().as_str(), ok);
        }
        let namespace = |s: &str| AnswerKeyError::Namespace(s.to_owned());
        let cases = [
            ("", AnswerKeyError::Empty),
            ("9A", AnswerKeyError::LeadingDigit('9')),
            ("a", AnswerKeyError::BadChar('a')),
            ("FACTER_a", AnswerKeyError::BadChar('a')),
            ("PVC_A B", AnswerKeyError::BadChar(' ')),
            ("A-B", AnswerKeyError::BadChar('-')),
            ("A$(X)", AnswerKeyError::BadChar('$')),
            ("A=B", AnswerKeyError::BadChar('=')),
            ("Ü", AnswerKeyError::BadChar('Ü')),
            ("A\n", AnswerKeyError::BadChar('\n')),
            // Variables the shell itself uses, and bare prefixes.
            ("_", namespace("_")),
            ("IFS", namespace("IFS")),
            ("PATH", namespace("PATH")),
            ("BASH_ENV", namespace("BASH_ENV")),
            ("PVC_", namespace("PVC_")),
            ("FACTER_", namespace("FACTER_")),
            ("PVCX", namespace("PVCX")),
        ];
        for (input, error) in cases {
            assert_eq!(input.parse::<AnswerKey>(), Err(error), "{input:?}");
        }
        let longest = format!("PVC_{}", "K".repeat(MAX_KEY_LEN - 4));
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
        answer.push(key("PVC_A"), "plain");
        answer.push(key("PVC_B"), "it's");
        answer.push(key("PVC_C"), "");
        answer.push(key("PVC_D"), "''");
        answer.push(key("PVC_E"), "$(x) `y` \\ \"q\"");
        assert_eq!(
            answer.to_shell(),
            "PVC_A='plain'\nPVC_B='it'\\''s'\nPVC_C=''\nPVC_D=''\\'''\\'''\nPVC_E='$(x) `y` \\ \"q\"'\n"
        );
    }

    #[test]
    fn values_with_glob_characters_stay_out_of_the_shell_form() {
        let mut answer = Answer::new();
        answer.push(key("PVC_A"), "plain");
        answer.push(key("FACTER_STAR"), "see /tmp/*");
        answer.push(key("FACTER_Q"), "a?b");
        answer.push(key("FACTER_BRACKET"), "[x]");
        answer.push(key("PVC_B"), "] } { ~ !");
        assert_eq!(answer.to_shell(), "PVC_A='plain'\nPVC_B='] } { ~ !'\n");
        let omitted: Vec<&str> = answer.shell_omitted().map(AnswerKey::as_str).collect();
        assert_eq!(omitted, ["FACTER_STAR", "FACTER_Q", "FACTER_BRACKET"]);
        // The JSON form carries every pair.
        assert_eq!(answer.to_json()["FACTER_STAR"], "see /tmp/*");
        assert_eq!(answer.to_json().as_object().unwrap().len(), 5);
    }

    #[test]
    fn a_repeated_key_replaces_its_value_in_place() {
        let mut answer = Answer::new();
        answer.push(key("PVC_A"), "1");
        answer.push(key("PVC_B"), "2");
        answer.push(key("PVC_A"), "3");
        assert_eq!(answer.to_shell(), "PVC_A='3'\nPVC_B='2'\n");
        assert_eq!(
            answer.to_json(),
            serde_json::json!({"PVC_A": "3", "PVC_B": "2"})
        );
        let keys: Vec<String> = answer
            .to_json()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["PVC_A", "PVC_B"], "JSON keeps the push order");
    }

    #[test]
    fn a_nul_byte_is_refused_and_the_pair_dropped() {
        let mut answer = Answer::new();
        assert_eq!(
            answer.try_push(key("PVC_A"), "x\0y"),
            Err(NulInValue { key: key("PVC_A") })
        );
        answer.push(key("PVC_B"), "\0");
        answer.push(key("PVC_C"), "ok");
        assert_eq!(answer.to_shell(), "PVC_C='ok'\n");
        assert_eq!(answer.get("PVC_B"), None);
        // An earlier good value is kept when a bad one is refused.
        answer.push(key("PVC_C"), "bad\0");
        assert_eq!(answer.get("PVC_C"), Some("ok"));
    }

    #[test]
    fn json_has_the_same_keys_and_string_values() {
        let mut answer = Answer::new();
        answer.push(key("PVC_RETURN"), "0");
        answer.push(key("PVC_X"), "a'b\n\"c\"");
        assert_eq!(
            answer.to_json(),
            serde_json::json!({"PVC_RETURN": "0", "PVC_X": "a'b\n\"c\""})
        );
    }
}
