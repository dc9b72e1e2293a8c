//! Ranking many communities: competition ranking ("1, 2, 2, 4") by stars, then
//! total, in the district and within each subdistrict, with freshness flags.
//!
//! A community whose last successful sync is older than `stale_after` is still
//! ranked on its last known data and marked [`Freshness::Stale`]. One that never
//! synced is [`Freshness::NoData`] and is not ranked: there is nothing to rank it
//! on, and ranking it last would claim a comparison nobody made.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// What the ranking needs to know about one community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEntry {
    /// The community's id.
    pub community_id: String,
    /// Its subdistrict's code.
    pub subdistrict: String,
    /// Stars earned.
    pub stars: u32,
    /// Total score, hundredths of a point.
    pub total: u32,
    /// Last successful sync; `None` when it never synced.
    pub last_sync: Option<DateTime<Utc>>,
}

/// How current a community's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Synced within `stale_after`.
    Current,
    /// Last synced longer ago than `stale_after`; ranked on its last known data.
    Stale,
    /// Never synced; not ranked.
    NoData,
}

/// One community's ranks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ranked {
    /// The community's id.
    pub community_id: String,
    /// Rank in the district (1 is best); `None` when not ranked.
    pub district_rank: Option<u32>,
    /// Rank within its subdistrict; `None` when not ranked.
    pub subdistrict_rank: Option<u32>,
    /// How current its data is.
    pub freshness: Freshness,
}

/// Ranks the entries; the result is in the same order as `entries`.
pub fn rank(entries: &[RankEntry], now: DateTime<Utc>, stale_after: TimeDelta) -> Vec<Ranked> {
    let freshness: Vec<Freshness> = entries
        .iter()
        .map(|e| match e.last_sync {
            None => Freshness::NoData,
            Some(at) if now - at > stale_after => Freshness::Stale,
            Some(_) => Freshness::Current,
        })
        .collect();
    let ranked: Vec<usize> =
        (0..entries.len()).filter(|&i| freshness[i] != Freshness::NoData).collect();
    let district = competition_ranks(entries, &ranked);
    let mut by_subdistrict: HashMap<&str, Vec<usize>> = HashMap::new();
    for &i in &ranked {
        by_subdistrict.entry(entries[i].subdistrict.as_str()).or_default().push(i);
    }
    let mut subdistrict = HashMap::new();
    for members in by_subdistrict.values() {
        subdistrict.extend(competition_ranks(entries, members));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| Ranked {
            community_id: e.community_id.clone(),
            district_rank: district.get(&i).copied(),
            subdistrict_rank: subdistrict.get(&i).copied(),
            freshness: freshness[i],
        })
        .collect()
}

/// Rank of each index: 1 + how many members are strictly better.
fn competition_ranks(entries: &[RankEntry], members: &[usize]) -> HashMap<usize, u32> {
    let key = |i: usize| (entries[i].stars, entries[i].total);
    let mut order = members.to_vec();
    order.sort_by_key(|&i| std::cmp::Reverse(key(i)));
    let mut ranks = HashMap::with_capacity(order.len());
    let mut current = 0;
    for (position, &i) in order.iter().enumerate() {
        if position == 0 || key(order[position - 1]) != key(i) {
            current = position as u32 + 1;
        }
        ranks.insert(i, current);
    }
    ranks
}
