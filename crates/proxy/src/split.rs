//! The traffic split (weights per version and the backends serving each version), its validation,
//! and the deterministic router that turns it into a backend per request.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The longest version name accepted, in bytes.
const MAX_VERSION_LEN: usize = 128;

/// One instance of a service: the version it runs and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub version: String,
    /// Base URL of the instance, `http://HOST:PORT` (a trailing `/` is allowed; no path, query or credentials).
    pub url: String,
}

impl Backend {
    pub fn new(version: impl Into<String>, url: impl Into<String>) -> Backend {
        Backend {
            version: version.into(),
            url: url.into(),
        }
    }
}

/// How traffic is shared between versions.
///
/// `weights` gives each version its share of requests in percent; the shares add up to 100. Every
/// version with a weight above 0 needs at least one backend; backends of other versions are allowed
/// and get no traffic (e.g. the old colour after a blue-green switch).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Split {
    pub weights: BTreeMap<String, u32>,
    pub backends: Vec<Backend>,
}

impl Split {
    /// All traffic to `version`, served by `backends`.
    pub fn all_to(version: impl Into<String>, backends: Vec<Backend>) -> Split {
        Split {
            weights: BTreeMap::from([(version.into(), 100)]),
            backends,
        }
    }

    /// Checks that the weights add up to 100, that every weighted version has a backend, and that
    /// versions and backend URLs are usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.weights.is_empty() {
            return Err("the split has no weights; give each version a share in percent, adding up to 100".into());
        }
        for version in self.weights.keys() {
            check_version(version)?;
        }
        let sum: u64 = self.weights.values().map(|&w| u64::from(w)).sum();
        if sum != 100 {
            return Err(format!(
                "the weights add up to {sum}, not 100 ({}); give each version a share in percent, adding up to 100",
                describe(&self.weights)
            ));
        }
        for (i, backend) in self.backends.iter().enumerate() {
            check_version(&backend.version).map_err(|e| format!("backend {i} ({}): {e}", backend.url))?;
            base_url(&backend.url).map_err(|e| format!("backend {i} of version {}: {e}", backend.version))?;
        }
        for (version, &weight) in &self.weights {
            if weight > 0 && !self.backends.iter().any(|b| &b.version == version) {
                return Err(format!(
                    "version {version} has weight {weight} but no backend; add a backend for it or set its weight to 0"
                ));
            }
        }
        Ok(())
    }
}

fn describe(weights: &BTreeMap<String, u32>) -> String {
    weights
        .iter()
        .map(|(v, w)| format!("{v}: {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("a version is empty; give a name such as 1.2.0".into());
    }
    if version.len() > MAX_VERSION_LEN {
        return Err(format!("version `{version}` is longer than {MAX_VERSION_LEN} bytes"));
    }
    // The version goes into a response header and metric labels: printable ASCII without spaces.
    if !version.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "version {version:?} has characters other than printable ASCII (no spaces); give a name such as 1.2.0"
        ));
    }
    Ok(())
}

/// The base URL requests are appended to (no trailing `/`), or why `url` cannot be a backend.
pub(crate) fn base_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("URL `{url}` is not valid ({e}); give e.g. http://127.0.0.1:8080"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "URL `{url}` does not start with http://; the proxy talks plain HTTP to its backends"
        ));
    }
    if parsed.host().is_none() || parsed.port_or_known_default().is_none() {
        return Err(format!("URL `{url}` has no host; give e.g. http://127.0.0.1:8080"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("URL `{url}` has credentials; give only http://HOST:PORT"));
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "URL `{url}` has a path, query or fragment; give only http://HOST:PORT"
        ));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub version: Arc<str>,
    /// Base URL without a trailing `/`.
    pub base: Arc<str>,
}

/// One weighted version in the smooth weighted round-robin.
#[derive(Debug)]
struct Slot {
    version: Arc<str>,
    weight: i64,
    current: i64,
    backends: Vec<Arc<str>>,
    next_backend: usize,
}

/// Picks the route of each request: smooth weighted round-robin across versions (nginx's algorithm),
/// round-robin across the backends of the chosen version. With weights adding up to 100, every 100
/// consecutive picks hold exactly `weight` picks of each version.
#[derive(Debug)]
pub(crate) struct Router {
    split: Split,
    slots: Vec<Slot>,
}

impl Router {
    pub fn new(split: Split) -> Result<Router, String> {
        split.validate()?;
        let slots = split
            .weights
            .iter()
            .filter(|(_, &weight)| weight > 0)
            .map(|(version, &weight)| Slot {
                version: Arc::from(version.as_str()),
                weight: i64::from(weight),
                current: 0,
                backends: split
                    .backends
                    .iter()
                    .filter(|b| &b.version == version)
                    // Validated above.
                    .filter_map(|b| base_url(&b.url).ok())
                    .map(Arc::from)
                    .collect(),
                next_backend: 0,
            })
            .collect();
        Ok(Router { split, slots })
    }

    /// A router for `split` that carries on from `self` where nothing changed: the version schedule
    /// if the weights are the same, and each version's backend rotation if its backends are the same.
    pub fn replace(&self, split: Split) -> Result<Router, String> {
        let mut next = Router::new(split)?;
        let same_weights = next.split.weights == self.split.weights;
        for slot in &mut next.slots {
            if let Some(old) = self.slots.iter().find(|s| s.version == slot.version) {
                if same_weights {
                    slot.current = old.current;
                }
                if old.backends == slot.backends {
                    slot.next_backend = old.next_backend;
                }
            }
        }
        Ok(next)
    }

    pub fn split(&self) -> &Split {
        &self.split
    }

    pub fn pick(&mut self) -> Route {
        let total: i64 = self.slots.iter().map(|s| s.weight).sum();
        let mut best = 0;
        for i in 0..self.slots.len() {
            self.slots[i].current += self.slots[i].weight;
            if self.slots[i].current > self.slots[best].current {
                best = i;
            }
        }
        let slot = &mut self.slots[best];
        slot.current -= total;
        let base = slot.backends[slot.next_backend % slot.backends.len()].clone();
        slot.next_backend = slot.next_backend.wrapping_add(1);
        Route {
            version: slot.version.clone(),
            base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[(&str, u32)], backends: &[(&str, &str)]) -> Split {
        Split {
            weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
            backends: backends.iter().map(|(v, u)| Backend::new(*v, *u)).collect(),
        }
    }

    fn picks(router: &mut Router, n: usize) -> Vec<String> {
        (0..n).map(|_| router.pick().version.to_string()).collect()
    }

    #[test]
    fn every_hundred_consecutive_picks_are_exact() {
        let cases: &[&[(&str, u32)]] = &[
            &[("a", 90), ("b", 10)],
            &[("a", 10), ("b", 90)],
            &[("a", 99), ("b", 1)],
            &[("a", 50), ("b", 50)],
            &[("a", 33), ("b", 33), ("c", 34)],
            &[("a", 5), ("b", 25), ("c", 70)],
            &[("a", 100), ("b", 0)],
        ];
        for weights in cases {
            let backends: Vec<(&str, &str)> = weights.iter().map(|(v, _)| (*v, "http://127.0.0.1:1")).collect();
            let mut router = Router::new(split(weights, &backends)).unwrap();
            let seq = picks(&mut router, 1000);
            for start in 0..=900 {
                for (version, weight) in weights.iter() {
                    let n = seq[start..start + 100].iter().filter(|v| v == version).count();
                    assert_eq!(
                        n, *weight as usize,
                        "{weights:?}, window from {start}, version {version}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_small_share_is_spread_out() {
        let mut router = Router::new(split(
            &[("a", 90), ("b", 10)],
            &[("a", "http://h:1"), ("b", "http://h:2")],
        ))
        .unwrap();
        let seq = picks(&mut router, 100);
        let positions: Vec<usize> = (0..100).filter(|&i| seq[i] == "b").collect();
        // Evenly spaced: one in every ten.
        let gaps: Vec<usize> = positions.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g == 10), "{positions:?}");
    }

    #[test]
    fn backends_of_a_version_take_turns() {
        let mut router = Router::new(split(
            &[("a", 100)],
            &[("a", "http://h:1/"), ("b", "http://h:9"), ("a", "http://h:2")],
        ))
        .unwrap();
        let bases: Vec<String> = (0..5).map(|_| router.pick().base.to_string()).collect();
        assert_eq!(
            bases,
            ["http://h:1", "http://h:2", "http://h:1", "http://h:2", "http://h:1"]
        );
    }

    #[test]
    fn replacing_keeps_the_schedule_when_the_weights_stay() {
        let s = split(&[("a", 90), ("b", 10)], &[("a", "http://h:1"), ("b", "http://h:2")]);
        let mut whole = Router::new(s.clone()).unwrap();
        let expected = picks(&mut whole, 100);
        let mut router = Router::new(s.clone()).unwrap();
        let mut seq = picks(&mut router, 37);
        let mut router = router.replace(s).unwrap();
        seq.extend(picks(&mut router, 63));
        assert_eq!(seq, expected);
    }

    #[test]
    fn validation() {
        let ok = split(
            &[("1.0.0", 90), ("2.0.0", 10)],
            &[("1.0.0", "http://127.0.0.1:1"), ("2.0.0", "http://127.0.0.1:2")],
        );
        assert_eq!(ok.validate(), Ok(()));
        let zero_without_backend = split(&[("1.0.0", 100), ("2.0.0", 0)], &[("1.0.0", "http://127.0.0.1:1")]);
        assert_eq!(zero_without_backend.validate(), Ok(()));

        let err = |s: Split| s.validate().unwrap_err();
        assert!(err(split(&[], &[])).contains("no weights"));
        let e = err(split(
            &[("1.0.0", 80), ("2.0.0", 10)],
            &[("1.0.0", "http://h:1"), ("2.0.0", "http://h:2")],
        ));
        assert!(e.contains("add up to 90"), "{e}");
        let e = err(split(
            &[("1.0.0", u32::MAX), ("2.0.0", 101)],
            &[("1.0.0", "http://h:1")],
        ));
        assert!(e.contains("not 100"), "{e}");
        let e = err(split(&[("1.0.0", 50), ("3.0.0", 50)], &[("1.0.0", "http://h:1")]));
        assert!(e.contains("version 3.0.0 has weight 50 but no backend"), "{e}");
        for url in [
            "https://h:1",
            "h:1",
            "http://h:1/x",
            "http://h:1?q",
            "http://u:p@h:1",
            "file:///x",
        ] {
            let e = err(split(&[("1.0.0", 100)], &[("1.0.0", url)]));
            assert!(e.contains("backend 0 of version 1.0.0"), "{url}: {e}");
        }
        for version in ["", "1 0", "1.0\n", "\u{e9}"] {
            assert!(
                split(&[(version, 100)], &[(version, "http://h:1")]).validate().is_err(),
                "{version:?}"
            );
        }
    }
}
