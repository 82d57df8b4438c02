//! Outbox delivery: one Markdown file per notification, written atomically (temporary file + rename).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Message;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `{at:%Y%m%dT%H%M%S}-{id}-{kind}.md`; characters of the id other than ASCII letters, digits, `-`, `_` and `.`
/// become `_`. The same notification always gets the same name, so a repeated delivery replaces the file.
pub(crate) fn file_name(msg: &Message<'_>) -> String {
    let id: String = msg
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = id.trim_start_matches('.');
    format!("{}-{id}-{}.md", msg.at_time.format("%Y%m%dT%H%M%S"), msg.kind)
}

/// The Markdown document of a notification.
pub(crate) fn document(msg: &Message<'_>) -> String {
    let mut text = format!("# {}\n\n", msg.subject.trim());
    text.push_str(&format!("- Notification: {} ({})\n", msg.id, msg.kind));
    text.push_str(&format!("- At: {}\n", msg.at));
    text.push_str(&format!("- Deployment: {}\n", msg.deployment_id));
    text.push_str(&format!("- Service: {}\n", msg.service));
    text.push_str(&format!("- Version: {}\n", msg.version.unwrap_or("-")));
    if msg.simulated {
        text.push_str("- Evidence: partly or wholly simulated (see the Deployment Record)\n");
    }
    text.push('\n');
    text.push_str(msg.body.trim_end());
    text.push('\n');
    text
}

/// Writes the notification's file into `dir` (created when missing) and returns its path.
pub(crate) async fn deliver(dir: &Path, msg: &Message<'_>) -> Result<PathBuf, String> {
    let dir = dir.to_path_buf();
    let name = file_name(msg);
    let content = document(msg);
    let shown = dir.display().to_string();
    let written = tokio::task::spawn_blocking(move || write_atomically(&dir, &name, content.as_bytes())).await;
    match written {
        Ok(Ok(path)) => Ok(path),
        Ok(Err(e)) => Err(format!("outbox {shown}: {e}")),
        Err(e) => Err(format!("outbox {shown}: the writer task failed: {e}")),
    }
}

fn write_atomically(dir: &Path, name: &str, content: &[u8]) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let target = dir.join(name);
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(content)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &target)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // Make the rename durable; not every platform lets a directory be opened and synced.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(target)
}
