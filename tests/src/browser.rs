//! A real browser for the tests: Debian's headless Chromium, driven over WebDriver
//! (chromedriver) with `fantoccini`, and the clerks' workbench of a node, served by
//! the real `fivestar-node` binary on a loopback port.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::{NodeDir, binary, eventually, free_port, http_get};

/// Where screenshots are kept for people to look at: beside the test binaries.
pub fn screenshot_dir() -> PathBuf {
    let dir = binary("fivestar-node").with_file_name("screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

/// A headless Chromium session behind its own chromedriver.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    /// The WebDriver client.
    pub client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile and a window
    /// of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (Debian package chromium-driver; scripts/test installs it)");
        let address = format!("127.0.0.1:{port}");
        assert!(
            eventually(Duration::from_secs(20), || std::net::TcpStream::connect(&address).is_ok()),
            "chromedriver listens"
        );
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                    "--lang=zh-CN",
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://{address}"))
            .await
            .expect("a WebDriver session with Chromium");
        Browser { driver, client, _profile: profile }
    }

    /// Goes to `url` and returns the page's visible text.
    pub async fn open(&self, url: &str) -> String {
        self.client.goto(url).await.expect("the page loads");
        self.text().await
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.client.find(Locator::Css("body")).await.expect("a body").text().await.expect("text")
    }

    /// The visible text of the first element matched by `css`.
    pub async fn text_of(&self, css: &str) -> String {
        let element = self.client.find(Locator::Css(css)).await;
        let element = element.unwrap_or_else(|e| panic!("an element {css}: {e}"));
        element.text().await.expect("text")
    }

    /// Types `text` into the field named `name` (clearing it first).
    pub async fn fill(&self, name: &str, text: &str) {
        self.fill_css(&format!("[name='{name}']"), text).await;
    }

    /// Types `text` into the field matched by `css` (clearing it first).
    pub async fn fill_css(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("a field {css}: {e}"));
        field.clear().await.expect("cleared");
        field.send_keys(text).await.expect("typed");
    }

    /// Clicks the element matched by `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("an element {css}: {e}"))
            .click()
            .await
            .expect("clicked");
    }

    /// Clicks the button whose text contains `label` and waits for the page it
    /// leads to (every button of the workbench submits a form).
    pub async fn press(&self, label: &str) {
        let xpath = format!("//button[contains(normalize-space(.), '{label}')]");
        let before = self.client.find(Locator::Css("html")).await.expect("a page");
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("a button {label:?}: {e}"))
            .click()
            .await
            .expect("clicked");
        // The old document goes stale once the answer replaces it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while before.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "pressing {label:?} led to no new page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.client.execute("return document.readyState;", vec![]).await;
            if state.ok().and_then(|s| s.as_str().map(|s| s == "complete")).unwrap_or(false) {
                break;
            }
            assert!(Instant::now() < deadline, "the page after {label:?} loads");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot named `name`.png in [`screenshot_dir`] and returns its bytes.
    pub async fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(screenshot_dir().join(format!("{name}.png")), &png).expect("saved");
        png
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.expect("resized");
    }

    /// The natural width of the first image `css` selects, once it has loaded;
    /// `None` when there is no such image or it did not load.
    pub async fn image_width(&self, css: &str) -> Option<u64> {
        let script = "const i = document.querySelector(arguments[0]); \
                      return i && i.complete ? i.naturalWidth : null;";
        let value =
            self.client.execute(script, vec![serde_json::json!(css)]).await.expect("script runs");
        value.as_u64().filter(|w| *w > 0)
    }

    /// Scrolls the first element `css` selects into view (for a screenshot).
    pub async fn scroll_to(&self, css: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView();",
                vec![serde_json::json!(css)],
            )
            .await
            .expect("script runs");
    }

    /// Whether the page is wider than the window (something cut off or scrolling sideways).
    pub async fn overflows(&self) -> bool {
        let value = self
            .client
            .execute("return document.documentElement.scrollWidth > window.innerWidth + 1;", vec![])
            .await
            .expect("script runs");
        value.as_bool().unwrap_or(true)
    }

    /// Turns off the browser's own form checks, so the server's are what a test sees.
    pub async fn without_browser_checks(&self) {
        self.client
            .execute("document.querySelectorAll('form').forEach(f => f.noValidate = true);", vec![])
            .await
            .expect("script runs");
    }

    /// Ends the session and the driver.
    pub async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A node's workbench served by `fivestar-node ui` (or `run`) on a loopback port.
#[derive(Debug)]
pub struct Workbench {
    child: Child,
    /// `127.0.0.1:port`.
    pub address: String,
}

impl Workbench {
    /// Serves `node`'s workbench with `fivestar-node ui` (no sync).
    pub fn ui(node: &NodeDir) -> Workbench {
        let address = format!("127.0.0.1:{}", free_port());
        let child = node
            .command(&["ui", "--listen", &address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fivestar-node ui starts");
        Workbench::ready(child, address)
    }

    /// Runs `node`'s daemon (`fivestar-node run`: sync and the workbench).
    pub fn run(node: &NodeDir) -> Workbench {
        let address = format!("127.0.0.1:{}", free_port());
        node.set_config("listen", &format!("\"{address}\""));
        node.set_config("metrics_listen", "\"\"");
        let child = node
            .command(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fivestar-node run starts");
        Workbench::ready(child, address)
    }

    fn ready(child: Child, address: String) -> Workbench {
        assert!(
            eventually(Duration::from_secs(20), || http_get(&address, "/app.css").is_ok()),
            "the workbench answers at {address}"
        );
        Workbench { child, address }
    }

    /// The workbench's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Kills the node at once (SIGKILL): no clean shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Workbench {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Answer {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP request on loopback, for what a browser would not send (a foreign
/// Host, a form without its token) and for exact timing.
pub fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = std::net::TcpStream::connect(address).expect("the workbench accepts");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("a timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("sent");
    stream.write_all(body.as_bytes()).expect("sent");
    let started = Instant::now();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    assert!(started.elapsed() < Duration::from_secs(20), "an answer in time");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer { status, headers, body: body.to_string() }
}

/// A browser-less session with the workbench: its cookie and CSRF token.
#[derive(Debug)]
pub struct Session {
    /// The workbench's address.
    pub address: String,
    /// `fivestar_session=...`.
    pub cookie: String,
    /// The form token.
    pub csrf: String,
}

impl Session {
    /// Opens a session with a node's workbench (GET /welcome) and reads its token.
    pub fn open(address: &str) -> Session {
        Session::open_at(address, "/welcome")
    }

    /// Opens a session at `path` (a page with a form) and reads its token.
    pub fn open_at(address: &str, path: &str) -> Session {
        let answer = request(address, "GET", path, &[], "");
        let cookie = answer
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_string();
        let mut session = Session { address: address.to_string(), cookie, csrf: String::new() };
        session.csrf = session.token(path);
        session
    }

    /// Reads the CSRF token from a page.
    pub fn token(&self, path: &str) -> String {
        let page = self.get(path).body;
        let at = page.find("name=\"csrf\" value=\"").expect("a form with a token") + 19;
        page[at..].split('"').next().expect("a token").to_string()
    }

    /// GET with the session's cookie.
    pub fn get(&self, path: &str) -> Answer {
        request(&self.address, "GET", path, &[("Cookie", &self.cookie)], "")
    }

    /// POST a form with the session's cookie; `fields` are URL-encoded here.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body =
            fields.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
        request(
            &self.address,
            "POST",
            path,
            &[("Cookie", &self.cookie), ("Content-Type", "application/x-www-form-urlencoded")],
            &body,
        )
    }
}

/// Percent-encodes a form value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
