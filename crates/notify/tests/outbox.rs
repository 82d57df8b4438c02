//! The outbox channel, routes to the log channel, and template overrides.

mod common;

use std::io;
use std::sync::{Arc, Mutex};

use common::{ctx, entry, files, Receiver};
use notify::{DeliveryContext, Notifier, NotifyConfig};
use workflow::types::NotificationKind;

fn config(toml: &str) -> NotifyConfig {
    NotifyConfig::from_agents_toml(toml).unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn outbox_config(dir: &std::path::Path, extra: &str) -> NotifyConfig {
    config(&format!(
        r#"
[notify.channels.files]
kind = "outbox"
dir = "{}"

[notify.routes]
pre_deployment = ["files"]
post_deployment = ["files"]
rollback = ["files"]
escalation = ["files"]
approval_requested = ["files"]
{extra}
"#,
        dir.display()
    ))
}

#[tokio::test]
async fn one_markdown_file_per_notification() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let notifier = Notifier::new(outbox_config(&dir, ""));
    let sent = [
        entry("n-1", NotificationKind::PreDeployment, 1),
        entry("n-2", NotificationKind::PostDeployment, 2),
        entry("n/3 x", NotificationKind::Escalation, 3),
    ];
    for e in &sent {
        notifier.send(&ctx(), e).await.unwrap();
    }
    // No temporary file is left behind: every file is a finished .md.
    assert_eq!(
        files(&dir),
        [
            "20250304T100105-n-1-pre_deployment.md",
            "20250304T100205-n-2-post_deployment.md",
            "20250304T100305-n_3_x-escalation.md",
        ]
    );
    let text = std::fs::read_to_string(dir.join("20250304T100105-n-1-pre_deployment.md")).unwrap();
    assert_eq!(
        text,
        "# Subject of n-1\n\n\
         - Notification: n-1 (pre_deployment)\n\
         - At: 2025-03-04T10:01:05Z\n\
         - Deployment: d-000042\n\
         - Service: web\n\
         - Version: 2.4.1\n\n\
         Body of n-1.\n\n- line one\n- line two\n"
    );

    // Sending the same notification again replaces its file.
    notifier.send(&ctx(), &sent[0]).await.unwrap();
    assert_eq!(files(&dir).len(), 3);
}

#[tokio::test]
async fn an_unwritable_outbox_is_reported_with_the_channel_name() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let notifier = Notifier::new(outbox_config(&not_a_dir, ""));
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Rollback, 0))
        .await
        .unwrap_err();
    assert!(
        err.starts_with(&format!("files: outbox {}: ", not_a_dir.display())),
        "{err}"
    );
}

/// Collects what the log channel writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn a_kind_without_route_goes_to_the_log_only() {
    let receiver = Receiver::start(0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let notifier = Notifier::new(config(&format!(
        r#"
[notify.channels.ops]
kind = "webhook"
url = "{}"

[notify.channels.files]
kind = "outbox"
dir = "{}"

[notify.routes]
rollback = ["ops", "files"]
"#,
        receiver.url,
        dir.display()
    )));
    assert_eq!(notifier.config().route(NotificationKind::PreDeployment), ["log"]);

    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    notifier
        .send(&ctx(), &entry("n-1", NotificationKind::PreDeployment, 0))
        .await
        .unwrap();
    drop(guard);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("INFO"), "{log}");
    assert!(log.contains("notification: Subject of n-1"), "{log}");
    assert!(log.contains("id=\"n-1\""), "{log}");
    assert!(log.contains("deployment=\"d-000042\""), "{log}");
    assert!(log.contains("line one"), "{log}");
    assert!(receiver.requests().is_empty());
    assert!(files(&dir).is_empty());
}

#[tokio::test]
async fn an_empty_route_sends_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let notifier = Notifier::new(config(&format!(
        "[notify.channels.files]\nkind = \"outbox\"\ndir = \"{}\"\n[notify.routes]\nrollback = []\n",
        dir.display()
    )));
    notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Rollback, 0))
        .await
        .unwrap();
    assert!(files(&dir).is_empty());
}

#[tokio::test]
async fn template_overrides_render_with_the_context() {
    let receiver = Receiver::start(0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let notifier = Notifier::new(config(&format!(
        r#"
[notify.channels.ops]
kind = "webhook"
url = "{}"

[notify.channels.files]
kind = "outbox"
dir = "{}"

[notify.routes]
rollback = ["ops", "files"]
post_deployment = ["ops"]

[notify.templates.rollback]
subject = "[{{{{ kind | upper }}}}] {{{{ service }}}} {{{{ version or '-' }}}} ({{{{ deployment_id }}}})"
body = """
{{{{ body }}}}
---
Was: {{{{ subject }}}} at {{{{ at }}}}
"""

[notify.templates.post_deployment]
subject = "Done: {{{{ subject }}}}"
"#,
        receiver.url,
        dir.display()
    )));
    let e = entry("n-1", NotificationKind::Rollback, 0);
    notifier.send(&ctx(), &e).await.unwrap();
    let body = receiver.requests()[0].json();
    assert_eq!(body["subject"], "[ROLLBACK] web 2.4.1 (d-000042)");
    assert_eq!(
        body["body"],
        format!("{}\n---\nWas: Subject of n-1 at 2025-03-04T10:00:05Z\n", e.body)
    );
    let text = std::fs::read_to_string(dir.join("20250304T100005-n-1-rollback.md")).unwrap();
    assert!(text.starts_with("# [ROLLBACK] web 2.4.1 (d-000042)\n"), "{text}");
    assert!(text.contains("Was: Subject of n-1 at 2025-03-04T10:00:05Z"), "{text}");

    // Without a version; only the subject overridden; kinds without templates keep the seed's text.
    let no_version = DeliveryContext { version: None, ..ctx() };
    notifier.send(&no_version, &e).await.unwrap();
    assert_eq!(receiver.requests()[1].json()["subject"], "[ROLLBACK] web - (d-000042)");
    let post = entry("n-2", NotificationKind::PostDeployment, 1);
    notifier.send(&ctx(), &post).await.unwrap();
    let body = receiver.requests()[2].json();
    assert_eq!(body["subject"], "Done: Subject of n-2");
    assert_eq!(body["body"], post.body.as_str());
}

#[tokio::test]
async fn a_simulated_deployment_is_labelled_even_through_an_override() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    // The override drops the seed's body; the label stays.
    let notifier = Notifier::new(outbox_config(
        &dir,
        "[notify.templates.rollback]\nbody = \"Rolled back{% if simulated %} in the simulated world{% endif %}.\"\n",
    ));
    let mut simulated = entry("n-1", NotificationKind::Rollback, 1);
    simulated.simulated = true;
    notifier.send(&ctx(), &simulated).await.unwrap();
    let text = std::fs::read_to_string(dir.join("20250304T100105-n-1-rollback.md")).unwrap();
    assert!(text.starts_with("# Subject of n-1 (simulated)\n"), "{text}");
    assert!(text.contains("- Evidence: partly or wholly simulated"), "{text}");
    assert!(text.contains("Rolled back in the simulated world."), "{text}");
    assert!(text.contains(workflow::record::SIMULATED_NOTICE), "{text}");

    // An observed deployment carries no label.
    notifier
        .send(&ctx(), &entry("n-2", NotificationKind::Rollback, 2))
        .await
        .unwrap();
    let text = std::fs::read_to_string(dir.join("20250304T100205-n-2-rollback.md")).unwrap();
    assert!(!text.contains("simulated"), "{text}");
}
