//! Template overrides: minijinja, strict about undefined variables, no auto-escaping (the output is Markdown).

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;
use workflow::types::NotificationKind;

use crate::config::TemplateOverride;

/// What a template override sees.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TemplateContext<'a> {
    pub subject: &'a str,
    pub body: &'a str,
    pub kind: &'a str,
    pub service: &'a str,
    pub version: Option<&'a str>,
    pub deployment_id: &'a str,
    pub at: &'a str,
    /// The deployment rests on simulated evidence.
    pub simulated: bool,
}

fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

/// Compiles `source` and renders it with a sample context.
pub(crate) fn check(source: &str) -> Result<(), String> {
    let env = environment();
    let template = env.template_from_str(source).map_err(describe)?;
    let sample = TemplateContext {
        subject: "Subject",
        body: "Body",
        kind: "rollback",
        service: "web",
        version: Some("1.0.0"),
        deployment_id: "d-000001",
        at: "2025-01-01T00:00:00Z",
        simulated: false,
    };
    template.render(Value::from_serialize(&sample)).map_err(describe)?;
    Ok(())
}

fn describe(e: minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    format!("template error: {text}")
}

/// The compiled overrides of a configuration.
pub(crate) struct Templates {
    env: Environment<'static>,
    present: BTreeSet<(NotificationKind, Field)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Field {
    Subject,
    Body,
}

impl Field {
    fn as_str(self) -> &'static str {
        match self {
            Field::Subject => "subject",
            Field::Body => "body",
        }
    }
}

fn name(kind: NotificationKind, field: Field) -> String {
    format!("{kind}.{}", field.as_str())
}

impl Templates {
    /// Templates that do not compile are left out (with a warning): their kind keeps the seed's text.
    pub(crate) fn new(overrides: &BTreeMap<NotificationKind, TemplateOverride>) -> Templates {
        let mut env = environment();
        let mut present = BTreeSet::new();
        for (kind, o) in overrides {
            for (field, source) in [(Field::Subject, &o.subject), (Field::Body, &o.body)] {
                let Some(source) = source else { continue };
                match env.add_template_owned(name(*kind, field), source.clone()) {
                    Ok(()) => {
                        present.insert((*kind, field));
                    }
                    Err(e) => tracing::warn!(
                        target: "stagecoach::notify",
                        "notify.templates.{kind}.{}: {}; the seed's text is used",
                        field.as_str(),
                        describe(e)
                    ),
                }
            }
        }
        Templates { env, present }
    }

    /// The override of `field` for `kind` rendered with `ctx`; `None` when there is none.
    pub(crate) fn render(
        &self,
        kind: NotificationKind,
        field: Field,
        ctx: &TemplateContext<'_>,
    ) -> Option<Result<String, String>> {
        if !self.present.contains(&(kind, field)) {
            return None;
        }
        let rendered = self
            .env
            .get_template(&name(kind, field))
            .and_then(|t| t.render(Value::from_serialize(ctx)))
            .map_err(describe);
        Some(rendered)
    }
}
