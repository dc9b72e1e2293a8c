//! Competition ranking and freshness, hand-computed.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use crate::ranking::{Freshness, RankEntry, rank};

fn at(hours_ago: i64) -> Option<DateTime<Utc>> {
    Some(now() - TimeDelta::hours(hours_ago))
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap()
}

fn entry(
    id: &'static str,
    sub: &'static str,
    stars: u32,
    total: u32,
    last_sync: Option<DateTime<Utc>>,
) -> RankEntry<'static> {
    RankEntry { community_id: id, subdistrict: sub, stars, total, last_sync }
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

proptest! {
    /// Competition ranking by definition: a ranked community's rank is one more than
    /// the number of ranked communities strictly better than it, in the district and
    /// within its subdistrict, whatever order the entries come in.
    #[test]
    fn a_rank_is_one_more_than_the_number_strictly_better(
        raw in proptest::collection::vec((0u32..3, 0u32..6, 0u32..4, 0i64..40), 0..60)
    ) {
        let ids: Vec<String> = (0..raw.len()).map(|i| format!("c{i}")).collect();
        let subs = ["001", "002", "003"];
        let entries: Vec<RankEntry> = raw
            .iter()
            .zip(&ids)
            .map(|(&(sub, stars, total, hours), id)| RankEntry {
                community_id: id,
                subdistrict: subs[sub as usize],
                stars,
                total: total * 1000,
                // 30 hours and more: never synced.
                last_sync: if hours >= 30 { None } else { at(hours) },
            })
            .collect();
        let ranks = rank(&entries, now(), TimeDelta::hours(24));
        prop_assert_eq!(ranks.len(), entries.len());
        let key = |e: &RankEntry| (e.stars, e.total);
        for (e, r) in entries.iter().zip(&ranks) {
            if e.last_sync.is_none() {
                prop_assert_eq!(r.freshness, Freshness::NoData);
                prop_assert_eq!((r.district_rank, r.subdistrict_rank), (None, None));
                continue;
            }
            let better = |same_sub: bool| {
                entries
                    .iter()
                    .filter(|o| o.last_sync.is_some() && key(o) > key(e))
                    .filter(|o| !same_sub || o.subdistrict == e.subdistrict)
                    .count() as u32
                    + 1
            };
            prop_assert_eq!(r.district_rank, Some(better(false)));
            prop_assert_eq!(r.subdistrict_rank, Some(better(true)));
        }
    }
}
