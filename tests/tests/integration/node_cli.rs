//! `fivestar-node` as a clerk uses it: every command, and every kind of mistake
//! refused with a clear message and nothing written.

use fivestar_tests::NodeDir;
use serde_json::Value;

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        list.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn init_then_template_apply_creates_the_kinds_tasks_once() {
    let node = NodeDir::new();
    let out = node.ok(&["init", "--community", "fangou", "--device", "office-pc"]);
    assert!(out.contains("樊沟社区"), "{out}");
    assert!(node.path().join("node.toml").exists());
    assert!(node.path().join("standard.toml").exists());
    let out = node.ok(&["template", "apply"]);
    assert!(out.contains("created 29 template tasks"), "{out}");
    let heads = node.heads();
    let out = node.ok(&["template", "apply"]);
    assert!(out.contains("nothing new"), "{out}");
    assert_eq!(node.heads(), heads, "a second apply writes nothing");
    assert_eq!(node.json(&["task", "list"]).as_array().unwrap().len(), 29);
}

#[test]
fn every_task_command_changes_what_it_says() {
    let node = NodeDir::with_template("fuhou");
    // add
    let out = node.ok(&[
        "task",
        "add",
        "--star",
        "cobuild",
        "--title",
        "楼道微改造",
        "--points",
        "10",
        "--owner",
        "李红",
        "--due",
        "2000-01-31",
        "--note",
        "已征求居民意见",
    ]);
    let id = out.split_whitespace().find(|w| w.starts_with("t-")).unwrap().trim_end_matches(':');
    let task = node.task(id);
    assert_eq!(task["title"], "楼道微改造");
    assert_eq!(task["points"], 10);
    assert_eq!(task["owner"], "李红");
    assert_eq!(task["due"], "2000-01-31");
    assert_eq!(task["notes"][0]["text"], "已征求居民意见");
    assert_eq!(task["notes"][0]["by"], "device d1");
    // progress: a unique beginning of the id is enough
    node.ok(&["task", "progress", &id[..5], "40"]);
    let task = node.task(id);
    assert_eq!((task["progress"].as_u64(), task["status"].as_str()), (Some(40), Some("doing")));
    // edit
    node.ok(&["task", "edit", id, "--title", "楼道微改造（二期）", "--points", "12", "--no-due"]);
    let task = node.task(id);
    assert_eq!(task["title"], "楼道微改造（二期）");
    assert_eq!(task["points"], 12);
    assert_eq!(task["due"], Value::Null);
    // assign, note, done
    node.ok(&["task", "assign", id, "王强"]);
    node.ok(&["task", "note", id, "施工照片已上传"]);
    node.ok(&["task", "done", id]);
    let task = node.task(id);
    assert_eq!(task["owner"], "王强");
    assert_eq!(task["notes"].as_array().unwrap().len(), 2);
    assert_eq!((task["progress"].as_u64(), task["status"].as_str()), (Some(100), Some("done")));
    // fail, with the reason as evidence
    let out = node.ok(&["task", "fail", "u-safety-three-zeros", "--note", "发生一起越级上访"]);
    assert!(out.contains("veto task"), "{out}");
    let task = node.task("u-safety-three-zeros");
    assert_eq!(task["status"], "failed");
    assert_eq!(task["notes"][0]["text"], "发生一起越级上访");
}

#[test]
fn list_filters_by_star_status_owner_and_overdue() {
    let node = NodeDir::with_template("fuhou");
    node.ok(&["task", "assign", "u-safety-grid", "赵敏"]);
    node.ok(&["task", "assign", "u-safety-hazards", "赵敏"]);
    node.ok(&["task", "edit", "u-safety-hazards", "--due", "2000-06-30"]);
    node.ok(&["task", "edit", "u-safety-grid", "--due", "2999-06-30"]);
    node.ok(&["task", "progress", "u-safety-grid", "100"]);
    assert_eq!(
        ids(&node.json(&["task", "list", "--star", "safety"])),
        ["u-safety-anti-fraud", "u-safety-grid", "u-safety-hazards", "u-safety-three-zeros"]
    );
    assert_eq!(ids(&node.json(&["task", "list", "--status", "done"])), ["u-safety-grid"]);
    assert_eq!(
        ids(&node.json(&["task", "list", "--owner", "赵敏"])),
        ["u-safety-grid", "u-safety-hazards"]
    );
    assert_eq!(ids(&node.json(&["task", "list", "--overdue"])), ["u-safety-hazards"]);
    let table = node.ok(&["task", "list", "--owner", "赵敏"]);
    assert!(table.contains("2000-06-30 overdue"), "{table}");
    assert!(table.contains("2 task(s)."), "{table}");
}

#[test]
fn score_matches_the_hand_computed_model() {
    let node = NodeDir::with_template("fuhou");
    // business: 40 done + 30 at 100 % + 30 at 50 % = 85.00 ≥ 80: earned.
    node.ok(&["task", "done", "u-business-collective"]);
    node.ok(&["task", "progress", "u-business-environment", "100"]);
    node.ok(&["task", "progress", "u-business-jobs", "50"]);
    // safety: a failed veto task blocks it whatever its score.
    node.ok(&["task", "fail", "u-safety-three-zeros"]);
    node.ok(&["task", "done", "u-safety-grid"]);
    let score = node.json(&["score"]);
    assert_eq!(score["standard"]["sample"], true);
    let s = &score["score"];
    assert_eq!(s["stars_earned"], 1);
    assert_eq!(s["total"], 8500 + 2500);
    let business = &s["stars"][4];
    assert_eq!(
        (business["key"].as_str(), business["score"].as_u64()),
        (Some("business"), Some(8500))
    );
    assert_eq!(business["earned"], true);
    let safety = &s["stars"][2];
    assert_eq!(safety["score"], 2500);
    assert_eq!(safety["lacks"][1]["lack"], "veto");
    assert_eq!(safety["lacks"][1]["task"], "u-safety-three-zeros");
    let table = node.ok(&["score"]);
    assert!(table.contains("★☆☆☆☆ 1 star(s), total 110.00 of 500.00"), "{table}");
    assert!(table.contains("veto task u-safety-three-zeros is failed"), "{table}");
}

#[test]
fn history_shows_who_changed_what_and_from_which_device() {
    let node = NodeDir::with_template("fuhou");
    node.ok(&["task", "progress", "u-safety-grid", "30"]);
    node.ok(&["task", "note", "u-safety-grid", "网格图已绘制"]);
    let history = node.json(&["history", "u-safety-grid"]);
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 3, "template, progress, note: {history:#}");
    assert_eq!(entries[0]["by"], "template");
    assert_eq!(entries[1]["by"], "device d1");
    assert_eq!(entries[1]["action"], "edit status,progress");
    assert_eq!(entries[2]["action"], "note");
    assert_eq!(entries[2]["paths"][0], "tasks/u-safety-grid/notes");
    let all = node.json(&["history"]);
    assert_eq!(all.as_array().unwrap().len(), 1 + 21 + 2, "genesis, 21 template tasks, 2 edits");
}

#[test]
fn status_counts_changes_the_hub_has_not_acknowledged() {
    let node = NodeDir::with_template("fuhou");
    let status = node.json(&["status"]);
    assert_eq!(status["unacknowledged_changes"], 0, "template changes are not this device's");
    assert_eq!(status["last_sync_attempt"], Value::Null);
    node.ok(&["task", "progress", "u-safety-grid", "30"]);
    node.ok(&["task", "note", "u-safety-grid", "x"]);
    let status = node.json(&["status"]);
    assert_eq!(status["unacknowledged_changes"], 2);
    assert!(status["oldest_unacknowledged_age_seconds"].as_i64().unwrap() >= 0);
    assert_eq!(status["tasks"], 21);
    let text = node.ok(&["status"]);
    assert!(text.contains("2 change(s)"), "{text}");
    assert!(text.contains("never"), "{text}");
}

/// Each mistake: the arguments, the exit code, and words the message must contain.
const MISTAKES: &[(&[&str], i32, &str)] = &[
    (
        &["task", "progress", "t-nosuch", "50"],
        1,
        "there is no task \"t-nosuch\" in community fuhou",
    ),
    (&["task", "progress", "u-safety-grid", "150"], 2, "150 is not in 0..=100"),
    (&["task", "progress", "u-safety-grid", "-5"], 2, "unexpected argument '-5'"),
    (
        &["task", "add", "--star", "industry", "--title", "x", "--points", "5"],
        1,
        "unknown star \"industry\": this community's stars are branch (支部过硬星), cobuild (共建共享星)",
    ),
    (
        &["task", "add", "--star", "safety", "--title", "x", "--points", "0"],
        2,
        "0 is not in 1..=100",
    ),
    (
        &[
            "task",
            "add",
            "--star",
            "safety",
            "--title",
            "x",
            "--points",
            "5",
            "--due",
            "31/12/2026",
        ],
        2,
        "\"31/12/2026\" is not a date: write it as YYYY-MM-DD",
    ),
    (
        &["task", "add", "--star", "safety", "--title", "  ", "--points", "5"],
        1,
        "title must not be empty",
    ),
    (&["task", "edit", "u-safety-grid"], 1, "nothing to change"),
    (&["task", "edit", "u-safety-grid", "--status", "finished"], 2, "unknown status \"finished\""),
    (&["task", "note", "u-safety-grid", ""], 1, "note must not be empty"),
    (&["task", "show", "u-safety"], 1, "is the beginning of 4 task ids"),
    (&["task", "list", "--star", "industry"], 1, "unknown star \"industry\""),
    (&["history", "t-nosuch"], 1, "there is no task \"t-nosuch\""),
    (&["init", "--community", "yuyuan"], 1, "is set up already, for community fuhou"),
    (&["task", "frobnicate"], 2, "unrecognized subcommand 'frobnicate'"),
];

#[test]
fn every_mistake_is_explained_and_writes_nothing() {
    let node = NodeDir::with_template("fuhou");
    let heads = node.heads();
    let db = std::fs::metadata(node.database()).unwrap().len();
    for (args, code, words) in MISTAKES {
        let (got, stderr) = node.fail(args);
        assert_eq!(got, *code, "exit code of {args:?}: {stderr}");
        assert!(stderr.contains(words), "{args:?} said {stderr:?}, expected {words:?}");
        assert_eq!(node.heads(), heads, "{args:?} changed the document");
    }
    assert_eq!(std::fs::metadata(node.database()).unwrap().len(), db);
}

#[test]
fn commands_before_init_say_how_to_start_and_create_nothing() {
    let node = NodeDir::new();
    for args in [&["task", "list"][..], &["score"], &["status"], &["task", "done", "x"]] {
        let (code, stderr) = node.fail(args);
        assert_eq!(code, 1);
        assert!(stderr.contains("no fivestar node is set up in"), "{stderr}");
        assert!(stderr.contains("fivestar-node init --community"), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(node.path()).unwrap().count(), 0, "nothing may be created");
    let (code, stderr) = node.fail(&["init", "--community", "nosuch"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("community \"nosuch\" is not in the sample registry"), "{stderr}");
    assert!(!node.path().join("node.toml").exists());
    let (code, stderr) = node.fail(&["init", "--community", "fuhou", "--device", "Office PC"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("device name \"Office PC\" must be"), "{stderr}");
    assert!(!node.database().exists());
}

#[test]
fn a_damaged_or_foreign_database_is_named_and_left_alone() {
    let node = NodeDir::with_template("fuhou");
    let junk = vec![0x5a_u8; 16384];
    std::fs::write(node.database(), &junk).unwrap();
    let (code, stderr) = node.fail(&["task", "list"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a fivestar node database"), "{stderr}");
    assert!(stderr.contains("restore node.db from a backup"), "{stderr}");
    assert_eq!(std::fs::read(node.database()).unwrap(), junk, "the file is not touched");

    std::fs::remove_file(node.database()).unwrap();
    let other = rusqlite::Connection::open(node.database()).unwrap();
    other
        .execute_batch("CREATE TABLE invoices (n INTEGER); INSERT INTO invoices VALUES (7);")
        .unwrap();
    drop(other);
    let (code, stderr) = node.fail(&["task", "progress", "u-safety-grid", "10"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is a database of another program"), "{stderr}");
    let check = rusqlite::Connection::open(node.database()).unwrap();
    let tables: i64 = check
        .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1, "no tables were added to the foreign file");
}

#[test]
fn a_broken_configuration_is_named() {
    let node = NodeDir::with_template("fuhou");
    std::fs::write(node.path().join("node.toml"), "community = 3\n").unwrap();
    let (code, stderr) = node.fail(&["task", "list"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a valid node configuration"), "{stderr}");
}

#[test]
fn progress_100_marks_any_task_done_and_edits_confirm_what_they_changed() {
    let node = NodeDir::with_template("fuhou");
    node.ok(&["task", "fail", "u-safety-grid"]);
    let out = node.ok(&["task", "progress", "u-safety-grid", "100"]);
    assert!(out.contains("is now done at 100%"), "{out}");
    let added = node.ok(&["task", "add", "--star", "safety", "--title", "夜巡", "--points", "10"]);
    let id = added.split_whitespace().find(|w| w.starts_with("t-")).unwrap().trim_end_matches(':');
    let out = node.ok(&["task", "edit", id, "--points", "60", "--owner", "李四"]);
    assert!(out.contains("60 points") && out.contains("owner 李四"), "{out}");
}

#[test]
fn the_database_is_group_writable_and_a_second_daemon_is_refused_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let node = NodeDir::with_template("fuhou");
    let mode = std::fs::metadata(node.database()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "node.db is {mode:o}");
    // The hub address leads nowhere: the daemon keeps retrying, holding its lock.
    let mut first = node.command(&["run"]).spawn().unwrap();
    let lock = node.path().join("run.lock");
    let started = fivestar_tests::eventually(std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&lock).is_ok_and(|pid| pid.trim() == first.id().to_string())
    });
    assert!(started, "the first daemon did not take the lock");
    let (code, stderr) = node.fail(&["run"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&format!("process {}", first.id())), "{stderr}");
    first.kill().unwrap();
    first.wait().unwrap();
}
