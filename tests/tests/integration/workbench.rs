//! The clerks' workbench, in a real browser (headless Chromium over WebDriver) and
//! over plain HTTP, against the real `fivestar-node` with its real SQLite file and,
//! where it syncs, a real hub over mutual TLS.

use std::time::Duration;

use fivestar_tests::browser::{Browser, Session, Workbench, request};
use fivestar_tests::{Hub, NodeDir};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Waits until the page at `path`, reloaded, shows `text`.
async fn until_shown(browser: &Browser, url: &str, text: &str, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if browser.open(url).await.contains(text) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn a_clerks_first_day_in_the_browser_ends_all_saved_at_the_district() {
    let hub = Hub::started();
    // A new node: set up and certified, nothing applied yet (the first run is the
    // browser's to do).
    let node = NodeDir::new();
    node.ok(&["init", "--community", "fangou", "--device", "d1", "--hub", &hub.url()]);
    hub.issue_into(&["--community", "fangou", "--device", "d1"], &node.path().join("certs"));
    let bench = Workbench::run(&node);
    runtime().block_on(async {
        let b = Browser::start(1280, 800).await;
        // First run: the welcome page asks who works here.
        let page = b.open(&bench.url("/")).await;
        assert!(page.contains("欢迎使用社区工作台"), "{page}");
        b.screenshot("workbench-welcome-1280").await;
        b.fill("name", "李红").await;
        b.press("加入名单").await;
        let page = b.text().await;
        assert!(page.contains("已保存：李红 已加入工作人员名单"), "{page}");
        assert!(page.contains("当前：李红"), "{page}");
        b.press("创建标准任务").await;
        let page = b.text().await;
        assert!(page.contains("已保存：创建了 29 项标准任务"), "{page}");
        // The overview: five stars with score, pass mark and what each lacks.
        for text in ["产业兴旺星", "距及格线还差", "及格线", "上次成功同步"] {
            assert!(page.contains(text), "the overview lacks {text:?}: {page}");
        }
        b.screenshot("workbench-overview-1280").await;

        // Progress on a task.
        let page = b.open(&bench.url("/tasks/a-industry-jobs")).await;
        assert!(page.contains("带动群众就业增收"), "{page}");
        b.fill("progress", "60").await;
        b.press("保存修改").await;
        let page = b.text().await;
        assert!(page.contains("已保存"), "{page}");
        assert_eq!(b.text_of(".facts .status").await, "进行中", "60 % starts a task");
        assert_eq!(b.text_of(".facts .pct").await, "60%");
        // An evidence note.
        b.fill_css("form[action$='/note'] textarea", "已为 12 户村民介绍务工岗位").await;
        b.press("添加佐证").await;
        let page = b.text().await;
        assert!(page.contains("已为 12 户村民介绍务工岗位"), "{page}");
        assert!(page.contains("李红 · d1"), "the note and history name the clerk: {page}");
        b.screenshot("workbench-task-1280").await;
        // A done task.
        b.open(&bench.url("/tasks/a-industry-assets")).await;
        b.press("标记为已完成").await;
        let page = b.text().await;
        assert!(page.contains("已保存"), "{page}");
        assert_eq!(b.text_of(".facts .status").await, "已完成");
        assert_eq!(b.text_of(".facts .pct").await, "100%");
        assert_eq!(b.text_of(".facts .verdict").await, "待审核");
        // A failed veto task says which star it blocks.
        let page = b.open(&bench.url("/tasks/a-safety-three-zeros")).await;
        assert!(page.contains("一票否决任务"), "{page}");
        b.click("details.fail summary").await;
        let page = b.text().await;
        assert!(page.contains("平安法治星在它恢复之前无法评上"), "{page}");
        b.fill_css("form[action$='/fail'] textarea", "本月发生一起越级上访").await;
        b.press("确认未达成").await;
        let page = b.text().await;
        assert!(page.contains("本月发生一起越级上访"), "{page}");
        assert_eq!(b.text_of(".facts .status").await, "未达成");
        let overview = b.open(&bench.url("/")).await;
        assert!(overview.contains("一票否决任务“实现“三零”"), "{overview}");

        // An own task; first refused with the server's Chinese messages beside the
        // fields (the browser's own checks turned off), then saved.
        b.open(&bench.url("/tasks/new")).await;
        b.without_browser_checks().await;
        b.press("保存任务").await;
        let page = b.text().await;
        assert!(page.contains("请选择所属星"), "{page}");
        b.client
            .find(fantoccini::Locator::Css("select[name='star']"))
            .await
            .unwrap()
            .select_by_value("ecology")
            .await
            .unwrap();
        b.fill("points", "0").await;
        b.fill("owner", "王强").await;
        b.without_browser_checks().await;
        b.press("保存任务").await;
        let page = b.text().await;
        assert!(page.contains("分值须为 1 到 100 的整数"), "{page}");
        b.screenshot("workbench-refused-1280").await;
        // What was typed stays in the form.
        let owner = b.client.find(fantoccini::Locator::Css("[name='owner']")).await.unwrap();
        assert_eq!(owner.prop("value").await.unwrap().as_deref(), Some("王强"));
        b.fill("points", "5").await;
        b.without_browser_checks().await;
        b.press("保存任务").await;
        let page = b.text().await;
        assert!(page.contains("名称不能为空"), "{page}");
        b.fill("title", "清理村口垃圾点").await;
        b.press("保存任务").await;
        let page = b.text().await;
        assert!(page.contains("已保存") && page.contains("清理村口垃圾点"), "{page}");
        assert!(page.contains("本社区自定任务"), "{page}");

        // The task list: filters and search.
        let list = b.open(&bench.url("/tasks?show=overdue")).await;
        assert!(list.contains("共 0 项"), "{list}");
        let list = b.open(&bench.url("/tasks?q=%E6%9D%91%E5%8F%A3")).await;
        assert!(list.contains("共 1 项") && list.contains("清理村口垃圾点"), "{list}");
        let list = b.open(&bench.url("/tasks?show=awaiting")).await;
        assert!(list.contains("盘活集体资产") && !list.contains("带动群众就业增收"), "{list}");
        b.screenshot("workbench-tasks-filtered-1280").await;

        // The daemon syncs every saved edit: the banner turns to all saved.
        assert!(
            until_shown(&b, &bench.url("/"), "全部已保存到区里", Duration::from_secs(30)).await,
            "the overview says all saved at the district after the sync"
        );
        b.screenshot("workbench-all-saved-1280").await;
        // The district reviews; the daemon brings the verdicts down, and the overview
        // shows them as new until the clerk has opened the task.
        hub.ok(&["review", "fangou", "a-industry-assets", "accept", "--reviewer", "王敏"]);
        hub.ok(&[
            "review",
            "fangou",
            "a-industry-jobs",
            "reject",
            "--reviewer",
            "王敏",
            "--comment",
            "请补充务工人员名单",
        ]);
        assert!(
            until_shown(&b, &bench.url("/"), "请补充务工人员名单", Duration::from_secs(30)).await,
            "the new reviews reach the overview"
        );
        let overview = b.text().await;
        assert!(overview.contains("区里新的审核结果"), "{overview}");
        b.screenshot("workbench-new-reviews-1280").await;
        let page = b.open(&bench.url("/tasks/a-industry-jobs")).await;
        assert!(page.contains("已退回") && page.contains("王敏"), "{page}");
        let overview = b.open(&bench.url("/")).await;
        assert!(!overview.contains("请补充务工人员名单"), "seen once opened: {overview}");
        assert!(overview.contains("盘活集体资产"), "the other review is still new: {overview}");
        let rejected = b.open(&bench.url("/tasks?show=rejected")).await;
        assert!(
            rejected.contains("共 1 项") && rejected.contains("带动群众就业增收"),
            "{rejected}"
        );
        // Tablet and print widths: nothing cut off.
        b.resize(768, 1024).await;
        for path in ["/", "/tasks", "/tasks/a-industry-jobs", "/tasks/new"] {
            b.open(&bench.url(path)).await;
            assert!(!b.overflows().await, "{path} fits a 768 px tablet");
        }
        b.open(&bench.url("/tasks")).await;
        b.screenshot("workbench-tasks-768").await;
        // And a phone.
        b.resize(390, 844).await;
        for (path, name) in [
            ("/", "workbench-overview-390"),
            ("/tasks", "workbench-tasks-390"),
            ("/tasks/a-industry-jobs", "workbench-task-390"),
        ] {
            b.open(&bench.url(path)).await;
            b.screenshot(name).await;
            assert!(!b.overflows().await, "{path} fits a 390 px phone");
        }
        b.resize(768, 1024).await;
        b.open(&bench.url("/tasks/a-industry-jobs")).await;
        b.screenshot("workbench-task-768").await;
        let sheet = b.open(&bench.url("/print?star=industry")).await;
        assert!(sheet.contains("樊沟社区 · 产业兴旺星"), "{sheet}");
        b.stop().await;
    });
    // The hub has what the clerk was told is saved, attributed to her.
    assert!(hub.notes("fangou", "a-industry-jobs").contains("已为 12 户村民介绍务工岗位"));
    let tasks = hub.tasks("fangou");
    assert!(tasks.iter().any(|t| t.title == "清理村口垃圾点" && t.owner == "王强"));
    let history = node.json(&["history", "a-industry-jobs"]);
    assert!(history.as_array().unwrap().iter().any(|c| c["by"] == "李红 · d1"), "{history}");
}

#[test]
fn values_set_apart_are_shown_and_the_clerks_choice_wins_on_every_replica() {
    let hub = Hub::started();
    let d1 = NodeDir::for_hub(&hub, "fangou", "d1");
    let d2 = NodeDir::for_hub(&hub, "fangou", "d2");
    d1.ok(&["sync"]);
    d2.ok(&["sync"]);
    // Apart: each device gives the task to someone else.
    d1.ok(&["task", "assign", "a-industry-jobs", "张伟"]);
    d2.ok(&["task", "assign", "a-industry-jobs", "刘洋"]);
    d1.ok(&["sync"]);
    d2.ok(&["sync"]);
    d1.ok(&["sync"]);
    let conflicts = &d1.task("a-industry-jobs");
    let shown = conflicts["owner"].as_str().unwrap().to_string();
    let other = if shown == "张伟" { "刘洋" } else { "张伟" };
    d1.ok(&["staff", "add", "李红"]);
    let bench = Workbench::ui(&d1);
    runtime().block_on(async {
        let b = Browser::start(1280, 800).await;
        b.open(&bench.url("/signin")).await;
        b.press("开始工作").await;
        let page = b.open(&bench.url("/tasks/a-industry-jobs")).await;
        assert!(page.contains("两台设备分开时改成了不同的值"), "{page}");
        assert!(page.contains("选定 “张伟”") && page.contains("选定 “刘洋”"), "{page}");
        b.screenshot("workbench-conflict-1280").await;
        // The clerk chooses the value that is not shown now.
        b.press(&format!("选定 “{other}”")).await;
        let page = b.text().await;
        assert!(page.contains("已保存"), "{page}");
        assert!(!page.contains("两台设备分开时改成了不同的值"), "{page}");
        b.stop().await;
    });
    drop(bench);
    d1.ok(&["sync"]);
    d2.ok(&["sync"]);
    for node in [&d1, &d2] {
        let task = node.json(&["task", "show", "a-industry-jobs"]);
        assert_eq!(task["owner"], other, "{task}");
        assert_eq!(task["conflicts"], serde_json::json!([]), "{task}");
    }
    let on_hub = hub.tasks("fangou");
    assert_eq!(on_hub.iter().find(|t| t.id == "a-industry-jobs").unwrap().owner, other);
}

#[test]
fn the_page_says_saved_only_once_the_edit_is_on_disk() {
    let node = NodeDir::with_template("fangou");
    node.ok(&["staff", "add", "李红"]);
    let mut bench = Workbench::ui(&node);
    let s = Session::open(&bench.address);
    let signed = s.post("/signin", &[("csrf", &s.csrf), ("name", "李红")]);
    assert_eq!(signed.status, 303, "{signed:?}");
    let csrf = s.token("/tasks/a-industry-jobs");
    let answer =
        s.post("/tasks/a-industry-jobs/note", &[("csrf", &csrf), ("text", "断电前保存的佐证")]);
    assert_eq!(answer.status, 303, "{answer:?}");
    // The very next thing after the answer: the node dies without a word.
    bench.kill();
    assert!(node.notes("a-industry-jobs").contains("断电前保存的佐证"));
}

#[test]
fn foreign_hosts_forged_forms_and_strangers_change_nothing() {
    let node = NodeDir::with_template("fangou");
    node.ok(&["staff", "add", "李红", "--pin", "2468"]);
    let bench = Workbench::ui(&node);
    let heads = node.heads();
    // DNS rebinding: a page of another site that resolves to 127.0.0.1.
    let rebound = request(&bench.address, "GET", "/", &[("Host", "evil.example:8690")], "");
    assert_eq!(rebound.status, 421, "{rebound:?}");
    assert!(rebound.body.contains("请求被拒绝"), "{}", rebound.body);
    // A form from elsewhere: no session cookie, or a wrong token.
    let forged = request(
        &bench.address,
        "POST",
        "/tasks/a-industry-jobs/note",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "csrf=x&text=forged",
    );
    assert_eq!(forged.status, 403, "{forged:?}");
    assert!(forged.body.contains("没有保存任何内容"), "{}", forged.body);
    let s = Session::open(&bench.address);
    let wrong =
        s.post("/tasks/a-industry-jobs/note", &[("csrf", "not-the-token"), ("text", "forged")]);
    assert_eq!(wrong.status, 403);
    // A right token but nobody signed in: sent to sign in, nothing saved.
    let anonymous =
        s.post("/tasks/a-industry-jobs/note", &[("csrf", &s.csrf), ("text", "anonymous")]);
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/signin"));
    // Nor may a stranger add themselves to the staff once there is one.
    let joined = s.post("/staff", &[("csrf", &s.csrf), ("name", "陌生人")]);
    assert_eq!(joined.status, 422, "{joined:?}");
    // The right PIN signs in (another browser).
    let s2 = Session::open(&bench.address);
    let ok = s2.post("/signin", &[("csrf", &s2.csrf), ("name", "李红"), ("pin", "2468")]);
    assert_eq!(ok.status, 303, "{ok:?}");
    // A wrong PIN is refused in Chinese, and five in a row pause the name.
    let wrong_pin = s.post("/signin", &[("csrf", &s.csrf), ("name", "李红"), ("pin", "1111")]);
    assert_eq!(wrong_pin.status, 422);
    assert!(wrong_pin.body.contains("PIN 不对"), "{}", wrong_pin.body);
    for _ in 0..5 {
        s.post("/signin", &[("csrf", &s.csrf), ("name", "李红"), ("pin", "1111")]);
    }
    let paused = s.post("/signin", &[("csrf", &s.csrf), ("name", "李红"), ("pin", "2468")]);
    assert!(paused.body.contains("PIN 错误次数太多"), "{}", paused.body);
    assert_eq!(node.heads(), heads, "nothing was written");
    assert_eq!(node.ok(&["staff", "list"]).trim(), "李红 (PIN)");
    // The pages' own safety headers.
    let page = s.get("/signin");
    assert!(
        page.header("content-security-policy").is_some_and(|c| c.contains("default-src 'none'"))
    );
    assert!(page.header("x-frame-options") == Some("DENY"));
    let cookie = request(&bench.address, "GET", "/welcome", &[], "");
    let set = cookie.header("set-cookie").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
}

#[test]
fn the_command_line_speaks_chinese_on_a_chinese_locale() {
    let node = NodeDir::new();
    let zh = |args: &[&str]| node.command(args).env("LC_ALL", "zh_CN.UTF-8").output().unwrap();
    let out = zh(&["init", "--community", "fangou"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("已设置 樊沟社区"), "{out:?}");
    let out = zh(&["template", "apply"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("创建了 29 项标准任务"), "{out:?}");
    // Stars, statuses and dates as a clerk writes them.
    let out = zh(&[
        "task",
        "add",
        "--star",
        "产业兴旺星",
        "--title",
        "发展紫麦种植",
        "--points",
        "5",
        "--due",
        "2026年12月31日",
    ]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && said.contains("已保存：新任务"), "{out:?}");
    let id = said.split_whitespace().find(|w| w.starts_with("t-")).unwrap().trim_end_matches('：');
    let out = zh(&["task", "edit", id, "--status", "进行中"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("进行中"), "{out:?}");
    let task = node.task(id);
    assert_eq!(task["star"], "industry");
    assert_eq!(task["due"], "2026-12-31");
    assert_eq!(task["status"], "doing");
    // Mistakes come back in Chinese with a hint.
    let out = zh(&["task", "progress", "a-industry-jobs", "50", "--clerk", "无名氏"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("错误：“无名氏”不在本社区的工作人员名单中") && err.contains("提示："),
        "{err}"
    );
    let out = zh(&["task", "edit", id, "--due", "明年"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("不是日期"), "{out:?}");
    // A named clerk is recorded with the change.
    zh(&["staff", "add", "李红"]);
    let out = zh(&["task", "note", "a-industry-jobs", "台账已更新", "--clerk", "李红"]);
    assert!(out.status.success(), "{out:?}");
    let history = node.json(&["history", "a-industry-jobs"]);
    assert!(history.as_array().unwrap().iter().any(|c| c["by"] == "李红 · d1"), "{history}");
    // --lang en wins over the locale.
    let out =
        node.command(&["score", "--lang", "en"]).env("LC_ALL", "zh_CN.UTF-8").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("star(s), total"), "{out:?}");
}

#[test]
fn a_photo_attached_in_the_browser_is_shown_with_its_note() {
    let node = NodeDir::with_template("fangou");
    node.ok(&["staff", "add", "李红"]);
    let dir = tempfile::tempdir().unwrap();
    // A real 1x1 PNG.
    let png: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8,
        0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
    let photo = dir.path().join("会议签到.png");
    std::fs::write(&photo, png).unwrap();
    let script = dir.path().join("notes.txt");
    std::fs::write(&script, "plain text").unwrap();
    let bench = Workbench::ui(&node);
    runtime().block_on(async {
        let b = Browser::start(1280, 800).await;
        b.open(&bench.url("/signin")).await;
        b.press("开始工作").await;
        b.open(&bench.url("/tasks/a-industry-jobs")).await;
        // Not evidence: refused in Chinese beside the field, nothing saved.
        b.fill_css("input[type='file']", script.to_str().unwrap()).await;
        b.press("上传附件").await;
        let page = b.text().await;
        assert!(page.contains("不是可以附加的文件"), "{page}");
        b.fill_css("input[type='file']", photo.to_str().unwrap()).await;
        b.fill_css("form[action$='/attach'] input[name='text']", "会议签到表").await;
        b.press("上传附件").await;
        let page = b.text().await;
        assert!(page.contains("已保存") && page.contains("会议签到.png"), "{page}");
        assert!(
            page.contains("等待送到区里"),
            "a node that does not sync says the file waits: {page}"
        );
        let shown = b.image_width("ol.notes img").await;
        assert_eq!(shown, Some(1), "the photo is shown in the page");
        b.screenshot("workbench-attached-1280").await;
        b.stop().await;
    });
    let status = node.json(&["status"]);
    assert_eq!(status["files_waiting"], 1, "{status}");
}

#[test]
fn a_photo_on_its_way_shows_how_far_it_went_and_a_preview_in_the_lists() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.ok(&["staff", "add", "李红"]);
    // A thin link: the photo takes several seconds to go up.
    node.set_config("upload_bytes_per_second", "150000");
    let dir = tempfile::tempdir().unwrap();
    let bytes = fivestar_tests::photo(1600, 1200);
    assert!(bytes.len() > 600_000, "{}", bytes.len());
    let photo = dir.path().join("新建充电桩.jpg");
    std::fs::write(&photo, &bytes).unwrap();
    node.ok(&["task", "done", "a-industry-jobs"]);
    let mut add = hub
        .command(&["user", "add", "chanye", "--display", "王敏", "--role", "star:industry"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    writeln!(add.stdin.take().unwrap(), "chanye-password-1").unwrap();
    assert!(add.wait().unwrap().success());
    node.ok(&["task", "attach", "a-industry-jobs", photo.to_str().unwrap(), "--note", "充电桩"]);
    let bench = Workbench::run(&node);
    runtime().block_on(async {
        let b = Browser::start(1280, 800).await;
        b.open(&bench.url("/signin")).await;
        b.press("开始工作").await;
        let url = bench.url("/tasks/a-industry-jobs");
        assert!(
            until_shown(&b, &url, "正在上传", Duration::from_secs(20)).await,
            "the page says the file is uploading: {}",
            b.text().await
        );
        let state = b.text_of("ol.notes small.busy").await;
        let percent: u64 = state
            .trim_start_matches("正在上传")
            .trim()
            .trim_end_matches('%')
            .split('%')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a percentage: {state:?}"));
        assert!(percent < 100, "{state}");
        b.scroll_to("#notes").await;
        b.screenshot("workbench-uploading-1280").await;
        assert!(
            until_shown(&b, &url, "已送到区里", Duration::from_secs(40)).await,
            "the file reaches the district: {}",
            b.text().await
        );
        // The task list shows the photo's preview beside the task.
        b.open(&bench.url("/tasks")).await;
        let width = b.image_width(".previews img").await;
        assert_eq!(width, Some(320), "a preview, not the photo");
        b.scroll_to("tr:has(.previews)").await;
        b.screenshot("workbench-previews-1280").await;
        // The review desk: the queue's preview and the task page's.
        let desk = format!("http://{}", hub.dashboard());
        b.open(&format!("{desk}/login")).await;
        b.fill("name", "chanye").await;
        b.fill("password", "chanye-password-1").await;
        b.press("登录").await;
        let queue = b.open(&format!("{desk}/review")).await;
        let width = b.image_width(".previews img").await;
        assert_eq!(width, Some(320), "the queue shows the preview: {queue}");
        b.screenshot("desk-queue-previews-1280").await;
        b.open(&format!("{desk}/review/fangou/a-industry-jobs")).await;
        let width = b.image_width("img.evidence").await;
        assert_eq!(width, Some(320), "the task page shows the preview");
        b.screenshot("desk-evidence-preview-1280").await;
        // At a phone's width the previews run off nothing.
        b.resize(390, 844).await;
        for (url, name) in [
            (format!("{desk}/review"), "desk-queue-previews-390"),
            (format!("{desk}/review/fangou/a-industry-jobs"), "desk-evidence-preview-390"),
            (bench.url("/tasks"), "workbench-previews-390"),
            (bench.url("/tasks/a-industry-jobs"), "workbench-file-390"),
        ] {
            b.open(&url).await;
            if name == "workbench-file-390" {
                b.scroll_to("#notes").await;
            }
            b.screenshot(name).await;
            assert!(!b.overflows().await, "{name} runs off the side at 390 px");
        }
        b.stop().await;
    });
}

#[test]
fn an_edit_saved_in_the_workbench_reaches_the_hub_at_once_not_at_the_next_look() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.ok(&["staff", "add", "李红"]);
    // The daemon looks at the database for other processes' edits only every 10 s
    // here (and the heartbeat is 30 s): only the store's own signal can be quicker.
    node.set_config("local_poll_millis", "10000");
    let bench = Workbench::run(&node);
    let s = Session::open(&bench.address);
    assert_eq!(s.post("/signin", &[("csrf", &s.csrf), ("name", "李红")]).status, 303);
    // Connected and settled first.
    assert!(fivestar_tests::eventually(Duration::from_secs(20), || {
        node.json(&["status"])["all_saved_at_district"] == true
    }));
    let csrf = s.token("/tasks/a-industry-jobs");
    let answer = s.post("/tasks/a-industry-jobs/note", &[("csrf", &csrf), ("text", "刚刚保存")]);
    assert_eq!(answer.status, 303, "{answer:?}");
    // Half the poll interval: without the signal it would wait for the next look.
    assert!(
        fivestar_tests::eventually(Duration::from_secs(5), || {
            hub.notes("fangou", "a-industry-jobs").contains("刚刚保存")
        }),
        "the note did not reach the hub within 5 s"
    );
}
