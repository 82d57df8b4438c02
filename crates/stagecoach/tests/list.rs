//! `GET /v1/deployments` in pages, through the real daemon binary: `limit`
//! (default 100, at most 1000, anything else a 422 naming it), `cursor`
//! (the `next_cursor` of the previous page) stable while deployments are
//! submitted between pages, and `stagecoach list` following the cursor to
//! show every deployment.

mod common;

use std::process::Command;

use client::wire::ListQuery;
use common::{json_of, ok, run_with_timeout, token, Config, Harness};
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<String> {
    page["deployments"]
        .as_array()
        .expect("a deployments array")
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_string())
        .collect()
}

#[test]
fn the_list_pages_with_a_stable_cursor_and_the_cli_follows_it() {
    // A person approves, so every deployment stays put at APPROVE.
    let mut h = Harness::new(
        &Config {
            manager_human: true,
            ..Config::default()
        }
        .principal("alice", &["deployer"]),
    );
    let d = h.start();
    let alice = token("alice");
    let submit = |n: usize| {
        let record = d.submit(&alice, &json!({"service": "web", "version": format!("1.0.{n}")}));
        record["id"].as_str().expect("an id").to_string()
    };
    let mut submitted: Vec<String> = (0..101).map(submit).collect();

    let api = d.api(&alice);
    let list = |query: ListQuery, what: &str| json_of(&ok(api.list_page(&query), what));
    // Default: 100 in submission order, and a cursor to the rest.
    let first = list(ListQuery::default(), "first page");
    assert_eq!(ids(&first), submitted[..100].to_vec());
    assert_eq!(first["next_cursor"], "d-000100");
    let rest = list(
        ListQuery {
            cursor: Some("d-000100".into()),
            ..ListQuery::default()
        },
        "second page",
    );
    assert_eq!(ids(&rest), ["d-000101"]);
    assert_eq!(rest["next_cursor"], Value::Null);

    // Pages of 40 while more are submitted: nothing is skipped or listed twice.
    let mut seen: Vec<String> = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let query = ListQuery {
            limit: Some(40),
            cursor: cursor.clone(),
            ..ListQuery::default()
        };
        let what = format!("{query:?}");
        let page = list(query, &what);
        assert!(ids(&page).len() <= 40, "{what}");
        seen.extend(ids(&page));
        if cursor.is_none() {
            submitted.push(submit(101));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, submitted, "every deployment once, in submission order");

    // The filters page the same way.
    let filtered = ListQuery {
        service: Some("web".into()),
        status: Some("awaiting_approval".into()),
        limit: Some(1000),
        cursor: None,
    };
    let page = list(filtered, "filtered");
    assert_eq!(ids(&page).len(), 102);
    assert_eq!(page["next_cursor"], Value::Null);
    let other = ListQuery {
        service: Some("other".into()),
        limit: Some(1),
        ..ListQuery::default()
    };
    let page = list(other, "another service");
    assert_eq!(ids(&page), Vec::<String>::new());
    assert_eq!(page["next_cursor"], Value::Null);

    // Raw: parameters a typed query cannot carry, e.g. `limit=ten`.
    for (query, message) in [
        (
            "limit=0",
            "limit: \"0\" is not a whole number from 1 to 1000 (default 100)",
        ),
        (
            "limit=1001",
            "limit: \"1001\" is not a whole number from 1 to 1000 (default 100)",
        ),
        (
            "limit=ten",
            "limit: \"ten\" is not a whole number from 1 to 1000 (default 100)",
        ),
        (
            "limit=",
            "limit: \"\" is not a whole number from 1 to 1000 (default 100)",
        ),
        (
            "cursor=page-2",
            "cursor: \"page-2\" is not a cursor this API gave out; pass the next_cursor of the previous page",
        ),
    ] {
        let path = format!("/v1/deployments?{query}");
        let got = d.get(&path, &alice).expect_error(422, "invalid", &path);
        assert_eq!(got, message, "{path}");
    }

    // `stagecoach list` shows all 102: two pages of the daemon's default size.
    let mut cli = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
    cli.args(["list", "--server", &d.url, "--token", &alice])
        .current_dir(h.dir.path())
        .env_remove("STAGECOACH_TOKEN");
    let out = run_with_timeout(cli, "stagecoach list");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(listed, submitted, "{text}");
}
