//! Stakeholder notifications, through the channels of `[notify]`.

use agents::ports::{self, Target};
use async_trait::async_trait;
use workflow::record::NotificationEntry;

/// [`ports::Notifier`] by the configured channels (webhook, outbox, log).
pub struct NotifierAdapter {
    notifier: notify::Notifier,
}

impl NotifierAdapter {
    pub(super) fn new(config: notify::NotifyConfig) -> NotifierAdapter {
        NotifierAdapter {
            notifier: notify::Notifier::new(config),
        }
    }
}

#[async_trait]
impl ports::Notifier for NotifierAdapter {
    async fn send(&self, target: &Target, notification: &NotificationEntry) -> Result<(), String> {
        let ctx = notify::DeliveryContext {
            deployment_id: target.id.to_string(),
            service: target.service.to_string(),
            version: target.version.as_ref().map(|v| v.to_string()),
        };
        self.notifier.send(&ctx, notification).await
    }
}
