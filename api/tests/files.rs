//! What pgplane keeps on disk is for the accounts that need it only:
//! records, secrets, the lock and every database's files are readable by
//! their owner alone, and directories let others at most pass through (the
//! PostgreSQL account must reach its data directories), never list them.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::TestApp;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push(path.clone());
        if meta.is_dir() {
            walk(&path, out);
        }
    }
}

#[tokio::test]
async fn files_are_private_to_their_accounts() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let (status, body) = editor
        .post("/api/v1/databases", json!({"name": "private"}))
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_state(&editor, "private", "healthy", Duration::from_secs(120))
        .await;
    let (status, _) = editor.get("/api/v1/databases/private/credentials").await;
    assert_eq!(status, 200);

    let mut paths = Vec::new();
    walk(&app.data_dir, &mut paths);
    assert!(paths.len() > 10, "a served data directory: {paths:?}");
    let mut wrong = Vec::new();
    let root_uid = std::fs::metadata(&app.data_dir).unwrap().uid();
    for path in &paths {
        let meta = std::fs::symlink_metadata(path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.file_type().is_symlink() {
            continue;
        }
        let ok = if meta.is_dir() {
            // Others may pass through (0711) to reach a deeper directory, but
            // neither list nor write it.
            mode & 0o066 == 0
        } else {
            mode & 0o077 == 0
        };
        if !ok {
            wrong.push(format!("{} is {mode:o}", path.display()));
        }
    }
    assert!(wrong.is_empty(), "open to others:\n{}", wrong.join("\n"));
    // pgplane's own files belong to pgplane's account.
    for name in ["audit.jsonl", "events.jsonl", "pgplane.lock"] {
        let meta = std::fs::metadata(app.data_dir.join(name)).unwrap();
        assert_eq!(meta.uid(), root_uid, "{name}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
}
