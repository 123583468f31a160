//! Table-driven checks of `dump`'s scalar and collection styles.
//!
//! Every expected text is what Ruby 3.1.2 / Psych 4.0.x / libyaml 0.2.5
//! print for `value.to_yaml(line_width: -1)`; the comments say which rule
//! (Psych's `visit_String` or libyaml's scalar analysis) decides.

use pvc_psych::{dump, Map, Value};

fn check(value: Value, expected: &str) {
    assert_eq!(dump(&value), expected, "dump({value:?})");
}

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

#[test]
fn strings_psych_leaves_plain() {
    check(s("foo"), "--- foo\n");
    check(s("Y"), "--- Y\n"); // only "y"/"n" are special-cased
    check(s("1e3"), "--- 1e3\n"); // Psych floats need a dot
    check(s("0o17"), "--- 0o17\n"); // not in Psych's INTEGER regex
    check(s("2021-02-29"), "--- 2021-02-29\n"); // not a real date
    check(s("a:b"), "--- a:b\n");
    check(s("foo#bar"), "--- foo#bar\n");
    check(s("back\\slash"), "--- back\\slash\n");
    check(s("quote\"double"), "--- quote\"double\n");
    check(
        s("https://repo.example.com/pub?x=1&y=2"),
        "--- https://repo.example.com/pub?x=1&y=2\n",
    );
    check(s("127.0.0.1:8080"), "--- 127.0.0.1:8080\n");
    check(s("52:54:00:be:59:f7"), "--- 52:54:00:be:59:f7\n");
    check(s("ünïcödé ☃ snowman"), "--- ünïcödé ☃ snowman\n");
    let long = "x".repeat(200);
    check(s(&long), &format!("--- {long}\n")); // line_width: -1 never folds
}

#[test]
fn strings_that_read_back_as_other_types_are_single_quoted() {
    check(s(""), "--- ''\n");
    for word in ["yes", "No", "OFF", "on", "null", "true"] {
        check(s(word), &format!("--- '{word}'\n"));
    }
    for number in [
        "42", "24.0", "0x1F", "017", "1_000", "1,000", "0b101", "12:30",
    ] {
        check(s(number), &format!("--- '{number}'\n"));
    }
    check(s("08"), "--- '08'\n"); // /\A0[0-7]*[89]/
    check(s("0189"), "--- '0189'\n");
    check(s("2024-01-01"), "--- '2024-01-01'\n"); // a Date
    check(
        s("2001-12-14 21:59:43.10 -05:00"),
        "--- '2001-12-14 21:59:43.10 -05:00'\n",
    ); // a Time
    check(s("<<"), "--- !!str '<<'\n"); // tagged so it is no merge key
}

#[test]
fn strings_psych_double_quotes() {
    check(s("y"), "--- \"y\"\n");
    check(s("n"), "--- \"n\"\n");
    // A non-word first character and no `"`: /^[^[:word:]][^"]*$/.
    check(s(" "), "--- \" \"\n");
    check(s("~"), "--- \"~\"\n");
    check(s("-1"), "--- \"-1\"\n");
    check(s(".inf"), "--- \".inf\"\n");
    check(s(".NaN"), "--- \".NaN\"\n");
    check(s(":sym"), "--- \":sym\"\n");
    check(s("#foo"), "--- \"#foo\"\n");
    check(s("-"), "--- \"-\"\n");
    check(s("- a"), "--- \"- a\"\n");
    check(s("---"), "--- \"---\"\n");
    check(s(" lead"), "--- \" lead\"\n");
    check(s("@at"), "--- \"@at\"\n");
    check(s("[square]"), "--- \"[square]\"\n");
    check(s("*a"), "--- \"*a\"\n");
    check(s("!a"), "--- \"!a\"\n");
    check(s("::1"), "--- \"::1\"\n");
    check(
        s("<%= @host.shortname %>-backup"),
        "--- \"<%= @host.shortname %>-backup\"\n",
    );
    check(s("\u{a0}x"), "--- \"\u{a0}x\"\n"); // NBSP is no word character
    check(s("\n"), "--- \"\\n\"\n");
    check(s("a\n\n"), "--- \"a\\n\\n\"\n"); // `^` after the first newline
                                            // `"` inside but a non-word start: falls through to libyaml, which
                                            // refuses plain for a leading indicator and single-quotes.
    check(s("\"q\""), "--- '\"q\"'\n");
}

#[test]
fn libyaml_refuses_plain_or_single_quotes() {
    check(s("key: value"), "--- 'key: value'\n"); // ": " is a block indicator
    check(s("a:"), "--- 'a:'\n");
    check(s("foo #bar"), "--- 'foo #bar'\n"); // " #" starts a comment
    check(s("trailing "), "--- 'trailing '\n");
    check(s("a\tb"), "--- \"a\\tb\"\n"); // tab is not printable for libyaml
    check(s("😀"), "--- \"\\U0001F600\"\n"); // neither is anything beyond the BMP
    check(s("x\u{85}y"), "--- \"x\\Ny\"\n");
    check(s("\u{feff}x"), "--- \"\\uFEFFx\"\n");
    check(s("a\u{1}b"), "--- \"a\\x01b\"\n");
    check(s("a\u{1b}b"), "--- \"a\\eb\"\n");
    check(s("a\rb"), "--- \"a\\rb\"\n");
    check(s("a\0b"), "--- \"a\\0b\"\n");
    check(s("a \nb"), "--- \"a \\nb\"\n"); // space before a break: no block
                                           // A single line break is folded by readers, so it is written twice.
    check(s("trailing newline\n"), "--- 'trailing newline\n\n  '\n");
    check(s("yes\n"), "--- 'yes\n\n  '\n");
    check(s("a\u{2028}b"), "--- 'a\u{2028}  b'\n");
}

#[test]
fn literal_blocks() {
    check(s("multi\nline\ntext"), "--- |-\n  multi\n  line\n  text\n");
    check(s("a\nb\n"), "--- |\n  a\n  b\n");
    // Keep chomping leaves the document open, so libyaml closes it.
    check(s("a\nb\n\n"), "--- |+\n  a\n  b\n\n...\n");
    check(s(" a\nb"), "--- |2-\n   a\n  b\n");
    check(s("\na\nb"), "--- |2-\n\n  a\n  b\n");
    check(
        Value::Seq(vec![s("a\nb"), s(" x\ny")]),
        "---\n- |-\n  a\n  b\n- |2-\n   x\n  y\n",
    );
    check(
        map(&[("k", map(&[("text", s("line1\nline2\n"))]))]),
        "---\nk:\n  text: |\n    line1\n    line2\n",
    );
}

#[test]
fn other_scalars() {
    check(Value::Null, "---\n");
    check(Value::Bool(true), "--- true\n");
    check(Value::Bool(false), "--- false\n");
    check(Value::Int(42), "--- 42\n");
    check(Value::Int(-7), "--- -7\n");
    check(Value::Int(i64::MAX), "--- 9223372036854775807\n");
    check(Value::Float(60.0), "--- 60.0\n");
    check(Value::Float(1e16), "--- 1.0e+16\n");
    check(Value::Float(1e-5), "--- 1.0e-05\n");
    check(Value::Float(0.0001), "--- 0.0001\n");
    check(Value::Float(-0.25), "--- -0.25\n");
    check(Value::Float(1e15 + 0.3), "--- 1000000000000000.2\n"); // dtoa's tie rule
    check(Value::Float(f64::NAN), "--- .nan\n");
    check(Value::Float(f64::INFINITY), "--- .inf\n");
    check(Value::Float(f64::NEG_INFINITY), "--- -.inf\n");
    check(Value::Sym("sym".into()), "--- :sym\n");
    check(Value::Sym("foo bar".into()), "--- :foo bar\n");
    check(Value::Sym(String::new()), "--- !ruby/symbol\n");
    // Not plain-safe, and symbols are not quoted_implicit: tagged `!`.
    check(Value::Sym("foo ".into()), "--- ! ':foo '\n");
}

#[test]
fn collections() {
    check(Value::Seq(vec![]), "--- []\n");
    check(Value::Map(Map::new()), "--- {}\n");
    check(
        Value::Seq(vec![Value::Seq(vec![s("a"), s("b")]), s("c")]),
        "---\n- - a\n  - b\n- c\n",
    );
    check(
        Value::Seq(vec![Value::Seq(vec![Value::Seq(vec![s("a")])])]),
        "---\n- - - a\n",
    );
    check(
        Value::Seq(vec![map(&[("key", s("v")), ("k2", s("v2"))])]),
        "---\n- key: v\n  k2: v2\n",
    );
    check(
        map(&[("key", Value::Seq(vec![s("a"), s("b")]))]),
        "---\nkey:\n- a\n- b\n",
    );
    check(
        map(&[
            ("a", Value::Null),
            (
                "b",
                Value::Seq(vec![Value::Null, map(&[("c", Value::Null)])]),
            ),
        ]),
        "---\na:\nb:\n-\n- c:\n",
    );
    check(
        Value::Seq(vec![
            Value::Seq(vec![]),
            Value::Map(Map::new()),
            map(&[("a", Value::Map(Map::new()))]),
            map(&[("b", Value::Seq(vec![]))]),
        ]),
        "---\n- []\n- {}\n- a: {}\n- b: []\n",
    );
}

#[test]
fn keys() {
    check(
        map(&[
            ("", Value::Int(1)),
            ("1", Value::Int(2)),
            ("true", Value::Int(3)),
            ("y", Value::Int(4)),
            ("a: b", Value::Int(5)),
            ("<<", Value::Int(6)),
            (" k", Value::Int(7)),
        ]),
        "---\n'': 1\n'1': 2\n'true': 3\n\"y\": 4\n'a: b': 5\n!!str '<<': 6\n\" k\": 7\n",
    );
    // Multi-line keys and keys over 128 bytes are no simple keys.
    check(
        map(&[("a\nb", Value::Int(1))]),
        "---\n? |-\n  a\n  b\n: 1\n",
    );
    let (k129, k128) = ("k".repeat(129), "k".repeat(128));
    check(
        map(&[(&k129, Value::Int(1)), (&k128, Value::Int(2))]),
        &format!("---\n? {k129}\n: 1\n{k128}: 2\n"),
    );
}

#[test]
fn stored_column_values() {
    // Values from Foreman's parameters / lookup_keys / lookup_values.
    check(
        s("Welcome to <%= @host.name %>"),
        "--- Welcome to <%= @host.name %>\n",
    );
    check(
        s("<%= @host.params['site'] %> / <%= @host.name %>"),
        "--- \"<%= @host.params['site'] %> / <%= @host.name %>\"\n",
    );
    check(s("tab\tseparated"), "--- \"tab\\tseparated\"\n");
    check(s("trailing newline\n"), "--- 'trailing newline\n\n  '\n");
    check(s("20.10"), "--- '20.10'\n");
    check(s("25.0.3"), "--- 25.0.3\n");
    check(s("Grüße aus Berlin"), "--- Grüße aus Berlin\n");
    check(Value::Float(92.0697), "--- 92.0697\n");
    check(Value::Float(1000.0), "--- 1000.0\n");
    check(
        map(&[(
            "000 accept ssh",
            map(&[("dport", Value::Int(22)), ("proto", s("tcp"))]),
        )]),
        "---\n000 accept ssh:\n  dport: 22\n  proto: tcp\n",
    );
    check(
        map(&[("nested", map(&[("k", s("v")), ("n", Value::Float(1.5))]))]),
        "---\nnested:\n  k: v\n  \"n\": 1.5\n",
    );
    check(
        Value::Seq(vec![
            s("india-404"),
            Value::Int(71),
            Value::Bool(false),
            Value::Null,
        ]),
        "---\n- india-404\n- 71\n- false\n-\n",
    );
}
