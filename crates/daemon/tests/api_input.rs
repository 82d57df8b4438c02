//! Hostile request bodies against the real actix-web app, in process: the routes of
//! `daemon::api`, a coordinator over an in-memory journal and a world with no configured
//! commands (every action simulated).
//!
//! Properties: malformed JSON is 400 with a message; an unknown field or a wrong type is 400
//! naming the field; an invalid value is 422 naming the field; a body over 1 MiB is 413; the
//! limits on `changes`, free text, names and versions hold; nothing is ever a 5xx. Versions
//! that try path traversal or shell text are refused by the `Version` type, and any value that
//! does reach a hook reaches it as an environment value, never through a shell.
//!
//! `PROPTEST_CASES=10000 cargo test -p daemon --test api_input` runs more cases.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::test as web_test;
use actix_web::{web, App};
use daemon::api::{self, AppState, MAX_BODY, MAX_CHANGES, MAX_CHANGE_CHARS, MAX_REASON_CHARS};
use daemon::auth::{token_sha256, Principals};
use daemon::config::{Principal, PrincipalRole};
use daemon::ports::Adapters;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};
use workflow::types::{ServiceName, Version};
use workflow::Settings;

const TOKEN: &str = "fuzz-token";

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = None;
    config
}

fn state() -> AppState {
    let settings = Arc::new(Settings::builtin());
    let adapters = Adapters::new(BTreeMap::new());
    let coordinator = agents::start(
        settings.clone(),
        adapters.ports(),
        Box::new(journal::MemoryStore::new()),
    )
    .expect("a coordinator over an empty journal");
    let principals = Principals::new(vec![Principal {
        name: "alice".into(),
        roles: vec![PrincipalRole::Admin],
        token_sha256: token_sha256(TOKEN),
    }]);
    AppState {
        coordinator,
        principals: principals.into(),
        settings,
        accepted_services: None,
    }
}

/// Status and JSON answer of one request (a future). A macro, because the type of the test
/// service names `actix_http::Request`, which is not a dependency here.
macro_rules! send {
    ($app:expr, $path:expr, $body:expr) => {{
        let req = web_test::TestRequest::post()
            .uri($path)
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .insert_header(("Content-Type", "application/json"))
            .set_payload($body)
            .to_request();
        let app = $app;
        async move {
            let resp = web_test::call_service(app, req).await;
            let status = resp.status();
            let bytes = web_test::read_body(resp).await;
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, value)
        }
    }};
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or("")
}

/// Every error answer has the API's shape and a message.
fn check_shape(status: StatusCode, answer: &Value) -> Result<(), TestCaseError> {
    prop_assert!(!status.is_server_error(), "{status}: {answer}");
    if !status.is_success() {
        prop_assert!(answer["error"]["code"].is_string(), "{status} without a code: {answer}");
        prop_assert!(!message(answer).is_empty(), "{status} without a message: {answer}");
    }
    Ok(())
}

// ---- generators --------------------------------------------------------------------------------

const HOSTILE: &[&str] = &[
    "",
    " ",
    "../../etc/passwd",
    "..",
    "./x",
    "a/b",
    "1.0;rm -rf /",
    "$(id)",
    "`id`",
    "1.0\nX=1",
    "1.0\r\n",
    "1.0\u{0}",
    "\u{1b}[31mred",
    "-rf",
    ".hidden",
    "web web",
    "wéb",
    "𝄞",
    "\u{202e}gnp.exe",
    "%2e%2e%2f",
    "${HOME}",
    "a|b",
    "a&b",
    "a>b",
    "'",
    "\"",
    "\\",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(HOSTILE).prop_map(str::to_owned),
        2 => "[A-Za-z0-9][A-Za-z0-9._+-]{0,20}",
        1 => "\\PC{0,24}",
        1 => "[\\x00-\\x1f\\x7f]{1,4}",
        1 => proptest::sample::select(&[64usize, 65, 128, 129, 500, 501, 2001][..]).prop_map(|n| "a".repeat(n)),
    ]
}

fn wrong_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(5)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(u64::MAX)),
        Just(json!([])),
        Just(json!(["x", 1])),
        Just(json!({})),
        Just(json!({"a": [{"b": null}]})),
    ]
}

const FIELDS: &[&str] = &[
    "service",
    "version",
    "type",
    "strategy",
    "changes",
    "scheduled_for",
    "target_version",
    "override_window_reason",
    "attest",
];

fn field_value(field: &'static str) -> BoxedStrategy<Value> {
    match field {
        "type" => prop_oneof![
            proptest::sample::select(&["standard", "hotfix", "rollback", "scheduled", "hotfx", "STANDARD", ""][..])
                .prop_map(|s| json!(s)),
            text().prop_map(Value::String),
        ]
        .boxed(),
        "strategy" => proptest::sample::select(&["canary", "blue-green", "rolling", "blue_green", "x"][..])
            .prop_map(|s| json!(s))
            .boxed(),
        "changes" => prop_oneof![
            proptest::collection::vec(text(), 0..4).prop_map(|v| json!(v)),
            (0usize..3).prop_map(|k| json!(vec!["c"; [MAX_CHANGES, MAX_CHANGES + 1, 5000][k]])),
        ]
        .boxed(),
        "attest" => proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(&["code_review_approved", "changelog_updated", "nope"][..])
                    .prop_map(str::to_owned),
                text(),
            ],
            0..20,
        )
        .prop_map(|v| json!(v))
        .boxed(),
        "scheduled_for" => proptest::sample::select(
            &[
                "2026-12-01T10:00:00Z",
                "9999-12-31T23:59:59Z",
                "2026-13-01T00:00:00Z",
                "yesterday",
                "+275760-09-13T00:00:00Z",
            ][..],
        )
        .prop_map(|s| json!(s))
        .boxed(),
        _ => text().prop_map(Value::String).boxed(),
    }
}

#[derive(Debug, Clone)]
enum BodyEdit {
    Set(&'static str, Value),
    WrongType(&'static str, Value),
    Remove(&'static str),
    Unknown(String),
}

fn body_edit() -> impl Strategy<Value = BodyEdit> {
    let field = proptest::sample::select(FIELDS);
    prop_oneof![
        6 => field.clone().prop_flat_map(|f| field_value(f).prop_map(move |v| BodyEdit::Set(f, v))),
        2 => (field.clone(), wrong_type()).prop_map(|(f, v)| BodyEdit::WrongType(f, v)),
        1 => field.prop_map(BodyEdit::Remove),
        1 => prop_oneof![Just("colour".to_owned()), Just("Service".to_owned()), "[a-z_]{1,12}"].prop_map(BodyEdit::Unknown),
    ]
}

fn valid_body() -> Value {
    json!({"service": "web", "version": "1.0.0", "type": "standard", "strategy": "canary", "changes": ["faster pages"], "attest": ["code_review_approved"]})
}

#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, &'static str),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| ByteEdit::Flip(at, b)),
        (
            any::<usize>(),
            proptest::sample::select(
                &["{", "}", "[", "]", ",", ":", "\"", "\\", "null", "1e999", "\u{0}", "\u{ff}", "\\ud800"][..]
            )
        )
            .prop_map(|(at, s)| ByteEdit::Insert(at, s)),
    ]
}

fn mutate(bytes: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for e in edits {
        match *e {
            ByteEdit::Truncate(at) => out.truncate(at % (out.len() + 1)),
            ByteEdit::Flip(at, b) => {
                let n = out.len().max(1);
                if let Some(byte) = out.get_mut(at % n) {
                    *byte ^= b;
                }
            }
            ByteEdit::Insert(at, s) => {
                let i = at % (out.len() + 1);
                out.splice(i..i, s.bytes());
            }
        }
    }
    out
}

/// What a 422 about the submission may start with: the field at fault.
const FIELD_PREFIXES: &[&str] = &[
    "service",
    "version",
    "type",
    "strategy",
    "changes",
    "target_version",
    "override_window_reason",
    "attest",
    "scheduled_for",
];

/// Checks one submission's answer against what the body holds.
fn check_submit(body: &Value, status: StatusCode, answer: &Value) -> Result<(), TestCaseError> {
    check_shape(status, answer)?;
    let m = message(answer);
    match status.as_u16() {
        201 => {
            let service = body["service"].as_str().unwrap_or_default();
            prop_assert!(ServiceName::parse(service).is_ok(), "accepted service {service:?}");
            for field in ["version", "target_version"] {
                if let Some(v) = body[field].as_str() {
                    prop_assert!(Version::parse(v).is_ok(), "accepted {field} {v:?}");
                }
            }
            let changes = body["changes"].as_array().map(Vec::as_slice).unwrap_or_default();
            prop_assert!(changes.len() <= MAX_CHANGES);
            for c in changes.iter().filter_map(Value::as_str) {
                prop_assert!(
                    c.chars().count() <= MAX_CHANGE_CHARS && !c.chars().any(char::is_control),
                    "accepted change {c:?}"
                );
            }
        }
        400 => {
            prop_assert!(m.starts_with("invalid JSON body: "), "{m}");
            // An unknown field is named; a wrong type names the field's path.
            if let Some(unknown) = m.strip_prefix("invalid JSON body: unknown field `") {
                let name = unknown.split('`').next().unwrap_or_default();
                prop_assert!(body.get(name).is_some(), "{m}");
            } else if m.contains("invalid type") || m.contains("invalid value") || m.contains("invalid length") {
                let rest = &m["invalid JSON body: ".len()..];
                let named = FIELDS
                    .iter()
                    .any(|f| rest.starts_with(&format!("{f}:")) || rest.starts_with(&format!("{f}[")));
                prop_assert!(named || !body.is_object(), "{m}");
            }
        }
        422 => {
            prop_assert!(
                FIELD_PREFIXES.iter().any(|p| m.starts_with(p)),
                "422 names no field: {m}"
            );
        }
        409 => {
            // Well formed, but what the daemon holds cannot serve it: a rollback without
            // target_version when no earlier version is known, a time outside the windows, or a
            // version that an earlier submission of the run rolled back (a rollback-type
            // deployment blocks the version it replaced).
            let nothing_to_restore =
                m.starts_with("a rollback needs a version to restore") && body.get("target_version").is_none();
            let outside_windows =
                m.starts_with("scheduled_for: ") && m.contains("outside the allowed deployment windows");
            let blocked = m.contains(" is blocked: deployment ") && m.contains("`stagecoach unblock ");
            prop_assert!(nothing_to_restore || outside_windows || blocked, "unexpected 409: {m}");
        }
        other => prop_assert!(false, "unexpected {other}: {answer}"),
    }
    Ok(())
}

// ---- properties ----------------------------------------------------------------------------------

#[test]
fn submissions_are_accepted_or_refused_naming_the_field() {
    let system = actix_web::rt::System::new();
    let app = system.block_on(async {
        web_test::init_service(App::new().app_data(web::Data::new(state())).configure(api::routes)).await
    });
    let mut runner = TestRunner::new(config(256));
    let strategy = proptest::collection::vec(body_edit(), 1..4);
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    runner
        .run(&strategy, |edits| {
            let mut body = valid_body();
            for edit in &edits {
                let map = body.as_object_mut().expect("an object");
                match edit {
                    BodyEdit::Set(f, v) | BodyEdit::WrongType(f, v) => {
                        map.insert((*f).to_owned(), v.clone());
                    }
                    BodyEdit::Remove(f) => {
                        map.remove(*f);
                    }
                    BodyEdit::Unknown(f) => {
                        map.insert(f.clone(), json!("x"));
                    }
                }
            }
            let (status, answer) = system.block_on(send!(&app, "/v1/deployments", body.to_string().into_bytes()));
            seen.borrow_mut().insert(status.as_u16());
            check_submit(&body, status, &answer)
        })
        .unwrap();
    // The generator reaches every answer: created, malformed and invalid.
    for status in [201, 400, 422] {
        assert!(seen.borrow().contains(&status), "no {status} among {:?}", seen.borrow());
    }
}

#[test]
fn mutated_bodies_never_fail_the_server() {
    let system = actix_web::rt::System::new();
    let app = system.block_on(async {
        web_test::init_service(App::new().app_data(web::Data::new(state())).configure(api::routes)).await
    });
    let mut runner = TestRunner::new(config(256));
    let paths = proptest::sample::select(
        &[
            "/v1/deployments",
            "/v1/deployments/d-000001/approvals",
            "/v1/deployments/d-000001/rollback",
            "/v1/deployments/d-000001/cancel",
            "/v1/escalations/d-000001-e1/ack",
        ][..],
    );
    let seeds = proptest::sample::select(
        &[
            r#"{"service": "web", "version": "1.0.0", "changes": ["a", "b"]}"#,
            r#"{"role": "manager", "decision": "reject", "reason": "not today"}"#,
            r#"{"reason": "errors"}"#,
            r#"{"note": "seen"}"#,
            r#"{}"#,
        ][..],
    );
    runner
        .run(
            &(paths, seeds, proptest::collection::vec(byte_edit(), 0..4)),
            |(path, seed, edits)| {
                let body = mutate(seed.as_bytes(), &edits);
                let (status, answer) = system.block_on(send!(&app, path, body.clone()));
                check_shape(status, &answer)?;
                let json: Result<Value, _> = serde_json::from_slice(&body);
                let blank = body.iter().all(u8::is_ascii_whitespace);
                if json.is_err() && !blank {
                    prop_assert_eq!(
                        status,
                        StatusCode::BAD_REQUEST,
                        "{}: {}",
                        String::from_utf8_lossy(&body),
                        answer
                    );
                    prop_assert!(message(&answer).starts_with("invalid JSON body: "), "{}", answer);
                }
                Ok(())
            },
        )
        .unwrap();
}

/// A value a hook receives is an environment value: run without a shell, it arrives byte for
/// byte, and shell text in it does nothing.
#[test]
fn values_reach_hooks_only_as_environment() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let canary = dir.path().join("pwned");
    let system = actix_web::rt::System::new();
    let mut runner = TestRunner::new(config(32));
    let hostile = format!(
        "$(touch {0}) `touch {0}` ; touch {0} | touch {0} && touch {0}",
        canary.display()
    );
    let values = prop_oneof![
        "[A-Za-z0-9][A-Za-z0-9._+-]{0,40}",
        proptest::sample::select(HOSTILE).prop_map(str::to_owned),
        Just(hostile),
    ];
    runner
        .run(&values, |value| {
            if value.contains('\0') {
                return Ok(()); // an environment value cannot hold NUL; Version refuses it anyway
            }
            // A version the type accepts is a plain token: no path separator, no shell text.
            if Version::parse(&value).is_ok() {
                prop_assert!(
                    value.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c)),
                    "{value:?}"
                );
                prop_assert!(!value.starts_with('.') && !value.contains('/'), "{value:?}");
            }
            let spec = hooks::CommandSpec::new(["printenv", "STAGECOACH_VERSION"]);
            let env = [("STAGECOACH_VERSION".to_owned(), value.clone())];
            let outcome = system.block_on(hooks::run(&spec, &env)).expect("printenv runs");
            prop_assert!(outcome.success, "{}", outcome.summary());
            if !value.chars().any(char::is_control) {
                prop_assert_eq!(
                    outcome.output_tail.strip_suffix('\n').unwrap_or(&outcome.output_tail),
                    value.as_str()
                );
            }
            prop_assert!(!canary.exists(), "a shell ran the value");
            Ok(())
        })
        .unwrap();
}

// ---- fixed corpus --------------------------------------------------------------------------------

#[test]
fn nasty_bodies_corpus() {
    let system = actix_web::rt::System::new();
    system.block_on(async {
        let app = web_test::init_service(App::new().app_data(web::Data::new(state())).configure(api::routes)).await;
        let submit = |body: Value| body.to_string().into_bytes();
        let base = |field: &str, value: Value| {
            let mut b = json!({"service": "web", "version": "1.0.0"});
            b[field] = value;
            submit(b)
        };
        let mut over = br#"{"service": "web", "version": "1.0.0", "changes": [""#.to_vec();
        over.extend(std::iter::repeat_n(b'a', MAX_BODY));
        over.extend_from_slice(br#""]}"#);
        let deep = format!(r#"{{"service": "web", "changes": {}{}}}"#, "[".repeat(200), "]".repeat(200));
        let cases: Vec<(&str, Vec<u8>, u16, String)> = vec![
            ("/v1/deployments", b"{\"service\": \"web\",".to_vec(), 400, "invalid JSON body: EOF while parsing".into()),
            ("/v1/deployments", b"\xff\xfe{}".to_vec(), 400, "invalid JSON body: ".into()),
            ("/v1/deployments", b"{\"service\": \"web\"} trailing".to_vec(), 400, "invalid JSON body: trailing characters".into()),
            ("/v1/deployments", b"{\"service\": 1e999}".to_vec(), 400, "invalid JSON body: number out of range".into()),
            ("/v1/deployments", b"{\"service\": \"a\", \"service\": \"b\"}".to_vec(), 400, "invalid JSON body: duplicate field `service`".into()),
            ("/v1/deployments", b"[]".to_vec(), 400, "invalid JSON body: expected a JSON object".into()),
            ("/v1/deployments", br#"["web", "1.0.0"]"#.to_vec(), 400, "invalid JSON body: expected a JSON object".into()),
            ("/v1/deployments", b"null".to_vec(), 400, "invalid JSON body: expected a JSON object".into()),
            ("/v1/deployments", deep.into_bytes(), 400, "invalid JSON body: changes[0]: invalid type: sequence, expected a string".into()),
            ("/v1/deployments", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(), 400, "invalid JSON body: recursion limit exceeded".into()),
            ("/v1/deployments", base("colour", json!("red")), 400, "invalid JSON body: unknown field `colour`".into()),
            ("/v1/deployments", base("changes", json!(["a", 5])), 400, "invalid JSON body: changes[1]: invalid type: integer `5`, expected a string".into()),
            ("/v1/deployments", base("version", json!(1.5)), 400, "invalid JSON body: version: invalid type: floating point `1.5`".into()),
            ("/v1/deployments", over, 413, format!("the request body is over {MAX_BODY} bytes")),
            ("/v1/deployments", base("changes", json!(vec!["c"; MAX_CHANGES + 1])), 422, "changes: 101 entries; at most 100 are accepted".into()),
            ("/v1/deployments", base("changes", json!(["a".repeat(MAX_CHANGE_CHARS + 1)])), 422, "changes[0]: 501 characters; at most 500 are accepted".into()),
            ("/v1/deployments", base("changes", json!(["ok", "two\nlines"])), 422, "changes[1]: control characters (such as line breaks) are not allowed; write one change per entry (found '\\n')".into()),
            ("/v1/deployments", base("attest", json!(vec!["code_review_approved"; 16])), 422, "attest: 16 entries; the checklist has 15 items".into()),
            ("/v1/deployments", base("override_window_reason", json!("r".repeat(MAX_REASON_CHARS + 1))), 422, "override_window_reason: 2001 characters; at most 2000 are accepted".into()),
            ("/v1/deployments", base("override_window_reason", json!("\u{1b}[2J")), 422, "override_window_reason: control characters other than line breaks and tabs are not allowed (found '\\u{1b}')".into()),
            ("/v1/deployments", base("service", json!("a".repeat(65))), 422, format!("service: service name \"{}\"… (65 characters) is invalid: it is longer than 64 characters", "a".repeat(64))),
            ("/v1/deployments", base("service", json!("web\u{0}")), 422, "service: service name \"web\\0\" is invalid: only ASCII letters, digits and - _ . + are allowed".into()),
            ("/v1/deployments", base("version", json!("1".repeat(129))), 422, "version: version \"1111".into()),
            ("/v1/deployments", base("version", json!("../../etc/passwd")), 422, "version: version \"../../etc/passwd\" is invalid: it must not start with . or -".into()),
            ("/v1/deployments", base("version", json!("1.0;rm -rf /")), 422, "version: version \"1.0;rm -rf /\" is invalid: only ASCII letters, digits and - _ . + are allowed".into()),
            ("/v1/deployments", base("version", json!("$(id)")), 422, "version: version \"$(id)\" is invalid: only ASCII letters".into()),
            ("/v1/deployments", base("version", json!("`id`")), 422, "version: version \"`id`\" is invalid: only ASCII letters".into()),
            ("/v1/deployments", base("version", json!("1.0\nSTAGECOACH_ACTION=x")), 422, "version: version \"1.0\\nSTAGECOACH_ACTION=x\" is invalid: only ASCII letters".into()),
            ("/v1/deployments", base("version", json!("1.0/../../x")), 422, "version: version \"1.0/../../x\" is invalid: only ASCII letters".into()),
            ("/v1/deployments", submit(json!({"service": "web", "type": "rollback", "target_version": "$(id)"})), 422, "target_version: version \"$(id)\" is invalid".into()),
            ("/v1/escalations/d-000001-e1/ack", submit(json!({"note": "n".repeat(MAX_REASON_CHARS + 1)})), 422, "note: 2001 characters; at most 2000 are accepted".into()),
            ("/v1/escalations/d-000001-e1/ack", submit(json!({"note": 5})), 400, "invalid JSON body: note: invalid type: integer `5`".into()),
        ];
        for (path, body, status, expected) in cases {
            let (got, answer) = send!(&app, path, body).await;
            assert_eq!(got.as_u16(), status, "{path} {expected}: {answer}");
            let m = message(&answer);
            assert!(m.starts_with(&expected) || (status == 400 && m.contains(&expected)), "{path}: {m}\nexpected: {expected}");
        }

        // A deployment to check the limits of the commands on it.
        let (status, record) = send!(&app, "/v1/deployments", submit(json!({"service": "web", "version": "1.0.0"}))).await;
        assert_eq!(status, StatusCode::CREATED, "{record}");
        let id = record["id"].as_str().expect("an id").to_owned();
        let long = "r".repeat(MAX_REASON_CHARS + 1);
        for (route, body) in [
            ("approvals", json!({"role": "manager", "decision": "reject", "reason": long})),
            ("rollback", json!({"reason": long})),
            ("cancel", json!({"reason": long})),
        ] {
            let (status, answer) = send!(&app, &format!("/v1/deployments/{id}/{route}"), submit(body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{route}: {answer}");
            assert_eq!(message(&answer), "reason: 2001 characters; at most 2000 are accepted", "{route}");
        }
        let (status, answer) = send!(&app, &format!("/v1/deployments/{id}/cancel"), submit(json!({"reason": "a\u{7f}b"}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(message(&answer).starts_with("reason: control characters"), "{answer}");
        let (status, answer) = send!(&app, &format!("/v1/deployments/{id}/rollback"), submit(json!({"reason": "two\nlines\tare fine"}))).await;
        assert_ne!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    });
}
