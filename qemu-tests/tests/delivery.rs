//! Update delivery for a fleet, under QEMU: `builder publish` (through the
//! builder's pipeline, as `cargo run -p builder -- publish` runs it)
//! writes a release directory; Debian's nginx serves it over the IPv6-only
//! test network; the device installs what `channel.json` names, streamed.
//!
//! Checked here:
//! - the release directory: the files the channel file and Raspberry Pi
//!   Imager's `os_list.json` name exist with the sizes and digests they
//!   state (the `.img.xz` decompresses to an image with `extract_sha256`),
//!   and publishing again from the same inputs gives the same bytes;
//! - a delta (adaptive) install: the device running v1 streams v2 (one
//!   overlay file changed) and downloads only a few percent of the slot,
//!   measured from nginx's access log, next to the same release installed
//!   from a bundle without the block hash index (a full download).

mod test_image;
mod test_net;

use builder::config::Project;
use qemu_tests::{Backend, MachineConfig, Vm};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_net::{Nginx, PORT, TestNet};
use update_channel::Channel;

const BOOT: Duration = Duration::from_secs(600);
const COMMAND: Duration = Duration::from_secs(60);
const INSTALL: Duration = Duration::from_secs(1200);
const MAC: &str = "52:54:00:12:34:70";
/// The version v2 is published as.
const V2: &str = test_image::PUBLISHED_V2;

fn sha256_of(path: &Path) -> (u64, String) {
    let digest = builder::release::file_digest(path).unwrap();
    (digest.size, digest.sha256)
}

/// Every file of a release directory, name → bytes' digest (the stamp,
/// which records inodes and times, left out).
fn directory_digests(dir: &Path) -> Vec<(String, (u64, String))> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != builder::output_dir::STAMP)
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                sha256_of(&p),
            )
        })
        .collect();
    files.sort();
    files
}

/// The release directory keeps its promises: what `channel.json` and
/// `os_list.json` state is what the files are.
fn check_release(release: &builder::release::Release, base_url: &str) {
    let dir = &release.dir;
    let channel = Channel::parse(&std::fs::read(dir.join(update_channel::FILE_NAME)).unwrap())
        .expect("the published channel file parses");
    assert_eq!(channel, release.channel);
    assert_eq!(channel.version, V2);
    assert_eq!(channel.compatible, "vinyl-qemu-virt");
    assert_eq!(channel.min_version.as_deref(), Some("1.0.0"));
    assert!(
        !channel.bundle.url.contains('/'),
        "{:?}",
        channel.bundle.url
    );
    let (size, sha256) = sha256_of(&dir.join(&channel.bundle.url));
    assert_eq!(
        (size, sha256.as_str()),
        (channel.bundle.size, channel.bundle.sha256.as_str())
    );

    let os_list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(builder::release::OS_LIST)).unwrap())
            .unwrap();
    let entry = &os_list["os_list"][0];
    let local = |key: &str| -> PathBuf {
        let url = entry[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {entry}"));
        let name = url
            .strip_prefix(base_url)
            .unwrap_or_else(|| panic!("{key} {url} is not under {base_url}"));
        dir.join(name)
    };
    let (xz_size, xz_sha) = sha256_of(&local("url"));
    assert_eq!(entry["image_download_size"], xz_size);
    assert_eq!(entry["image_download_sha256"], xz_sha.as_str());
    assert!(
        local("icon").exists() && local("bmap_url").exists(),
        "{entry}"
    );
    // What Imager writes: the .img.xz decompressed.
    let decompressed = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "xz -dc '{}' | tee >(wc -c >&2) | sha256sum",
            local("url").display()
        ))
        .output()
        .unwrap();
    assert!(decompressed.status.success(), "xz -dc failed");
    let extract_sha = String::from_utf8_lossy(&decompressed.stdout);
    let extract_size = String::from_utf8_lossy(&decompressed.stderr);
    assert_eq!(
        extract_sha.split_whitespace().next(),
        entry["extract_sha256"].as_str(),
        "{entry}"
    );
    assert_eq!(
        extract_size.trim().parse::<u64>().ok(),
        entry["extract_size"].as_u64(),
        "{entry}"
    );
    assert_eq!(entry["release_date"], channel.released.as_str());
    let xz_sums = std::fs::read_to_string(local("url").with_extension("xz.sha256")).unwrap();
    assert!(xz_sums.starts_with(&xz_sha), "{xz_sums}");
}

#[test]
fn a_published_release_streams_a_delta_to_the_device() {
    let name = "delivery";
    if !test_image::prerequisites_or_skip(name) {
        return;
    }
    let Some(backend) = test_net::ready_to_serve(name, Some(Backend::Local)) else {
        return;
    };
    let v1 = test_image::qemu_virt();
    let base_url = format!("http://[{}]:{PORT}/release/", test_net::ROUTER);
    let work = Project::from_workspace()
        .root
        .join("target/qemu-tests/delivery");
    let www = work.join("www");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&www).unwrap();

    // Publish v2, then again from the same inputs: the same bytes.
    let started = Instant::now();
    let (release, built) = test_image::publish_v2(&www.join("release"), &base_url);
    let publish_time = started.elapsed();
    let (again, _) = test_image::publish_v2(&work.join("again"), &base_url);
    assert_eq!(
        directory_digests(&release.dir),
        directory_digests(&again.dir),
        "publishing twice from the same inputs gave different directories"
    );
    eprintln!(
        "{name}: published {} in {:.0} s: {}",
        release.channel.version,
        publish_time.as_secs_f64(),
        release.files.join(" ")
    );
    check_release(&release, &base_url);

    // Channel files that must be turned down, each next to the release.
    let faults = www.join("faults");
    let bundle_name = &release.channel.bundle.url;
    let mut other_board = release.channel.clone();
    other_board.compatible = "vinyl-rpi4".into();
    let mut wrong_digest = release.channel.clone();
    wrong_digest.bundle.manifest_sha256 = "0".repeat(64);
    let mut truncated = release.channel.clone();
    truncated.bundle.url = "truncated.raucb".into();
    let mut too_new_for_us = release.channel.clone();
    too_new_for_us.min_version = Some("1.5.0".into());
    let full_text = release.channel.to_json();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "broken",
            full_text[..full_text.len() / 2].to_string(),
            "channel file: not JSON",
        ),
        (
            "other-board",
            other_board.to_json(),
            "a release for vinyl-rpi4; this device is vinyl-qemu-virt",
        ),
        (
            "wrong-digest",
            wrong_digest.to_json(),
            "its signed manifest hash is",
        ),
        (
            "truncated",
            truncated.to_json(),
            "a truncated or swapped bundle",
        ),
        (
            "min-version",
            too_new_for_us.to_json(),
            "updates only from 1.5.0",
        ),
    ];
    let bundle_bytes = std::fs::read(release.dir.join(bundle_name)).unwrap();
    for (case, text, _) in &cases {
        let dir = faults.join(case);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(update_channel::FILE_NAME), text).unwrap();
        // The bundle beside each channel file (relative URLs).
        std::fs::hard_link(release.dir.join(bundle_name), dir.join(bundle_name)).unwrap();
    }
    std::fs::write(
        faults.join("truncated/truncated.raucb"),
        &bundle_bytes[..bundle_bytes.len() / 2],
    )
    .unwrap();

    let _turn = test_image::one_machine_at_a_time();
    let image = test_image::scenario_copy(&v1.image, name);
    let net = TestNet::start(name);
    let nginx = Nginx::start(&net, &www);
    let config = MachineConfig::new(name, &image, &v1.u_boot)
        .writing_the_image()
        .with_shell()
        .with_backend(backend);
    let mut vm = net.boot(config, MAC);
    // Installs need the router: wait for the address SLAAC gives.
    let address = test_net::announced_address(&vm, BOOT);
    vm.wait_for_shell(BOOT).unwrap();
    let router = format!("http://[{}]:{PORT}", test_net::ROUTER);

    // The self-updater is on: its timer ticks, and the image says v1.
    let timer = vm
        .run_ok("systemctl is-enabled vinyl-update-check.timer && systemctl is-active vinyl-update-check.timer", COMMAND)
        .unwrap();
    assert_eq!(
        timer.split_whitespace().collect::<Vec<_>>(),
        ["enabled", "active"]
    );
    let status = vm.run_ok("vinyl-update status", COMMAND).unwrap();
    assert!(
        status.contains("version:   1.0.0 (vinyl-qemu-virt)"),
        "{status}"
    );

    // Each bad offer: refused, said in the journal and the record, the
    // boot state byte for byte as it was, nothing installed.
    let states = "sha256sum /boot/firmware/ab-state-0.env /boot/firmware/ab-state-1.env";
    let states_before = vm.run_ok(states, COMMAND).unwrap();
    for (case, _, says) in &cases {
        let url = format!("{router}/faults/{case}/{}", update_channel::FILE_NAME);
        let (ok, output) = check(&mut vm, &url);
        assert!(!ok, "{case}: the check succeeded:\n{output}");
        let record = record(&mut vm);
        assert_eq!(record["result"], "refused", "{case}: {record}");
        assert!(
            record["message"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{case}: {says:?} not in {record}"
        );
        assert!(
            output.contains(says),
            "{case}: not in the journal: {output}"
        );
        eprintln!(
            "{name}: {case}: {}",
            output.lines().last().unwrap_or_default()
        );
        assert_eq!(vm.run_ok(states, COMMAND).unwrap(), states_before, "{case}");
    }
    // A bundle cut short on the server, given to RAUC directly: refused too.
    let refused = vm
        .run(
            &format!("rauc install {router}/faults/truncated/truncated.raucb 2>&1"),
            INSTALL,
        )
        .unwrap();
    assert!(!refused.success(), "a truncated bundle was installed");
    assert_eq!(vm.run_ok(states, COMMAND).unwrap(), states_before);

    // The network drops in the middle of the streamed install: the tap goes
    // down as RAUC starts reading the bundle. The install fails (RAUC's nbd
    // gives up on the dead connection), the boot state and slot a are as
    // they were, the record says why; the next check, with the network
    // back, installs (below).
    let channel_url = format!("{router}/release/{}", update_channel::FILE_NAME);
    // Slot a's bytes as far as its image reaches (the size RAUC's status on
    // /data gives it), hashed; first, the checksum that status states.
    let slot_a = "sed -n '/^\\[slot.rootfs.0\\]/,/^$/s/^sha256=//p' /data/rauc/central.raucs; \
        head -c $(sed -n '/^\\[slot.rootfs.0\\]/,/^$/s/^size=//p' /data/rauc/central.raucs) \
        /dev/vinyl/root-a | sha256sum";
    let slot_a_before = vm.run_ok(slot_a, Duration::from_secs(600)).unwrap();
    let mut hashes = slot_a_before.split_whitespace();
    assert_eq!(
        hashes.next(),
        hashes.next(),
        "slot a is not its image: {slot_a_before}"
    );
    vm.run_ok(
        &format!(
            "echo 'url = {channel_url}' > /data/vinyl-update/update.conf && \
             {{ vinyl-update check >/run/drop.log 2>&1; echo $? >/run/drop.rc; }} &"
        ),
        COMMAND,
    )
    .unwrap();
    // The updater says "installing" as it starts `rauc install URL`: pull
    // the cable then, while RAUC opens the bundle over the network.
    vm.run_ok(
        "until grep -q 'vinyl-update: installing' /run/drop.log; do \
         [ -e /run/drop.rc ] && break; sleep 0.1; done; cat /run/drop.log",
        INSTALL,
    )
    .unwrap();
    net.set_guest_link(false);
    let dropped = Instant::now();
    let rc = test_net::eventually("the cut-off install to end", INSTALL, || {
        vm.run_ok("cat /run/drop.rc 2>/dev/null || true", COMMAND)
            .map_err(|e| e.to_string())
            .and_then(|rc| {
                (!rc.trim().is_empty())
                    .then(|| rc.trim().to_string())
                    .ok_or(rc)
            })
    });
    let failed_after = dropped.elapsed();
    net.set_guest_link(true);
    let output = vm.run_ok("cat /run/drop.log", COMMAND).unwrap();
    assert_ne!(
        rc, "0",
        "the install succeeded without a network:\n{output}"
    );
    let dropped_record = record(&mut vm);
    assert_eq!(dropped_record["result"], "failed", "{dropped_record}");
    assert!(
        output.contains("rauc install") && output.contains("the running slot is untouched"),
        "{output}"
    );
    assert_eq!(vm.run_ok(states, COMMAND).unwrap(), states_before);
    assert_eq!(
        vm.run_ok(slot_a, Duration::from_secs(600)).unwrap(),
        slot_a_before,
        "slot a changed"
    );
    eprintln!(
        "{name}: network dropped during the install: it failed {:.0} s later: {}",
        failed_after.as_secs_f64(),
        output.lines().last().unwrap_or_default()
    );

    // The real offer: the updater streams v2 as a delta into slot b.
    let bundle_path = format!("/release/{bundle_name}");
    let before = nginx.access_log().len();
    let started = Instant::now();
    let (ok, output) = check(&mut vm, &channel_url);
    let delta_time = started.elapsed();
    if !ok {
        let journal = vm
            .run(
                "journalctl -b -u rauc --no-pager -o cat | tail -n 40",
                COMMAND,
            )
            .map(|o| o.output)
            .unwrap_or_default();
        panic!(
            "the update failed:\n{output}\nRAUC's journal:\n{journal}\nnginx: {}",
            nginx.error_log()
        );
    }
    assert!(
        output.contains(&format!("installed {V2} (was 1.0.0)")),
        "{output}"
    );
    // The tone plays: an idle device would reboot now, this one waits.
    assert!(
        output.contains(&format!(
            "the update in slot b ({V2}) waits for a reboot: the turntable is playing"
        )),
        "{output}"
    );
    let log = nginx.access_log();
    let (delta_bytes, delta_requests) = Nginx::bytes_sent(&log[before..], &bundle_path);
    let journal = vm
        .run_ok(
            "journalctl -b -u rauc --no-pager -o short-monotonic \
             | grep -i -e adaptive -e 'hash index' -e chunk -e 'target slot'",
            COMMAND,
        )
        .unwrap();
    eprintln!("{name}: RAUC during the delta install:\n{journal}");
    assert!(
        journal.contains("as bootable"),
        "not RAUC's journal of the install:\n{journal}"
    );
    // The image seeded both slots' indexes on /data: RAUC reads them rather
    // than hashing the whole active slot, and the empty target, first.
    for slot in ["active_slot", "target_slot"] {
        assert!(
            !journal.contains(&format!("Building new hash index for {slot}")),
            "RAUC hashed the {slot} although the image ships its index:\n{journal}"
        );
    }
    // The delta rebuilt exactly the signed image: every chunk, local or
    // downloaded, in place.
    let image = &release.bundle.manifest.image;
    let slot_b = vm
        .run_ok(
            &format!("head -c {} /dev/vinyl/root-b | sha256sum", image.size),
            Duration::from_secs(600),
        )
        .unwrap();
    assert!(
        slot_b.starts_with(&image.sha256),
        "slot b after the delta install is not the release's image: {slot_b}"
    );

    // Where people see it: vinyl-update status and the streamer's /status.
    let status = vm.run_ok("vinyl-update status", COMMAND).unwrap();
    assert!(
        status.contains(&format!("reboot into slot b ({V2})")),
        "{status}"
    );
    let streamd = test_net::streamd_status(&net, &address).unwrap();
    assert_eq!(streamd["update"]["result"], "installed", "{streamd}");
    assert_eq!(streamd["update"]["version"], "1.0.0", "{streamd}");

    let slot = built.layout.partition(builder::image::layout::Role::RootA);
    let full_bytes = release.bundle.size;
    let percent = |part: u64, whole: u64| 100.0 * part as f64 / whole as f64;
    eprintln!(
        "{name}: delta install of v2 (one overlay file changed) over v1 by vinyl-update check: \
         {:.2} MB in {delta_requests} requests, {:.1} s ({:.2} % of the {:.0} MB slot, {:.1} % of \
         the {:.2} MB bundle a full download fetches)",
        delta_bytes as f64 / 1e6,
        delta_time.as_secs_f64(),
        percent(delta_bytes, slot.size),
        slot.size as f64 / 1e6,
        percent(delta_bytes, full_bytes),
        full_bytes as f64 / 1e6,
    );
    assert!(delta_bytes > 0, "no bundle bytes in nginx's log");
    assert!(
        percent(delta_bytes, slot.size) <= 5.0,
        "the delta install downloaded {delta_bytes} bytes, more than 5 % of the {} byte slot; RAUC:\n{journal}",
        slot.size
    );
    assert!(
        delta_bytes * 4 < full_bytes,
        "the delta install ({delta_bytes} bytes) saved little against the bundle ({full_bytes})"
    );

    // The reboot policy: while somebody hears the record, no reboot; once
    // nobody listens and the turntable is silent, the timer's next tick
    // reboots into v2, whose health check marks it good.
    let mut listener = net
        .command("curl")
        .args(["-sS", "-g", "-o", "/dev/null", "--max-time", "600"])
        .arg(format!("http://[{address}]:8000/stream.opus"))
        .spawn()
        .unwrap();
    test_net::eventually("a listener on /status", Duration::from_secs(60), || {
        let v = test_net::streamd_status(&net, &address)?;
        (v["listeners"].as_u64() >= Some(1))
            .then_some(())
            .ok_or(v.to_string())
    });
    let tick = vm
        .run(
            "systemctl start vinyl-update-check.service; \
             journalctl -b --no-pager -o cat -u vinyl-update-check.service | grep 'waits for a reboot' | tail -n 1",
            COMMAND,
        )
        .unwrap();
    assert!(
        tick.output.contains("somebody is listening to a record"),
        "{}",
        tick.output
    );
    let _ = listener.kill();
    let _ = listener.wait();
    vm.run_ok("systemctl stop test-tone", COMMAND).unwrap();
    test_net::eventually(
        "nobody listening, the turntable silent",
        Duration::from_secs(120),
        || {
            let v = test_net::streamd_status(&net, &address)?;
            (v["listeners"] == 0 && v["state"] == "silent")
                .then_some(())
                .ok_or(v.to_string())
        },
    );
    vm.send("systemctl start vinyl-update-check.service")
        .unwrap();
    vm.wait_for_console("vinyl: trial boot of slot b", BOOT)
        .unwrap();
    vm.wait_for_shell(BOOT).unwrap();
    let good = test_net::eventually("the health check marking slot b good", BOOT, || {
        let v = test_net::update_status(&mut vm)?;
        if v["active"] == "b" && v["trial"].is_null() {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(good["booted"]["slot"], "b", "{good}");
    assert_eq!(good["update"]["version"], V2, "{good}");
    // Running v2, the channel has nothing newer.
    let (ok, output) = check(&mut vm, &channel_url);
    assert!(ok, "{output}");
    assert_eq!(record(&mut vm)["result"], "up-to-date", "{output}");
    vm.kill();
}

/// Points the device's updater at `channel_url` (its settings on /data)
/// and runs one check by hand; returns (success, what it printed).
fn check(vm: &mut Vm, channel_url: &str) -> (bool, String) {
    let out = vm
        .run(
            &format!(
                "echo 'url = {channel_url}' > /data/vinyl-update/update.conf && vinyl-update check 2>&1"
            ),
            INSTALL,
        )
        .unwrap();
    (out.success(), out.output)
}

/// The updater's record on /data.
fn record(vm: &mut Vm) -> serde_json::Value {
    let text = vm
        .run_ok("cat /data/vinyl-update/state.json", COMMAND)
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}
