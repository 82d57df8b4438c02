//! `{name}` placeholders in URLs, queries and label values.
//!
//! A placeholder is `{`, a lowercase identifier (`[a-z_][a-z0-9_]*`), `}`: `{instance}`, `{port}`,
//! `{version}`, `{service}`, `{environment}`. Any other use of braces is plain text, so PromQL label
//! matchers such as `{code=~"5.."}` pass through untouched. Values are inserted as they are (Stagecoach's
//! service names and versions are validated to hold no path, query or shell text).

use std::collections::BTreeMap;

/// The placeholders a configuration may use.
pub const PLACEHOLDERS: [&str; 5] = ["instance", "port", "version", "service", "environment"];

/// Values used to check, at validation time, that a text still makes sense once its placeholders are
/// filled in (e.g. that a URL parses).
pub(crate) fn sample_vars() -> BTreeMap<String, String> {
    [
        ("instance", "1"),
        ("port", "8080"),
        ("version", "1.0.0"),
        ("service", "web"),
        ("environment", "production"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The placeholders of `text`, as (start, end, name) byte spans, `end` past the closing brace.
fn placeholders(text: &str) -> Vec<(usize, usize, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && (bytes[j].is_ascii_lowercase() || bytes[j] == b'_' || bytes[j].is_ascii_digit()) {
                j += 1;
            }
            let first_ok = start < j && !bytes[start].is_ascii_digit();
            if first_ok && j < bytes.len() && bytes[j] == b'}' {
                // The span is ASCII only, so these are character boundaries.
                out.push((i, j + 1, &text[start..j]));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Checks that every placeholder of `text` is a known one. `what` names the setting in messages
/// (e.g. `services.web.health.production.url`).
pub(crate) fn check_placeholders(text: &str, what: &str) -> Result<(), String> {
    for (_, _, name) in placeholders(text) {
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "{what}: unknown placeholder {{{name}}}; the known ones are {{instance}}, {{port}}, {{version}}, \
                 {{service}} and {{environment}}"
            ));
        }
    }
    Ok(())
}

/// Replaces every `{name}` placeholder of `text` by its value in `vars`; a placeholder without a value is an
/// error naming it.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end, name) in placeholders(text) {
        let value = vars
            .get(name)
            .ok_or_else(|| format!("no value for placeholder {{{name}}} in `{text}`"))?;
        out.push_str(&text[last..start]);
        out.push_str(value);
        last = end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("port", "9000"), ("version", "2.0.0")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn substitutes_known_placeholders_and_leaves_other_braces() {
        assert_eq!(
            substitute("http://127.0.0.1:{port}/health?v={version}", &vars()).unwrap(),
            "http://127.0.0.1:9000/health?v=2.0.0"
        );
        let promql = r#"sum(rate(x{code=~"5..",version="{version}"}[1m])) {} {1a} {Port} {"#;
        assert_eq!(
            substitute(promql, &vars()).unwrap(),
            r#"sum(rate(x{code=~"5..",version="2.0.0"}[1m])) {} {1a} {Port} {"#
        );
        assert_eq!(substitute("{{port}}", &vars()).unwrap(), "{9000}");
        assert_eq!(substitute("héllo {port}é", &vars()).unwrap(), "héllo 9000é");
    }

    #[test]
    fn a_missing_value_is_an_error() {
        assert_eq!(
            substitute("http://{instance}/", &vars()).unwrap_err(),
            "no value for placeholder {instance} in `http://{instance}/`"
        );
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        assert!(check_placeholders("http://{instance}:{port}/{service}/{environment}/{version}", "x").is_ok());
        assert!(check_placeholders(r#"up{job="a"}"#, "x").is_ok());
        assert_eq!(
            check_placeholders("http://{host}/", "services.web.health.production.url").unwrap_err(),
            "services.web.health.production.url: unknown placeholder {host}; the known ones are {instance}, \
             {port}, {version}, {service} and {environment}"
        );
    }
}
