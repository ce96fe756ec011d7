//! What the watcher counts as ready: the primary when it accepts
//! connections, and the standbys that stream from it.

use super::super::record::DatabaseRecord;
use super::super::Entry;
use super::servers::{server_status, ServerStatus};
use super::standbys::streaming_standbys;

/// Ready instances: the primary when it accepts connections, and the
/// standbys that stream from it.
pub(super) async fn count_ready(entry: &Entry, record: &DatabaseRecord) -> u32 {
    let primary = record.primary().expect("bootstrapped");
    if server_status(&entry.paths.pgdata(primary.ordinal)).await != ServerStatus::Ready {
        return 0;
    }
    let standbys = record.standbys();
    // Each look is a new connection (a forked backend and a SCRAM
    // exchange), twice per pass: skip it when no standby can stream.
    if standbys.is_empty() {
        return 1;
    }
    let streaming = streaming_standbys(entry, record).await.unwrap_or_default();
    let mut ready = 1;
    for s in &standbys {
        if streaming.contains(&entry.paths.instance_name(s.ordinal))
            && server_status(&entry.paths.pgdata(s.ordinal)).await == ServerStatus::Ready
        {
            ready += 1;
        }
    }
    ready
}
