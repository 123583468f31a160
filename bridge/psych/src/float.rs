//! Ruby `Float#to_s`, byte for byte.
//!
//! Psych dumps a Float with `to_s`, and Foreman stringifies Float hash keys
//! the same way, so `60.0`, `1.0e+16`, `1.0e-05` and `0.0001` must come out
//! exactly as Ruby prints them. Ruby takes the shortest digits that read
//! back to the same double (David Gay's dtoa, mode 0); Rust's `{:e}`
//! formatting produces the same shortest digits except when two shortest
//! candidates are exactly equally close (dtoa then rounds half to even,
//! Rust up), which `shortest_digits` corrects. The rest is the layout rules
//! of `flo_to_s` (numeric.c).

/// Ruby `Float#to_s`: `NaN`, `Infinity`, `-Infinity`; otherwise fixed
/// notation when the point falls inside the digits, or needs at most 15
/// integer digits, or at most 3 leading zeros after `0.`; else `d.ddde±XX`.
pub fn float_to_s(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let (digits, decpt) = shortest_digits(f.abs());
    let digs = digits.len() as i32;

    let mut out = String::with_capacity(24);
    if f.is_sign_negative() {
        out.push('-');
    }
    if decpt > 0 && (decpt < digs || decpt <= 15) {
        if decpt < digs {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        } else {
            out.push_str(&digits);
            out.push_str(&"0".repeat((decpt - digs) as usize));
            out.push_str(".0");
        }
    } else if decpt <= 0 && decpt > -4 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-decpt) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digs > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        out.push_str(&format!("e{:+03}", decpt - 1));
    }
    out
}

/// Split `{:e}` output into significant digits and dtoa's `decpt` (the
/// decimal point sits after this many digits).
fn split_sci(sci: &str) -> (String, i32) {
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    (digits, exponent.parse::<i32>().unwrap_or(0) + 1)
}

/// dtoa mode 0 digits of a finite, non-negative `f`.
fn shortest_digits(f: f64) -> (String, i32) {
    let (digits, decpt) = split_sci(&format!("{f:e}"));
    // Up to 15 significant digits every decimal maps to its own double, so
    // two equally close shortest candidates need at least 16 digits.
    if digits.len() < 16 {
        return (digits, decpt);
    }
    // A tie means the exact binary value has one more digit, a final 5.
    let (exact, exact_decpt) = split_sci(&format!("{f:.800e}"));
    let exact = exact.trim_end_matches('0');
    if exact.len() != digits.len() + 1 || !exact.ends_with('5') || exact_decpt != decpt {
        return (digits, decpt);
    }
    let lower = &exact[..digits.len()];
    let last = lower.as_bytes()[lower.len() - 1];
    if last % 2 == 0 {
        // Round half to even keeps the truncated digits, if they read back.
        let candidate = format!("0.{lower}e{decpt}");
        if candidate.parse::<f64>() == Ok(f) {
            return (lower.to_string(), decpt);
        }
        return (digits, decpt);
    }
    // Odd: the even neighbour is one up. After a 9 it carries, and that is
    // what Rust's round-half-up already chose.
    if last == b'9' {
        return (digits, decpt);
    }
    let mut upper = lower.as_bytes().to_vec();
    let n = upper.len();
    upper[n - 1] = last + 1;
    let upper = String::from_utf8(upper).unwrap_or_default();
    let candidate = format!("0.{upper}e{decpt}");
    if candidate.parse::<f64>() == Ok(f) {
        return (upper, decpt);
    }
    (digits, decpt)
}

#[cfg(test)]
mod tests {
    use super::float_to_s;

    #[test]
    fn layouts() {
        for (f, s) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (60.0, "60.0"),
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e15, "1.0e+15"),
            (1e14, "100000000000000.0"),
            (1e15 + 0.3, "1000000000000000.2"),
            (9999999999999998.0, "9.999999999999998e+15"),
            (1e16, "1.0e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (0.0001, "0.0001"),
            (0.00001, "1.0e-05"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1.0e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5.0e-324"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(float_to_s(f), s, "{f:?}");
        }
    }
}
