//! The harness against real QEMU, with only host packages: Debian's U-Boot
//! for QEMU (`u-boot-qemu`) on `-M virt` with a small blank disk. One test
//! per backend for each property; a missing QEMU, docker or U-Boot skips
//! (fails under `CI`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_tests::{Backend, MachineConfig, Needle, NetNs, Network, Vm, skip, workdir};

/// Where this test binary keeps its scratch disk images.
fn scratch() -> tempfile::TempDir {
    let root = workdir::root().unwrap();
    fs::create_dir_all(&root).unwrap();
    tempfile::Builder::new()
        .prefix("scratch-")
        .tempdir_in(root)
        .unwrap()
}

/// A 32 MiB raw disk with recognisable bytes at the start and the end.
fn blank_image(dir: &Path) -> PathBuf {
    let path = dir.join("blank.img");
    let mut bytes = vec![0u8; 32 << 20];
    bytes[..16].copy_from_slice(b"qemu-tests image");
    let end = bytes.len() - 16;
    bytes[end..].copy_from_slice(b"qemu-tests end..");
    fs::write(&path, &bytes).unwrap();
    path
}

/// The prerequisites of one backend's test, or `None` to skip.
fn ready(backend: Backend) -> Option<PathBuf> {
    if !skip::backend_ready(backend) {
        return None;
    }
    skip::required(skip::u_boot_qemu())
}

/// Processes whose command line mentions `needle` (QEMU and its wrappers
/// name the work directory; so do a container's processes, seen from the host).
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.display().to_string();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

/// Waits up to `timeout` for no process to mention `dir`.
fn assert_no_process_mentions(dir: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = processes_mentioning(dir);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still running: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn containers_labelled(dir: &Path) -> String {
    let output = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!(
            "label={}={}",
            qemu_tests::backend::docker::LABEL,
            dir.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn boots_u_boot_from_an_overlay(backend: Backend) {
    let Some(u_boot) = ready(backend) else { return };
    let scratch = scratch();
    let image = blank_image(scratch.path());
    let original = fs::read(&image).unwrap();
    let modified = fs::metadata(&image).unwrap().modified().unwrap();

    let config =
        MachineConfig::new(format!("u-boot-{backend}"), &image, &u_boot).with_backend(backend);
    let started = Instant::now();
    let vm = Vm::start(config).unwrap();
    let line = vm
        .wait_for_console("Hit any key", Duration::from_secs(120))
        .unwrap();
    let to_banner = started.elapsed();
    assert!(line.contains("Hit any key to stop autoboot"), "{line}");
    // autoboot finds nothing on a blank disk and ends at the prompt
    vm.wait_for_console("=> ", Duration::from_secs(60)).unwrap();
    eprintln!(
        "timing ({backend}): Vm::start to \"Hit any key\" {to_banner:.2?}, to the \"=> \" prompt {:.2?}",
        started.elapsed()
    );
    assert!(vm.console_text().contains("U-Boot"));

    // Guest writes land in the overlay: write through QEMU's block layer.
    let answer = vm.hmp("qemu-io disk0 \"write -P 0xaa 0 64k\"").unwrap();
    assert!(answer.contains("\"return\""), "{answer}");
    let info = vm.hmp("info block").unwrap();
    assert!(info.contains("disk.qcow2"), "{info}");
    let overlay = vm.overlay_path().to_path_buf();
    assert!(overlay.is_file());
    assert!(fs::metadata(&overlay).unwrap().len() > 64 << 10);
    assert_eq!(vm.exit_status().unwrap(), None, "QEMU still runs");

    // A timeout says what it waited for and shows the console and the log path.
    let error = vm
        .wait_for_console("text that never appears", Duration::from_millis(300))
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let message = error.to_string();
    assert!(message.contains("text that never appears"), "{message}");
    assert!(
        message.contains(&vm.console_log_path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("    | => "), "the console tail: {message}");

    let work_dir = vm.work_dir().to_path_buf();
    let console_log = vm.console_log_path().to_path_buf();
    assert!(
        !processes_mentioning(&work_dir).is_empty(),
        "QEMU is found by its work dir"
    );
    drop(vm);

    assert_no_process_mentions(&work_dir, Duration::from_secs(5));
    if backend == Backend::Docker {
        assert_eq!(containers_labelled(&work_dir), "", "container removed");
    }
    assert!(!overlay.exists(), "overlay removed");
    assert!(
        fs::read_to_string(&console_log).unwrap().contains("U-Boot"),
        "log kept"
    );
    assert!(
        fs::read(&image).unwrap() == original,
        "the image was written to"
    );
    assert_eq!(fs::metadata(&image).unwrap().modified().unwrap(), modified);
}

fn qemu_errors_are_reported(backend: Backend) {
    let Some(u_boot) = ready(backend) else { return };
    let scratch = scratch();
    let mut config = MachineConfig::new(
        format!("bad-arg-{backend}"),
        blank_image(scratch.path()),
        &u_boot,
    )
    .with_backend(backend);
    config.extra_args = vec!["-no-such-option".into()];
    let vm = Vm::start(config).unwrap();
    let error = vm
        .wait_for_console("U-Boot", Duration::from_secs(60))
        .unwrap_err();
    assert!(error.is_exited(), "{error}");
    let message = error.to_string();
    assert!(message.contains("exit code 1"), "{message}");
    assert!(
        message.contains("-no-such-option"),
        "QEMU's complaint is shown: {message}"
    );
    assert!(message.contains("qemu.log"), "{message}");
}

/// A reset reboots the machine (a second U-Boot banner, found by the
/// console cursor), or with `no_reboot` ends QEMU (`wait_exit`).
fn reset_reboots_or_exits(backend: Backend) {
    let Some(u_boot) = ready(backend) else { return };
    let scratch = scratch();
    let image = blank_image(scratch.path());
    let config =
        MachineConfig::new(format!("reset-{backend}"), &image, &u_boot).with_backend(backend);
    let vm = Vm::start(config.clone()).unwrap();
    vm.wait_for_console("U-Boot 20", Duration::from_secs(120))
        .unwrap();
    vm.wait_for_console("Hit any key", Duration::from_secs(60))
        .unwrap();
    let answer = vm.qmp("system_reset", None).unwrap();
    assert_eq!(answer, r#"{"return": {}}"#);
    vm.wait_for_console("U-Boot 20", Duration::from_secs(120))
        .unwrap();
    assert_eq!(vm.console_text().matches("U-Boot 20").count(), 2);
    assert_eq!(vm.exit_status().unwrap(), None);
    drop(vm);

    let mut config = config;
    config.name = format!("no-reboot-{backend}");
    config.no_reboot = true;
    let mut vm = Vm::start(config).unwrap();
    vm.wait_for_console("Hit any key", Duration::from_secs(120))
        .unwrap();
    vm.qmp("system_reset", None).unwrap();
    let status = vm.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(vm.console_text().matches("U-Boot 20").count(), 1);
}

/// Not a test by itself: run by `qemu_dies_with_the_test_process` as a child
/// process (with `QEMU_TESTS_CHILD_BACKEND` set), which is then SIGKILLed.
#[test]
fn child_starts_a_machine_and_waits_to_be_killed() {
    let Ok(backend) = std::env::var("QEMU_TESTS_CHILD_BACKEND") else {
        return;
    };
    let scratch = scratch();
    let config = MachineConfig::new(
        format!("orphan-{backend}"),
        blank_image(scratch.path()),
        skip::U_BOOT_QEMU,
    )
    .with_backend(backend.parse().unwrap());
    let vm = Vm::start(config).unwrap();
    vm.wait_for_console("U-Boot", Duration::from_secs(120))
        .unwrap();
    println!("SCRATCH {}", scratch.path().display());
    println!("WORKDIR {}", vm.work_dir().display());
    std::thread::sleep(Duration::from_secs(600));
}

fn qemu_dies_with_the_test_process(backend: Backend) {
    use std::io::{BufRead, BufReader};
    if ready(backend).is_none() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_starts_a_machine_and_waits_to_be_killed",
            "--nocapture",
        ])
        .env("QEMU_TESTS_CHILD_BACKEND", backend.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut work_dir = None;
    let mut scratch = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(dir) = line.strip_prefix("SCRATCH ") {
            scratch = Some(PathBuf::from(dir));
        }
        if let Some(dir) = line.strip_prefix("WORKDIR ") {
            work_dir = Some(PathBuf::from(dir));
            break;
        }
    }
    let work_dir = work_dir.expect("the child printed its work directory");
    assert!(!processes_mentioning(&work_dir).is_empty());
    child.kill().unwrap(); // SIGKILL: no unwinding, no Drop
    child.wait().unwrap();
    // The killed child could not remove its scratch image: do it first, so
    // a failed assertion below leaves nothing big behind.
    fs::remove_dir_all(scratch.expect("the child printed its scratch directory")).unwrap();
    assert_no_process_mentions(&work_dir, Duration::from_secs(10));
    if backend == Backend::Docker {
        // QEMU is gone (above), so the container stops (docker notices
        // within moments); it stays for its logs until the next docker
        // machine's start sweeps it away.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let running = Command::new("docker")
                .args(["ps", "-q", "--filter"])
                .arg(format!(
                    "label={}={}",
                    qemu_tests::backend::docker::LABEL,
                    work_dir.display()
                ))
                .output()
                .unwrap();
            if running.stdout.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the container still runs");
            std::thread::sleep(Duration::from_millis(100));
        }
        qemu_tests::backend::docker::sweep_stale_containers();
        assert_eq!(
            containers_labelled(&work_dir),
            "",
            "the stale container was swept"
        );
    }
    // What the killed child could not tidy: (by the next Vm::start's
    // sweep) the overlay.
    workdir::sweep_stale(work_dir.parent().unwrap());
    assert!(!work_dir.join("disk.qcow2").exists());
    assert!(work_dir.join("console.log").exists());
}

fn tap_in_a_namespace(backend: Backend) {
    let Some(u_boot) = ready(backend) else { return };
    // per backend and test process: qtl<pid> or qtd<pid>
    let initial = if backend == Backend::Local { 'l' } else { 'd' };
    let netns_name = format!("qt{initial}{}", std::process::id());
    if skip::required(skip::root("network namespaces and tap devices")).is_none() {
        return;
    }
    let scratch = scratch();
    let netns = NetNs::create(&netns_name).unwrap();
    let config = MachineConfig::new(
        format!("tap-{backend}"),
        blank_image(scratch.path()),
        &u_boot,
    )
    .with_backend(backend)
    .with_network(Network::Tap {
        netns: netns.name().into(),
        tap: "qt-tap0".into(),
        mac: "52:54:00:12:34:56".into(),
    });
    let vm = Vm::start(config).unwrap();
    // U-Boot finds the card (a regex: "Net:" alone may match before the
    // rest of its line has been printed)
    let line = vm
        .wait_for_console(
            Needle::regex(r"Net:\s+eth0: virtio-net"),
            Duration::from_secs(120),
        )
        .unwrap();
    assert!(line.starts_with("Net:"), "{line}");
    let link = netns.ip(&["link", "show", "qt-tap0"]).unwrap();
    assert!(link.contains("qt-tap0"), "{link}");
    assert!(
        Command::new("ip")
            .args(["link", "show", "qt-tap0"])
            .stderr(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap(),
        "the tap device is in the namespace, not on the host"
    );
    drop(vm);
    assert!(
        netns.ip(&["link", "show", "qt-tap0"]).is_err(),
        "QEMU's tap went with it"
    );
    let path = Path::new("/run/netns").join(&netns_name);
    drop(netns);
    assert!(!path.exists(), "namespace deleted");
}

// Each body above, once per backend (`local_…` and `docker_…`; run just the
// docker ones with `cargo test --test u_boot docker_`).
qemu_tests::backend_tests! {
    boots_u_boot_from_an_overlay => local_boots_u_boot_from_an_overlay, docker_boots_u_boot_from_an_overlay;
    qemu_errors_are_reported => local_reports_qemu_errors, docker_reports_qemu_errors;
    reset_reboots_or_exits => local_reset_reboots_or_exits, docker_reset_reboots_or_exits;
    qemu_dies_with_the_test_process => local_qemu_dies_with_the_test_process, docker_qemu_dies_with_the_test_process;
    tap_in_a_namespace => local_tap_in_a_namespace, docker_tap_in_a_namespace;
}
