//! `load` on the shapes Foreman stores in its serialized columns, the YAML
//! 1.1 scalar rules of Psych's ScalarScanner, errors, and robustness.

use pvc_psych::{dump, load, LoadError, Map, Value};

fn s(text: &str) -> Value {
    Value::str(text)
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .cloned()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map>(),
    )
}

fn loads(text: &str, expected: Value) {
    match load(text) {
        Ok(value) => assert_eq!(value, expected, "load({text:?})"),
        Err(e) => panic!("load({text:?}) failed: {e}"),
    }
}

#[test]
fn serialized_column_forms() {
    loads("--- foo\n", s("foo"));
    loads("--- 42\n", Value::Int(42));
    loads("--- 24.0\n", Value::Float(24.0));
    loads("--- '24.0'\n", s("24.0"));
    loads("---\n- a\n", Value::Seq(vec![s("a")]));
    loads("--- {}\n", Value::Map(Map::new()));
    loads("--- []\n", Value::Seq(vec![]));
    loads("--- true\n", Value::Bool(true));
    loads("--- ''\n", s(""));
    loads("---\n", Value::Null);
    loads("", Value::Null); // no document at all: safe_load's fallback
    loads("--- |-\n  multi\n  line\n  text\n", s("multi\nline\ntext"));
    loads("--- |\n  a\n  b\n", s("a\nb\n"));
    loads("--- >\n  folded\n  text\n", s("folded text\n"));
    loads("--- 'trailing newline\n\n  '\n", s("trailing newline\n"));
    loads("--- \"tab\\tseparated\"\n", s("tab\tseparated"));
    loads("--- :symbol\n", Value::Sym("symbol".into()));
    loads("--- !ruby/symbol foo\n", Value::Sym("foo".into()));
    loads("--- !ruby/sym 'bar'\n", Value::Sym("bar".into()));
    loads("--- !!str 42\n", s("42"));
    loads("--- ! 12\n", Value::Int(12)); // the non-specific tag still resolves
    loads("--- !!float 1\n", Value::Float(1.0));
    loads("--- foo\n--- bar\n", s("foo")); // the first document only
    loads(
        "--- !ruby/hash:ActiveSupport::HashWithIndifferentAccess\na: 1\n:b: !ruby/hash:ActiveSupport::HashWithIndifferentAccess\n  c: 2\n",
        map(&[("a", Value::Int(1)), ("b", map(&[("c", Value::Int(2))]))]),
    );
    loads(
        "--- !ruby/hash-with-ivars:ActiveSupport::HashWithIndifferentAccess\nelements:\n  a: 1\nivars:\n  :@x: 1\n",
        map(&[("a", Value::Int(1))]),
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    loads(
        "---\na: &x [1, 2]\nb: *x\n",
        map(&[
            ("a", Value::Seq(vec![Value::Int(1), Value::Int(2)])),
            ("b", Value::Seq(vec![Value::Int(1), Value::Int(2)])),
        ]),
    );
    loads(
        "---\nbase: &b\n  x: 1\n  y: 2\nderived:\n  <<: *b\n  y: 3\n",
        map(&[
            ("base", map(&[("x", Value::Int(1)), ("y", Value::Int(2))])),
            (
                "derived",
                map(&[("x", Value::Int(1)), ("y", Value::Int(3))]),
            ),
        ]),
    );
    // A list of maps: earlier ones win; Ruby merges them in reverse into a
    // fresh hash, so keys come in the order of the last map first.
    loads(
        "---\na: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n",
        map(&[
            ("a", map(&[("x", Value::Int(1))])),
            ("b", map(&[("x", Value::Int(2)), ("y", Value::Int(2))])),
            (
                "c",
                map(&[
                    ("x", Value::Int(1)),
                    ("y", Value::Int(2)),
                    ("z", Value::Int(3)),
                ]),
            ),
        ]),
    );
    // Not a Hash: merge! raises TypeError and Psych keeps a "<<" key.
    loads("---\n<<: 1\n", map(&[("<<", Value::Int(1))]));
    // Tagged as a string it is an ordinary key.
    loads(
        "---\n!!str <<: {a: 1}\n",
        map(&[("<<", map(&[("a", Value::Int(1))]))]),
    );
}

#[test]
fn yaml_1_1_scalars_as_psych_reads_them() {
    for text in ["yes", "Yes", "YES", "yEs", "true", "True", "on", "ON"] {
        loads(&format!("--- {text}\n"), Value::Bool(true));
    }
    for text in ["no", "No", "false", "FALSE", "off", "Off"] {
        loads(&format!("--- {text}\n"), Value::Bool(false));
    }
    for text in ["y", "n", "Y", "yess"] {
        loads(&format!("--- {text}\n"), s(text));
    }
    for text in ["~", "null", "Null", "NULL", ""] {
        loads(&format!("--- {text}\n"), Value::Null);
    }
    let ints = [
        ("0x1F", 31),
        ("017", 15),
        ("1_000", 1000),
        ("1,000", 1000),
        ("0b101", 5),
        ("-12", -12),
        ("+7", 7),
    ];
    for (text, int) in ints {
        loads(&format!("--- {text}\n"), Value::Int(int));
    }
    // Psych's own quirk: base-60 weights are 60**|i-2|, so 1:30 is 5400.
    loads("--- 1:30\n", Value::Int(5400));
    loads("--- 1:30.5\n", Value::Float(5430.0));
    loads("--- 1.5\n", Value::Float(1.5));
    loads("--- .5\n", Value::Float(0.5));
    loads("--- 1.\n", Value::Float(1.0));
    loads("--- -.inf\n", Value::Float(f64::NEG_INFINITY));
    assert!(matches!(load("--- .NaN\n"), Ok(Value::Float(f)) if f.is_nan()));
    // Not numbers for Psych.
    for text in ["1e3", "0o17", "08", "1__0", "1.2.3", "0x"] {
        loads(&format!("--- {text}\n"), s(text));
    }
    // Dates and times stay text (Foreman does not permit Date).
    loads("--- 2024-01-01\n", s("2024-01-01"));
    loads(
        "--- 2001-12-14 21:59:43.10 -05:00\n",
        s("2001-12-14 21:59:43.10 -05:00"),
    );
    loads("--- 99999999999999999999\n", s("99999999999999999999"));
}

#[test]
fn keys_are_stringified_like_deep_stringify_keys() {
    loads(
        "---\n1: a\ntrue: b\n~: c\n:s: d\n1.5: e\n2024-1-1: f\n2001-12-14 21:59:43 -5: g\n[1, x]: h\n{k: !ruby/symbol v}: i\n",
        map(&[
            ("1", s("a")),
            ("true", s("b")),
            ("", s("c")),
            ("s", s("d")),
            ("1.5", s("e")),
            ("2024-01-01", s("f")),
            ("2001-12-14 21:59:43 -0500", s("g")),
            ("[1, \"x\"]", s("h")),
            ("{\"k\"=>:v}", s("i")),
        ]),
    );
    // 1 and "1" are distinct Ruby keys until stringified: the last wins,
    // at the first one's position.
    loads(
        "---\n1: a\nb: c\n'1': d\n",
        map(&[("1", s("d")), ("b", s("c"))]),
    );
}

#[test]
fn errors_carry_positions() {
    let err = load("a: b: c\n").unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::Syntax {
                line: 1,
                column: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "mapping values are not allowed in this context at line 1 column 5"
    );

    let err = load("---\nx: [1, 2\ny: 3\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "did not find expected ',' or ']' while parsing a flow sequence at line 2 column 4"
    );

    let err = load("---\na: !ruby/object:OpenStruct\n  x: 1\n").unwrap_err();
    assert!(
        matches!(&err, LoadError::DisallowedClass { class, line: 2, .. } if class == "OpenStruct"),
        "{err:?}"
    );

    let err = load("---\n- *nope\n").unwrap_err();
    assert!(
        matches!(&err, LoadError::BadAlias { anchor, line: 2, column: 3 } if anchor == "nope"),
        "{err:?}"
    );

    // Ruby's Integer("0b") raises inside Psych's scanner.
    let err = load("--- 0b_\n").unwrap_err();
    assert!(
        matches!(err, LoadError::InvalidValue { line: 1, .. }),
        "{err:?}"
    );
}

/// The trickiest stored values of Foreman's `parameters`, `lookup_keys` and
/// `lookup_values` columns: each loads and dumps back to the same bytes.
#[test]
fn stored_values_round_trip() {
    let stored = [
        "--- \"tab\\tseparated\"\n",
        "--- 'trailing newline\n\n  '\n",
        "--- ünïcödé ☃ snowman\n",
        "--- \"<%= @host.params['site'] %> / <%= @host.name %>\"\n",
        "--- Property of lab.globex.test - <%= @host.shortname %>\n",
        "---\nkey: 'quoted: value'\nnum: 8\n",
        "---\nnested:\n  k: v\n  \"n\": 1.5\n",
        "--- '1_000'\n",
        "--- '12:30'\n",
        "--- '0x1F'\n",
        "--- '2024-01-01'\n",
        "--- \"n\"\n",
        "--- 'False'\n",
        "--- \"-\"\n",
        "--- \"[square]\"\n",
        "--- quote\"double\n",
        "--- 'trailing space '\n",
        "---\n- india-404\n- 71\n- false\n-\n",
        "---\n- back\\slash\n- 55\n",
        "---\na: 1\nb:\n- true\n-\n- x\n",
        "---\n000 accept ssh:\n  dport: 22\n  proto: tcp\n",
        "---\ndeploy:\n  uid: 2001\n  shell: \"/bin/zsh\"\n",
        "--- 25.0.3\n",
        "--- '20.10'\n",
        "--- 92.0697\n",
        "--- |-\n  multi\n  line\n  text\n",
    ];
    for text in stored {
        let value = load(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(dump(&value), text);
    }
}

/// A small deterministic generator (xorshift), so the property tests need
/// no extra crate and always run the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ATOMS: &[&str] = &[
    "a",
    "b",
    "y",
    "no",
    "1",
    "0",
    "x",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n",
    ":",
    "-",
    "#",
    ",",
    "[",
    "]",
    "{",
    "}",
    "&",
    "*",
    "!",
    "|",
    ">",
    "'",
    "\"",
    "%",
    "@",
    "`",
    "?",
    ".",
    "~",
    "_",
    "\\",
    "é",
    "☃",
    "😀",
    "\u{a0}",
    "\u{85}",
    "\u{2028}",
    "\u{feff}",
    "\r",
    "\0",
    "1.5",
    "0x1F",
    "2024-01-01",
    "<<",
    "---",
    "...",
    "null",
];

fn random_string(rng: &mut Rng) -> String {
    (0..rng.below(6)).map(|_| *rng.pick(ATOMS)).collect()
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match if depth == 0 {
        rng.below(7)
    } else {
        rng.below(9)
    } {
        0 | 1 => Value::Str(random_string(rng)),
        2 => Value::Int(rng.next() as i64 >> rng.below(64)),
        3 => Value::Float(match rng.below(4) {
            0 => f64::from_bits(rng.next()),
            1 => (rng.below(2000) as f64 - 1000.0) / 8.0,
            2 => *rng.pick(&[
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                0.0,
                -0.0,
                1e16,
                1e-5,
            ]),
            _ => rng.next() as f64 / 3.0,
        }),
        4 => Value::Bool(rng.below(2) == 0),
        5 => Value::Null,
        6 => Value::Sym(["a", "sym", "foo_bar", "x1"][rng.below(4)].to_string()),
        7 => Value::Seq(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Map(
            (0..rng.below(4))
                .map(|_| (random_string(rng), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Equality with NaN equal to itself.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

#[test]
fn dump_then_load_gives_the_value_back() {
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    for _ in 0..5_000 {
        let value = random_value(&mut rng, 3);
        let yaml = dump(&value);
        match load(&yaml) {
            Ok(back) => assert!(same(&back, &value), "{value:?}\n{yaml}\n{back:?}"),
            Err(e) => panic!("{value:?}\n{yaml}\n{e}"),
        }
    }
}

#[test]
fn load_never_panics_on_mutated_input() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/foreman/enc"
    );
    let mut seeds: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    seeds.push("---\na: &x [1, {b: *x}]\n<<: *x\nc: !ruby/hash:ActiveSupport::HashWithIndifferentAccess {}\n".into());
    seeds.push("--- |2-\n   a\n  'b'\n? [x]\n: \"\\u263A\"\n".into());
    let mut rng = Rng(0xdead_beef_0bad_f00d);
    let mut parsed = 0;
    for round in 0..4_000 {
        let seed = &seeds[round % seeds.len()];
        let mut chars: Vec<char> = seed.chars().collect();
        // Cut long seeds down to a random window so mutations matter.
        let start = rng.below(chars.len().max(1));
        chars = chars[start..chars.len().min(start + 400)].to_vec();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(chars.len() + 1);
            match rng.below(4) {
                0 => chars.splice(at..at, rng.pick(ATOMS).chars()).for_each(drop),
                1 if at < chars.len() => {
                    let end = (at + 1 + rng.below(8)).min(chars.len());
                    chars.drain(at..end).for_each(drop);
                }
                2 => chars.truncate(at),
                _ => chars.insert(
                    at.min(chars.len()),
                    *rng.pick(&['\n', ' ', ':', '-', '!', '&', '*', '"', '\'']),
                ),
            }
        }
        let text: String = chars.into_iter().collect();
        // Any outcome but a panic is fine; a success must dump cleanly.
        if let Ok(value) = load(&text) {
            parsed += 1;
            let _ = dump(&value);
        }
    }
    assert!(
        parsed > 100,
        "mutations should still parse sometimes ({parsed})"
    );
}

#[test]
fn deep_nesting_and_alias_bombs_are_refused_not_fatal() {
    let deep = format!("--- {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(load(&deep), Err(LoadError::Unsupported { .. })));
    let mut bomb = String::from("---\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    assert!(matches!(load(&bomb), Err(LoadError::Unsupported { .. })));
}
