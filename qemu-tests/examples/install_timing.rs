//! Streamed against download-then-install, a benchmark: a fresh v1
//! qemu-virt card updates itself (`vinyl-update check`) to the published
//! v2 (one overlay file changed, adaptive bundle) from nginx over the
//! IPv6-only test network, once with `install = stream` (RAUC reads only
//! the chunks the device lacks, through HTTP range requests) and once with
//! `install = download` (the whole bundle to /data, its SHA-256 checked,
//! then installed from there). Prints, for each: the time the check took,
//! the bytes nginx sent, and RAUC's hashing steps.
//!
//! ```sh
//! CI=true cargo run -p qemu-tests --example install_timing
//! ```
//!
//! Under QEMU's TCG every figure is several times what a Raspberry Pi 4
//! takes; the comparison between the two is what it is for.

#[path = "../tests/test_image/mod.rs"]
mod test_image;
#[path = "../tests/test_net/mod.rs"]
mod test_net;

use builder::config::Project;
use qemu_tests::{Backend, MachineConfig};
use std::time::{Duration, Instant};
use test_net::{Nginx, PORT, TestNet};

const BOOT: Duration = Duration::from_secs(600);
const COMMAND: Duration = Duration::from_secs(60);
const INSTALL: Duration = Duration::from_secs(1800);
const MAC: &str = "52:54:00:12:34:90";

fn main() -> std::process::ExitCode {
    let name = "install-timing";
    if !test_image::prerequisites_or_skip(name) {
        return std::process::ExitCode::FAILURE;
    }
    let Some(backend) = test_net::ready_to_serve(name, Some(Backend::Local)) else {
        return std::process::ExitCode::FAILURE;
    };
    let v1 = test_image::qemu_virt();
    let www = Project::from_workspace()
        .root
        .join("target/qemu-tests/install-timing/www");
    let _ = std::fs::remove_dir_all(&www);
    std::fs::create_dir_all(&www).unwrap();
    let base_url = format!("http://[{}]:{PORT}/release/", test_net::ROUTER);
    let (release, built) = test_image::publish_v2(&www.join("release"), &base_url);
    let slot = built
        .layout
        .partition(builder::image::layout::Role::RootA)
        .size;
    let bundle_path = format!("/release/{}", release.channel.bundle.url);
    let channel_url = format!("{base_url}{}", update_channel::FILE_NAME);

    let _turn = test_image::one_machine_at_a_time();
    let net = TestNet::start(name);
    let nginx = Nginx::start(&net, &www);
    let mut rows = Vec::new();
    for mode in ["stream", "download"] {
        let image = test_image::scenario_copy(&v1.image, name);
        // A card with room on /data for a downloaded bundle (the test image's
        // data partition is 64 MiB; the first boot grows it to the card).
        let card = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        card.set_len(card.metadata().unwrap().len() + (256 << 20))
            .unwrap();
        drop(card);
        let config = MachineConfig::new(name, &image, &v1.u_boot)
            .writing_the_image()
            .with_shell()
            .with_backend(backend);
        let mut vm = net.boot(config, MAC);
        test_net::announced_address(&vm, BOOT);
        vm.wait_for_shell(BOOT).unwrap();
        // SLAAC's address must be usable before the first request.
        vm.run_ok(
            "i=0; until ip -color=never -6 -o addr show scope global | grep -v tentative | grep -q inet6; \
             do i=$((i + 1)); [ $i -ge 150 ] && break; sleep 1; done",
            Duration::from_secs(200),
        )
        .unwrap();
        let before = nginx.access_log().len();
        let started = Instant::now();
        let out = vm
            .run(
                &format!(
                    "printf 'url = {channel_url}\\ninstall = {mode}\\n' > /data/vinyl-update/update.conf \
                     && vinyl-update check 2>&1"
                ),
                INSTALL,
            )
            .unwrap();
        let took = started.elapsed();
        if !out.success() || !out.output.contains("installed 2.0.0") {
            eprintln!("{name}: {mode}: the update failed:\n{}", out.output);
            return std::process::ExitCode::FAILURE;
        }
        let (bytes, requests) = Nginx::bytes_sent(&nginx.access_log()[before..], &bundle_path);
        let hashing = vm
            .run_ok(
                "journalctl -b -u rauc --no-pager -o cat | grep -i 'hash index' || true",
                COMMAND,
            )
            .unwrap_or_default();
        eprintln!("{name}: {mode}: RAUC:\n{hashing}");
        rows.push((mode, took, bytes, requests));
        vm.kill();
    }
    eprintln!(
        "{name}: v1 → v2 (one overlay file), {:.0} MB slot, {:.1} MB bundle, QEMU TCG:",
        slot as f64 / 1e6,
        release.bundle.size as f64 / 1e6
    );
    for (mode, took, bytes, requests) in rows {
        eprintln!(
            "{name}:   install = {mode:<8}  {:>6.1} s  {:>7.2} MB in {requests} requests",
            took.as_secs_f64(),
            bytes as f64 / 1e6
        );
    }
    std::process::ExitCode::SUCCESS
}
