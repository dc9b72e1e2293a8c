//! The district's standings: every registered community's scores, ranks and
//! freshness in one table, the change in rank against an earlier table, and the tier
//! counts the district reports upward. Pure: scores and sync times come in.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::ranking::{Freshness, RankEntry, rank};
use crate::scoring::CommunityScore;
use crate::{Kind, Registry};

/// One row of the standings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// The community's id.
    pub community: String,
    /// Its Chinese name.
    pub name: String,
    /// Its subdistrict's code.
    pub subdistrict: String,
    /// Its subdistrict's name.
    pub subdistrict_name: String,
    /// Urban or agricultural.
    pub kind: Kind,
    /// Rank in the district; `None` when not ranked (no data).
    pub district_rank: Option<u32>,
    /// Rank within the subdistrict; `None` when not ranked.
    pub subdistrict_rank: Option<u32>,
    /// Stars earned.
    pub stars: u32,
    /// Total, hundredths of a point.
    pub total: u32,
    /// The five star scores in the standard's order: key, hundredths, earned.
    pub star_scores: Vec<StarCell>,
    /// Current, stale or no data.
    pub freshness: Freshness,
    /// Last successful sync of any of its devices, Unix milliseconds.
    pub last_sync_ms: Option<i64>,
}

/// One star's cell in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarCell {
    /// The star's key.
    pub key: std::sync::Arc<str>,
    /// Hundredths of a point.
    pub score: u32,
    /// Earned or not.
    pub earned: bool,
}

impl Standing {
    /// The part of a row that makes it a different standing: everything but the
    /// last sync time (which moves on every sync and changes no rank by itself).
    pub fn same_standing(&self, other: &Standing) -> bool {
        // Destructured so a new field cannot be forgotten here.
        let Standing {
            community,
            name,
            subdistrict,
            subdistrict_name,
            kind,
            district_rank,
            subdistrict_rank,
            stars,
            total,
            star_scores,
            freshness,
            last_sync_ms: _,
        } = self;
        *community == other.community
            && *name == other.name
            && *subdistrict == other.subdistrict
            && *subdistrict_name == other.subdistrict_name
            && *kind == other.kind
            && *district_rank == other.district_rank
            && *subdistrict_rank == other.subdistrict_rank
            && *stars == other.stars
            && *total == other.total
            && *star_scores == other.star_scores
            && *freshness == other.freshness
    }
}

/// True when two tables show the same standings (last-sync times aside).
pub fn same_table(a: &[Standing], b: &[Standing]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_standing(y))
}

/// Builds the standings of every community in the registry, sorted by district rank
/// (unranked last), then by id. `scores` and `last_sync` hold one entry per
/// registered community, in the registry's order (the caller looks them up once, and
/// nothing is copied); a community with no score counts as an empty one.
///
/// # Panics
///
/// When `scores` or `last_sync` is not as long as the registry's communities.
pub fn standings(
    registry: &Registry,
    scores: &[Option<&CommunityScore>],
    last_sync: &[Option<&i64>],
    now: DateTime<Utc>,
    stale_after: TimeDelta,
) -> Vec<Standing> {
    let communities = &registry.communities;
    assert_eq!(scores.len(), communities.len(), "one score entry per registered community");
    assert_eq!(last_sync.len(), communities.len(), "one sync entry per registered community");
    let subdistrict_names: HashMap<&str, &str> =
        registry.subdistricts.iter().map(|s| (s.code.as_str(), s.name.as_str())).collect();
    let entries: Vec<RankEntry> = communities
        .iter()
        .zip(scores.iter().zip(last_sync))
        .map(|(c, (score, last))| RankEntry {
            community_id: &c.id,
            subdistrict: &c.subdistrict,
            stars: score.map_or(0, |s| s.stars_earned),
            total: score.map_or(0, |s| s.total),
            last_sync: last.and_then(|&ms| DateTime::from_timestamp_millis(ms)),
        })
        .collect();
    let ranked = rank(&entries, now, stale_after);
    // Rows are built in registry order (reading the registry and the scores front to
    // back), then moved once each into rank order, sorted as indices.
    let mut rows: Vec<Option<Standing>> = communities
        .iter()
        .zip(scores.iter().zip(last_sync))
        .zip(entries.iter().zip(&ranked))
        .map(|((c, (score, last)), (entry, r))| {
            Some(Standing {
                community: c.id.clone(),
                name: c.name.clone(),
                subdistrict: c.subdistrict.clone(),
                subdistrict_name: subdistrict_names
                    .get(c.subdistrict.as_str())
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                kind: c.kind,
                district_rank: r.district_rank,
                subdistrict_rank: r.subdistrict_rank,
                stars: entry.stars,
                total: entry.total,
                star_scores: score
                    .map(|s| {
                        s.stars
                            .iter()
                            .map(|star| StarCell {
                                key: star.key.clone(),
                                score: star.score,
                                earned: star.earned,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                freshness: r.freshness,
                last_sync_ms: last.copied(),
            })
        })
        .collect();
    let mut order: Vec<usize> = (0..communities.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        let key = |i: usize| {
            let rank = ranked[i].district_rank;
            (rank.is_none(), rank, communities[i].id.as_str())
        };
        key(a).cmp(&key(b))
    });
    order.into_iter().filter_map(|i| rows[i].take()).collect()
}

/// One entry per registered community, in the registry's order, looked up in `map`
/// by id: the shape [`standings`] takes its scores and sync times in.
pub fn by_registry<'a, T>(registry: &Registry, map: &'a HashMap<String, T>) -> Vec<Option<&'a T>> {
    registry.communities.iter().map(|c| map.get(&c.id)).collect()
}

/// How each community's district rank moved from `before` to `after`: positive is up
/// (a better rank). `None` when either side has no rank.
pub fn rank_changes(before: &[Standing], after: &[Standing]) -> HashMap<String, i64> {
    let old: HashMap<&str, u32> =
        before.iter().filter_map(|s| s.district_rank.map(|r| (s.community.as_str(), r))).collect();
    after
        .iter()
        .filter_map(|s| {
            let now = s.district_rank?;
            let was = old.get(s.community.as_str())?;
            Some((s.community.clone(), i64::from(*was) - i64::from(now)))
        })
        .collect()
}

/// How many communities hold each number of stars.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiers {
    /// `by_stars[n]`: ranked communities with exactly `n` stars (0..=5).
    pub by_stars: [u32; 6],
    /// Communities with no data (not ranked, not counted above).
    pub no_data: u32,
    /// Ranked communities whose data is stale (counted above too).
    pub stale: u32,
}

/// The tier counts for the district and for each subdistrict (in registry order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierSummary {
    /// The whole district.
    pub district: Tiers,
    /// Per subdistrict: code, name, counts.
    pub subdistricts: Vec<(String, String, Tiers)>,
}

/// Counts tiers from the standings.
pub fn tiers(registry: &Registry, rows: &[Standing]) -> TierSummary {
    let mut per: BTreeMap<&str, Tiers> = BTreeMap::new();
    let mut district = Tiers::default();
    for row in rows {
        let sub = per.entry(row.subdistrict.as_str()).or_default();
        for t in [&mut district, sub] {
            match row.freshness {
                Freshness::NoData => t.no_data += 1,
                freshness => {
                    t.by_stars[row.stars.min(5) as usize] += 1;
                    if freshness == Freshness::Stale {
                        t.stale += 1;
                    }
                }
            }
        }
    }
    TierSummary {
        district,
        subdistricts: registry
            .subdistricts
            .iter()
            .map(|s| {
                (
                    s.code.clone(),
                    s.name.clone(),
                    per.get(s.code.as_str()).cloned().unwrap_or_default(),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{task, with_progress};
    use crate::{Standard, score};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap()
    }

    #[test]
    fn every_registered_community_has_a_row_and_the_tiers_add_up() {
        let registry = Registry::sample();
        let standard = Standard::sample();
        let full: Vec<_> = standard
            .kind(Kind::Urban)
            .stars
            .iter()
            .map(|s| with_progress(task(&format!("t-{}", s.key), &s.key, 100), 100))
            .collect();
        let mut scores = HashMap::new();
        scores.insert("fuhou".to_string(), score(standard.kind(Kind::Urban), &full));
        scores.insert("yuyuan".to_string(), score(standard.kind(Kind::Urban), &[]));
        let ms = now().timestamp_millis();
        let last =
            HashMap::from([("fuhou".to_string(), ms), ("yuyuan".to_string(), ms - 25 * 3_600_000)]);
        let rows = standings(
            &registry,
            &by_registry(&registry, &scores),
            &by_registry(&registry, &last),
            now(),
            TimeDelta::hours(24),
        );
        assert_eq!(rows.len(), 88);
        assert_eq!(rows[0].community, "fuhou");
        assert_eq!((rows[0].district_rank, rows[0].stars, rows[0].total), (Some(1), 5, 50_000));
        assert_eq!(rows[1].community, "yuyuan");
        assert_eq!(rows[1].freshness, Freshness::Stale);
        assert_eq!(rows[1].district_rank, Some(2));
        assert!(
            rows[2..].iter().all(|r| r.freshness == Freshness::NoData && r.district_rank.is_none())
        );
        let summary = tiers(&registry, &rows);
        assert_eq!(summary.district.by_stars, [1, 0, 0, 0, 0, 1]);
        assert_eq!((summary.district.no_data, summary.district.stale), (86, 1));
        let xidajie = &summary.subdistricts[0];
        assert_eq!((xidajie.0.as_str(), xidajie.2.by_stars[5], xidajie.2.no_data), ("001", 1, 5));
    }

    #[test]
    fn rank_changes_are_positive_when_a_community_moves_up() {
        let registry = Registry::sample();
        let standard = Standard::sample();
        let one =
            score(standard.kind(Kind::Urban), &[with_progress(task("a", "business", 80), 100)]);
        let ms = now().timestamp_millis();
        let last = HashMap::from([("fuhou".to_string(), ms), ("yuyuan".to_string(), ms)]);
        let last = by_registry(&registry, &last);
        let before = standings(
            &registry,
            &by_registry(&registry, &HashMap::from([("fuhou".to_string(), one.clone())])),
            &last,
            now(),
            TimeDelta::hours(24),
        );
        let after = standings(
            &registry,
            &by_registry(&registry, &HashMap::from([("yuyuan".to_string(), one)])),
            &last,
            now(),
            TimeDelta::hours(24),
        );
        let changes = rank_changes(&before, &after);
        assert_eq!(changes["yuyuan"], 1);
        assert_eq!(changes["fuhou"], -1);
        assert!(!before[0].same_standing(&after[0]));
    }
}
