//! CVSS v3.x base scores: known vectors, every base vector against RustSec's own `cvss` crate,
//! and the vectors that are refused.

use std::str::FromStr;

use reports::cvss::{base_score, CvssError, Severity};

#[test]
fn known_vectors_score_as_published() {
    let known = [
        // The three from the brief.
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        // Reflected XSS, the specification's running example of a scope change.
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        // Local privilege escalation.
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        // Remote denial of service.
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.1),
        // Low privileges with a scope change: PR:L weighs 0.68 instead of 0.62.
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
        // No impact at all.
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        // CVSS 3.0 vectors use the same equations.
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        // Metric order does not matter; temporal and environmental metrics are ignored.
        (
            "CVSS:3.1/S:U/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H/E:P/RL:O/RC:C/CR:H/MAV:L",
            9.8,
        ),
    ];
    for (vector, expected) in known {
        assert_eq!(base_score(vector), Ok(expected), "{vector}");
    }
}

#[test]
fn every_base_vector_agrees_with_the_rustsec_cvss_crate() {
    let mut checked = 0;
    for av in ["N", "A", "L", "P"] {
        for ac in ["L", "H"] {
            for pr in ["N", "L", "H"] {
                for ui in ["N", "R"] {
                    for s in ["U", "C"] {
                        for c in ["H", "L", "N"] {
                            for i in ["H", "L", "N"] {
                                for a in ["H", "L", "N"] {
                                    let vector =
                                        format!("CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:{s}/C:{c}/I:{i}/A:{a}");
                                    let theirs = cvss::v3::Base::from_str(&vector).unwrap().score().value();
                                    assert_eq!(base_score(&vector), Ok(theirs), "{vector}");
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2592);
}

#[test]
fn severity_ratings() {
    let rate = |v: &str| Severity::of(base_score(v).unwrap());
    assert_eq!(rate("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), Severity::Critical);
    assert_eq!(rate("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"), Severity::High);
    assert_eq!(rate("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"), Severity::Medium);
    assert_eq!(rate("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"), Severity::Low);
    assert_eq!(rate("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"), Severity::None);
    assert_eq!(Severity::Critical.to_string(), "critical");
}

#[test]
fn vectors_that_cannot_be_scored() {
    let unsupported = [
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        "AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "",
    ];
    for vector in unsupported {
        assert!(
            matches!(base_score(vector), Err(CvssError::UnsupportedVersion(_))),
            "{vector}"
        );
    }
    assert_eq!(
        base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"),
        Err(CvssError::MissingMetric("A"))
    );
    assert_eq!(
        base_score("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
        Err(CvssError::InvalidMetric("AV:X".into()))
    );
    let invalid = [
        "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/Z:Q",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:X/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC/PR:N/UI:N/S:U/C:H/I:H/A:H",
    ];
    for vector in invalid {
        assert!(
            matches!(base_score(vector), Err(CvssError::InvalidMetric(_))),
            "{vector}"
        );
    }
}
