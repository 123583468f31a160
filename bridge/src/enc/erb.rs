//! The ERB subset the bridge renders itself.
//!
//! Foreman renders every parameter value containing `<%` with safemode ERB.
//! Arbitrary Ruby cannot be reproduced, so only output tags whose expression
//! is one of a few host attributes proven identical to Foreman's rendering are
//! handled here; anything else is `Unsupported` and the caller falls back to
//! Foreman's own API for that host.

use super::Value;

/// What a supported macro needs to know about the host.
pub trait ErbHost {
    fn name(&self) -> &str;
    fn shortname(&self) -> Option<String>;
    fn domain_name(&self) -> Option<String>;
    fn hostgroup_title(&self) -> Option<String>;
    /// `@host.params['x']` as Foreman renders it (itself ERB-rendered).
    fn param(&self, name: &str) -> Result<Option<Value>, Unsupported>;
}

/// A template the bridge cannot prove it renders like Foreman.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported ERB {construct}")]
pub struct Unsupported {
    /// A short, bounded label of what was found (used as a metric label).
    pub construct: &'static str,
}

impl Unsupported {
    pub fn new(construct: &'static str) -> Self {
        Unsupported { construct }
    }
}

/// Ruby `String#contains_erb?`: longer than 4 characters and has `<%`.
pub fn contains_erb(s: &str) -> bool {
    s.chars().count() > 4 && s.contains("<%")
}

/// Whether any string inside `value` would be rendered by Foreman.
pub fn value_contains_erb(value: &Value) -> bool {
    match value {
        Value::Str(s) => contains_erb(s),
        Value::Seq(items) => items.iter().any(value_contains_erb),
        Value::Map(map) => map.iter().any(|(_, v)| value_contains_erb(v)),
        _ => false,
    }
}

/// `ParameterSafeRender#render`: renders strings, recursing into arrays and
/// hash values.
pub fn render_value(value: Value, host: &dyn ErbHost) -> Result<Value, Unsupported> {
    Ok(match value {
        Value::Str(s) if contains_erb(&s) => Value::Str(render_str(&s, host)?),
        Value::Seq(items) => Value::Seq(
            items
                .into_iter()
                .map(|v| render_value(v, host))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(map) => {
            let mut out = super::Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k, render_value(v, host)?);
            }
            Value::Map(out)
        }
        other => other,
    })
}

/// Renders one template made of text and `<%= expr %>` tags.
pub fn render_str(template: &str, host: &dyn ErbHost) -> Result<String, Unsupported> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("<%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start + 2..];
        // `<%%` is a literal, `<%#` a comment, `<%-`/`<%` code: all need Ruby.
        let Some(expr_and_rest) = tag.strip_prefix('=') else {
            return Err(Unsupported::new("non-output tag"));
        };
        let Some(end) = expr_and_rest.find("%>") else {
            return Err(Unsupported::new("unterminated tag"));
        };
        let mut expr = &expr_and_rest[..end];
        let mut after = &expr_and_rest[end + 2..];
        // Foreman renders with trim_mode '-': `-%>` eats one following newline.
        if let Some(trimmed) = expr.strip_suffix('-') {
            expr = trimmed;
            if let Some(stripped) = after.strip_prefix('\n') {
                after = stripped;
            }
        }
        out.push_str(&eval(expr.trim(), host)?);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Evaluates one supported expression to Ruby's `to_s` of its result.
fn eval(expr: &str, host: &dyn ErbHost) -> Result<String, Unsupported> {
    match expr {
        "@host.name" => return Ok(host.name().to_owned()),
        "@host.shortname" => return Ok(host.shortname().unwrap_or_default()),
        "@host.domain" => return Ok(host.domain_name().unwrap_or_default()),
        "@host.hostgroup" => return Ok(host.hostgroup_title().unwrap_or_default()),
        _ => {}
    }
    let Some(name) = param_name(expr) else {
        return Err(Unsupported::new("expression"));
    };
    match host.param(name)? {
        None => Ok(String::new()),
        Some(value) => value
            .to_ruby_s()
            .ok_or(Unsupported::new("non-scalar parameter in @host.params")),
    }
}

/// `@host.params['x']` or `@host.params["x"]` → `x` (no escapes, no interpolation).
fn param_name(expr: &str) -> Option<&str> {
    let inner = expr.strip_prefix("@host.params[")?.strip_suffix(']')?;
    let quoted = inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
    let plain = !quoted.contains(['\'', '"', '\\', '#']);
    plain.then_some(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl ErbHost for Fake {
        fn name(&self) -> &str {
            "web01.example.com"
        }
        fn shortname(&self) -> Option<String> {
            Some("web01".into())
        }
        fn domain_name(&self) -> Option<String> {
            Some("example.com".into())
        }
        fn hostgroup_title(&self) -> Option<String> {
            None
        }
        fn param(&self, name: &str) -> Result<Option<Value>, Unsupported> {
            Ok(match name {
                "site" => Some(Value::str("nyc")),
                "n" => Some(Value::Int(3)),
                "list" => Some(Value::Seq(vec![])),
                _ => None,
            })
        }
    }

    fn check(template: &str, expected: Result<&str, &'static str>) {
        let got = render_str(template, &Fake);
        match expected {
            Ok(text) => assert_eq!(got, Ok(text.to_owned()), "{template}"),
            Err(construct) => assert_eq!(got, Err(Unsupported::new(construct)), "{template}"),
        }
    }

    #[test]
    fn supported_macros_render_like_foreman() {
        check(
            "Welcome to <%= @host.name %>",
            Ok("Welcome to web01.example.com"),
        );
        check("<%= @host.shortname %>-backup", Ok("web01-backup"));
        check("search <%= @host.domain %>", Ok("search example.com"));
        check("hg=<%= @host.hostgroup %>", Ok("hg="));
        check(
            "<%= @host.params['site'] %> / <%= @host.name %>",
            Ok("nyc / web01.example.com"),
        );
        check("<%= @host.params[\"n\"] %>", Ok("3"));
        check("x<%= @host.params['missing'] %>y", Ok("xy"));
        check("<%=@host.name-%>\nnext", Ok("web01.example.comnext"));
    }

    #[test]
    fn anything_else_is_unsupported() {
        check("<% if true %>x<% end %>", Err("non-output tag"));
        check("<%# comment %>", Err("non-output tag"));
        check("<%= @host.ip %>", Err("expression"));
        check("<%= @host.name.upcase %>", Err("expression"));
        check(
            "<%= @host.params['list'] %>",
            Err("non-scalar parameter in @host.params"),
        );
        check("<%= @host.name", Err("unterminated tag"));
        check("<%= @host.params['a#{1}'] %>", Err("expression"));
    }

    #[test]
    fn contains_erb_follows_ruby() {
        assert!(!contains_erb("<%%>"));
        assert!(contains_erb("<%= x"));
        assert!(!contains_erb("plain text"));
    }
}
