//! Sync health for operators: one row per community and device, problems first, and
//! a summary line such as "81 synced in the last hour, 5 stale, 2 never seen".

use fivestar_core::Registry;
use serde::Serialize;

use crate::store::PeerStatus;

/// How a row is doing, worst first (the order rows are listed in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Its certificate was revoked, and it still tries to connect.
    Revoked,
    /// Its latest attempt failed.
    Failing,
    /// Its last successful sync is older than `stale_after`.
    Stale,
    /// It connected but never completed an exchange.
    NeverSynced,
    /// No device of the community ever connected.
    NeverSeen,
    /// Synced within `stale_after`.
    Ok,
}

impl Health {
    /// A short word for tables.
    pub fn word(self) -> &'static str {
        match self {
            Health::Revoked => "REVOKED",
            Health::Failing => "FAILING",
            Health::Stale => "stale",
            Health::NeverSynced => "never synced",
            Health::NeverSeen => "never seen",
            Health::Ok => "ok",
        }
    }

    /// The same in Chinese, for the dashboard.
    pub fn zh(self) -> &'static str {
        match self {
            Health::Revoked => "证书已吊销",
            Health::Failing => "同步失败",
            Health::Stale => "数据过期",
            Health::NeverSynced => "从未成功",
            Health::NeverSeen => "从未连接",
            Health::Ok => "正常",
        }
    }
}

/// One community's device (or the community alone, when none was ever seen).
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// How it is doing.
    pub health: Health,
    /// The community's id (empty for a reviewer).
    pub community: String,
    /// The community's name.
    pub community_name: String,
    /// The device's name, if one was seen.
    pub device: Option<String>,
    /// What the hub knows of the device.
    pub peer: Option<PeerStatus>,
}

/// Counts over communities (not devices), and failing devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Communities in the registry.
    pub communities: u32,
    /// Last successful sync within the last hour.
    pub synced_last_hour: u32,
    /// Older than an hour but within `stale_after`.
    pub synced_earlier: u32,
    /// Older than `stale_after`.
    pub stale: u32,
    /// Seen, never synced.
    pub never_synced: u32,
    /// No device ever connected.
    pub never_seen: u32,
    /// Devices whose latest attempt failed.
    pub failing_devices: u32,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            (self.synced_last_hour, "synced in the last hour"),
            (self.synced_earlier, "synced earlier"),
            (self.stale, "stale"),
            (self.never_synced, "never synced"),
            (self.never_seen, "never seen"),
        ];
        let text: Vec<String> =
            parts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        write!(f, "{}", text.join(", "))?;
        if self.failing_devices > 0 {
            write!(f, "; {} device(s) failing", self.failing_devices)?;
        }
        Ok(())
    }
}

/// Builds the rows and the summary. Pure: the clock and the data come in.
pub fn status(
    registry: &Registry,
    peers: &[PeerStatus],
    now_ms: i64,
    stale_after_ms: i64,
) -> (Vec<StatusRow>, Summary) {
    let health_of = |p: &PeerStatus| match (p.last_success_ms, p.last_error_ms) {
        (success, Some(error))
            if error > success.unwrap_or(i64::MIN)
                && p.last_error_class.as_deref() == Some("revoked") =>
        {
            Health::Revoked
        }
        (success, Some(error)) if error > success.unwrap_or(i64::MIN) => Health::Failing,
        (None, _) => Health::NeverSynced,
        (Some(success), _) if now_ms - success > stale_after_ms => Health::Stale,
        _ => Health::Ok,
    };
    let mut rows = Vec::new();
    let mut summary =
        Summary { communities: registry.communities.len() as u32, ..Summary::default() };
    for community in &registry.communities {
        let mine: Vec<&PeerStatus> = peers
            .iter()
            .filter(|p| p.community.as_deref() == Some(community.id.as_str()))
            .collect();
        if mine.is_empty() {
            summary.never_seen += 1;
            rows.push(StatusRow {
                health: Health::NeverSeen,
                community: community.id.clone(),
                community_name: community.name.clone(),
                device: None,
                peer: None,
            });
            continue;
        }
        match mine.iter().filter_map(|p| p.last_success_ms).max() {
            None => summary.never_synced += 1,
            Some(last) if now_ms - last > stale_after_ms => summary.stale += 1,
            Some(last) if now_ms - last <= 3_600_000 => summary.synced_last_hour += 1,
            Some(_) => summary.synced_earlier += 1,
        }
        for peer in mine {
            let health = health_of(peer);
            if matches!(health, Health::Failing | Health::Revoked) {
                summary.failing_devices += 1;
            }
            rows.push(StatusRow {
                health,
                community: community.id.clone(),
                community_name: community.name.clone(),
                device: Some(peer.name.clone()),
                peer: Some(peer.clone()),
            });
        }
    }
    for peer in peers.iter().filter(|p| p.community.is_none()) {
        rows.push(StatusRow {
            health: health_of(peer),
            community: String::new(),
            community_name: format!("reviewer {}", peer.name),
            device: Some(peer.name.clone()),
            peer: Some(peer.clone()),
        });
    }
    rows.sort_by(|a, b| {
        (a.health, &a.community, &a.device).cmp(&(b.health, &b.community, &b.device))
    });
    (rows, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(community: &str, name: &str, success: Option<i64>, error: Option<i64>) -> PeerStatus {
        PeerStatus {
            peer: format!("{community}/{name}"),
            community: Some(community.into()),
            name: name.into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            last_success_ms: success,
            last_error_ms: error,
            last_error_class: error.map(|_| "denied".into()),
            last_error_message: error.map(|_| "no".into()),
            sessions: 1,
            bytes_in: 0,
            bytes_out: 0,
            changes_received: 0,
            node_version: None,
            unacked_changes: None,
            oldest_unacked_age_seconds: None,
            clock_skew_ms: None,
        }
    }

    #[test]
    fn problems_come_first_and_the_summary_counts_communities() {
        let registry = Registry::sample();
        let hour = 3_600_000;
        let now = 100 * hour;
        let peers = vec![
            peer("fuhou", "d1", Some(now - 60_000), None),
            peer("yuyuan", "d1", Some(now - 2 * hour), None),
            peer("fangou", "d1", Some(now - 30 * hour), None),
            peer("sanli", "d1", None, None),
            peer("cuidaizhang", "d1", Some(now - 120_000), Some(now - 60_000)),
        ];
        let (rows, summary) = status(&registry, &peers, now, 24 * hour);
        assert_eq!(rows.len(), 88);
        assert_eq!((rows[0].health, rows[0].community.as_str()), (Health::Failing, "cuidaizhang"));
        assert_eq!((rows[1].health, rows[1].community.as_str()), (Health::Stale, "fangou"));
        assert_eq!((rows[2].health, rows[2].community.as_str()), (Health::NeverSynced, "sanli"));
        assert_eq!(rows[3].health, Health::NeverSeen);
        assert_eq!(rows[87].health, Health::Ok);
        assert_eq!(
            summary.to_string(),
            "2 synced in the last hour, 1 synced earlier, 1 stale, 1 never synced, 83 never seen; 1 device(s) failing"
        );
    }
}
