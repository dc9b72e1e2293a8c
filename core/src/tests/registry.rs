//! The registry loader: the sample is the real district's shape; each broken
//! rule is reported with its place.

use crate::registry::SAMPLE_REGISTRY_TOML;
use crate::{Kind, Registry};

#[test]
fn sample_registry_has_13_subdistricts_and_88_communities() {
    let registry = Registry::sample();
    assert!(registry.sample);
    assert_eq!(registry.subdistricts.len(), 13);
    assert_eq!(registry.communities.len(), 88);
    let codes: Vec<_> = registry.subdistricts.iter().map(|s| s.code.as_str()).collect();
    assert_eq!(
        codes,
        ["001", "002", "003", "004", "005", "006", "007", "008", "009", "010", "011", "013", "015"]
    );
    let fangou = registry.community("fangou").unwrap();
    assert_eq!(fangou.name, "樊沟社区");
    assert_eq!(fangou.subdistrict, "006");
    assert_eq!(fangou.kind, Kind::Agricultural);
    assert!(!fangou.placeholder);
    // Unnamed communities are marked as placeholders, with names that say so.
    let placeholders: Vec<_> = registry.communities.iter().filter(|c| c.placeholder).collect();
    assert_eq!(placeholders.len(), 88 - 6);
    assert!(placeholders.iter().all(|c| c.name.starts_with("占位社区")));
}

fn expect_problem(text: &str, message: &str) {
    let err = Registry::from_toml(text).expect_err("a broken registry must be refused");
    assert!(
        err.problems.iter().any(|p| p == message),
        "expected {message:?} among {:#?}",
        err.problems
    );
}

#[test]
fn community_ids_must_be_unique() {
    expect_problem(
        &SAMPLE_REGISTRY_TOML.replacen("id = \"yuyuan\"", "id = \"fuhou\"", 1),
        "communities[1] (fuhou): id \"fuhou\" is used by another community",
    );
}

#[test]
fn community_must_name_a_listed_subdistrict() {
    expect_problem(
        &SAMPLE_REGISTRY_TOML.replacen(
            "subdistrict = \"006\"\nkind = \"agricultural\"",
            "subdistrict = \"012\"\nkind = \"agricultural\"",
            1,
        ),
        "communities[35] (fangou): subdistrict \"012\" is not listed under [[subdistricts]]",
    );
}

#[test]
fn subdistrict_codes_must_be_unique_digits() {
    expect_problem(
        &SAMPLE_REGISTRY_TOML.replacen("code = \"002\"", "code = \"001\"", 1),
        "subdistricts[1] (001): code \"001\" is used by another subdistrict",
    );
    expect_problem(
        &SAMPLE_REGISTRY_TOML.replacen("code = \"002\"", "code = \"east\"", 1),
        "subdistricts[1] (east): code \"east\" must be digits, e.g. \"006\"",
    );
}

#[test]
fn ids_must_be_plain_ascii() {
    expect_problem(
        &SAMPLE_REGISTRY_TOML.replacen("id = \"fangou\"", "id = \"樊沟\"", 1),
        "communities[35] (樊沟): id \"樊沟\" must be 1 to 40 characters of a-z, 0-9 and '-'",
    );
}

#[test]
fn unknown_kind_is_refused_by_the_parser() {
    let err = Registry::from_toml(&SAMPLE_REGISTRY_TOML.replacen(
        "kind = \"urban\"",
        "kind = \"rural\"",
        1,
    ))
    .unwrap_err();
    assert!(err.problems[0].starts_with("not a valid registry file:"), "{:?}", err.problems);
    assert!(err.problems[0].contains("rural"), "{:?}", err.problems);
}
