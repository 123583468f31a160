//! `dump`: Ruby `value.to_yaml(line_width: -1)`, byte for byte.
//!
//! Two stages, as in Ruby. First Psych's `YAMLTree` visitor turns each Ruby
//! value into an event (scalar text, tag, implicit flags, *requested* style);
//! `scalar_event` ports that, including `visit_String`'s quoting rules. Then
//! libyaml 0.2.5's emitter decides what is actually written: it analyses each
//! scalar and may refuse the requested style (`'a: b'`, `"a\tb"`, ...), and
//! it owns indentation, `-`/`:` placement and block-scalar headers. The
//! `Emitter` below ports the parts of `src/emitter.c` reachable from a Ruby
//! Hash/Array/scalar tree with function and field names kept, so the C source
//! can be read alongside. No anchors are ever emitted: a `Value` is a tree.
//! `line_width: -1` makes libyaml's width `INT_MAX`, so its line-folding
//! branches can never fire and are left out.

use std::sync::LazyLock;

use regex::Regex;

use crate::float::float_to_s;
use crate::scanner::{tokenize, Token};
use crate::value::{Map, Value};

/// libyaml's `yaml_scalar_style_t`, as requested by Psych or chosen by
/// libyaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Any,
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

/// A SCALAR event as Psych's `YAMLTree` hands it to libyaml.
#[derive(Debug)]
struct ScalarEvent<'a> {
    value: std::borrow::Cow<'a, str>,
    tag: Option<&'static str>,
    plain_implicit: bool,
    quoted_implicit: bool,
    style: Style,
}

const NULL_TAG: &str = "tag:yaml.org,2002:null";
const STR_TAG: &str = "tag:yaml.org,2002:str";
const SYMBOL_TAG: &str = "!ruby/symbol";

/// Ruby `string =~ /^[^[:word:]][^"]*$/` (line anchors; `[:word:]` is
/// Alphabetic + Mark + Decimal_Number + Connector_Punctuation in Onigmo).
static NON_WORD_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?m)^[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}][^"]*$"#).expect("valid regex")
});

/// Ruby `o =~ /\n(?!\Z)/`: a newline other than one ending the string (or
/// the first of a final `"\n\n"`, since `\Z` may sit before a final `\n`).
fn has_inner_newline(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'\n' && !(i + 1 == b.len() || (i + 2 == b.len() && b[i + 1] == b'\n')))
}

/// Psych `YAMLTree#visit_String` for a plain `::String` (UTF-8, no ivars).
fn string_event(s: &str) -> ScalarEvent<'_> {
    let mut event = ScalarEvent {
        value: s.into(),
        tag: None,
        plain_implicit: true,
        quoted_implicit: true,
        style: Style::Plain,
    };
    if has_inner_newline(s) {
        event.style = Style::Literal;
    } else if s == "<<" {
        // Would otherwise read back as a merge key.
        event.style = Style::SingleQuoted;
        event.tag = Some(STR_TAG);
        event.plain_implicit = false;
        event.quoted_implicit = false;
    } else if s == "y" || s == "n" || NON_WORD_START.is_match(s) {
        // "y"/"n" are YAML 1.1 booleans to other readers.
        event.style = Style::DoubleQuoted;
    } else if reads_back_as_non_string(s) || starts_octal_then_8_or_9(s) {
        event.style = Style::SingleQuoted;
    }
    event
}

/// `not String === @ss.tokenize(o)`. A string on which `tokenize` raises
/// (e.g. `"0b_"`) makes Ruby's `to_yaml` itself raise; quoting it is the
/// closest safe answer.
fn reads_back_as_non_string(s: &str) -> bool {
    !matches!(tokenize(s), Ok(Token::Str))
}

/// `/\A0[0-7]*[89]/`: Psych quotes e.g. `"089"` so YAML 1.1 readers that
/// treat leading zeros as octal don't choke on it.
fn starts_octal_then_8_or_9(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('0') else {
        return false;
    };
    let rest = rest.trim_start_matches(|c| ('0'..='7').contains(&c));
    rest.starts_with(['8', '9'])
}

/// The event `YAMLTree` emits for a non-collection value.
fn scalar_event(value: &Value) -> ScalarEvent<'_> {
    let plain = |text: String| ScalarEvent {
        value: text.into(),
        tag: None,
        plain_implicit: true,
        quoted_implicit: false,
        style: Style::Any,
    };
    match value {
        Value::Null => ScalarEvent {
            value: "".into(),
            tag: Some(NULL_TAG),
            plain_implicit: true,
            quoted_implicit: false,
            style: Style::Any,
        },
        Value::Bool(b) => plain(b.to_string()),
        Value::Int(i) => plain(i.to_string()),
        Value::Float(f) if f.is_nan() => plain(".nan".into()),
        Value::Float(f) if f.is_infinite() => plain(if *f > 0.0 { ".inf" } else { "-.inf" }.into()),
        Value::Float(f) => plain(float_to_s(*f)),
        Value::Str(s) => string_event(s),
        Value::Sym(s) if s.is_empty() => ScalarEvent {
            value: "".into(),
            tag: Some(SYMBOL_TAG),
            plain_implicit: false,
            quoted_implicit: false,
            style: Style::Any,
        },
        Value::Sym(s) => plain(format!(":{s}")),
        // Collections never reach here; an empty string keeps this total.
        Value::Seq(_) | Value::Map(_) => plain(String::new()),
    }
}

/// libyaml's `IS_PRINTABLE` on a whole character.
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | '\x20'..='\x7E' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        && c != '\u{FEFF}'
}

/// libyaml's `IS_BREAK`: CR, LF, NEL, LS, PS.
fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `IS_BLANKZ`: space, tab, a break, or NUL (the C string's terminator).
fn is_blankz(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => c == ' ' || c == '\t' || c == '\0' || is_break(c),
    }
}

/// `yaml_emitter_analyze_scalar`'s verdict.
#[derive(Debug, Clone, Copy)]
struct Analysis {
    multiline: bool,
    flow_plain_allowed: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn analyze_scalar(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            flow_plain_allowed: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = false;
    let mut flow_indicators = false;
    let mut line_breaks = false;
    let mut special_characters = false;
    let mut leading_space = false;
    let mut leading_break = false;
    let mut trailing_space = false;
    let mut trailing_break = false;
    let mut break_space = false;
    let mut space_break = false;
    let mut previous_space = false;
    let mut previous_break = false;

    if value.starts_with("---") || value.starts_with("...") {
        block_indicators = true;
        flow_indicators = true;
    }

    let chars: Vec<char> = value.chars().collect();
    let mut preceded_by_whitespace = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = is_blankz(chars.get(i + 1).copied());
        let first = i == 0;
        let last = i + 1 == chars.len();
        if first {
            if matches!(
                c,
                '#' | ','
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '&'
                    | '*'
                    | '!'
                    | '|'
                    | '>'
                    | '\''
                    | '"'
                    | '%'
                    | '@'
                    | '`'
            ) {
                flow_indicators = true;
                block_indicators = true;
            }
            if c == '?' || c == ':' {
                flow_indicators = true;
                if followed_by_whitespace {
                    block_indicators = true;
                }
            }
            if c == '-' && followed_by_whitespace {
                flow_indicators = true;
                block_indicators = true;
            }
        } else {
            if matches!(c, ',' | '?' | '[' | ']' | '{' | '}') {
                flow_indicators = true;
            }
            if c == ':' {
                flow_indicators = true;
                if followed_by_whitespace {
                    block_indicators = true;
                }
            }
            if c == '#' && preceded_by_whitespace {
                flow_indicators = true;
                block_indicators = true;
            }
        }

        // Psych turns on libyaml's unicode mode, so only IS_PRINTABLE counts.
        if !is_printable(c) {
            special_characters = true;
        }
        if is_break(c) {
            line_breaks = true;
        }

        if c == ' ' {
            leading_space |= first;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            leading_break |= first;
            trailing_break |= last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(Some(c));
    }

    let mut a = Analysis {
        multiline: line_breaks,
        flow_plain_allowed: true,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if flow_indicators {
        a.flow_plain_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// Tag handle and suffix after `yaml_emitter_analyze_tag` against the
/// default directives (`!` → `!`, `!!` → `tag:yaml.org,2002:`).
#[derive(Debug, Clone, Copy)]
struct TagData {
    handle: Option<&'static str>,
    suffix: Option<&'static str>,
}

impl TagData {
    const NONE: TagData = TagData {
        handle: None,
        suffix: None,
    };

    fn analyze(tag: &'static str) -> TagData {
        for (handle, prefix) in [("!", "!"), ("!!", "tag:yaml.org,2002:")] {
            if prefix.len() < tag.len() && tag.starts_with(prefix) {
                return TagData {
                    handle: Some(handle),
                    suffix: Some(&tag[prefix.len()..]),
                };
            }
        }
        TagData {
            handle: None,
            suffix: Some(tag),
        }
    }

    fn is_none(&self) -> bool {
        self.handle.is_none() && self.suffix.is_none()
    }

    fn len(&self) -> usize {
        self.handle.map_or(0, str::len) + self.suffix.map_or(0, str::len)
    }
}

/// A scalar event after `yaml_emitter_analyze_event`.
struct Prepared<'a> {
    event: ScalarEvent<'a>,
    analysis: Analysis,
    tag: TagData,
}

impl<'a> Prepared<'a> {
    fn new(event: ScalarEvent<'a>) -> Self {
        let analysis = analyze_scalar(&event.value);
        // The tag is only looked at when neither implicit flag allows
        // leaving it out.
        let tag = match event.tag {
            Some(tag) if !event.plain_implicit && !event.quoted_implicit => TagData::analyze(tag),
            _ => TagData::NONE,
        };
        Prepared {
            event,
            analysis,
            tag,
        }
    }
}

/// The emitter state of `yaml_emitter_t` that our events can touch.
struct Emitter {
    out: String,
    /// In characters, as libyaml counts them.
    column: usize,
    whitespace: bool,
    indention: bool,
    indent: i32,
    indents: Vec<i32>,
    flow_level: u32,
    /// 1 after an implicit document end, 2 after a `|+` block scalar, which
    /// forces a closing `...` at stream end.
    open_ended: u8,
    mapping_context: bool,
    simple_key_context: bool,
}

const BEST_INDENT: i32 = 2;

impl Emitter {
    fn new() -> Self {
        Emitter {
            out: String::new(),
            column: 0,
            whitespace: true,
            indention: true,
            indent: -1,
            indents: Vec::new(),
            flow_level: 0,
            open_ended: 0,
            mapping_context: false,
            simple_key_context: false,
        }
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    /// `WRITE_BREAK`: `\n` goes out as a line break, other breaks verbatim.
    fn write_break(&mut self, c: char) {
        self.out.push(c);
        self.column = 0;
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { BEST_INDENT } else { 0 };
        } else if !indentless {
            self.indent += BEST_INDENT;
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0) as usize;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in indicator.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn write_tag_handle(&mut self, handle: &str) {
        if !self.whitespace {
            self.put(' ');
        }
        for c in handle.chars() {
            self.put(c);
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_tag_content(&mut self, content: &str) {
        for c in content.chars() {
            if c.is_ascii_alphanumeric() || "-_;/?:@&=+$,.~*'()[]".contains(c) {
                self.put(c);
            } else {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    self.put('%');
                    for nibble in [byte >> 4, byte & 0x0F] {
                        self.put(
                            char::from_digit(u32::from(nibble), 16)
                                .map_or('0', |d| d.to_ascii_uppercase()),
                        );
                    }
                }
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    // ---- document -------------------------------------------------------

    fn emit_document(&mut self, root: &Value) {
        // DOCUMENT-START, explicit (Psych passes implicit = false).
        self.write_indent();
        self.write_indicator("---", true, false, false);
        self.open_ended = 0;
        self.emit_node(root, false, false);
        // DOCUMENT-END, implicit.
        self.write_indent();
        if self.open_ended == 0 {
            self.open_ended = 1;
        }
        // STREAM-END.
        if self.open_ended == 2 {
            self.write_indicator("...", true, false, false);
            self.open_ended = 0;
            self.write_indent();
        }
    }

    // ---- nodes ----------------------------------------------------------

    fn emit_node(&mut self, value: &Value, mapping: bool, simple_key: bool) {
        self.mapping_context = mapping;
        self.simple_key_context = simple_key;
        match value {
            Value::Seq(items) => {
                if self.flow_level > 0 || items.is_empty() {
                    self.emit_flow_sequence(items);
                } else {
                    self.emit_block_sequence(items);
                }
            }
            Value::Map(map) => {
                if self.flow_level > 0 || map.is_empty() {
                    self.emit_flow_mapping(map);
                } else {
                    self.emit_block_mapping(map);
                }
            }
            scalar => self.emit_scalar(Prepared::new(scalar_event(scalar))),
        }
    }

    fn emit_key(&mut self, key: Prepared<'_>, simple_key: bool) {
        self.mapping_context = true;
        self.simple_key_context = simple_key;
        self.emit_scalar(key);
    }

    /// `yaml_emitter_check_simple_key` for a scalar key.
    fn check_simple_key(key: &Prepared<'_>) -> bool {
        !key.analysis.multiline && key.tag.len() + key.event.value.len() <= 128
    }

    fn emit_flow_sequence(&mut self, items: &[Value]) {
        self.write_indicator("[", true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            self.emit_node(item, false, false);
        }
        self.flow_level -= 1;
        self.pop_indent();
        self.write_indicator("]", false, false, false);
    }

    fn emit_flow_mapping(&mut self, map: &Map) {
        self.write_indicator("{", true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        for (i, (key, value)) in map.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            let prepared = Prepared::new(string_event(key));
            if Self::check_simple_key(&prepared) {
                self.emit_key(prepared, true);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, false);
                self.emit_key(prepared, false);
                self.write_indicator(":", true, false, false);
            }
            self.emit_node(value, true, false);
        }
        self.flow_level -= 1;
        self.pop_indent();
        self.write_indicator("}", false, false, false);
    }

    fn emit_block_sequence(&mut self, items: &[Value]) {
        // A sequence that is a mapping value on the key's line is not
        // indented ("key:\n- a").
        let indentless = self.mapping_context && !self.indention;
        self.increase_indent(false, indentless);
        for item in items {
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.emit_node(item, false, false);
        }
        self.pop_indent();
    }

    fn emit_block_mapping(&mut self, map: &Map) {
        self.increase_indent(false, false);
        for (key, value) in map.iter() {
            self.write_indent();
            let prepared = Prepared::new(string_event(key));
            if Self::check_simple_key(&prepared) {
                self.emit_key(prepared, true);
                self.write_indicator(":", false, false, false);
            } else {
                // Multi-line or over-long keys get the explicit `? key` form.
                self.write_indicator("?", true, false, true);
                self.emit_key(prepared, false);
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            self.emit_node(value, true, false);
        }
        self.pop_indent();
    }

    // ---- scalars --------------------------------------------------------

    fn emit_scalar(&mut self, mut scalar: Prepared<'_>) {
        let style = self.select_scalar_style(&mut scalar);
        self.process_tag(scalar.tag);
        self.increase_indent(true, false);
        let value = &scalar.event.value;
        match style {
            Style::Plain | Style::Any => self.write_plain(value),
            Style::SingleQuoted => self.write_single_quoted(value),
            Style::DoubleQuoted => self.write_double_quoted(value),
            Style::Literal => self.write_literal(value),
        }
        self.pop_indent();
    }

    /// `yaml_emitter_select_scalar_style`.
    fn select_scalar_style(&self, scalar: &mut Prepared<'_>) -> Style {
        let a = scalar.analysis;
        let ev = &scalar.event;
        let no_tag = scalar.tag.is_none();
        let flow = self.flow_level > 0;
        let mut style = if ev.style == Style::Any {
            Style::Plain
        } else {
            ev.style
        };
        if self.simple_key_context && a.multiline {
            style = Style::DoubleQuoted;
        }
        if style == Style::Plain {
            if (flow && !a.flow_plain_allowed) || (!flow && !a.block_plain_allowed) {
                style = Style::SingleQuoted;
            }
            if ev.value.is_empty() && (flow || self.simple_key_context) {
                style = Style::SingleQuoted;
            }
            if no_tag && !ev.plain_implicit {
                style = Style::SingleQuoted;
            }
        }
        if style == Style::SingleQuoted && !a.single_quoted_allowed {
            style = Style::DoubleQuoted;
        }
        if style == Style::Literal && (!a.block_allowed || flow || self.simple_key_context) {
            style = Style::DoubleQuoted;
        }
        // A quoted scalar that may not stand untagged gets the `!` tag.
        if no_tag && !ev.quoted_implicit && style != Style::Plain {
            scalar.tag = TagData {
                handle: Some("!"),
                suffix: None,
            };
        }
        style
    }

    fn process_tag(&mut self, tag: TagData) {
        match (tag.handle, tag.suffix) {
            (None, None) => {}
            (Some(handle), suffix) => {
                self.write_tag_handle(handle);
                if let Some(suffix) = suffix {
                    self.write_tag_content(suffix);
                }
            }
            (None, Some(suffix)) => {
                self.write_indicator("!<", true, false, false);
                self.write_tag_content(suffix);
                self.write_indicator(">", false, false, false);
            }
        }
    }

    fn write_plain(&mut self, value: &str) {
        // No space after `key:` / `-` for an empty (nil) value.
        if !self.whitespace && (!value.is_empty() || self.flow_level > 0) {
            self.put(' ');
        }
        let mut breaks = false;
        for c in value.chars() {
            if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single_quoted(&mut self, value: &str) {
        self.write_indicator("'", true, false, false);
        let mut breaks = false;
        for c in value.chars() {
            if is_break(c) {
                // A lone line break is folded away on reading, so `\n` is
                // written as a blank line.
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
        if breaks {
            self.write_indent();
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, value: &str) {
        self.write_indicator("\"", true, false, false);
        for c in value.chars() {
            if !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                let short = match c {
                    '\0' => Some('0'),
                    '\x07' => Some('a'),
                    '\x08' => Some('b'),
                    '\t' => Some('t'),
                    '\n' => Some('n'),
                    '\x0B' => Some('v'),
                    '\x0C' => Some('f'),
                    '\r' => Some('r'),
                    '\x1B' => Some('e'),
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '\u{85}' => Some('N'),
                    '\u{A0}' => Some('_'),
                    '\u{2028}' => Some('L'),
                    '\u{2029}' => Some('P'),
                    _ => None,
                };
                match short {
                    Some(s) => self.put(s),
                    None => {
                        let code = u32::from(c);
                        let (prefix, width) = match code {
                            0..=0xFF => ('x', 2),
                            0x100..=0xFFFF => ('u', 4),
                            _ => ('U', 8),
                        };
                        self.put(prefix);
                        for k in (0..width).rev() {
                            let digit = (code >> (4 * k)) & 0xF;
                            self.put(
                                char::from_digit(digit, 16).map_or('0', |d| d.to_ascii_uppercase()),
                            );
                        }
                    }
                }
            } else {
                self.put(c);
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    /// `yaml_emitter_write_block_scalar_hints`: the indentation indicator
    /// when the text starts with a space or break, then the chomping
    /// indicator (`-` no final break, none for one, `+` for several).
    fn write_block_scalar_hints(&mut self, value: &str) {
        let mut chars = value.chars();
        if chars.next().is_some_and(|c| c == ' ' || is_break(c)) {
            self.write_indicator("2", false, false, false);
        }
        self.open_ended = 0;
        let mut rev = value.chars().rev();
        let chomp = match (rev.next(), rev.next()) {
            (None, _) => Some("-"),
            (Some(last), _) if !is_break(last) => Some("-"),
            (Some(_), None) => Some("+"),
            (Some(_), Some(before)) if is_break(before) => Some("+"),
            _ => None,
        };
        if chomp == Some("+") {
            self.open_ended = 2;
        }
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
    }

    fn write_literal(&mut self, value: &str) {
        self.write_indicator("|", true, false, false);
        self.write_block_scalar_hints(value);
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in value.chars() {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

/// Ruby `value.to_yaml(line_width: -1)`: one document starting with `---`.
pub fn dump(value: &Value) -> String {
    let mut emitter = Emitter::new();
    emitter.emit_document(value);
    emitter.out
}
