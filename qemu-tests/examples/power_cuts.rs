//! Power-cut torture, a command: a v1 qemu-virt device updates to v2 from
//! nginx while QEMU is killed at random moments (see
//! `tests/power_cuts/mod.rs` for what is cut and checked). Each time an
//! update has ended good, a new round starts on a fresh v1 card, so every
//! cut falls on an update in flight. ota.rs runs five cuts in CI; this runs
//! any number, prints the tally and exits non-zero when a boot did not come
//! up and play or the last update did not end installed and good:
//!
//! ```sh
//! CI=true cargo run -p qemu-tests --example power_cuts -- 50      # cuts (default 5)
//! ```
//!
//! `POWER_CUT_SEED=N` replays a run (every run prints its seed). `CI=true`
//! makes a missing host program an error instead of a skip.

#[path = "../tests/power_cuts/mod.rs"]
mod power_cuts;
#[path = "../tests/test_image/mod.rs"]
mod test_image;
#[path = "../tests/test_net/mod.rs"]
mod test_net;

use power_cuts::Torture;
use qemu_tests::{Backend, MachineConfig};
use test_net::{Nginx, PORT, TestNet};

const MAC: &str = "52:54:00:12:34:80";
/// How many cuts without an argument.
const DEFAULT_CUTS: usize = 5;

fn main() -> std::process::ExitCode {
    let name = "power-cuts";
    let cuts = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => DEFAULT_CUTS,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("power_cuts: the argument is the number of cuts, 1 or more (e.g. 50)");
            return std::process::ExitCode::from(2);
        }
    };
    if !test_image::prerequisites_or_skip(name) {
        return std::process::ExitCode::FAILURE;
    }
    let Some(backend) = test_net::ready_to_serve(name, Some(Backend::Local)) else {
        return std::process::ExitCode::FAILURE;
    };
    let v1 = test_image::qemu_virt();
    let signer = test_image::test_signer();
    // ota.rs's v2: the same build, cached.
    let bundle = test_image::qemu_virt_v2_bundle(&signer);

    let _turn = test_image::one_machine_at_a_time();
    let image = test_image::scenario_copy(&v1.image, name);
    let net = TestNet::start(name);
    let www = net.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::copy(&bundle.path, www.join("v2.raucb")).unwrap();
    let _nginx = Nginx::start(&net, &www);
    let torture = Torture {
        net: &net,
        config: MachineConfig::new(name, &image, &v1.u_boot)
            .writing_the_image()
            .with_shell()
            .with_backend(backend),
        mac: MAC,
        url: format!("http://[{}]:{PORT}/v2.raucb", test_net::ROUTER),
        fresh_card: Some(v1.image.clone()),
        window: power_cuts::WINDOW,
        name,
    };
    let (vm, address) = match torture.boot_fresh() {
        Ok(up) => up,
        Err(why) => {
            eprintln!("{name}: FAILED: the v1 card did not come up and play: {why}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (tally, result) = torture.run(vm, &address, cuts, power_cuts::seed());
    let _ = tally; // run() printed it
    match result {
        Ok(_) => {
            eprintln!("{name}: the last update ended installed and good: v2 on slot b");
            std::process::ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{name}: FAILED: {why}");
            std::process::ExitCode::FAILURE
        }
    }
}
