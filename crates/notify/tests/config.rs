//! The `[notify]` table: parsing and validation.

use notify::{Channel, NotifyConfig, TemplateOverride, WebhookChannel, WebhookFormat};
use workflow::types::NotificationKind;

const FULL: &str = r#"
[notifications]
contact = "ops@example.com"   # the workflow's table: not ours, ignored

[notify.channels.ops]
kind = "webhook"
url = "http://127.0.0.1:9000/hook"
format = "slack"
headers = { "X-Token" = "t" }
timeout_seconds = 5
retries = 3
backoff_seconds = 0.5

[notify.channels.plain]
kind = "webhook"
url = "http://hooks.internal/x"

[notify.channels.files]
kind = "outbox"
dir = "outbox"

[notify.channels.audit]
kind = "log"

[notify.routes]
pre_deployment = ["ops", "files"]
post_deployment = ["ops"]
rollback = ["ops", "files", "audit"]
escalation = ["ops", "log"]
approval_requested = ["ops"]

[notify.templates]
rollback = { subject = "Rollback of {{ service }}", body = "{{ body }}" }
"#;

fn refused(toml: &str) -> String {
    NotifyConfig::from_agents_toml(toml).expect_err("the configuration should be refused")
}

#[test]
fn the_documented_shape_parses() {
    let cfg = NotifyConfig::from_agents_toml(FULL).unwrap();
    let Channel::Webhook(ops) = &cfg.channels["ops"] else {
        panic!("ops is a webhook")
    };
    assert_eq!(ops.format, WebhookFormat::Slack);
    assert_eq!(ops.headers["X-Token"], "t");
    assert_eq!(ops.retries, 3);
    let Channel::Webhook(plain) = &cfg.channels["plain"] else {
        panic!("plain is a webhook")
    };
    assert_eq!(plain, &WebhookChannel::new("http://hooks.internal/x"));
    assert_eq!(plain.format, WebhookFormat::Json);
    assert_eq!(
        (plain.timeout_seconds, plain.retries, plain.backoff_seconds),
        (5.0, 3, 0.5)
    );
    assert!(matches!(&cfg.channels["files"], Channel::Outbox(o) if o.dir.as_os_str() == "outbox"));
    assert!(matches!(&cfg.channels["audit"], Channel::Log(_)));
    assert_eq!(cfg.route(NotificationKind::Rollback), ["ops", "files", "audit"]);
    assert_eq!(
        cfg.templates[&NotificationKind::Rollback],
        TemplateOverride {
            subject: Some("Rollback of {{ service }}".into()),
            body: Some("{{ body }}".into()),
        }
    );
}

#[test]
fn no_table_means_everything_goes_to_the_log() {
    let cfg = NotifyConfig::from_agents_toml("[notifications]\ncontact = \"x\"\n").unwrap();
    assert_eq!(cfg, NotifyConfig::default());
    for kind in NotificationKind::ALL {
        assert_eq!(cfg.route(*kind), ["log"]);
    }
    assert!(matches!(cfg.channel("log"), Some(Channel::Log(_))));
    assert!(cfg.channel("ops").is_none());
}

#[test]
fn a_route_to_an_unknown_channel_is_named() {
    let err = refused("[notify.channels.ops]\nkind = \"log\"\n[notify.routes]\nrollback = [\"ops\", \"pager\"]\n");
    assert_eq!(
        err,
        "notify.routes.rollback: unknown channel \"pager\" (channels: log, ops)"
    );
    let err = refused("[notify.routes]\nescalation = [\"log\", \"log\"]\n");
    assert_eq!(err, "notify.routes.escalation: channel \"log\" is listed twice");
}

#[test]
fn unknown_kinds_and_keys_are_refused() {
    let err = refused("[notify.routes]\nrollbak = [\"log\"]\n");
    assert!(err.starts_with("notify.routes"), "{err}");
    assert!(err.contains("rollbak"), "{err}");

    let err = refused("[notify.templates.deploy]\nsubject = \"x\"\n");
    assert!(err.starts_with("notify.templates"), "{err}");

    let err = refused("[notify]\ncontact = \"x\"\n");
    assert!(err.contains("contact"), "{err}");

    let err = refused("[notify.channels.ops]\nkind = \"webhook\"\nurl = \"http://x/\"\nretry = 3\n");
    assert!(err.starts_with("notify.channels.ops"), "{err}");
    assert!(err.contains("retry"), "{err}");

    let err = refused("[notify.channels.ops]\nkind = \"email\"\n");
    assert!(err.starts_with("notify.channels.ops"), "{err}");
    assert!(err.contains("email"), "{err}");

    let err = refused("[notify.channels.ops]\nkind = \"webhook\"\nurl = \"http://x/\"\nretries = \"many\"\n");
    assert!(err.starts_with("notify.channels.ops"), "{err}");
}

#[test]
fn channels_are_checked() {
    let webhook = |extra: &str| format!("[notify.channels.ops]\nkind = \"webhook\"\n{extra}\n");
    let err = refused(&webhook("url = \"https://hooks.slack.com/services/T/B/secret\""));
    assert!(
        err.starts_with("notify.channels.ops: url https://hooks.slack.com/"),
        "{err}"
    );
    assert!(err.contains("no TLS"), "{err}");
    let err = refused(&webhook("url = \"not a url\""));
    assert!(
        err.starts_with("notify.channels.ops: url \"not a url\" is invalid"),
        "{err}"
    );
    let err = refused(&webhook("url = \"ftp://x/\""));
    assert!(err.starts_with("notify.channels.ops: url scheme \"ftp\""), "{err}");
    let err = refused(&webhook("url = \"http://x/\"\ntimeout_seconds = 0"));
    assert!(err.starts_with("notify.channels.ops: timeout_seconds"), "{err}");
    let err = refused(&webhook("url = \"http://x/\"\nbackoff_seconds = -1"));
    assert!(err.starts_with("notify.channels.ops: backoff_seconds"), "{err}");
    let err = refused(&webhook("url = \"http://x/\"\nretries = 1000"));
    assert!(err.starts_with("notify.channels.ops: retries"), "{err}");
    let err = refused(&webhook("url = \"http://x/\"\nheaders = { \"Bad Name\" = \"v\" }"));
    assert!(
        err.starts_with("notify.channels.ops: header name \"Bad Name\""),
        "{err}"
    );
    let err = refused(&webhook(
        "url = \"http://x/\"\nheaders = { \"X-Token\" = \"line\\nbreak\" }",
    ));
    assert!(
        err.starts_with("notify.channels.ops: the value of header X-Token"),
        "{err}"
    );
    assert!(!err.contains("break"), "header values are not quoted: {err}");

    let err = refused("[notify.channels.files]\nkind = \"outbox\"\ndir = \"\"\n");
    assert_eq!(err, "notify.channels.files: dir is empty");
    let err = refused("[notify.channels.\"a b\"]\nkind = \"log\"\n");
    assert!(err.starts_with("notify.channels.a b: channel names"), "{err}");
}

#[test]
fn template_errors_name_the_kind() {
    let err = refused("[notify.templates.rollback]\nsubject = \"{{ service \"\n");
    assert!(
        err.starts_with("notify.templates.rollback.subject: template error: syntax error"),
        "{err}"
    );
    let err = refused("[notify.templates.escalation]\nbody = \"{% if %}\"\n");
    assert!(
        err.starts_with("notify.templates.escalation.body: template error: syntax error"),
        "{err}"
    );
    let err = refused("[notify.templates.pre_deployment]\nbody = \"{{ servce }}\"\n");
    assert!(
        err.starts_with("notify.templates.pre_deployment.body: template error: undefined value"),
        "{err}"
    );
    // Every documented variable is available.
    NotifyConfig::from_agents_toml(
        "[notify.templates.rollback]\nbody = \"{{ subject }}{{ body }}{{ kind }}{{ service }}{{ version }}{{ deployment_id }}{{ at }}\"\n",
    )
    .unwrap();
}

#[test]
fn validate_uses_the_given_path() {
    let mut cfg = NotifyConfig::default();
    cfg.routes.insert(NotificationKind::Rollback, vec!["nope".into()]);
    let err = cfg.validate("x.notify").unwrap_err();
    assert!(
        err.starts_with("x.notify.routes.rollback: unknown channel \"nope\""),
        "{err}"
    );
}
