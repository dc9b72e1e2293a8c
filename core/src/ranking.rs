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

/// What the ranking needs to know about one community (borrowed: ranking 50,000
/// communities copies no names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankEntry<'a> {
    /// The community's id.
    pub community_id: &'a str,
    /// Its subdistrict's code.
    pub subdistrict: &'a str,
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

/// One community's ranks, in the order of the entries they were computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ranked {
    /// Rank in the district (1 is best); `None` when not ranked.
    pub district_rank: Option<u32>,
    /// Rank within its subdistrict; `None` when not ranked.
    pub subdistrict_rank: Option<u32>,
    /// How current its data is.
    pub freshness: Freshness,
}

/// Ranks the entries; the result is in the same order as `entries`.
pub fn rank(entries: &[RankEntry], now: DateTime<Utc>, stale_after: TimeDelta) -> Vec<Ranked> {
    let mut out: Vec<Ranked> = entries
        .iter()
        .map(|e| Ranked {
            district_rank: None,
            subdistrict_rank: None,
            freshness: match e.last_sync {
                None => Freshness::NoData,
                Some(at) if now - at > stale_after => Freshness::Stale,
                Some(_) => Freshness::Current,
            },
        })
        .collect();
    // Best first: more stars, then more points. Ties keep entry order (stable),
    // which no rank depends on.
    let mut order: Vec<usize> =
        (0..entries.len()).filter(|&i| out[i].freshness != Freshness::NoData).collect();
    let key = |i: usize| std::cmp::Reverse((entries[i].stars, entries[i].total));
    order.sort_by_key(|&i| key(i));
    // One pass over the sorted order gives both ranks: the district's from the
    // position, each subdistrict's from its own running count.
    struct Running {
        seen: u32,
        rank: u32,
        last: Option<(u32, u32)>,
    }
    let mut district = Running { seen: 0, rank: 0, last: None };
    let mut per_subdistrict: HashMap<&str, Running> = HashMap::new();
    fn step(r: &mut Running, k: (u32, u32)) -> u32 {
        r.seen += 1;
        if r.last != Some(k) {
            r.rank = r.seen;
            r.last = Some(k);
        }
        r.rank
    }
    for &i in &order {
        let k = (entries[i].stars, entries[i].total);
        out[i].district_rank = Some(step(&mut district, k));
        let sub = per_subdistrict.entry(entries[i].subdistrict).or_insert(Running {
            seen: 0,
            rank: 0,
            last: None,
        });
        out[i].subdistrict_rank = Some(step(sub, k));
    }
    out
}
