//! `Certname`: a validated Puppet certname / Foreman host name.
//!
//! Everything the bridge is asked about by name goes through this type, so a
//! handler never sees an unchecked string.

use std::fmt;
use std::str::FromStr;

/// Longest name accepted: Foreman's `hosts.name` is `varchar(255)`, DNS names
/// stop at 253.
pub const MAX_LEN: usize = 253;

/// A host name with hostname syntax: labels of ASCII letters, digits, `-`
/// and `_` (Foreman's route accepts `\w`), separated by single dots, each at
/// most 63 bytes, not starting with `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Certname(String);

/// Why a string is not a certname; the text is sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertnameError {
    #[error("certname is empty")]
    Empty,
    #[error("certname is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("certname contains {0:?}: only letters, digits, '-', '_' and '.' are allowed")]
    BadChar(char),
    #[error("certname has an empty label (leading, trailing or double dot)")]
    EmptyLabel,
    #[error("certname has a label longer than 63 bytes")]
    LabelTooLong,
    #[error("certname must not start with '-'")]
    LeadingHyphen,
}

impl FromStr for Certname {
    type Err = CertnameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(CertnameError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(CertnameError::TooLong);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(CertnameError::BadChar(c));
        }
        if s.starts_with('-') {
            return Err(CertnameError::LeadingHyphen);
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(CertnameError::EmptyLabel);
            }
            if label.len() > 63 {
                return Err(CertnameError::LabelTooLong);
            }
        }
        Ok(Certname(s.to_owned()))
    }
}

impl Certname {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Certname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Certname {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_host_names() {
        for ok in [
            "web01.example.com",
            "db79-us.lab.globex.test",
            "APP03.LAB.GLOBEX.TEST",
            "app03",
            "10",
            "x",
            "under_score.example.com",
        ] {
            assert!(ok.parse::<Certname>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        let cases: &[(&str, CertnameError)] = &[
            ("", CertnameError::Empty),
            (".hidden", CertnameError::EmptyLabel),
            ("a..b", CertnameError::EmptyLabel),
            ("trailing.", CertnameError::EmptyLabel),
            ("-x.example.com", CertnameError::LeadingHyphen),
            ("a b", CertnameError::BadChar(' ')),
            ("../etc/passwd", CertnameError::BadChar('/')),
            ("h%00", CertnameError::BadChar('%')),
            ("héllo", CertnameError::BadChar('é')),
        ];
        for (input, expected) in cases {
            assert_eq!(
                input.parse::<Certname>(),
                Err(expected.clone()),
                "{input:?}"
            );
        }
        let long_label = "a".repeat(64);
        assert_eq!(
            long_label.parse::<Certname>(),
            Err(CertnameError::LabelTooLong)
        );
        let too_long = ["abcdefghi"; 30].join(".");
        assert_eq!(too_long.parse::<Certname>(), Err(CertnameError::TooLong));
    }
}
