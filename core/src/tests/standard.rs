//! The standard loader: the sample is valid, and each broken rule is reported
//! with the place it is at.

use crate::standard::SAMPLE_STANDARD_TOML;
use crate::{Kind, Standard};

#[test]
fn sample_standard_is_valid_and_shaped_as_domain_says() {
    let standard = Standard::sample();
    assert!(standard.sample);
    for kind in Kind::ALL {
        let stars = &standard.kind(kind).stars;
        assert_eq!(stars.len(), 5);
        assert_eq!(stars.iter().filter(|s| s.capstone).count(), 1);
        assert_eq!(stars[0].key, "branch");
        assert!(stars[0].capstone, "支部过硬星 is the capstone by default");
    }
    assert_eq!(standard.kind(Kind::Agricultural).template_tasks().count(), 29);
    let urban: Vec<_> = standard.urban.star_keys();
    assert_eq!(urban, ["branch", "cobuild", "safety", "harmony", "business"]);
    let rural: Vec<_> = standard.agricultural.star_keys();
    assert_eq!(rural, ["branch", "industry", "ecology", "safety", "civility"]);
}

#[test]
fn standard_round_trips_through_toml() {
    let standard = Standard::sample();
    assert_eq!(Standard::from_toml(&standard.to_toml()).unwrap(), standard);
}

/// Applies `edit` to the sample text and expects `message` among the problems.
fn expect_problem(edit: impl Fn(&str) -> String, message: &str) {
    let text = edit(SAMPLE_STANDARD_TOML);
    assert_ne!(text, SAMPLE_STANDARD_TOML, "the edit must change the sample");
    let err = Standard::from_toml(&text).expect_err("a broken standard must be refused");
    assert!(
        err.problems.iter().any(|p| p == message),
        "expected {message:?} among {:#?}",
        err.problems
    );
}

#[test]
fn template_points_must_sum_to_100() {
    expect_problem(
        |s| {
            s.replacen(
                r#"key = "u-business-jobs", points = 30"#,
                r#"key = "u-business-jobs", points = 25"#,
                1,
            )
        },
        "urban.stars[4] (business): template points sum to 95, they must sum to 100",
    );
}

#[test]
fn exactly_five_stars_per_kind() {
    // Drop the urban business star (the last urban block before the agricultural comment).
    expect_problem(
        |s| {
            let start = s.find("[[urban.stars]]\nkey = \"business\"").unwrap();
            let end = start + s[start..].find("# ----").unwrap();
            format!("{}{}", &s[..start], &s[end..])
        },
        "urban: has 4 stars, a kind must have exactly 5",
    );
}

#[test]
fn exactly_one_capstone() {
    expect_problem(
        |s| {
            s.replacen(
                "en = \"Thriving Industry\"\n",
                "en = \"Thriving Industry\"\ncapstone = true\n",
                1,
            )
        },
        "agricultural: has 2 capstone stars (branch, industry), a kind must have exactly one",
    );
    expect_problem(
        |s| s.replacen("capstone = true\n", "", 1),
        "urban: has 0 capstone stars (), a kind must have exactly one",
    );
}

#[test]
fn pass_mark_must_be_in_range() {
    expect_problem(
        |s| {
            s.replacen(
                "en = \"Co-building & Sharing\"\npass_mark = 80",
                "en = \"Co-building & Sharing\"\npass_mark = 101",
                1,
            )
        },
        "urban.stars[1] (cobuild): pass_mark 101 is not in 0..=100",
    );
}

#[test]
fn star_keys_must_be_unique_within_a_kind() {
    expect_problem(
        |s| s.replacen("key = \"harmony\"", "key = \"safety\"", 1),
        "urban.stars[3] (safety): key \"safety\" is used by another star",
    );
}

#[test]
fn template_task_keys_must_be_unique() {
    expect_problem(
        |s| s.replacen("key = \"u-branch-team\"", "key = \"u-branch-secretary\"", 1),
        "urban.stars[0] (branch).tasks[1] (u-branch-secretary): key \"u-branch-secretary\" is used by another template task",
    );
}

#[test]
fn keys_must_be_plain() {
    expect_problem(
        |s| s.replacen("key = \"cobuild\"", "key = \"Co Build\"", 1),
        "urban.stars[1] (Co Build): key \"Co Build\" must be 1 to 40 characters of a-z, 0-9 and '-'",
    );
}

#[test]
fn unknown_fields_and_bad_toml_are_refused_with_the_parser_message() {
    let err = Standard::from_toml("version = \"x\"\nsurprise = 1\n").unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].starts_with("not a valid standard file:"), "{:?}", err.problems);
    assert!(err.problems[0].contains("surprise"), "{:?}", err.problems);
    let err = Standard::from_toml("version = ").unwrap_err();
    assert!(err.problems[0].starts_with("not a valid standard file:"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = SAMPLE_STANDARD_TOML.replacen("key = \"harmony\"", "key = \"safety\"", 1).replacen(
        "pass_mark = 80\ntasks = [\n  { key = \"a-industry",
        "pass_mark = 180\ntasks = [\n  { key = \"a-industry",
        1,
    );
    let err = Standard::from_toml(&text).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{:#?}", err.problems);
    let shown = err.to_string();
    assert!(shown.starts_with("the standard has 2 problem(s):"), "{shown}");
}
