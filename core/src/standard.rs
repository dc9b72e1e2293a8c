//! The standard: for each community kind, its five stars and their template tasks.
//!
//! A standard is a TOML file the district edits (see `README.md`, "The standard").
//! [`Standard::from_toml`] parses it and checks every rule below, reporting all
//! problems at once with the place they are at, so a district clerk can fix a file in
//! one pass:
//!
//! - both kinds are present, each with exactly five stars;
//! - star keys are unique within a kind, template task keys unique in the standard;
//! - exactly one capstone star per kind;
//! - pass marks are in `0..=100`;
//! - each star's template points are positive and sum to exactly 100.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Kind;

/// The sample standard built from the public material in `DOMAIN.md`. It is a
/// sample: the district replaces it with its own rulebook.
pub const SAMPLE_STANDARD_TOML: &str = include_str!("../data/sample-standard.toml");

/// How many stars every kind has.
pub const STARS_PER_KIND: usize = 5;

/// The points a star's template tasks add up to, and the most a star can score.
pub const STAR_POINTS: u32 = 100;

/// The stars of both community kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standard {
    /// Identifies this edition of the standard, e.g. `"weidu-2026.1"`; shown
    /// next to every score so a number can be traced to the rules that made it.
    pub version: String,
    /// True for the shipped sample, so every screen can say the rules are not
    /// the district's own yet.
    #[serde(default)]
    pub sample: bool,
    /// The stars of urban communities (城市社区).
    pub urban: KindStandard,
    /// The stars of agricultural communities (涉农社区).
    pub agricultural: KindStandard,
}

/// The five stars of one community kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindStandard {
    /// Exactly five stars, in the order screens show them.
    pub stars: Vec<Star>,
    /// The star keys as shared strings, made on first use: every score of every
    /// community names its five stars, and a shared key is copied without an
    /// allocation (ranking 50,000 communities made 500,000 copies).
    #[serde(skip)]
    shared_keys: SharedKeys,
}

/// The shared star keys of a kind; not part of what the standard says, so two
/// standards compare equal whether or not they made theirs yet.
#[derive(Clone, Default)]
struct SharedKeys(std::sync::OnceLock<Vec<std::sync::Arc<str>>>);

impl PartialEq for SharedKeys {
    fn eq(&self, _: &SharedKeys) -> bool {
        true
    }
}

impl Eq for SharedKeys {}

impl fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKeys")
    }
}

/// One star of a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Star {
    /// Short ASCII key used in task records and on the command line, e.g. `branch`.
    pub key: String,
    /// Chinese name, e.g. `支部过硬星`.
    pub zh: String,
    /// English name, e.g. `Strong Branch`.
    pub en: String,
    /// Points (of 100) a star must score to be earned.
    #[serde(default = "default_pass_mark")]
    pub pass_mark: u32,
    /// The capstone star is earned only when every other star is earned too.
    #[serde(default)]
    pub capstone: bool,
    /// Template tasks a community starts from; their points sum to 100.
    pub tasks: Vec<TemplateTask>,
}

/// A task the standard suggests for every community of a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateTask {
    /// Unique key in the standard; it becomes the task's id in a community's
    /// document, so applying a template twice (or on two devices) creates it once.
    pub key: String,
    /// What must be done, in Chinese.
    pub title: String,
    /// The same in English, for readers who need it.
    #[serde(default)]
    pub title_en: String,
    /// Integer points of 100 for the star.
    pub points: u32,
    /// A veto task that fails (or is rejected) keeps the star from being
    /// earned whatever its score, e.g. a breach of the "three zeros".
    #[serde(default)]
    pub veto: bool,
}

fn default_pass_mark() -> u32 {
    80
}

impl Standard {
    /// The shipped sample standard.
    pub fn sample() -> Standard {
        match Standard::from_toml(SAMPLE_STANDARD_TOML) {
            Ok(standard) => standard,
            // The sample is checked by a unit test; this cannot happen in a release.
            Err(err) => panic!("the embedded sample standard is invalid: {err}"),
        }
    }

    /// Parses and checks a standard. On error, every problem is listed.
    pub fn from_toml(text: &str) -> Result<Standard, StandardError> {
        let standard: Standard = toml::from_str(text).map_err(|err| StandardError {
            problems: vec![format!("not a valid standard file: {}", err.to_string().trim_end())],
        })?;
        let problems = standard.problems();
        if problems.is_empty() { Ok(standard) } else { Err(StandardError { problems }) }
    }

    /// Renders the standard as TOML (for example to store the copy a node uses).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The stars of one kind.
    pub fn kind(&self, kind: Kind) -> &KindStandard {
        match kind {
            Kind::Urban => &self.urban,
            Kind::Agricultural => &self.agricultural,
        }
    }

    /// Every rule violation, each prefixed with where it is.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.version.trim().is_empty() {
            problems.push("version: must not be empty".to_string());
        }
        let mut task_keys = BTreeSet::new();
        for kind in Kind::ALL {
            let place = kind.as_str();
            let stars = &self.kind(kind).stars;
            if stars.len() != STARS_PER_KIND {
                problems.push(format!(
                    "{place}: has {} stars, a kind must have exactly {STARS_PER_KIND}",
                    stars.len()
                ));
            }
            let capstones: Vec<&str> =
                stars.iter().filter(|s| s.capstone).map(|s| s.key.as_str()).collect();
            if capstones.len() != 1 {
                problems.push(format!(
                    "{place}: has {} capstone stars ({}), a kind must have exactly one",
                    capstones.len(),
                    capstones.join(", ")
                ));
            }
            let mut star_keys = BTreeSet::new();
            for (i, star) in stars.iter().enumerate() {
                let at = format!("{place}.stars[{i}] ({})", star.key);
                if !is_key(&star.key) {
                    problems.push(format!("{at}: key {:?} {KEY_RULE}", star.key));
                }
                if !star_keys.insert(star.key.as_str()) {
                    problems.push(format!("{at}: key {:?} is used by another star", star.key));
                }
                if star.zh.trim().is_empty() || star.en.trim().is_empty() {
                    problems.push(format!("{at}: zh and en names must not be empty"));
                }
                if star.pass_mark > STAR_POINTS {
                    problems.push(format!("{at}: pass_mark {} is not in 0..=100", star.pass_mark));
                }
                let sum: u32 = star.tasks.iter().map(|t| t.points).sum();
                if sum != STAR_POINTS {
                    problems
                        .push(format!("{at}: template points sum to {sum}, they must sum to 100"));
                }
                for (j, task) in star.tasks.iter().enumerate() {
                    let at = format!("{at}.tasks[{j}] ({})", task.key);
                    if !is_key(&task.key) {
                        problems.push(format!("{at}: key {:?} {KEY_RULE}", task.key));
                    }
                    if !task_keys.insert(task.key.as_str()) {
                        problems.push(format!(
                            "{at}: key {:?} is used by another template task",
                            task.key
                        ));
                    }
                    if task.points == 0 {
                        problems.push(format!("{at}: points must be at least 1"));
                    }
                    if task.title.trim().is_empty() {
                        problems.push(format!("{at}: title must not be empty"));
                    }
                }
            }
        }
        problems
    }
}

impl KindStandard {
    /// The star with this key, if the kind has it.
    pub fn star(&self, key: &str) -> Option<&Star> {
        self.stars.iter().find(|s| s.key == key)
    }

    /// The keys of the stars, in order, as shared strings (cheap to copy).
    pub fn shared_keys(&self) -> &[std::sync::Arc<str>] {
        self.shared_keys
            .0
            .get_or_init(|| self.stars.iter().map(|s| s.key.as_str().into()).collect())
    }

    /// The keys of the stars, in order, for error messages.
    pub fn star_keys(&self) -> Vec<&str> {
        self.stars.iter().map(|s| s.key.as_str()).collect()
    }

    /// The template tasks with the star each belongs to.
    pub fn template_tasks(&self) -> impl Iterator<Item = (&Star, &TemplateTask)> {
        self.stars.iter().flat_map(|s| s.tasks.iter().map(move |t| (s, t)))
    }
}

const KEY_RULE: &str = "must be 1 to 40 characters of a-z, 0-9 and '-'";

/// True for a plain id: 1 to 40 characters of a-z, 0-9 and `-`. Keys, community ids
/// and device names end up in document paths, certificates and command lines.
pub fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 40
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A standard file that cannot be used, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StandardError {
    /// One line per problem, each naming where it is.
    pub problems: Vec<String>,
}

impl fmt::Display for StandardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the standard has {} problem(s):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}
