//! Psych's `ScalarScanner#tokenize`: how a plain YAML scalar becomes a Ruby
//! object.
//!
//! The same function decides both directions: `load` resolves plain scalars
//! with it, and `dump` single-quotes any String that it would *not* read back
//! as a String. The branches below follow `lib/psych/scalar_scanner.rb`
//! (Psych 4.0.x) in order, with the Ruby regexes translated literally.
//! Ruby's `^`/`$` are line anchors, hence `(?m)` where a string may still
//! contain a newline; Ruby's `\d`/`\s` are ASCII-only, hence explicit classes.

use std::sync::LazyLock;

use regex::Regex;

/// What `tokenize` returns, reduced to what this crate can tell apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    Null,
    Bool(bool),
    Int(i64),
    /// An Integer beyond i64 (a Ruby Bignum), with its `to_s`. Not a
    /// String, so it is quoted on dump; `load` keeps its text.
    BigInt(String),
    Float(f64),
    /// The scalar stays the String it was.
    Str,
    Sym(String),
    /// A valid `Time`, with its Ruby `to_s`.
    Time(String),
    /// A valid calendar `Date`, with its Ruby `to_s`.
    Date(String),
}

/// `tokenize` raised (Ruby's `Float()`/`Integer()` reject what the regex let
/// through, e.g. `.e+5` or `0b_`): Psych lets that ArgumentError escape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid value for {kind}(): {text:?}")]
pub(crate) struct TokenizeError {
    pub kind: &'static str,
    pub text: String,
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this file; a typo is caught by any test.
    Regex::new(pattern).expect("valid built-in regex")
}

// `\s` of Ruby: [ \t\n\v\f\r].
macro_rules! ws {
    () => {
        r" \t\n\x0B\x0C\r"
    };
}

static STRINGY: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?m)^[^0-9.:\-]?[\p{Alphabetic}_",
        ws!(),
        r"!@#$%\^&*(){}<>|/\\~;=]+"
    ))
});
static NOT_YTONF: LazyLock<Regex> = LazyLock::new(|| re(r"(?mi)^[^ytonf~]"));
static NULL_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?mi)^null$"));
static TRUE_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?mi)^(yes|true|on)$"));
static FALSE_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?mi)^(no|false|off)$"));
static TIME: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^-?[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[",
        ws!(),
        r"]+)[0-9]{1,2}:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[",
        ws!(),
        r"]*(?:Z|[-+][0-9]{1,2}:?(?:[0-9][0-9])?))?$"
    ))
});
static DATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[0-9]{4}-(?:1[012]|0[0-9]|[0-9])-(?:[12][0-9]|3[01]|0[0-9]|[0-9])$"));
static POS_INF: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\+?\.inf$"));
static NEG_INF: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^-\.inf$"));
static NAN: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\.nan$"));
static SEXAGESIMAL_INT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}$"));
static SEXAGESIMAL_FLOAT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}\.[0-9_]*$"));
static FLOAT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:[-+]?([0-9][0-9_,]*)?\.[0-9]*([eE][-+][0-9]+)?)$"));
static INTEGER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^(?:[-+]?0b[0-1_,]+",
        r"|[-+]?0[0-7_,]+",
        r"|[-+]?(?:0|[1-9](?:[0-9]|,[0-9]|_[0-9])*)",
        r"|[-+]?0x[0-9a-fA-F_,]+)$"
    ))
});

/// Ruby `ScalarScanner#tokenize(string)`.
pub(crate) fn tokenize(s: &str) -> Result<Token, TokenizeError> {
    if s.is_empty() {
        return Ok(Token::Null);
    }
    if STRINGY.is_match(s) || s.contains('\n') {
        // Words of up to five characters may still be null/booleans.
        if s.chars().count() > 5 || NOT_YTONF.is_match(s) {
            return Ok(Token::Str);
        }
        if s == "~" || NULL_WORD.is_match(s) {
            return Ok(Token::Null);
        }
        if TRUE_WORD.is_match(s) {
            return Ok(Token::Bool(true));
        }
        if FALSE_WORD.is_match(s) {
            return Ok(Token::Bool(false));
        }
        return Ok(Token::Str);
    }
    // From here on `s` has no newline, so `^`/`$` anchor the whole string.
    if TIME.is_match(s) {
        return Ok(parse_time(s).map_or(Token::Str, Token::Time));
    }
    if DATE.is_match(s) {
        return Ok(parse_date(s).map_or(Token::Str, Token::Date));
    }
    if POS_INF.is_match(s) {
        return Ok(Token::Float(f64::INFINITY));
    }
    if NEG_INF.is_match(s) {
        return Ok(Token::Float(f64::NEG_INFINITY));
    }
    if NAN.is_match(s) {
        return Ok(Token::Float(f64::NAN));
    }
    if let Some(rest) = s.strip_prefix(':') {
        if !rest.is_empty() {
            return Ok(Token::Sym(symbol_name(rest)));
        }
    }
    if SEXAGESIMAL_INT.is_match(s) {
        // Psych weighs part `e` with 60**|e-2| (so "1:30" is 5400, not 90).
        let mut total: i128 = 0;
        for (e, part) in s.split(':').enumerate() {
            let weight = 60i128.pow(e.abs_diff(2) as u32);
            total = total.saturating_add(ruby_to_i(part).saturating_mul(weight));
        }
        return Ok(int_token(total));
    }
    if SEXAGESIMAL_FLOAT.is_match(s) {
        let mut total = 0.0f64;
        for (e, part) in s.split(':').enumerate() {
            total += ruby_to_f(part) * 60f64.powi(e.abs_diff(2) as i32);
        }
        return Ok(Token::Float(total));
    }
    if FLOAT.is_match(s) {
        if matches!(s, "." | "-." | "+.") {
            return Ok(Token::Str);
        }
        // gsub(/[,_]|\.([Ee]|$)/, '\1'): drop separators and a dot that ends
        // the mantissa, since Ruby's Float() rejects "1." and "1.e5".
        let mut cleaned = String::with_capacity(s.len());
        let chars: Vec<char> = s.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            let dot_ends_mantissa = c == '.'
                && match chars.get(i + 1) {
                    None => true,
                    Some(n) => matches!(n, 'e' | 'E'),
                };
            if c == ',' || c == '_' || dot_ends_mantissa {
                continue;
            }
            cleaned.push(c);
        }
        return ruby_float(&cleaned).map(Token::Float);
    }
    if INTEGER.is_match(s) {
        let cleaned: String = s.chars().filter(|c| *c != ',' && *c != '_').collect();
        return ruby_integer(&cleaned);
    }
    Ok(Token::Str)
}

/// The symbol branch, given the text after the leading `:`. `:"quoted"` /
/// `:'quoted'` drop the quotes (Ruby: `/^:(["'])(.*)\1/`, greedy `.*`) and
/// one leading `:` inside them.
fn symbol_name(rest: &str) -> String {
    let name = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let inner = &rest[1..];
            // Greedy `(.*)\1`: up to the last matching quote on the line.
            let line = inner.split('\n').next().unwrap_or("");
            match line.rfind(q) {
                Some(end) => {
                    let name = &line[..end];
                    name.strip_prefix(':').unwrap_or(name)
                }
                None => rest,
            }
        }
        _ => rest,
    };
    name.to_string()
}

/// Ruby `String#to_i` (base 10): optional sign, digits with single
/// underscores between them, anything after is ignored.
fn ruby_to_i(s: &str) -> i128 {
    let (neg, digits) = split_sign(s);
    let mut value: i128 = 0;
    let bytes = digits.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b @ b'0'..=b'9' => {
                value = value
                    .saturating_mul(10)
                    .saturating_add(i128::from(b - b'0'));
            }
            b'_' if i > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
            _ => break,
        }
        i += 1;
    }
    if neg {
        -value
    } else {
        value
    }
}

/// Ruby `String#to_f` on the parts the sexagesimal regex admits
/// (`[-+]?[0-9][0-9_]*` or `[0-5]?[0-9]` optionally followed by `.[0-9_]*`).
fn ruby_to_f(s: &str) -> f64 {
    let mut cleaned = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut seen_dot = false;
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '0'..='9' | '-' | '+' => cleaned.push(c),
            '_' => {
                let between = i > 0
                    && chars[i - 1].is_ascii_digit()
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if !between {
                    break;
                }
            }
            '.' if !seen_dot && chars.get(i + 1).is_some_and(char::is_ascii_digit) => {
                seen_dot = true;
                cleaned.push(c);
            }
            _ => break,
        }
    }
    cleaned.parse().unwrap_or(0.0)
}

fn int_token(v: i128) -> Token {
    i64::try_from(v).map_or_else(|_| Token::BigInt(v.to_string()), Token::Int)
}

fn split_sign(s: &str) -> (bool, &str) {
    if let Some(rest) = s.strip_prefix('-') {
        (true, rest)
    } else {
        (false, s.strip_prefix('+').unwrap_or(s))
    }
}

/// Ruby `Kernel#Float(string)` for the shapes `FLOAT` lets through after
/// clean-up: `[-+]?digits?(.digits)?([eE][-+]digits)?`. Out-of-range values
/// become infinite, as in Ruby.
fn ruby_float(s: &str) -> Result<f64, TokenizeError> {
    let error = || TokenizeError {
        kind: "Float",
        text: s.to_string(),
    };
    let (_, body) = split_sign(s);
    let mantissa = body.split(['e', 'E']).next().unwrap_or("");
    // Ruby needs at least one digit in the mantissa ("e+5" and "." fail).
    if !mantissa.bytes().any(|b| b.is_ascii_digit()) {
        return Err(error());
    }
    s.parse::<f64>().map_err(|_| error())
}

/// Ruby `Kernel#Integer(string)` for the shapes `INTEGER` lets through after
/// removing `,`/`_`: `0b…` binary, `0…` octal, `0x…` hex, else decimal.
fn ruby_integer(s: &str) -> Result<Token, TokenizeError> {
    let error = || TokenizeError {
        kind: "Integer",
        text: s.to_string(),
    };
    let (neg, body) = split_sign(s);
    let (radix, digits) = if let Some(d) = body.strip_prefix("0b") {
        (2, d)
    } else if let Some(d) = body.strip_prefix("0x") {
        (16, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() {
        return Err(error());
    }
    match i128::from_str_radix(digits, radix) {
        Ok(v) => {
            let v = if neg { -v } else { v };
            Ok(int_token(v))
        }
        // Only overflow is possible here: the regex vetted the digits.
        Err(_) => Ok(Token::BigInt(s.to_string())),
    }
}

/// Psych's `parse_time`: `Some(Time#to_s)` when Ruby builds a Time, `None`
/// when `Time.utc`/`Time.new` raise ArgumentError (Psych then keeps the
/// String). Ruby normalises overflowing fields (Feb 31 is Mar 2, 24:00 is
/// the next day, second 60 the next minute). A time without zone is local
/// in Ruby; the Foreman host is taken to run in UTC.
fn parse_time(s: &str) -> Option<String> {
    let (date, time) = s.split_once([' ', 't', 'T'])?;
    let (year_text, rest) = match date.strip_prefix('-') {
        Some(d) => (format!("-{}", d.get(..4)?), d.get(5..)?),
        None => (date.get(..4)?.to_string(), date.get(5..)?),
    };
    let year = num(&year_text);
    let (month, day) = rest.split_once('-')?;
    let (month, day) = (num(month), num(day));
    let time = time.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0B');
    let mut hms = time.splitn(3, ':');
    let (hour, min, rest) = (num(hms.next()?), num(hms.next()?), hms.next()?);
    let sec = num(rest.get(..2)?);
    let after_sec = rest.get(2..)?;
    let fraction = after_sec
        .strip_prefix('.')
        .map(|f| {
            f.bytes()
                .take_while(u8::is_ascii_digit)
                .collect::<Vec<u8>>()
        })
        .unwrap_or_default();
    let frac_nonzero = fraction.iter().any(|b| *b != b'0');
    // Hour 24 is accepted only as 24:00:00 exactly.
    let clock_ok = min <= 59
        && sec <= 60
        && (hour < 24 || (hour == 24 && min == 0 && sec == 0 && !frac_nonzero));
    if !((1..=12).contains(&month) && (1..=31).contains(&day) && clock_ok) {
        return None;
    }
    let zone = after_sec
        .trim_start_matches(|c: char| c == '.' || c.is_ascii_digit())
        .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0B');
    let suffix = match zone.chars().next() {
        Some('Z') => " UTC".to_string(),
        Some(sign @ ('+' | '-')) => {
            // Ruby: /^([+\-]?\d{1,2})\:?(\d{1,2})?$/ on the zone text.
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            let split = digits.len().min(2);
            let (hh, mm) = (num(&digits[..split]), num(&digits[split..]));
            let mm = if split == digits.len() { 0 } else { mm };
            let offset = hh * 3600 + mm * 60;
            if offset >= 86_400 {
                return None;
            }
            format!(" {sign}{hh:02}{mm:02}")
        }
        _ => " +0000".to_string(),
    };
    let days = days_from_civil(year, month, 1) + day - 1;
    let seconds = days * 86_400 + hour * 3600 + min * 60 + sec;
    let (y, m, d) = civil_from_days(seconds.div_euclid(86_400));
    let clock = seconds.rem_euclid(86_400);
    Some(format!(
        "{}-{m:02}-{d:02} {:02}:{:02}:{:02}{suffix}",
        year_to_s(y),
        clock / 3600,
        clock / 60 % 60,
        clock % 60
    ))
}

/// `%Y`: at least four digits, sign included for negative years.
fn year_to_s(year: i64) -> String {
    if year < 0 {
        format!("{year:05}")
    } else {
        format!("{year:04}")
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (Ruby's Time).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `Date.strptime(s, '%Y-%m-%d')`: `Some(Date#to_s)` for a real calendar
/// date. Ruby's Date is Julian before the 1582-10-15 reform (ITALY).
fn parse_date(s: &str) -> Option<String> {
    let mut parts = s.splitn(3, '-');
    let (year, month, day) = (num(parts.next()?), num(parts.next()?), num(parts.next()?));
    if !(1..=12).contains(&month) || day < 1 {
        return None;
    }
    if year == 1582 && month == 10 && (5..=14).contains(&day) {
        return None;
    }
    let julian = (year, month, day) < (1582, 10, 15);
    let leap = if julian {
        year % 4 == 0
    } else {
        (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
    };
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (day <= days).then(|| format!("{}-{month:02}-{day:02}", year_to_s(year)))
}

fn num(s: &str) -> i64 {
    s.parse().unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches() {
        assert_eq!(tokenize(""), Ok(Token::Null));
        assert_eq!(tokenize("~"), Ok(Token::Null));
        assert_eq!(tokenize("NULL"), Ok(Token::Null));
        assert_eq!(tokenize("Yes"), Ok(Token::Bool(true)));
        assert_eq!(tokenize("OFF"), Ok(Token::Bool(false)));
        assert_eq!(tokenize("yes\n"), Ok(Token::Bool(true)));
        assert_eq!(tokenize("y"), Ok(Token::Str));
        assert_eq!(tokenize("0x1F"), Ok(Token::Int(31)));
        assert_eq!(tokenize("017"), Ok(Token::Int(15)));
        assert_eq!(tokenize("0o17"), Ok(Token::Str));
        assert_eq!(tokenize("0b101"), Ok(Token::Int(5)));
        assert_eq!(tokenize("1_000"), Ok(Token::Int(1000)));
        assert_eq!(tokenize("1,000"), Ok(Token::Int(1000)));
        assert_eq!(tokenize("-12"), Ok(Token::Int(-12)));
        assert_eq!(tokenize("1:30"), Ok(Token::Int(5400)));
        assert_eq!(tokenize("-1:30"), Ok(Token::Int(-1800)));
        assert_eq!(tokenize("1:30.5"), Ok(Token::Float(5430.0)));
        assert_eq!(tokenize("1e3"), Ok(Token::Str));
        assert_eq!(tokenize("1."), Ok(Token::Float(1.0)));
        assert_eq!(tokenize(".5"), Ok(Token::Float(0.5)));
        assert_eq!(tokenize("1.e+5"), Ok(Token::Float(100000.0)));
        assert_eq!(tokenize("1.5e+99999"), Ok(Token::Float(f64::INFINITY)));
        assert_eq!(tokenize("-.inf"), Ok(Token::Float(f64::NEG_INFINITY)));
        assert!(tokenize(".e+5").is_err());
        assert!(tokenize("0b_").is_err());
        assert_eq!(
            tokenize("99999999999999999999"),
            Ok(Token::BigInt("99999999999999999999".into()))
        );
        assert_eq!(
            tokenize("0x1_0000_0000_0000_0000"),
            Ok(Token::BigInt("18446744073709551616".into()))
        );
        assert_eq!(tokenize(":sym"), Ok(Token::Sym("sym".into())));
        assert_eq!(tokenize(":\"a b\"c"), Ok(Token::Sym("a b".into())));
        assert_eq!(tokenize("::x"), Ok(Token::Sym(":x".into())));
        assert_eq!(tokenize("2024-1-1"), Ok(Token::Date("2024-01-01".into())));
        assert_eq!(tokenize("2021-02-29"), Ok(Token::Str));
        assert_eq!(tokenize("1500-02-29"), Ok(Token::Date("1500-02-29".into())));
        assert_eq!(tokenize("1582-10-10"), Ok(Token::Str));
        let time = |s: &str| Ok(Token::Time(s.into()));
        assert_eq!(
            tokenize("2020-02-31 10:00:00"),
            time("2020-03-02 10:00:00 +0000")
        );
        assert_eq!(
            tokenize("2020-01-01 24:00:00"),
            time("2020-01-02 00:00:00 +0000")
        );
        assert_eq!(
            tokenize("2020-12-31 23:59:60Z"),
            time("2021-01-01 00:00:00 UTC")
        );
        assert_eq!(
            tokenize("2001-12-14 21:59:43.10 -5"),
            time("2001-12-14 21:59:43 -0500")
        );
        assert_eq!(
            tokenize("2001-12-14 21:59:43 +053"),
            time("2001-12-14 21:59:43 +0503")
        );
        assert_eq!(tokenize("2020-01-01 25:00:00"), Ok(Token::Str));
        assert_eq!(tokenize("2020-01-01 10:00:61"), Ok(Token::Str));
        assert_eq!(tokenize("2020-01-01 10:00:00 +99"), Ok(Token::Str));
        assert_eq!(
            tokenize("2020-01-01T10:00:00.5+05:30"),
            time("2020-01-01 10:00:00 +0530")
        );
        assert_eq!(tokenize("12:30"), Ok(Token::Int(45000)));
    }
}
