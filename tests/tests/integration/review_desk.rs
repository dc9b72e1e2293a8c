//! The district's review desk: accounts, the queue of one task force in a real
//! browser (headless Chromium), verdicts that reach the node, refusals, exports,
//! screenshots at desk and phone width, and HTTPS with the hub's certificate.

use std::io::Write as _;

use rustls::pki_types::pem::PemObject as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fivestar_tests::browser::{Browser, Session, request, screenshot_dir};
use fivestar_tests::{Hub, NodeDir};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// `fivestar-hub user add`, the password on standard input.
fn add_user(hub: &Hub, name: &str, display: &str, role: &str, password: &str) -> String {
    let mut child = hub
        .command(&["user", "add", name, "--display", display, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Signs in over plain HTTP; returns the session (cookie and fresh token).
fn sign_in(address: &str, name: &str, password: &str) -> Session {
    let mut s = Session::open_at(address, "/login");
    let answer = s.post("/login", &[("csrf", &s.csrf), ("name", name), ("password", password)]);
    assert_eq!(answer.status, 303, "{answer:?}");
    s.csrf = s.token("/review");
    s
}

#[test]
fn a_task_force_reviews_its_own_star_and_the_node_gets_both_verdicts() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    for task in ["a-industry-jobs", "a-industry-assets", "a-ecology-sanitation"] {
        node.ok(&["task", "done", task]);
    }
    node.ok(&["task", "note", "a-industry-jobs", "新增就业岗位 35 个"]);
    node.ok(&["sync"]);
    add_user(&hub, "chanye", "王敏", "star:industry", "chanye-password-1");
    add_user(&hub, "shengtai", "李强", "star:ecology", "shengtai-password-1");
    let listed = hub.ok(&["user", "list"]);
    assert!(listed.contains("chanye") && listed.contains("star:industry"), "{listed}");
    let desk = hub.dashboard();
    let url = |path: &str| format!("http://{desk}{path}");

    // Nobody signed in: every page sends to the sign-in; a form without its token is
    // refused.
    let anonymous = request(&desk, "GET", "/review", &[], "");
    assert_eq!((anonymous.status, anonymous.header("location")), (303, Some("/login")));
    let forged = request(
        &desk,
        "POST",
        "/review/fangou/a-industry-jobs",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "csrf=x&action=accept",
    );
    assert_eq!(forged.status, 403, "{forged:?}");
    assert!(
        request(&desk, "GET", "/metrics", &[], "").status == 200,
        "Prometheus needs no sign-in"
    );

    runtime().block_on(async {
        let b = Browser::start(1280, 800).await;
        let page = b.open(&url("/")).await;
        assert!(page.contains("登录"), "{page}");
        b.fill("name", "chanye").await;
        b.fill("password", "not-the-password").await;
        b.press("登录").await;
        assert!(b.text().await.contains("账号或密码不对"));
        b.fill("name", "chanye").await;
        b.fill("password", "chanye-password-1").await;
        b.press("登录").await;
        // The queue: this task force's star only, oldest first.
        let queue = b.text().await;
        assert!(queue.contains("产业兴旺星专班"), "{queue}");
        assert!(queue.contains("带动群众就业增收") && queue.contains("盘活集体资产"), "{queue}");
        assert!(
            !queue.contains("人居环境整治"),
            "another star's task is not in this queue: {queue}"
        );
        assert!(!b.overflows().await);
        b.screenshot("desk-queue-1280").await;
        // Accept one, with its evidence in view.
        let page = b.open(&url("/review/fangou/a-industry-jobs")).await;
        assert!(page.contains("新增就业岗位 35 个"), "{page}");
        b.screenshot("desk-task-1280").await;
        b.press("通过").await;
        let page = b.text().await;
        assert!(page.contains("已保存：已通过"), "{page}");
        // Reject another: first without a comment (the server says why), then with one.
        b.open(&url("/review/fangou/a-industry-assets")).await;
        b.without_browser_checks().await;
        b.press("退回").await;
        let page = b.text().await;
        assert!(page.contains("退回或重新打开须写明理由"), "{page}");
        b.fill_css("form:nth-of-type(2) textarea[name='comment']", "缺少集体资产台账").await;
        b.press("退回").await;
        let page = b.text().await;
        assert!(page.contains("已保存：已退回") && page.contains("缺少集体资产台账"), "{page}");
        let queue = b.open(&url("/review")).await;
        assert!(queue.contains("没有待审核的任务"), "{queue}");
        // The dashboard and a community page, at desk and phone width.
        let dash = b.open(&url("/")).await;
        assert!(dash.contains("同步与排名看板") && dash.contains("樊沟社区"), "{dash}");
        assert!(dash.contains("产业兴旺星"), "stars are named: {dash}");
        assert!(!dash.contains("S1") && !dash.contains("星1"), "{dash}");
        b.screenshot("desk-dashboard-1280").await;
        let community = b.open(&url("/community/fangou")).await;
        assert!(
            community.contains("距及格线还差") && community.contains("缺少集体资产台账"),
            "{community}"
        );
        assert!(
            community.contains("须先评上其他各星（产业兴旺星"),
            "star names, not keys: {community}"
        );
        b.screenshot("desk-community-1280").await;
        b.resize(390, 844).await;
        for (path, name) in [
            ("/review", "desk-queue-390"),
            ("/review/fangou/a-industry-jobs", "desk-task-390"),
            ("/", "desk-dashboard-390"),
            ("/community/fangou", "desk-community-390"),
            ("/progress", "desk-progress-390"),
        ] {
            b.open(&url(path)).await;
            b.screenshot(name).await;
            assert!(!b.overflows().await, "{path} is cut off at 390 px");
        }
        b.stop().await;
    });
    assert!(screenshot_dir().join("desk-queue-390.png").exists());

    // The node gets both verdicts at its next sync, attributed to the reviewer.
    node.ok(&["sync"]);
    let jobs = node.task("a-industry-jobs");
    assert_eq!(jobs["review"]["verdict"], "accepted", "{jobs}");
    assert_eq!(jobs["review"]["reviewer"], "王敏");
    let assets = node.task("a-industry-assets");
    assert_eq!(assets["review"]["verdict"], "rejected", "{assets}");
    assert_eq!(assets["review"]["comment"], "缺少集体资产台账");
    let history = hub.ok(&["history", "fangou", "--task", "a-industry-jobs", "--json"]);
    assert!(
        history.contains("\"delivered_by\": \"reviewer/chanye\""),
        "the audit names the account: {history}"
    );

    // Another star's task force may not review them: not in its page, and a forged
    // form is refused by the policy with nothing stored.
    let before = hub.document("fangou").unwrap().get_heads();
    let other = sign_in(&desk, "shengtai", "shengtai-password-1");
    let page = other.get("/review/fangou/a-industry-jobs");
    assert!(page.body.contains("这项任务不归您审核"), "{}", page.body);
    let csrf = other.token("/review/fangou/a-industry-jobs");
    let refused = other.post(
        "/review/fangou/a-industry-jobs",
        &[("csrf", &csrf), ("action", "reject"), ("comment", "越权")],
    );
    assert_eq!(refused.status, 422, "{refused:?}");
    assert!(refused.body.contains("无权审核"), "{}", refused.body);
    assert_eq!(hub.document("fangou").unwrap().get_heads(), before, "nothing was stored");

    // Wrong passwords are refused and, after five in a row, the name is paused:
    // the right password too.
    for _ in 0..5 {
        let s = Session::open_at(&desk, "/login");
        let answer =
            s.post("/login", &[("csrf", &s.csrf), ("name", "chanye"), ("password", "guess")]);
        assert_eq!(answer.status, 401);
    }
    let s = Session::open_at(&desk, "/login");
    let paused = s.post(
        "/login",
        &[("csrf", &s.csrf), ("name", "chanye"), ("password", "chanye-password-1")],
    );
    assert_eq!(paused.status, 429, "{paused:?}");
    assert!(paused.body.contains("登录失败次数太多"), "{}", paused.body);
}

#[test]
fn the_excel_export_holds_the_rows_of_standings_json() {
    use calamine::{Data, Reader, Xlsx};
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.ok(&["task", "done", "a-industry-jobs"]);
    node.ok(&["sync"]);
    add_user(&hub, "office", "区创建办", "office", "office-password-1");
    let desk = hub.dashboard();
    let s = sign_in(&desk, "office", "office-password-1");
    // The standings refresh within seconds of a sync.
    assert!(fivestar_tests::eventually(Duration::from_secs(15), || {
        let json: serde_json::Value =
            serde_json::from_str(&hub.ok(&["standings", "--json"])).unwrap();
        json["rows"][0]["community"] == "fangou"
    }));
    let json: serde_json::Value = serde_json::from_str(&hub.ok(&["standings", "--json"])).unwrap();
    let answer = raw_bytes(&desk, "/standings.xlsx", &s.cookie);
    let mut book: Xlsx<_> = Xlsx::new(std::io::Cursor::new(answer)).expect("an xlsx workbook");
    let sheet = book.worksheet_range("排名").expect("a sheet named 排名");
    let rows: Vec<&[Data]> = sheet.rows().collect();
    assert_eq!(rows[0][0], Data::String("区排名".into()));
    assert_eq!(rows[0][3], Data::String("社区".into()));
    let expected = json["rows"].as_array().unwrap();
    assert_eq!(rows.len() - 1, expected.len(), "one row per community");
    for (row, want) in rows[1..].iter().zip(expected) {
        assert_eq!(row[2], Data::String(want["community"].as_str().unwrap().into()));
        let total = want["total"].as_f64().unwrap() / 100.0;
        match &row[7] {
            Data::Float(f) => assert!((f - total).abs() < 1e-9, "{f} vs {total}"),
            other => panic!("total is a number, not {other:?}"),
        }
    }
    assert_eq!(rows[1][8], Data::String("支部过硬星".into()), "stars are named");
    let csv = s.get("/standings.csv");
    assert!(csv.body.starts_with("district_rank,"), "{}", csv.body);
}

/// The body of a GET as bytes (the xlsx is binary).
fn raw_bytes(address: &str, path: &str, cookie: &str) -> Vec<u8> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\nCookie: {cookie}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(raw.starts_with(b"HTTP/1.1 200") || raw.starts_with(b"HTTP/1.0 200"));
    raw[at..].to_vec()
}

#[test]
fn accounts_are_managed_on_the_command_line_and_review_names_one() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.ok(&["task", "done", "a-industry-jobs"]);
    node.ok(&["sync"]);
    let out = add_user(&hub, "wangmin", "王敏", "office", "a-long-password");
    assert!(out.contains("Saved: account wangmin (王敏), office"), "{out}");
    // Bad names, roles and short passwords are refused.
    let err = hub.fail(&["user", "add", "Wang Min", "--display", "王敏", "--role", "office"]);
    assert!(err.contains("must be 1 to 40 characters"), "{err}");
    let err = hub.fail(&["user", "add", "x", "--display", "某", "--role", "star:nosuch"]);
    assert!(err.contains("is not a star of the standard"), "{err}");
    // Review by an account: recorded with its name; the hub is running, and says so.
    let out = hub.ok(&["review", "fangou", "a-industry-jobs", "accept", "--reviewer", "wangmin"]);
    assert!(out.contains("by 王敏") && out.contains("The hub is running"), "{out}");
    // A name that is not an account is refused once accounts exist.
    let err = hub.fail(&[
        "review",
        "fangou",
        "a-industry-jobs",
        "reopen",
        "--reviewer",
        "nobody",
        "--comment",
        "x",
    ]);
    assert!(err.contains("is not an account of this hub"), "{err}");
    // A disabled account may not review; enabled again, it may.
    hub.ok(&["user", "disable", "wangmin"]);
    let err = hub.fail(&[
        "review",
        "fangou",
        "a-industry-jobs",
        "reopen",
        "--reviewer",
        "wangmin",
        "--comment",
        "再看看",
    ]);
    assert!(err.contains("disabled"), "{err}");
    hub.ok(&["user", "enable", "wangmin"]);
    let listed: serde_json::Value =
        serde_json::from_str(&hub.ok(&["user", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["disabled"], false);
    assert!(listed[0].get("password_hash").is_none(), "hashes are never printed");
}

#[test]
fn the_web_side_speaks_https_with_the_hubs_certificate() {
    let mut hub = Hub::new("dashboard_tls = \"on\"");
    hub.start();
    let ca = std::fs::read(hub.path().join("pki").join("ca.pem")).unwrap();
    runtime().block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(hub.dashboard()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls =
            connector.connect(name, tcp).await.expect("the district CA vouches for the hub");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET /login HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{answer}"
        );
        assert!(answer.contains("; Secure"), "the session cookie is Secure over TLS: {answer}");
    });
    // Plain HTTP on the same port gets nothing.
    let plain = fivestar_tests::http_get(&hub.dashboard(), "/login");
    assert!(plain.map(|(code, _)| code != 200).unwrap_or(true));
}
