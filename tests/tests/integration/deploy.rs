//! Deployment as README.md ("Deploying for real, step by step") and the headers of the
//! systemd units describe it, as far as a machine without systemd as PID 1 and without
//! containers allows: real system users and groups, directories and their modes,
//! commands run as those users (through `setpriv`, as `sudo -u` would), the daemons
//! started by hand exactly as their units start them (user, group, environment, umask,
//! ExecStart); and the Debian packages of the hub and the node, made by cargo-deb from
//! this run's binaries, installed, run, and purged.
//!
//! Users, groups and packages need root. CI runs the tests as root. Otherwise a test
//! that needs root runs itself again through `sudo -n` (root without a password prompt,
//! e.g. just after `sudo -v`) and fails, saying it needs root, when sudo will not: it
//! never passes without having run. The names it creates are checked unused first and
//! removed at the end, also when it fails; every wait is bounded.

use std::fs;
use std::io::{Read, Seek};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fivestar_tests::{Hub, binary, eventually, free_port, http_get};

/// Where the test binary finds the packages built before it ran itself through sudo.
const DEBS_ENV: &str = "FIVESTAR_TEST_DEBS";
/// How long any one command may take before the test gives up on it.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// How long a daemon may take to start, to answer, or to stop.
const DAEMON_LIMIT: Duration = Duration::from_secs(20);

/// The packaged systemd units are those of deploy/systemd/ but for their header, the
/// binary's path (/usr/bin, where the packages put it) and the README's place.
#[test]
fn the_packaged_units_are_the_units_of_deploy_systemd_with_usr_bin() {
    let root = workspace();
    for (name, doc) in [("hub", true), ("node", false)] {
        let original =
            fs::read_to_string(root.join(format!("deploy/systemd/fivestar-{name}.service")))
                .unwrap();
        let packaged =
            fs::read_to_string(root.join(format!("deploy/debian/{name}/fivestar-{name}.service")))
                .unwrap();
        let mut expected = unit_body(&original).replace("/usr/local/bin/", "/usr/bin/");
        if doc {
            expected = expected.replace("/usr/share/doc/fivestar/", "/usr/share/doc/fivestar-hub/");
        }
        assert_eq!(
            unit_body(&packaged),
            expected,
            "deploy/debian/{name}/fivestar-{name}.service differs from deploy/systemd/'s copy \
             beyond /usr/bin: change both"
        );
        let exec = Unit::parse(&packaged).exec_start;
        assert_eq!(exec[0], format!("/usr/bin/fivestar-{name}"), "{exec:?}");
        // Every maintainer script is an executable POSIX shell script.
        for script in ["postinst", "prerm", "postrm"] {
            let path = root.join(format!("deploy/debian/{name}/{script}"));
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "{} is not executable", path.display());
            run(Command::new("sh").arg("-n").arg(&path), COMMAND_LIMIT).ok("sh -n");
        }
    }
}

/// README step 5 and the node unit's header, with a hub: the node's user and group,
/// its data directory (2770), `init`, the certificate and the template as that user,
/// the daemon as the unit starts it; a clerk in the node's group records a task with
/// the command line and the daemon syncs it to the hub; someone outside the group
/// reads nothing; a second daemon is refused, naming the one that runs.
#[test]
fn the_node_deploys_as_its_unit_says_with_a_clerk_and_one_daemon() {
    let why = "creates system users and groups";
    as_root("the_node_deploys_as_its_unit_says_with_a_clerk_and_one_daemon", why, &[], || {
        let mut cleanup = Cleanup::default();
        let service = cleanup.new_user("n");
        let clerk = cleanup.new_user("c");
        let outsider = cleanup.new_user("o");
        for user in [&clerk, &outsider] {
            ok(Command::new("useradd").args([
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ]));
        }
        let mut hub = Hub::new("");
        hub.start();

        // The machine's folders, in a temporary one the test users may enter:
        // <tmp>/bin stands for /usr/local/bin, <tmp>/lib for /var/lib.
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let bin = tmp.path().join("bin");
        let lib = tmp.path().join("lib");
        for dir in [&bin, &lib] {
            fs::create_dir(dir).unwrap();
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let data = lib.join("fivestar-node");
        let node = bin.join("fivestar-node");

        // The header's commands, with the test's names and folders.
        ok(Command::new("useradd").args(["--system", "--home"]).arg(&data).args([
            "--shell",
            "/usr/sbin/nologin",
            &service,
        ]));
        assert!(getent("group", &service), "useradd made no group {service} for the user");
        ok(Command::new("install").args(["-m", "0755"]).arg(binary("fivestar-node")).arg(&bin));
        ok(Command::new("install")
            .args(["-d", "-o", &service, "-g", &service, "-m", "2770"])
            .arg(&data));
        let url = hub.url();
        let init = ["init", "--community", "fangou", "--device", "office-pc", "--hub", &url];
        ok(as_user(&service).arg(&node).arg("--data-dir").arg(&data).args(init));
        let issued = tmp.path().join("issued");
        hub.issue_into(&["--community", "fangou", "--device", "office-pc"], &issued);
        let certs = data.join("certs");
        ok(Command::new("install").args(["-d", "-o", &service, "-g", &service]).arg(&certs));
        ok(Command::new("install")
            .args(["-o", &service, "-g", &service, "-m", "0600"])
            .arg(issued.join("device.key"))
            .arg(&certs));
        ok(Command::new("install")
            .args(["-o", &service, "-g", &service, "-m", "0644"])
            .arg(issued.join("device.pem"))
            .arg(issued.join("ca.pem"))
            .arg(&certs));
        ok(as_user(&service).arg(&node).arg("--data-dir").arg(&data).args(["template", "apply"]));
        // Loopback ports of its own for the metrics and the workbench, so it runs beside
        // other tests.
        let metrics = format!("127.0.0.1:{}", free_port());
        set_toml(&data.join("node.toml"), "metrics_listen", &metrics);
        set_toml(&data.join("node.toml"), "listen", &format!("127.0.0.1:{}", free_port()));

        let (uid, gid) = ids(&service);
        assert_mode(&data, 0o2770, uid, gid);
        assert_mode(&data.join("node.db"), 0o660, uid, gid);

        // A clerk joins the node's group as the header says.
        ok(Command::new("usermod").args(["-aG", &service, &clerk]));

        // The daemon, as systemd would start it from deploy/systemd/fivestar-node.service.
        let unit = Unit::parse(
            &fs::read_to_string(workspace().join("deploy/systemd/fivestar-node.service")).unwrap(),
        )
        .moved(
            &service,
            &[
                ("/usr/local/bin/", &format!("{}/", bin.display())),
                ("/var/lib/fivestar-node", &data.display().to_string()),
            ],
        );
        let mut daemon = Daemon::start("fivestar-node run", &unit, tmp.path());
        daemon.wait_locked(&data.join("run.lock"));
        daemon.wait_answering(&metrics, "/metrics");

        // The clerk records a task with the command line, on the shared data directory.
        let title = "夜巡（部署测试）";
        let added = ok(as_user(&clerk)
            .env("FIVESTAR_NODE_DIR", &data)
            .arg(&node)
            .args(["task", "add", "--star", "safety", "--title", title, "--points", "10"]));
        assert!(added.contains("Saved"), "{added}");
        // The service notices it and syncs it to the hub.
        let started = Instant::now();
        let synced = eventually(DAEMON_LIMIT, || {
            hub.document("fangou").is_some() && hub.tasks("fangou").iter().any(|t| t.title == title)
        });
        daemon.assert_running();
        assert!(
            synced,
            "the clerk's task did not reach the hub in {DAEMON_LIMIT:?}: {}",
            daemon.log()
        );
        eprintln!("the clerk's task reached the hub {:?} after it was saved", started.elapsed());
        // Everything in the data directory is still the node's group's, and the database
        // still group-writable, whoever wrote last.
        for entry in fs::read_dir(&data).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            assert_eq!(meta.gid(), gid, "{} is not the node group's", entry.path().display());
        }
        assert_mode(&data.join("node.db"), 0o660, uid, gid);

        // Someone outside the group reads nothing.
        let refused = run(
            as_user(&outsider).env("FIVESTAR_NODE_DIR", &data).arg(&node).args(["task", "list"]),
            COMMAND_LIMIT,
        );
        assert!(!refused.status.success(), "an outsider listed the tasks: {}", refused.stdout);
        assert!(refused.stderr.contains("Permission denied"), "{}", refused.stderr);
        eprintln!("an outsider is told: {}", refused.stderr.trim());

        // A second daemon on the same folder is refused, naming the one that runs.
        let second = run(
            as_user(&service)
                .env("FIVESTAR_NODE_DIR", &data)
                .arg(&node)
                .args(["--log-json", "run"]),
            COMMAND_LIMIT,
        );
        assert_eq!(second.status.code(), Some(1), "{}{}", second.stdout, second.stderr);
        assert!(second.stderr.contains("already running"), "{}", second.stderr);
        assert!(second.stderr.contains(&format!("process {}", daemon.pid())), "{}", second.stderr);
        eprintln!("a second daemon is told: {}", second.stderr.trim());

        let status = daemon.stop();
        assert!(status.success(), "the node ended with {status} on SIGTERM: {}", daemon.log());
    });
}

/// The .deb packages of the hub and the node, made by cargo-deb from this run's
/// binaries: installed with dpkg, their files, user, group and directories checked,
/// the installed daemons started as their units would and synced with each other,
/// then purged: the programs go, the records stay (and the user with them) until the
/// administrator deletes them, after which purging the last package takes the user.
#[test]
fn the_packages_install_run_and_purge() {
    let built;
    let debs = match std::env::var_os(DEBS_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => {
            built = build_debs();
            built.path().to_path_buf()
        }
    };
    let why = "installs packages, which make a system user and group";
    as_root("the_packages_install_run_and_purge", why, &[(DEBS_ENV, &debs)], || {
        let hub_deb = deb(&debs, "fivestar-hub");
        let node_deb = deb(&debs, "fivestar-node");
        let data = Path::new("/var/lib/fivestar-node");
        let hub_data = Path::new("/var/lib/fivestar-hub");
        let ca = Path::new("/var/lib/fivestar-hub-ca");
        let installed = [
            "/usr/bin/fivestar-hub",
            "/usr/bin/fivestar-node",
            "/usr/lib/systemd/system/fivestar-hub.service",
            "/usr/lib/systemd/system/fivestar-node.service",
            "/usr/share/doc/fivestar-hub",
            "/usr/share/doc/fivestar-node",
        ];
        // The packages use the real names: refuse to touch a machine that has them.
        let mut found: Vec<String> = [data, hub_data, ca]
            .iter()
            .map(|p| p.display().to_string())
            .chain(installed.iter().map(|p| p.to_string()))
            .filter(|p| Path::new(p).exists())
            .collect();
        for package in ["fivestar-hub", "fivestar-node"] {
            if package_state(package).is_some_and(|s| s != "not-installed") {
                found.push(format!("package {package}"));
            }
        }
        for kind in ["passwd", "group"] {
            if getent(kind, "fivestar") {
                found.push(format!("{kind} entry fivestar"));
            }
        }
        assert!(
            found.is_empty(),
            "this machine has fivestar installed ({}); the package test would disturb it. \
             If an interrupted run of this test left them: dpkg --purge fivestar-hub \
             fivestar-node; rm -rf /var/lib/fivestar-node /var/lib/fivestar-hub \
             /var/lib/fivestar-hub-ca; userdel fivestar; groupdel fivestar",
            found.join(", ")
        );
        let mut cleanup = Cleanup {
            packages: vec!["fivestar-hub".into(), "fivestar-node".into()],
            paths: vec![data.into(), hub_data.into(), ca.into()],
            users: vec!["fivestar".into()],
            groups: vec!["fivestar".into()],
        };
        let logs = tempfile::tempdir().unwrap();

        // Install: nothing enabled or started, the next steps said.
        let dpkg = ok(Command::new("dpkg").arg("-i").arg(&hub_deb).arg(&node_deb));
        assert!(dpkg.contains("fivestar-node is installed; its service is not started"), "{dpkg}");
        assert!(dpkg.contains("fivestar-hub is installed; its service is not started"), "{dpkg}");
        eprintln!("dpkg -i said: {dpkg}");
        for package in ["fivestar-hub", "fivestar-node"] {
            assert_eq!(package_state(package).as_deref(), Some("installed"));
        }
        for path in installed {
            assert!(Path::new(path).exists(), "{path} is not installed");
        }
        for name in ["hub", "node"] {
            assert_mode(Path::new(&format!("/usr/bin/fivestar-{name}")), 0o755, 0, 0);
            let unit = format!("/usr/lib/systemd/system/fivestar-{name}.service");
            assert_eq!(
                fs::read_to_string(&unit).unwrap(),
                fs::read_to_string(
                    workspace().join(format!("deploy/debian/{name}/fivestar-{name}.service"))
                )
                .unwrap()
            );
            // The Depends field says the C library the binary needs, no more (the arm64
            // package is built with this dependency too).
            let depends = ok(Command::new("dpkg-query").args([
                "-W",
                "-f=${Depends}",
                &format!("fivestar-{name}"),
            ]));
            assert!(depends.contains("libc6 (>= 2.34)"), "{depends}");
            let needed = glibc_needed(Path::new(&format!("/usr/bin/fivestar-{name}")));
            assert!(
                needed <= (2, 34),
                "fivestar-{name} needs GLIBC_{}.{}: raise libc6 in the depends of {name}/Cargo.toml",
                needed.0,
                needed.1
            );
            let copyright =
                fs::read_to_string(format!("/usr/share/doc/fivestar-{name}/copyright")).unwrap();
            assert!(copyright.contains("License: Apache-2.0"), "{copyright}");
            let wants =
                format!("/etc/systemd/system/multi-user.target.wants/fivestar-{name}.service");
            assert!(!Path::new(&wants).exists(), "the package enabled fivestar-{name}");
            let version = ok(Command::new(format!("/usr/bin/fivestar-{name}")).arg("--version"));
            assert_eq!(version.trim(), format!("fivestar-{name} {}", env!("CARGO_PKG_VERSION")));
        }
        let passwd = getent_line("passwd", "fivestar").unwrap();
        let fields: Vec<&str> = passwd.split(':').collect();
        assert_eq!(fields[4], "fivestar services (made by the fivestar packages)", "{passwd}");
        assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
        let (uid, gid) = ids("fivestar");
        assert!(uid > 0 && uid < 1000, "fivestar is not a system user: {passwd}");
        assert_mode(data, 0o2770, uid, gid);
        assert_mode(hub_data, 0o750, uid, gid);

        // The hub, as the packaged unit's header says, then started as the unit would.
        ok(Command::new("install")
            .args(["-d", "-o", "fivestar", "-g", "fivestar", "-m", "0700"])
            .arg(ca));
        let hub_toml = hub_data.join("hub.toml");
        fs::copy("/usr/share/doc/fivestar-hub/hub.example.toml", &hub_toml).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let dashboard = format!("127.0.0.1:{}", free_port());
        set_toml(&hub_toml, "listen", &listen);
        set_toml(&hub_toml, "dashboard_listen", &dashboard);
        let hub_cli = |args: &[&str]| {
            ok(as_user("fivestar")
                .arg("/usr/bin/fivestar-hub")
                .arg("--data-dir")
                .arg(hub_data)
                .args(args))
        };
        hub_cli(&["pki", "init"]);
        assert!(ca.join("ca.key").exists(), "pki init put no key in {}", ca.display());
        let hub_unit = Unit::parse(
            &fs::read_to_string("/usr/lib/systemd/system/fivestar-hub.service").unwrap(),
        );
        let mut hub = Daemon::start("fivestar-hub serve", &hub_unit, logs.path());
        hub.wait_answering(&dashboard, "/healthz");

        // The node, as the packaged unit's header says, with a certificate of that hub.
        let node_cli = |args: &[&str]| {
            ok(as_user("fivestar")
                .arg("/usr/bin/fivestar-node")
                .arg("--data-dir")
                .arg(data)
                .args(args))
        };
        let url = format!("https://{listen}");
        node_cli(&["init", "--community", "fangou", "--device", "office-pc", "--hub", &url]);
        let certs = data.join("certs").display().to_string();
        hub_cli(&[
            "pki",
            "issue",
            "--community",
            "fangou",
            "--device",
            "office-pc",
            "--out",
            &certs,
        ]);
        node_cli(&["template", "apply"]);
        let metrics = format!("127.0.0.1:{}", free_port());
        set_toml(&data.join("node.toml"), "metrics_listen", &metrics);
        set_toml(&data.join("node.toml"), "listen", &format!("127.0.0.1:{}", free_port()));
        let node_unit = Unit::parse(
            &fs::read_to_string("/usr/lib/systemd/system/fivestar-node.service").unwrap(),
        );
        let mut node = Daemon::start("fivestar-node run", &node_unit, logs.path());
        node.wait_locked(&data.join("run.lock"));
        node.wait_answering(&metrics, "/metrics");
        let synced = eventually(DAEMON_LIMIT, || {
            run(
                as_user("fivestar")
                    .arg("/usr/bin/fivestar-hub")
                    .arg("--data-dir")
                    .arg(hub_data)
                    .args(["community", "fangou", "--json"]),
                COMMAND_LIMIT,
            )
            .stdout
            .contains("a-branch-cadres")
        });
        node.assert_running();
        hub.assert_running();
        assert!(
            synced,
            "the installed node did not sync with the installed hub: {}{}",
            node.log(),
            hub.log()
        );
        for (name, mut daemon) in [("node", node), ("hub", hub)] {
            let log = daemon.log();
            let status = daemon.stop();
            assert!(status.success(), "the installed {name} ended with {status} on SIGTERM: {log}");
        }

        // Purge: the programs go; the records stay, said so, and the user with them.
        let purge = run(
            Command::new("dpkg").args(["--purge", "fivestar-hub", "fivestar-node"]),
            COMMAND_LIMIT,
        )
        .ok("dpkg --purge");
        for package in ["fivestar-hub", "fivestar-node"] {
            assert!(
                package_state(package).is_none_or(|s| s == "not-installed"),
                "{package} is still there"
            );
        }
        for path in installed {
            assert!(!Path::new(path).exists(), "{path} is still there after the purge");
        }
        let said = format!("{}{}", purge.stdout, purge.stderr);
        eprintln!("dpkg --purge said: {said}");
        assert!(said.contains("kept /var/lib/fivestar-node"), "{said}");
        assert!(said.contains("kept /var/lib/fivestar-hub"), "{said}");
        assert!(data.join("node.db").exists() && hub_data.join("hub.db").exists());
        assert!(getent("passwd", "fivestar"), "the user went while files of its are left");

        // Once the administrator has deleted them, purging the last package takes the
        // user and the group (installing it again finds both as they were).
        for path in [data, hub_data, ca] {
            fs::remove_dir_all(path).unwrap();
        }
        ok(Command::new("dpkg").arg("-i").arg(&node_deb));
        assert_mode(data, 0o2770, uid, gid);
        ok(Command::new("dpkg").args(["--purge", "fivestar-node"]));
        assert!(!data.exists(), "an empty data directory stayed after the purge");
        assert!(!getent("passwd", "fivestar"), "the user stayed after the last package");
        assert!(!getent("group", "fivestar"), "the group stayed after the last package");
        cleanup.packages.clear();
    });
}

/// Builds the two packages with cargo-deb from the binaries of this test run (no
/// build: `--no-build` with this run's profile), stripped and lightly compressed.
fn build_debs() -> tempfile::TempDir {
    let hub = binary("fivestar-hub");
    binary("fivestar-node");
    let profile_dir = hub.parent().unwrap().file_name().unwrap().to_str().unwrap().to_string();
    // cargo-deb calls the dev profile's folder `debug` by the profile's name; it warns
    // that it is meant for releases, which is not what it makes here.
    let profile = if profile_dir == "debug" { "dev".to_string() } else { profile_dir };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed =
        Command::new(&cargo).args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "cargo-deb is missing: scripts/test installs it (cargo install cargo-deb --locked)"
    );
    let dir = tempfile::Builder::new().prefix("fivestar-debs-").tempdir().unwrap();
    for package in ["fivestar-hub", "fivestar-node"] {
        let started = Instant::now();
        run(
            Command::new(&cargo)
                .current_dir(workspace())
                .args([
                    "deb",
                    "-p",
                    package,
                    "--no-build",
                    "--profile",
                    &profile,
                    "--strip",
                    "--fast",
                    "-o",
                ])
                .arg(dir.path()),
            COMMAND_LIMIT,
        )
        .ok("cargo deb");
        eprintln!("cargo deb -p {package}: {:?}", started.elapsed());
    }
    dir
}

/// The package file of `package` in `dir`.
fn deb(dir: &Path, package: &str) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
        })
        .unwrap_or_else(|| panic!("no {package} package in {}", dir.display()))
}

/// Runs `body` as root: here when the tests run as root, else this test again through
/// `sudo -n` with `env` set; fails, saying it needs root, when neither is possible.
fn as_root(test: &str, why: &str, env: &[(&str, &Path)], body: impl FnOnce()) {
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if root {
        body();
        return;
    }
    let sudo = Command::new("sudo")
        .args(["-n", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        sudo,
        "deploy::{test} needs root: it {why}. CI runs the tests as root; run them as root, or \
         let sudo run this test without a password prompt (e.g. `sudo -v` just before) and it \
         runs itself through `sudo -n`"
    );
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("sudo");
    command.args(["-n", "env"]);
    for (key, value) in env {
        let mut set = std::ffi::OsString::from(format!("{key}="));
        set.push(value);
        command.arg(set);
    }
    let name = format!("deploy::{test}");
    let ran = run(
        command.arg(exe).args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"]),
        Duration::from_secs(600),
    );
    eprintln!("{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.status.success() && ran.stdout.contains("1 passed"),
        "{name} failed as root through sudo (its output is above)"
    );
}

/// What a command printed and how it ended.
#[derive(Debug)]
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Asserts that it succeeded; returns it.
    fn ok(self, what: &str) -> Ran {
        assert!(
            self.status.success(),
            "{what} failed ({}): {}{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `command` to its end, or kills it after `limit` and fails.
fn run(command: &mut Command, limit: Duration) -> Ran {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    let Some(status) = wait_for(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not finish within {limit:?}");
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    out.rewind().unwrap();
    err.rewind().unwrap();
    out.read_to_string(&mut stdout).unwrap();
    err.read_to_string(&mut stderr).unwrap();
    Ran { status, stdout, stderr }
}

/// Runs a command that must succeed; returns what it printed on stdout.
fn ok(command: &mut Command) -> String {
    let what = format!("{command:?}");
    run(command, COMMAND_LIMIT).ok(&what).stdout
}

/// Waits up to `limit` for `child` to end.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {}
            _ => return None,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command run as `user` (with the group of the same name as its primary group and
/// its supplementary groups, as a login would have them) in a clean environment.
fn as_user(user: &str) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("LC_ALL", "C.UTF-8");
    command
}

/// Whether `name` is in the `passwd` or `group` database.
fn getent(kind: &str, name: &str) -> bool {
    getent_line(kind, name).is_some()
}

/// The database's line for `name`.
fn getent_line(kind: &str, name: &str) -> Option<String> {
    let ran = run(Command::new("getent").args([kind, name]), COMMAND_LIMIT);
    ran.status.success().then(|| ran.stdout.trim().to_string())
}

/// A user's id and primary group id.
fn ids(user: &str) -> (u32, u32) {
    let line = getent_line("passwd", user).unwrap_or_else(|| panic!("no user {user}"));
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

/// The installation state dpkg records for `package`, if it knows it.
fn package_state(package: &str) -> Option<String> {
    let ran = run(
        Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", package]),
        COMMAND_LIMIT,
    );
    ran.status.success().then(|| ran.stdout.trim().to_string())
}

/// The newest version of the C library's symbols that a binary needs, as (2, minor).
fn glibc_needed(path: &Path) -> (u32, u32) {
    let symbols = ok(Command::new("objdump").arg("-T").arg(path));
    symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|version| {
            let mut parts = version.split('.');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .max()
        .unwrap_or_else(|| panic!("{} needs no glibc symbols", path.display()))
}

/// Asserts a file's mode (with the setgid bit) and owners.
fn assert_mode(path: &Path, mode: u32, uid: u32, gid: u32) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        meta.mode() & 0o7777,
        mode,
        "{} is {:o}, not {mode:o}",
        path.display(),
        meta.mode() & 0o7777
    );
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{} has the wrong owners", path.display());
}

/// Sets the first `key = ...` line of a TOML file to `key = "value"` (keeping its owner).
fn set_toml(path: &Path, key: &str, value: &str) {
    let text = fs::read_to_string(path).unwrap();
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if !done && line.split('=').next().map(str::trim) == Some(key) {
                done = true;
                format!("{key} = \"{value}\"")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(done, "{} has no {key}", path.display());
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The workspace's root folder.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A unit file without its header comment.
fn unit_body(text: &str) -> String {
    text[text.find("[Unit]").expect("a [Unit] section")..].to_string()
}

/// What a systemd service unit says about how to start its process.
#[derive(Debug, Clone)]
struct Unit {
    user: String,
    group: String,
    environment: Vec<(String, String)>,
    umask: String,
    exec_start: Vec<String>,
}

impl Unit {
    /// Reads the `[Service]` settings the tests use (the units use no quoting).
    fn parse(text: &str) -> Unit {
        let mut unit = Unit {
            user: String::new(),
            group: String::new(),
            environment: Vec::new(),
            umask: "0022".into(),
            exec_start: Vec::new(),
        };
        for line in unit_body(text).lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            match key {
                "User" => unit.user = value.into(),
                "Group" => unit.group = value.into(),
                "UMask" => unit.umask = value.into(),
                "Environment" => {
                    let (k, v) = value.split_once('=').expect("Environment=KEY=VALUE");
                    unit.environment.push((k.into(), v.into()));
                }
                "ExecStart" => {
                    unit.exec_start = value.split_whitespace().map(String::from).collect()
                }
                _ => {}
            }
        }
        assert!(!unit.user.is_empty() && !unit.exec_start.is_empty(), "not a service unit: {text}");
        unit
    }

    /// The same unit for another user (and its group) with paths replaced.
    fn moved(mut self, user: &str, paths: &[(&str, &str)]) -> Unit {
        let replace =
            |s: &str| paths.iter().fold(s.to_string(), |s, (from, to)| s.replace(from, to));
        self.user = user.into();
        self.group = user.into();
        self.environment = self.environment.iter().map(|(k, v)| (k.clone(), replace(v))).collect();
        self.exec_start = self.exec_start.iter().map(|a| replace(a)).collect();
        self
    }
}

/// A daemon started by hand as its unit would start it; killed if the test ends first.
#[derive(Debug)]
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts the unit's ExecStart as its user and group, with its environment and
    /// umask; its output goes to a file in `logs`.
    fn start(name: &'static str, unit: &Unit, logs: &Path) -> Daemon {
        assert_eq!(unit.user, unit.group, "as_user takes the user's own group");
        let log = logs.join(format!("{}.log", name.replace(' ', "-")));
        let file = fs::File::create(&log).unwrap();
        let child = as_user(&unit.user)
            .envs(unit.environment.iter().map(|(k, v)| (k, v)))
            .args(["sh", "-c", &format!("umask {} && exec \"$@\"", unit.umask), "sh"])
            .args(&unit.exec_start)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Daemon { name, child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far.
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if it has ended.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} ended ({status}): {}", self.name, self.log());
        }
    }

    /// Waits until its lock file names it.
    fn wait_locked(&mut self, lock: &Path) {
        let pid = self.pid().to_string();
        let locked =
            eventually(DAEMON_LIMIT, || fs::read_to_string(lock).is_ok_and(|s| s.trim() == pid));
        self.assert_running();
        assert!(
            locked,
            "{} did not take {} in {DAEMON_LIMIT:?}: {}",
            self.name,
            lock.display(),
            self.log()
        );
    }

    /// Waits until it answers `path` on `addr` with 200.
    fn wait_answering(&mut self, addr: &str, path: &str) {
        let answered =
            eventually(DAEMON_LIMIT, || http_get(addr, path).is_ok_and(|(code, _)| code == 200));
        self.assert_running();
        assert!(
            answered,
            "{} did not answer {path} on {addr} in {DAEMON_LIMIT:?}: {}",
            self.name,
            self.log()
        );
    }

    /// Stops it with SIGTERM, as systemd would; returns how it ended.
    fn stop(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        run(Command::new("sh").args(["-c", "kill -TERM \"$1\"", "sh", &pid]), COMMAND_LIMIT)
            .ok("kill");
        let Some(status) = wait_for(&mut self.child, DAEMON_LIMIT) else {
            panic!("{} did not stop within {DAEMON_LIMIT:?} of SIGTERM: {}", self.name, self.log());
        };
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes what a test made, also when it fails: packages (purged), paths, users and
/// groups. Each is registered only after the test checked it was not there before.
#[derive(Debug, Default)]
struct Cleanup {
    packages: Vec<String>,
    paths: Vec<PathBuf>,
    users: Vec<String>,
    groups: Vec<String>,
}

impl Cleanup {
    /// A new system-wide name, unused as a user and as a group, registered for removal
    /// as both (useradd makes the user's group): `fst`, six random hex digits, `tag`.
    fn new_user(&mut self, tag: &str) -> String {
        for _ in 0..10 {
            let name = format!("fst{:06x}{tag}", rand::random::<u32>() & 0xff_ffff);
            if !getent("passwd", &name) && !getent("group", &name) {
                self.users.push(name.clone());
                self.groups.push(name.clone());
                return name;
            }
        }
        panic!("no unused user name found");
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Never panics: it may run while a failed test unwinds.
        let quietly = |command: &mut Command| {
            if let Ok(mut child) = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn()
                && wait_for(&mut child, COMMAND_LIMIT).is_none()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        };
        if !self.packages.is_empty() {
            quietly(Command::new("dpkg").arg("--purge").args(&self.packages));
        }
        for path in &self.paths {
            let _ = fs::remove_dir_all(path);
        }
        for user in &self.users {
            quietly(Command::new("userdel").arg(user));
        }
        // userdel takes a user's own group with it; groupdel then finds nothing.
        for group in &self.groups {
            quietly(Command::new("groupdel").arg(group));
        }
    }
}
