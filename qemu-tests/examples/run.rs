//! Boots an image with the test shell and runs commands in it:
//!
//! ```sh
//! cargo run -p builder -- --board qemu-virt --recipe test-shell build --out DIR --xz-level 0
//! cargo run -p builder -- inspect DIR/vinyl-qemu-virt.img -p 1 --cat u-boot.bin > DIR/u-boot.bin
//! cargo run -p qemu-tests --example run -- DIR/vinyl-qemu-virt.img DIR/u-boot.bin 'cat /proc/cmdline'
//! ```
//!
//! Each further argument is one command; the output and status of each are
//! printed, with timings. `QEMU_TESTS_BACKEND` picks the backend.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use qemu_tests::{MachineConfig, Vm};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: run IMAGE U-BOOT.BIN COMMAND...");
        return ExitCode::from(2);
    }
    match run(&args[0], &args[1], &args[2..]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn run(image: &str, u_boot: &str, commands: &[String]) -> qemu_tests::Result<()> {
    let started = Instant::now();
    let mut vm = Vm::start(MachineConfig::new("example-run", image, u_boot).with_shell())?;
    eprintln!("work directory: {}", vm.work_dir().display());
    vm.wait_for_console("U-Boot", Duration::from_secs(60))?;
    eprintln!("[{:6.2?}] U-Boot banner", started.elapsed());
    vm.wait_for_shell(Duration::from_secs(600))?;
    eprintln!("[{:6.2?}] the guest shell answers", started.elapsed());
    for command in commands {
        let output = vm.run(command, Duration::from_secs(120))?;
        println!("$ {command}\n{}[status {}]", output.output, output.status);
    }
    vm.send("poweroff")?;
    let status = vm.wait_exit(Duration::from_secs(120))?;
    eprintln!(
        "[{:6.2?}] QEMU ended after poweroff: {status}",
        started.elapsed()
    );
    Ok(())
}
