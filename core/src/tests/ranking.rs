//! Competition ranking and freshness, hand-computed.

use chrono::{DateTime, TimeDelta, Utc};

use crate::ranking::{Freshness, RankEntry, rank};

fn at(hours_ago: i64) -> Option<DateTime<Utc>> {
    Some(now() - TimeDelta::hours(hours_ago))
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap()
}

fn entry(
    id: &str,
    sub: &str,
    stars: u32,
    total: u32,
    last_sync: Option<DateTime<Utc>>,
) -> RankEntry {
    RankEntry { community_id: id.into(), subdistrict: sub.into(), stars, total, last_sync }
}

#[test]
fn ties_share_a_rank_and_the_next_rank_skips() {
    let entries = vec![
        entry("a", "001", 3, 40000, at(1)),
        entry("b", "001", 4, 35000, at(1)),
        entry("c", "002", 3, 40000, at(1)),
        entry("d", "002", 3, 39999, at(1)),
        entry("e", "001", 2, 49000, at(1)),
    ];
    let ranks = rank(&entries, now(), TimeDelta::hours(24));
    let district: Vec<_> = ranks.iter().map(|r| r.district_rank).collect();
    // b (4 stars) first; a and c tie at 3 stars / 400.00; d next; e has more
    // points but fewer stars, so last.
    assert_eq!(district, vec![Some(2), Some(1), Some(2), Some(4), Some(5)]);
    let sub: Vec<_> = ranks.iter().map(|r| r.subdistrict_rank).collect();
    assert_eq!(sub, vec![Some(2), Some(1), Some(1), Some(2), Some(3)]);
}

#[test]
fn stale_communities_are_ranked_on_last_known_data_and_flagged() {
    let entries = vec![entry("a", "001", 5, 50000, at(25)), entry("b", "001", 1, 100, at(23))];
    let ranks = rank(&entries, now(), TimeDelta::hours(24));
    assert_eq!(ranks[0].freshness, Freshness::Stale);
    assert_eq!(ranks[0].district_rank, Some(1));
    assert_eq!(ranks[1].freshness, Freshness::Current);
    assert_eq!(ranks[1].district_rank, Some(2));
}

#[test]
fn exactly_stale_after_is_still_current() {
    let ranks = rank(&[entry("a", "001", 0, 0, at(24))], now(), TimeDelta::hours(24));
    assert_eq!(ranks[0].freshness, Freshness::Current);
}

#[test]
fn never_synced_communities_have_no_data_and_no_rank() {
    let entries = vec![entry("a", "001", 0, 0, None), entry("b", "001", 0, 0, at(1))];
    let ranks = rank(&entries, now(), TimeDelta::hours(24));
    assert_eq!(ranks[0].freshness, Freshness::NoData);
    assert_eq!(ranks[0].district_rank, None);
    assert_eq!(ranks[0].subdistrict_rank, None);
    assert_eq!(ranks[1].district_rank, Some(1));
}
