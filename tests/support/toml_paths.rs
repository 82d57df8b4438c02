//! TOML path helpers shared by the fuzz tests of `sim` and `workflow`
//! (included with `#[path]`): every key path of a document, and the value at
//! one, so a test can change exactly one value and expect the error to name it.

use toml::Value;

/// Every key path under `v`, e.g. `world.metrics[2].cpu`.
pub fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Table(map) => {
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{prefix}[{i}]");
                out.push(p.clone());
                paths(child, &p, out);
            }
        }
        _ => {}
    }
}

/// The steps of a path: `a.b[2]` is `a`, `b`, `[2]`.
pub fn steps(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(rest[..i].to_owned());
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                out.push(rest[..=end].to_owned());
                rest = &rest[end + 1..];
            }
        } else {
            out.push(rest.to_owned());
        }
    }
    out
}

/// The value at `path`, if there is one.
pub fn at_path<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in steps(path) {
        cur = match step.strip_prefix('[') {
            Some(index) => cur.get_mut(index.trim_end_matches(']').parse::<usize>().ok()?)?,
            None => cur.get_mut(step.as_str())?,
        };
    }
    Some(cur)
}
