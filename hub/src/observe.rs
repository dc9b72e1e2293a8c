//! Metrics: names in one place, following Prometheus conventions (`_total` counters,
//! `_seconds` and `_bytes` units), and the recorder the `/metrics` endpoint renders.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Sync sessions opened.
pub const SESSIONS: &str = "fivestar_hub_sync_sessions_total";
/// Sessions that ended in an error, by `class` (denied, invalid, too_large, ...).
pub const ERRORS: &str = "fivestar_hub_sync_errors_total";
/// Sync payload bytes, by `direction` (in, out).
pub const BYTES: &str = "fivestar_hub_sync_bytes_total";
/// Changes received from nodes and stored.
pub const CHANGES: &str = "fivestar_hub_changes_applied_total";
/// Time to check and store one incoming sync message.
pub const MERGE_SECONDS: &str = "fivestar_hub_merge_duration_seconds";
/// Time to refresh the standings (rescore what changed, rank all).
pub const RESCORE_SECONDS: &str = "fivestar_hub_rescore_duration_seconds";
/// Communities rescored, by what was read: `touched_tasks` (only the tasks the new
/// changes wrote) or `whole_document`.
pub const RESCORES: &str = "fivestar_hub_community_rescores_total";
/// Devices connected right now.
pub const CONNECTED: &str = "fivestar_hub_connected_devices";
/// Each community's last successful sync, Unix seconds, by `community`.
pub const LAST_SYNC: &str = "fivestar_hub_community_last_sync_timestamp_seconds";
/// 1 for a community that has never synced, 0 once it has, by `community` (the
/// last-sync gauge has no value to alert on until a first sync).
pub const NEVER_SYNCED: &str = "fivestar_hub_community_never_synced";
/// Communities by freshness (`current`, `stale`, `no_data`).
pub const COMMUNITIES: &str = "fivestar_hub_communities";
/// Input that made the document library (or a store job) panic; refused, isolated.
pub const PANICS: &str = "fivestar_hub_isolated_panics_total";
/// Connections refused before any session: over a cap, no HTTP/2 preface in time,
/// failed TLS handshakes, by `reason`.
pub const CONNECTIONS_REFUSED: &str = "fivestar_hub_connections_refused_total";
/// Open connections after the TLS handshake.
pub const CONNECTIONS: &str = "fivestar_hub_open_connections";

/// 1, with the hub's `version` as a label.
pub const BUILD_INFO: &str = "fivestar_hub_build_info";
/// Counter: evidence file bytes stored (chunks accepted).
pub const FILE_BYTES: &str = "fivestar_hub_file_bytes_received_total";
/// Counter: evidence files that arrived whole and verified.
pub const FILES_COMPLETE: &str = "fivestar_hub_files_completed_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Refreshes the standard `process_*` metrics (CPU seconds, resident memory, open file
/// descriptors and their limit, start time, threads); called before each scrape.
pub fn collect_process() {
    PROCESS.get_or_init(metrics_process::Collector::default).collect();
}

/// Installs the process-wide recorder once and returns its handle (`None` if another
/// recorder was installed first, e.g. by an embedding program).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(SESSIONS, "Sync sessions opened by nodes.");
    describe_counter!(ERRORS, "Sync sessions that ended in an error, by class.");
    describe_counter!(BYTES, Unit::Bytes, "Automerge sync payload bytes, by direction.");
    describe_counter!(CHANGES, "Changes received from nodes and stored.");
    describe_counter!(FILE_BYTES, Unit::Bytes, "Evidence file bytes received and stored.");
    describe_counter!(FILES_COMPLETE, "Evidence files received whole and verified.");
    describe_histogram!(MERGE_SECONDS, Unit::Seconds, "Time to check and store one sync message.");
    describe_histogram!(RESCORE_SECONDS, Unit::Seconds, "Time to refresh the standings.");
    describe_counter!(RESCORES, "Communities rescored, by what was read.");
    describe_gauge!(CONNECTED, "Devices connected now.");
    describe_gauge!(LAST_SYNC, Unit::Seconds, "Last successful sync of each community, Unix time.");
    describe_gauge!(COMMUNITIES, "Communities by freshness of their data.");
    describe_gauge!(NEVER_SYNCED, "1 for a community that has never synced, else 0.");
    describe_gauge!(BUILD_INFO, "1, labelled with the hub's version.");
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    PROCESS.get_or_init(metrics_process::Collector::default).describe();
    describe_counter!(PANICS, "Inputs that made the document library fail, refused and isolated.");
    describe_counter!(CONNECTIONS_REFUSED, "Connections refused before a session, by reason.");
    describe_gauge!(CONNECTIONS, "Open connections after the TLS handshake.");
}
