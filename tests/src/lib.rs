//! Helpers for the integration tests: run the real binaries against temporary
//! directories and read back what they wrote.
//!
//! The binaries are the ones cargo built for this test run (`target/<profile>/`,
//! next to the test executable's `deps/` folder). `cargo test --workspace` builds
//! them because the `node` and `hub` crates each have an integration test of their own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use automerge::Automerge;
use fivestar_store::DocStore;
use serde_json::Value;
use tempfile::TempDir;

pub mod browser;
pub mod corpus;
pub mod raw;
pub mod sim;

/// The path of a workspace binary built for this test run.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    // `cargo test -p fivestar-tests` alone does not rebuild the binaries: refuse to test
    // a stale one rather than report on old code.
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).expect("binary metadata");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let own = name.strip_prefix("fivestar-").unwrap_or(name);
    for crate_dir in ["core", "store", "proto", own] {
        if let Some(newer) = newer_source(&root.join(crate_dir), built) {
            panic!(
                "{} is older than {}: run `cargo build --workspace` first (a filtered `cargo test` \
                 does not rebuild binaries; a plain `cargo test --workspace` does)",
                path.display(),
                newer.display()
            );
        }
    }
    path
}

/// A source file under `dir` modified after `than`, if any.
fn newer_source(dir: &Path, than: std::time::SystemTime) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            if let Some(found) = newer_source(&path, than) {
                return Some(found);
            }
        } else if path.extension().is_some_and(|e| e == "rs" || e == "proto" || e == "toml")
            && entry.metadata().and_then(|m| m.modified()).is_ok_and(|m| m > than)
        {
            return Some(path);
        }
    }
    None
}

/// A node's data directory in a temporary folder, and the commands to drive it.
#[derive(Debug)]
pub struct NodeDir {
    dir: TempDir,
}

impl Default for NodeDir {
    fn default() -> Self {
        NodeDir::new()
    }
}

impl NodeDir {
    /// A node of `community` set up to sync with `hub` as `device`, with its
    /// certificate in place and its template applied.
    pub fn for_hub(hub: &Hub, community: &str, device: &str) -> NodeDir {
        let node = NodeDir::new();
        node.ok(&["init", "--community", community, "--device", device, "--hub", &hub.url()]);
        hub.issue_into(&["--community", community, "--device", device], &node.path().join("certs"));
        node.ok(&["template", "apply"]);
        node
    }

    /// Replaces `key = old` by `key = new` in the node's configuration.
    pub fn set_config(&self, key: &str, value: &str) {
        let path = self.dir.path().join("node.toml");
        let text = std::fs::read_to_string(&path).expect("node.toml");
        let mut found = false;
        let text: Vec<String> = text
            .lines()
            .map(|line| {
                if line.split('=').next().map(str::trim) == Some(key) {
                    found = true;
                    format!("{key} = {value}")
                } else {
                    line.to_string()
                }
            })
            .collect();
        assert!(found, "node.toml has no {key}");
        std::fs::write(&path, text.join("\n")).expect("node.toml written");
    }

    /// The notes of a task, as a set of texts.
    pub fn notes(&self, task: &str) -> std::collections::BTreeSet<String> {
        self.task(task)["notes"]
            .as_array()
            .expect("notes is a list")
            .iter()
            .map(|n| n["text"].as_str().expect("text").to_string())
            .collect()
    }

    /// An empty, not yet initialised, data directory.
    pub fn new() -> NodeDir {
        NodeDir { dir: tempfile::tempdir().expect("a temporary directory") }
    }

    /// A data directory set up for `community` with its template applied.
    pub fn with_template(community: &str) -> NodeDir {
        let node = NodeDir::new();
        node.ok(&["init", "--community", community]);
        node.ok(&["template", "apply"]);
        node
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The node's database file.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("node.db")
    }

    /// A `fivestar-node` command for this data directory, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("fivestar-node"));
        command.arg("--data-dir").arg(self.dir.path()).args(args).env_remove("FIVESTAR_NODE_DIR");
        // English messages unless a test asks otherwise (the locale decides by default).
        command.env_remove("FIVESTAR_LANG").env_remove("FIVESTAR_CLERK").env("LC_ALL", "C.UTF-8");
        command
    }

    /// Runs a command and returns what it printed and how it exited.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("fivestar-node starts")
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "fivestar-node {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs a command with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).expect("valid JSON")
    }

    /// Runs a command that must fail; returns its exit code and standard error.
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        let output = self.run(args);
        assert!(!output.status.success(), "fivestar-node {args:?} should have failed");
        let code = output.status.code().unwrap_or(-1);
        (code, String::from_utf8(output.stderr).expect("UTF-8 output"))
    }

    /// The document's heads, from `status --json`.
    pub fn heads(&self) -> Vec<String> {
        let status = self.json(&["status"]);
        status["heads"]
            .as_array()
            .expect("heads is a list")
            .iter()
            .map(|h| h.as_str().expect("a head is a string").to_string())
            .collect()
    }

    /// One task as JSON, from `task show --json`.
    pub fn task(&self, id: &str) -> Value {
        self.json(&["task", "show", id])
    }
}

/// A real `fivestar-hub serve` process with its own data directory and PKI, on a
/// loopback port chosen once (so it can be killed and restarted on the same address).
#[derive(Debug)]
pub struct Hub {
    dir: TempDir,
    port: u16,
    dashboard_port: u16,
    child: Option<Child>,
}

impl Hub {
    /// A hub with `extra` appended to its `hub.toml`, its PKI created, not started.
    pub fn new(extra: &str) -> Hub {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let dashboard_port = free_port();
        std::fs::write(
            dir.path().join("hub.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\ndashboard_listen = \"127.0.0.1:{dashboard_port}\"\n{extra}\n"
            ),
        )
        .expect("hub.toml written");
        let hub = Hub { dir, port, dashboard_port, child: None };
        hub.ok(&["pki", "init"]);
        hub
    }

    /// A hub with default settings, started.
    pub fn started() -> Hub {
        let mut hub = Hub::new("");
        hub.start();
        hub
    }

    /// The hub's data directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The address nodes use.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The dashboard's address, `127.0.0.1:PORT`.
    pub fn dashboard(&self) -> String {
        format!("127.0.0.1:{}", self.dashboard_port)
    }

    /// A `fivestar-hub` command for this data directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("fivestar-hub"));
        command
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("FIVESTAR_HUB_DIR")
            .env_remove("FIVESTAR_HUB_CONFIG")
            // The CA folder inside the temporary directory, so nothing outlives the test
            // (the default puts it beside the data directory).
            .env("FIVESTAR_CA_DIR", self.dir.path().join("offline-ca"));
        command
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("fivestar-hub starts");
        assert!(
            output.status.success(),
            "fivestar-hub {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs a command that must fail; returns its standard error.
    pub fn fail(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("fivestar-hub starts");
        assert!(!output.status.success(), "fivestar-hub {args:?} should have failed");
        String::from_utf8(output.stderr).expect("UTF-8 output")
    }

    /// Issues a certificate (`who`: `--community C --device D` or `--reviewer R`) into `dir`.
    pub fn issue_into(&self, who: &[&str], dir: &Path) {
        let mut args = vec!["pki", "issue"];
        args.extend_from_slice(who);
        let out = dir.to_str().expect("UTF-8 path");
        args.extend_from_slice(&["--out", out]);
        self.ok(&args);
    }

    /// Starts `serve` and waits until it listens.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the hub is running already");
        let mut child = self
            .command(&["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("fivestar-hub serve starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the hub prints where it listens");
        assert!(line.contains("listening on"), "unexpected first line: {line:?}");
        self.child = Some(child);
    }

    /// The hub process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the hub with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill the hub");
            child.wait().expect("reap the hub");
        }
    }

    /// A community's document as the hub has durably stored it.
    pub fn document(&self, community: &str) -> Option<Automerge> {
        let mut store =
            DocStore::open(&self.dir.path().join("hub.db"), &fivestar_hub::store::SCHEMA)
                .expect("the hub's database opens");
        store
            .read(&fivestar_core::document::community_doc_id(community))
            .expect("the hub's document reads")
    }

    /// A community's tasks as the hub has them.
    pub fn tasks(&self, community: &str) -> Vec<fivestar_core::Task> {
        let doc = self.document(community).expect("the hub has the community's document");
        let actor = automerge::ActorId::random();
        fivestar_core::CommunityDoc::from_automerge(community, doc, actor)
            .tasks()
            .expect("the hub's document is valid")
    }

    /// The notes of a task as the hub has them.
    pub fn notes(&self, community: &str, task: &str) -> std::collections::BTreeSet<String> {
        self.tasks(community)
            .into_iter()
            .find(|t| t.id == task)
            .map(|t| t.notes.into_iter().map(|n| n.text).collect())
            .unwrap_or_default()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 50 ms until it is true or `limit` passes; returns whether it
/// became true.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// A plain HTTP/1.0 GET on loopback; returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_string()))
}

/// A plain HTTP/1.0 GET on loopback; returns the body's bytes (the status must be 200).
pub fn http_get_bytes(addr: &str, path: String) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("sent");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    assert!(
        raw.starts_with(b"HTTP/1.1 200") || raw.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&raw[..at])
    );
    raw[at..].to_vec()
}

/// Runs `promtool check metrics` on an exposition; returns its verdict and output.
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package prometheus; .ci/run installs it)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("promtool reads");
    let output = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// A real photo: `width` × `height` pixels of noise over a gradient (noise keeps
/// JPEG from compressing it to nothing, as a camera's sensor does).
pub fn photo(width: u32, height: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491u32;
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = seed & 0x3f;
        image::Rgb([
            ((x * 190 / width) + n) as u8,
            ((y * 190 / height) + n) as u8,
            (((x + y) * 95 / (width + height)) + n) as u8,
        ])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(picture)
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92))
        .expect("a JPEG encodes");
    out
}

/// CPU seconds (user and system) process `pid` has used, from `/proc` (0 where
/// there is no `/proc`).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line (12 and 13 after ')'),
    // in kernel clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

/// A line of `/proc/PID/status` in KiB, e.g. `VmRSS:` or `VmHWM:` (0 when absent).
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
