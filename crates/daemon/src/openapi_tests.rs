//! `openapi.json` against the code that validates requests: every limit,
//! pattern and enum the server enforces is in the document with the same
//! value, a string is valid by the document's pattern exactly when the
//! server's parser takes it, and the document's paths and methods are the
//! routes the server serves (any other method is a 405 naming them). The
//! outside check of the same agreement, request by request, is schemathesis
//! (`crates/stagecoach/tests/openapi.rs`).

use std::collections::BTreeSet;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{test as web_test, App};
use proptest::prelude::*;
use serde_json::Value;
use workflow::checklist::ItemKey;
use workflow::types::Strategy as DeployStrategy;
use workflow::types::{DeploymentType, Role, ServiceName, Status, Version, SERVICE_NAME_MAX, VERSION_MAX};

use super::*;

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

/// The value at a JSON pointer, or a failed test naming it.
fn at<'a>(doc: &'a Value, pointer: &str) -> &'a Value {
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("openapi.json has nothing at {pointer}"))
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    at(doc, &format!("/components/schemas/{name}"))
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// An enum's names, as a set: the document may list them in another order.
fn names<T: Copy>(all: &[T], show: fn(T) -> &'static str) -> BTreeSet<String> {
    all.iter().map(|t| show(*t).to_string()).collect()
}

fn usize_at(doc: &Value, pointer: &str) -> usize {
    at(doc, pointer)
        .as_u64()
        .unwrap_or_else(|| panic!("{pointer} is not a whole number")) as usize
}

#[test]
fn every_limit_of_the_validation_code_is_in_the_document() {
    let d = doc();
    let submit = "/components/schemas/SubmitRequest/properties";
    assert_eq!(
        usize_at(&d, "/components/schemas/ServiceName/maxLength"),
        SERVICE_NAME_MAX
    );
    assert_eq!(usize_at(&d, "/components/schemas/Version/maxLength"), VERSION_MAX);
    assert_eq!(usize_at(&d, "/components/schemas/Reason/maxLength"), MAX_REASON_CHARS);
    assert_eq!(usize_at(&d, &format!("{submit}/changes/maxItems")), MAX_CHANGES);
    assert_eq!(
        usize_at(&d, &format!("{submit}/changes/items/maxLength")),
        MAX_CHANGE_CHARS
    );
    assert_eq!(usize_at(&d, &format!("{submit}/attest/maxItems")), ItemKey::ALL.len());

    let list = at(&d, "/paths/~1v1~1deployments/get/parameters");
    let limit = list
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
        .expect("GET /v1/deployments documents limit");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], LIST_MAX_LIMIT);
    assert_eq!(limit["schema"]["default"], LIST_DEFAULT_LIMIT);
}

#[test]
fn every_enum_of_the_code_is_in_the_document() {
    let d = doc();
    let submit = "/components/schemas/SubmitRequest/properties";
    assert_eq!(
        strings(at(&d, &format!("{submit}/type/enum"))),
        names(DeploymentType::ALL, DeploymentType::as_str)
    );
    assert_eq!(
        strings(at(&d, &format!("{submit}/strategy/enum"))),
        names(DeployStrategy::ALL, DeployStrategy::as_str)
    );
    assert_eq!(
        strings(&schema(&d, "Status")["enum"]),
        names(Status::ALL, Status::as_str)
    );
    assert_eq!(
        strings(at(&d, "/components/schemas/ApprovalRequest/properties/role/enum")),
        names(Role::ALL, Role::as_str)
    );
    let items: BTreeSet<String> = ItemKey::ALL
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .expect("an item key serialises")
                .as_str()
                .expect("a string")
                .to_string()
        })
        .collect();
    assert_eq!(strings(&schema(&d, "ChecklistItem")["enum"]), items);
}

/// Whether `text` matches a pattern of the document.
fn matches(pattern: &str, text: &str) -> bool {
    regex_lite::Regex::new(pattern)
        .expect("the pattern compiles")
        .is_match(text)
}

/// Valid by the document's string schema: pattern, and lengths in characters.
fn valid(doc: &Value, name: &str, text: &str) -> bool {
    let s = schema(doc, name);
    let chars = text.chars().count() as u64;
    matches(s["pattern"].as_str().expect("a pattern"), text)
        && s["minLength"].as_u64().is_none_or(|min| chars >= min)
        && s["maxLength"].as_u64().is_none_or(|max| chars <= max)
}

/// Strings near the rules: the alphabet and its edges, control characters and long runs.
fn near_the_rules() -> impl proptest::strategy::Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._+-]{0,140}",
        "[._+-][A-Za-z0-9]{0,4}",
        "[A-Za-z0-9 /;$\\\\`é\u{0}\t\n\r\u{7f}\u{85}\u{2028}]{0,8}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn a_service_name_is_valid_by_the_document_exactly_when_the_server_takes_it(name in near_the_rules()) {
        let d = doc();
        prop_assert_eq!(valid(&d, "ServiceName", &name), ServiceName::parse(&name).is_ok(), "{:?}", name);
    }

    #[test]
    fn a_version_is_valid_by_the_document_exactly_when_the_server_takes_it(version in near_the_rules()) {
        let d = doc();
        prop_assert_eq!(valid(&d, "Version", &version), Version::parse(&version).is_ok(), "{:?}", version);
    }

    #[test]
    fn a_reason_is_valid_by_the_document_exactly_when_the_server_takes_it(
        reason in prop_oneof!["[a-z \t\n\r\u{0}\u{7}\u{1b}\u{7f}\u{85}\u{9f}\u{a0}é]{0,12}", any::<String>()],
        long in 1990usize..2010,
    ) {
        let d = doc();
        for text in [reason.clone(), "x".repeat(long)] {
            prop_assert_eq!(
                valid(&d, "Reason", &text),
                check_text("reason", &text, MAX_REASON_CHARS, false).is_ok(),
                "{:?}", text
            );
        }
    }

    #[test]
    fn a_change_is_valid_by_the_document_exactly_when_the_server_takes_it(
        change in prop_oneof!["[a-z \t\n\r\u{0}\u{7f}\u{85}é]{0,12}", any::<String>()],
    ) {
        let d = doc();
        let items = at(&d, "/components/schemas/SubmitRequest/properties/changes/items");
        let chars = change.chars().count() as u64;
        let by_document = regex_lite::Regex::new(items["pattern"].as_str().expect("a pattern"))
            .expect("the pattern compiles")
            .is_match(&change)
            && items["maxLength"].as_u64().is_some_and(|max| chars <= max);
        prop_assert_eq!(by_document, check_text("changes[0]", &change, MAX_CHANGE_CHARS, true).is_ok(), "{:?}", change);
    }

    #[test]
    fn a_deployment_id_is_valid_by_the_document_exactly_when_the_server_takes_it(
        id in prop_oneof!["(d-)?[0-9]{0,20}", "[a-z0-9-]{0,8}", any::<String>()],
    ) {
        let d = doc();
        let p = at(&d, "/paths/~1v1~1deployments~1{id}/get/parameters/0/schema/pattern").as_str().expect("a pattern");
        let by_document = matches(p, &id);
        prop_assert_eq!(by_document, deployment_id(&id).is_ok(), "{:?}", id);
        let cursor = at(&d, "/paths/~1v1~1deployments/get/parameters/3/schema/pattern").as_str().expect("a pattern");
        let by_document = matches(cursor, &id);
        prop_assert_eq!(by_document, list_cursor(Some(&id)).is_ok(), "cursor {:?}", id);
        let events = at(&d, "/paths/~1v1~1events/get/parameters/0/schema/pattern").as_str().expect("a pattern");
        prop_assert_eq!(events, p, "?deployment= takes what the path takes");
    }

    #[test]
    fn an_escalation_id_is_valid_by_the_document_exactly_when_the_server_takes_it(
        id in prop_oneof!["(d-)?[0-9]{0,20}-e[0-9]{0,11}", "[de0-9+-]{0,10}", any::<String>()],
    ) {
        let d = doc();
        let p = at(&d, "/paths/~1v1~1escalations~1{id}~1ack/post/parameters/0/schema/pattern").as_str().expect("a pattern");
        let by_document = matches(p, &id);
        prop_assert_eq!(by_document, escalation_id(&id).is_ok(), "{:?}", id);
    }
}

/// The document's operations: (path with `{id}`, methods).
fn documented_routes(doc: &Value) -> Vec<(String, BTreeSet<String>)> {
    at(doc, "/paths")
        .as_object()
        .expect("paths is an object")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item")
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete", "head", "options", "trace"].contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[actix_web::test]
async fn the_documented_methods_are_served_and_every_other_is_a_405_naming_them() {
    let app = web_test::init_service(App::new().configure(routes)).await;
    let every = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];
    for (path, methods) in documented_routes(&doc()) {
        let id = if path.starts_with("/v1/escalations/") {
            "d-000001-e1"
        } else {
            "d-000001"
        };
        let uri = path
            .replace("{id}", id)
            .replace("{service}", "web")
            .replace("{version}", "1.2.0");
        for method in every {
            let req = web_test::TestRequest::default()
                .method(Method::from_bytes(method.as_bytes()).expect("a method"))
                .uri(&uri)
                .to_request();
            let res = web_test::call_service(&app, req).await;
            if methods.contains(method) {
                // Served: whatever the handler answers without state or token, it is not "no such route".
                assert!(
                    ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&res.status()),
                    "{method} {uri} is documented but answered {}",
                    res.status()
                );
            } else {
                assert_eq!(
                    res.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri} is not documented"
                );
                let allow: BTreeSet<String> = res
                    .headers()
                    .get(header::ALLOW)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| panic!("the 405 of {method} {uri} has no Allow header"))
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .collect();
                assert_eq!(allow, methods, "Allow of {uri}");
            }
        }
    }
    let res = web_test::call_service(&app, web_test::TestRequest::get().uri("/v1/nothing-here").to_request()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[test]
fn every_operation_documents_the_errors_it_can_answer() {
    let d = doc();
    for (path, item) in at(&d, "/paths").as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let Some(responses) = op.get("responses").and_then(Value::as_object) else {
                continue;
            };
            let params = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(item["parameters"].as_array().into_iter().flatten());
            let mut query = false;
            let mut in_path = false;
            for p in params {
                query |= p["in"] == "query";
                in_path |= p["in"] == "path";
            }
            let body = op.get("requestBody").is_some();
            let open = ["/healthz", "/metrics"].contains(&path.as_str());
            let what = format!("{} {path}", method.to_uppercase());
            if !open {
                assert!(responses.contains_key("401"), "{what} does not document 401");
            }
            if body || query {
                assert!(
                    responses.contains_key("400"),
                    "{what} takes a body or a query but does not document 400"
                );
            }
            if in_path {
                assert!(
                    responses.contains_key("404"),
                    "{what} takes an id but does not document 404"
                );
            }
            assert!(op["operationId"].is_string(), "{what} has no operationId");
        }
    }
}
