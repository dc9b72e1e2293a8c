//! The district registry: its subdistricts and communities.
//!
//! A TOML file the district office edits (see `README.md`, "The registry").
//! [`Registry::from_toml`] checks it and lists every problem with its place.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Kind;
use crate::standard::is_key;

/// The sample registry: 13 real subdistricts, 88 communities of which the
/// unnamed ones are marked placeholders.
pub const SAMPLE_REGISTRY_TOML: &str = include_str!("../data/sample-registry.toml");

/// Every subdistrict and community of the district.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Identifies this edition of the registry.
    pub version: String,
    /// True for the shipped sample.
    #[serde(default)]
    pub sample: bool,
    /// The subdistricts (街道), in the order reports list them.
    pub subdistricts: Vec<Subdistrict>,
    /// The communities (社区), each in one subdistrict.
    pub communities: Vec<Community>,
}

/// A subdistrict (街道).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subdistrict {
    /// Official statistical code, e.g. `"006"`.
    pub code: String,
    /// Chinese name, e.g. `五一路`.
    pub name: String,
}

/// A community (社区): one site, running one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    /// ASCII id used in document ids and device certificates, e.g. `fangou`.
    pub id: String,
    /// Chinese name, e.g. `樊沟社区`.
    pub name: String,
    /// Code of the subdistrict the community belongs to.
    pub subdistrict: String,
    /// Which set of stars applies.
    pub kind: Kind,
    /// True for a stand-in entry whose real name is not known to this file.
    #[serde(default)]
    pub placeholder: bool,
}

impl Registry {
    /// The shipped sample registry.
    pub fn sample() -> Registry {
        match Registry::from_toml(SAMPLE_REGISTRY_TOML) {
            Ok(registry) => registry,
            // Checked by a unit test; this cannot happen in a release.
            Err(err) => panic!("the embedded sample registry is invalid: {err}"),
        }
    }

    /// Parses and checks a registry. On error, every problem is listed.
    pub fn from_toml(text: &str) -> Result<Registry, RegistryError> {
        let registry: Registry = toml::from_str(text).map_err(|err| RegistryError {
            problems: vec![format!("not a valid registry file: {}", err.to_string().trim_end())],
        })?;
        let problems = registry.problems();
        if problems.is_empty() { Ok(registry) } else { Err(RegistryError { problems }) }
    }

    /// The community with this id.
    pub fn community(&self, id: &str) -> Option<&Community> {
        self.communities.iter().find(|c| c.id == id)
    }

    /// The subdistrict with this code.
    pub fn subdistrict(&self, code: &str) -> Option<&Subdistrict> {
        self.subdistricts.iter().find(|s| s.code == code)
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut codes = BTreeSet::new();
        for (i, sub) in self.subdistricts.iter().enumerate() {
            let at = format!("subdistricts[{i}] ({})", sub.code);
            if sub.code.is_empty() || !sub.code.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!("{at}: code {:?} must be digits, e.g. \"006\"", sub.code));
            }
            if !codes.insert(sub.code.as_str()) {
                problems.push(format!("{at}: code {:?} is used by another subdistrict", sub.code));
            }
            if sub.name.trim().is_empty() {
                problems.push(format!("{at}: name must not be empty"));
            }
        }
        let mut ids = BTreeSet::new();
        for (i, community) in self.communities.iter().enumerate() {
            let at = format!("communities[{i}] ({})", community.id);
            if !is_key(&community.id) {
                problems.push(format!(
                    "{at}: id {:?} must be 1 to 40 characters of a-z, 0-9 and '-'",
                    community.id
                ));
            }
            if !ids.insert(community.id.as_str()) {
                problems.push(format!("{at}: id {:?} is used by another community", community.id));
            }
            if community.name.trim().is_empty() {
                problems.push(format!("{at}: name must not be empty"));
            }
            if !codes.contains(community.subdistrict.as_str()) {
                problems.push(format!(
                    "{at}: subdistrict {:?} is not listed under [[subdistricts]]",
                    community.subdistrict
                ));
            }
        }
        if self.communities.is_empty() {
            problems.push("communities: the registry lists no community".to_string());
        }
        problems
    }
}

/// A registry file that cannot be used, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RegistryError {
    /// One line per problem, each naming where it is.
    pub problems: Vec<String>,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the registry has {} problem(s):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}
