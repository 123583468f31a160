//! The fleet generator: clones the golden Foreman hosts into 10K/100K-host fleets.
//!
//! The generator itself is SQL ([`FLEET_SQL`], `tests/fixtures/fleet/fleet.sql`):
//! load it into a database restored from the Foreman fixture and call
//! `SELECT pvc_fleet_generate(n)`. It clones the 40 golden hosts round-robin:
//! fleet host number `i` (1-based) is clone batch `c = (i-1) / 40 + 1` of golden
//! host `(i-1) % 40 + 1` in id order ([`fleet_position`]). Each batch gets its own
//! copy of the whole hostgroup forest; everything else is copied verbatim.
//! [`CHECK_SQL`] verifies a generated database. See `tests/fixtures/fleet/README.md`.
//!
//! This module is the single Rust source of truth for the naming scheme.
//! **`fleet.sql` implements the same functions** (`pvc_fleet_suffix`,
//! `pvc_fleet_clone_name`, `pvc_fleet_clone_nic_name`, `pvc_fleet_clone_title`,
//! `pvc_fleet_clone_mac`, `pvc_fleet_clone_match`, `pvc_fleet_is_clone_name`);
//! the two must agree, so change both together. The unit tests below pin the
//! exact strings that were checked against the SQL functions.
//!
//! Everything here is pure (no I/O): [`expected_enc`] turns a golden ENC answer
//! of real Foreman into the answer the bridge must give for a clone.

/// The generator: `pvc_fleet_generate(n_hosts integer) returns integer` and its
/// naming helpers (PL/pgSQL + SQL functions).
pub const FLEET_SQL: &str = include_str!("../../fixtures/fleet/fleet.sql");

/// Consistency checks for a generated database (a psql script: one row per
/// check, every `violations` must be 0 except the informational first row).
/// Needs [`FLEET_SQL`] loaded.
pub const CHECK_SQL: &str = include_str!("../../fixtures/fleet/check.sql");

/// Largest clone index: the MAC rewrite stores it in 16 bits
/// (65535 x 40 golden hosts = 2,621,400 hosts). `pvc_fleet_max_clone()` in SQL.
pub const MAX_CLONE: u32 = 65_535;

/// `-c000017`: the suffix that marks clone batch `clone` (always 6 digits).
///
/// Panics unless `1 <= clone <= MAX_CLONE`.
pub fn clone_suffix(clone: u32) -> String {
    assert!(
        (1..=MAX_CLONE).contains(&clone),
        "clone index {clone} out of range 1..={MAX_CLONE}"
    );
    format!("-c{clone:06}")
}

/// Clone host name (also certname and the `fqdn=` lookup value element): the
/// suffix goes on the first DNS label.
/// `app03.lab.globex.test`, 17 → `app03-c000017.lab.globex.test`.
pub fn clone_name(golden_fqdn: &str, clone: u32) -> String {
    let (first, rest) = split_first(golden_fqdn, '.');
    format!("{first}{}{rest}", clone_suffix(clone))
}

/// Clone NIC name. Where the NIC name starts with the golden host's short name
/// followed by `.`, `-` or nothing, the suffix goes right after the short name:
/// `dns78-nyc-lan.corp.acme.test` on host `dns78.corp.acme.test`, 17 →
/// `dns78-c000017-nyc-lan.corp.acme.test` (and the primary NIC, named like the
/// host, gets [`clone_name`]). Other non-empty names get [`clone_name`]; empty
/// names (bonds, VLANs) stay empty.
pub fn clone_nic_name(nic_name: &str, golden_host: &str, clone: u32) -> String {
    if nic_name.is_empty() {
        return String::new();
    }
    let short = split_first(golden_host, '.').0;
    match nic_name.strip_prefix(short) {
        Some(rest) if rest.is_empty() || rest.starts_with('.') || rest.starts_with('-') => {
            format!("{short}{}{rest}", clone_suffix(clone))
        }
        _ => clone_name(nic_name, clone),
    }
}

/// Clone hostgroup title: only the root hostgroup is renamed (its name gets the
/// suffix), so the suffix goes on the first `/` segment.
/// `base/linux/debian`, 17 → `base-c000017/linux/debian`. The cloned
/// hostgroup's `lookup_value_matcher` is `hostgroup=<this>`.
pub fn clone_title(golden_title: &str, clone: u32) -> String {
    let (first, rest) = split_first(golden_title, '/');
    format!("{first}{}{rest}", clone_suffix(clone))
}

/// Clone MAC: `5e` (locally administered, unicast), the clone index as two hex
/// octets, then the golden MAC's last three octets.
/// `52:54:00:89:74:ee`, 17 → `5e:00:11:89:74:ee`. Anything that is not a
/// lower-case `xx:xx:xx:xx:xx:xx` MAC (e.g. empty) is returned unchanged.
pub fn clone_mac(golden_mac: &str, clone: u32) -> String {
    if !is_mac(golden_mac) {
        return golden_mac.to_string();
    }
    // Validates the range like the other helpers.
    let _ = clone_suffix(clone);
    format!(
        "5e:{:02x}:{:02x}{}",
        clone >> 8,
        clone & 0xff,
        &golden_mac[8..]
    )
}

/// Clone lookup value match: `fqdn=` elements get [`clone_name`], `hostgroup=`
/// elements get [`clone_title`], other elements (`domain=`, `os=`, ...) stay.
/// `hostgroup=base/linux,domain=example.com`, 17 →
/// `hostgroup=base-c000017/linux,domain=example.com`.
///
/// The generator only clones values that have an `fqdn=<golden host>` element
/// (with the host) or a `hostgroup=<golden title>` element (with the forest);
/// the rest are shared by all clones.
pub fn clone_match(golden_match: &str, clone: u32) -> String {
    golden_match
        .split(',')
        .map(|e| {
            if let Some(v) = e.strip_prefix("fqdn=") {
                format!("fqdn={}", clone_name(v, clone))
            } else if let Some(v) = e.strip_prefix("hostgroup=") {
                format!("hostgroup={}", clone_title(v, clone))
            } else {
                e.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Is `name` a clone host name (a non-empty first label ending in `-c` + 6
/// digits, not `000000`)? Same test as `pvc_fleet_is_clone_name`.
pub fn is_clone_name(name: &str) -> bool {
    clone_source(name).is_some()
}

/// Parse a clone host name back to `(golden fqdn, clone index)`:
/// `db79-us-c000017.lab.globex.test` → `("db79-us.lab.globex.test", 17)`.
/// `None` for golden and other names.
pub fn clone_source(name: &str) -> Option<(String, u32)> {
    let (first, rest) = split_first(name, '.');
    let cut = first.len().checked_sub(8)?;
    let (golden_label, suffix) = (first.get(..cut)?, first.get(cut..)?);
    let digits = suffix.strip_prefix("-c")?;
    if golden_label.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let clone: u32 = digits.parse().ok()?;
    if clone == 0 {
        return None;
    }
    Some((format!("{golden_label}{rest}"), clone))
}

/// Where fleet host number `i` (1-based, in generation order) comes from:
/// `(golden position, clone index)`, the golden position being 1-based in
/// golden host id order, with `golden_count` golden hosts (40 in the fixture).
pub fn fleet_position(i: u64, golden_count: u32) -> (u32, u32) {
    assert!(i >= 1 && golden_count >= 1);
    let g = u64::from(golden_count);
    let pos = ((i - 1) % g + 1) as u32;
    let clone = u32::try_from((i - 1) / g + 1).expect("clone index overflows u32");
    (pos, clone)
}

/// Rewrite real Foreman's ENC answer for a golden host (`GET
/// /node/<golden_fqdn>?format=yml`, e.g. `tests/fixtures/foreman/enc/*.yml`)
/// into the answer for clone `clone` of that host.
///
/// A clone differs from its source only in its name, its NIC names and MACs and
/// its hostgroup title (root suffixed); all values are copied verbatim and ERB
/// is rendered per host. So, line by line:
/// - `foreman_interfaces`: NIC `name:` → [`clone_nic_name`], `mac:` →
///   [`clone_mac`]. IPs are unchanged (the generator keeps them).
/// - the `hostgroup:` parameter, and the hostgroup title where ERB
///   `<%= @host.hostgroup %>` rendered it (after `hg=` or ` in `, the fixture's
///   two macros) → [`clone_title`]. Other occurrences of the title's words are
///   static data (`profile::base`, a `tags: [base]` value ...) and stay.
/// - the short name as a whole token (at line start or after a space or quote,
///   followed by anything but `[A-Za-z0-9_]`) gets the suffix after it. This
///   covers `foreman_hostname`, `foreman_fqdn` and every ERB rendering of
///   `@host.name` / `@host.shortname` (`Welcome to app03-c000017.lab.globex.test`,
///   `app03-c000017-backup`). Static values that merely contain the name
///   (`ntp-kafka43.lab.globex.test`, a fqdn= override) are not tokens and stay.
///
/// YAML quoting is unaffected: the rewrites only lengthen hostname-like plain
/// scalars. Checked against the fixture: no static value holds a golden short
/// name as such a token (see the tests).
pub fn expected_enc(golden_yaml: &str, golden_fqdn: &str, clone: u32) -> String {
    let short = split_first(golden_fqdn, '.').0;
    let short_new = format!("{short}{}", clone_suffix(clone));
    let title = golden_yaml
        .lines()
        .find_map(|l| l.strip_prefix("  hostgroup: "))
        .map(unquote);
    let title_new = title.map(|t| clone_title(t, clone));

    let mut out = String::with_capacity(golden_yaml.len() + 256);
    let mut block = ""; // current key under `parameters:` (2-space indent)
    for line in golden_yaml.split_inclusive('\n') {
        let (body, eol) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if !body.is_empty() && !body.starts_with(' ') {
            block = ""; // a top-level key: `classes:`, `environment:` ...
        } else if let Some(key) = body.strip_prefix("  ").and_then(|r| r.split(':').next()) {
            if !key.is_empty() && !key.starts_with([' ', '-']) {
                block = key;
            }
        }
        let rewritten = if block == "foreman_interfaces" && body.starts_with("    name: ") {
            let v = &body["    name: ".len()..];
            format!("    name: {}", clone_nic_name(v, golden_fqdn, clone))
        } else if block == "foreman_interfaces" && body.starts_with("    mac: ") {
            let v = &body["    mac: ".len()..];
            format!("    mac: {}", clone_mac(v, clone))
        } else if block == "foreman_interfaces" && body.starts_with("  - mac: ") {
            let v = &body["  - mac: ".len()..];
            format!("  - mac: {}", clone_mac(v, clone))
        } else {
            let mut s = body.to_string();
            if let (Some(t), Some(tn)) = (title, title_new.as_deref()) {
                if body.strip_prefix("  hostgroup: ").map(unquote) == Some(t) {
                    s = s.replacen(t, tn, 1);
                } else {
                    for ctx in ["hg=", " in "] {
                        s = replace_token(
                            &s,
                            &format!("{ctx}{t}"),
                            &format!("{ctx}{tn}"),
                            |_| true,
                            |c| !c.is_some_and(is_title_char),
                        );
                    }
                }
            }
            replace_token(
                &s,
                short,
                &short_new,
                |c| c.is_none_or(|c| matches!(c, ' ' | '\t' | '"' | '\'')),
                |c| !c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_'),
            )
        };
        out.push_str(&rewritten);
        out.push_str(eol);
    }
    out
}

/// `("app03", ".lab.globex.test")` for `app03.lab.globex.test` and `'.'`; the
/// whole string and `""` when `sep` does not occur.
fn split_first(s: &str, sep: char) -> (&str, &str) {
    match s.find(sep) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    }
}

fn is_mac(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, &c)| {
            if i % 3 == 2 {
                c == b':'
            } else {
                c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
            }
        })
}

fn is_title_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Strip one level of YAML single or double quotes (titles need no escapes).
fn unquote(s: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// Replace each occurrence of `needle` in `s` whose preceding and following
/// characters (None at the ends) satisfy `left_ok` / `right_ok`.
fn replace_token(
    s: &str,
    needle: &str,
    replacement: &str,
    left_ok: impl Fn(Option<char>) -> bool,
    right_ok: impl Fn(Option<char>) -> bool,
) -> String {
    if needle.is_empty() {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut start = 0;
    while let Some(off) = s[start..].find(needle) {
        let at = start + off;
        let end = at + needle.len();
        let before = s[..at].chars().next_back();
        let after = s[end..].chars().next();
        out.push_str(&s[start..at]);
        out.push_str(if left_ok(before) && right_ok(after) {
            replacement
        } else {
            needle
        });
        start = end;
    }
    out.push_str(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Strings below were produced by the SQL functions of fleet.sql on the
    // fixture database (clone batches 1, 17, 255, 256, 65535), so these tests
    // pin that Rust and SQL agree.

    #[test]
    fn suffix_and_names() {
        assert_eq!(clone_suffix(1), "-c000001");
        assert_eq!(clone_suffix(17), "-c000017");
        assert_eq!(clone_suffix(65_535), "-c065535");
        assert_eq!(
            clone_name("app03.lab.globex.test", 17),
            "app03-c000017.lab.globex.test"
        );
        assert_eq!(
            clone_name("db79-us.lab.globex.test", 17),
            "db79-us-c000017.lab.globex.test"
        );
        assert_eq!(clone_name("bare", 2), "bare-c000002");
    }

    #[test]
    fn clone_indexes_outside_the_range_are_refused() {
        for bad in [0, MAX_CLONE + 1] {
            let result = std::panic::catch_unwind(|| clone_name("a.b", bad));
            let message = result.expect_err("refused");
            let text = message
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert!(text.contains("out of range"), "{bad}: {text}");
        }
        assert_eq!(clone_suffix(MAX_CLONE), "-c065535");
    }

    #[test]
    fn nic_names() {
        let h = "dns78.corp.acme.test";
        assert_eq!(
            clone_nic_name("dns78.corp.acme.test", h, 17),
            "dns78-c000017.corp.acme.test"
        );
        assert_eq!(
            clone_nic_name("dns78-nyc-lan.corp.acme.test", h, 17),
            "dns78-c000017-nyc-lan.corp.acme.test"
        );
        assert_eq!(clone_nic_name("", h, 17), "");
        assert_eq!(clone_nic_name("dns78", h, 17), "dns78-c000017");
        // Not starting with the short name (or only with a longer word): first label.
        assert_eq!(
            clone_nic_name("mgmt.corp.acme.test", h, 17),
            "mgmt-c000017.corp.acme.test"
        );
        assert_eq!(
            clone_nic_name("dns789.corp.acme.test", h, 17),
            "dns789-c000017.corp.acme.test"
        );
        assert_eq!(
            clone_nic_name("db79-us-lab.lab.globex.test", "db79-us.lab.globex.test", 3),
            "db79-us-c000003-lab.lab.globex.test"
        );
    }

    #[test]
    fn titles_macs_matches() {
        assert_eq!(clone_title("base", 17), "base-c000017");
        assert_eq!(
            clone_title("base/linux/debian", 17),
            "base-c000017/linux/debian"
        );
        assert_eq!(clone_mac("52:54:00:89:74:ee", 17), "5e:00:11:89:74:ee");
        assert_eq!(clone_mac("52:54:00:89:74:ee", 256), "5e:01:00:89:74:ee");
        assert_eq!(clone_mac("52:54:00:89:74:ee", 65_535), "5e:ff:ff:89:74:ee");
        assert_eq!(clone_mac("", 17), "");
        assert_eq!(clone_mac("52:54:00:89:74:EE", 17), "52:54:00:89:74:EE");
        assert_eq!(
            clone_match("hostgroup=base/linux,domain=example.com", 17),
            "hostgroup=base-c000017/linux,domain=example.com"
        );
        assert_eq!(
            clone_match("fqdn=db79-us.lab.globex.test", 17),
            "fqdn=db79-us-c000017.lab.globex.test"
        );
        assert_eq!(clone_match("os=Debian 12.5", 17), "os=Debian 12.5");
    }

    #[test]
    fn source_round_trip() {
        for (golden, _) in golden_enc() {
            let golden = golden.as_str();
            for c in [1, 17, 999, 65_535] {
                let n = clone_name(golden, c);
                assert_eq!(clone_source(&n), Some((golden.to_string(), c)), "{n}");
                assert!(is_clone_name(&n));
            }
            assert_eq!(clone_source(golden), None);
        }
        assert_eq!(
            clone_source("db79-us-c000017.lab.globex.test"),
            Some(("db79-us.lab.globex.test".into(), 17))
        );
        assert_eq!(clone_source("bare-c000002"), Some(("bare".into(), 2)));
        for bad in [
            "-c000017.x",
            "a-c000000.x",
            "a-c00017.x",
            "a-c0000170.x",
            "a-x000017.x",
            "a.b-c000017",
        ] {
            assert_eq!(clone_source(bad), None, "{bad}");
        }
    }

    #[test]
    fn positions() {
        assert_eq!(fleet_position(1, 40), (1, 1));
        assert_eq!(fleet_position(40, 40), (40, 1));
        assert_eq!(fleet_position(41, 40), (1, 2));
        assert_eq!(fleet_position(100_000, 40), (40, 2500));
    }

    #[test]
    fn enc_of_a_clone() {
        let golden = "---\nparameters:\n  foreman_config_groups:\n  - baseline\n  foreman_hostname: dns78\n  foreman_fqdn: dns78.corp.acme.test\n  hostgroup: base/linux\n  foreman_interfaces:\n  - ip: 10.1.254.11\n    mac:\n    name:\n    subnet:\n      name: dc1-mgmt\n  - ip: 10.1.0.11\n    mac: 52:54:00:89:74:ee\n    name: dns78.corp.acme.test\n  - ip: 172.16.5.11\n    mac: 52:54:00:f4:03:27\n    name: dns78-nyc-lan.corp.acme.test\n  site: Welcome to dns78.corp.acme.test\n  motd: hg=base/linux\n  tier: dns78-backup\n  x: 'Property of corp.acme.test - dns78'\n  y: ntp-dns78.corp.acme.test\n  z: dns789\n  w: base\nclasses:\n  profile::base:\n    tags:\n    - base\n    servers:\n    - ntp-dns78.corp.acme.test\nenvironment: staging\n";
        let want = "---\nparameters:\n  foreman_config_groups:\n  - baseline\n  foreman_hostname: dns78-c000017\n  foreman_fqdn: dns78-c000017.corp.acme.test\n  hostgroup: base-c000017/linux\n  foreman_interfaces:\n  - ip: 10.1.254.11\n    mac:\n    name:\n    subnet:\n      name: dc1-mgmt\n  - ip: 10.1.0.11\n    mac: 5e:00:11:89:74:ee\n    name: dns78-c000017.corp.acme.test\n  - ip: 172.16.5.11\n    mac: 5e:00:11:f4:03:27\n    name: dns78-c000017-nyc-lan.corp.acme.test\n  site: Welcome to dns78-c000017.corp.acme.test\n  motd: hg=base-c000017/linux\n  tier: dns78-c000017-backup\n  x: 'Property of corp.acme.test - dns78-c000017'\n  y: ntp-dns78.corp.acme.test\n  z: dns789\n  w: base\nclasses:\n  profile::base:\n    tags:\n    - base\n    servers:\n    - ntp-dns78.corp.acme.test\nenvironment: staging\n";
        assert_eq!(expected_enc(golden, "dns78.corp.acme.test", 17), want);
        // No trailing newline is kept as is.
        assert_eq!(
            expected_enc("---\nfoo: dns78", "dns78.corp.acme.test", 1),
            "---\nfoo: dns78-c000001"
        );
    }

    /// Every golden answer of the fixture: only the lines that depend on the
    /// name, NICs or hostgroup change, and they change in the expected way.
    #[test]
    fn enc_rewrite_of_every_golden_host() {
        let mut total_changed = 0;
        for (fqdn, yaml) in golden_enc() {
            let (fqdn, yaml) = (fqdn.as_str(), yaml.as_str());
            let short = split_first(fqdn, '.').0;
            let title = yaml.lines().find_map(|l| l.strip_prefix("  hostgroup: "));
            let clone = expected_enc(yaml, fqdn, 17);
            assert_eq!(clone.lines().count(), yaml.lines().count(), "{fqdn}");
            assert_eq!(clone.ends_with('\n'), yaml.ends_with('\n'));
            let mut changed = 0;
            for (g, c) in yaml.lines().zip(clone.lines()) {
                if g == c {
                    // Unchanged lines must not hold the name as a token.
                    assert!(!g.contains(&format!(" {fqdn}")), "{fqdn}: {g}");
                    assert!(!g.ends_with(&format!(" {short}")), "{fqdn}: {g}");
                    continue;
                }
                changed += 1;
                let key = g
                    .trim_start()
                    .trim_start_matches("- ")
                    .split(':')
                    .next()
                    .unwrap();
                match key {
                    "foreman_hostname" => {
                        assert_eq!(c, format!("  foreman_hostname: {short}-c000017"))
                    }
                    "foreman_fqdn" => {
                        assert_eq!(c, format!("  foreman_fqdn: {}", clone_name(fqdn, 17)))
                    }
                    "hostgroup" => assert_eq!(
                        c,
                        format!("  hostgroup: {}", clone_title(title.unwrap(), 17))
                    ),
                    "mac" => assert!(c.contains("5e:00:11:"), "{c}"),
                    _ => assert!(
                        c.contains(&format!("{short}-c000017"))
                            || title.is_some_and(|t| c.contains(&clone_title(t, 17))),
                        "{fqdn}: {g} -> {c}"
                    ),
                }
                if g.contains("ntp-") {
                    panic!("{fqdn}: static ntp-<host> value rewritten: {g}");
                }
            }
            // At least foreman_hostname, foreman_fqdn and the primary NIC name.
            assert!(changed >= 3, "{fqdn}: {changed}");
            total_changed += changed;
        }
        assert!(total_changed > 200, "{total_changed}");
    }

    #[test]
    fn sql_defines_the_same_scheme() {
        for f in [
            "pvc_fleet_generate(n_hosts integer) RETURNS integer",
            "pvc_fleet_max_clone() RETURNS integer",
            "SELECT 65535",
            "'-c' || lpad(c::text, 6, '0')",
            "'5e:' || lpad(to_hex((c >> 8) & 255), 2, '0')",
            "name ~ '^[^.]+-c[0-9]{6}(\\.|$)' AND name !~ '^[^.]*-c000000(\\.|$)'",
        ] {
            assert!(FLEET_SQL.contains(f), "fleet.sql lacks {f}");
        }
        assert_eq!(MAX_CLONE, 65_535);
        assert!(CHECK_SQL.contains("sequences behind max(id)"));
    }

    /// The fixture's hosts and their golden ENC, read from the fixture
    /// itself (`hosts.txt`, `enc/<fqdn>.yml`) so there is one list.
    fn golden_enc() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/foreman");
        let hosts = std::fs::read_to_string(dir.join("hosts.txt")).expect("hosts.txt");
        let list: Vec<(String, String)> = hosts
            .lines()
            .filter(|l| !l.is_empty())
            .map(|host| {
                let enc = std::fs::read_to_string(dir.join("enc").join(format!("{host}.yml")))
                    .expect("golden file");
                (host.to_owned(), enc)
            })
            .collect();
        assert_eq!(list.len(), 40, "the fixture has 40 hosts");
        list
    }
}
