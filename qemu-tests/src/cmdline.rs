//! QEMU and qemu-img command lines, built from a [`MachineConfig`] and a
//! work-directory [`Layout`]. Pure functions: no file is touched here.
//! Above [`crate::config`], [`crate::workdir`] and [`crate::netns`]; the
//! backends run what it builds.

use std::path::Path;

use crate::config::{Boot, Machine, MachineConfig, Network};
use crate::error::{Error, Result};
use crate::netns::netns_path;
use crate::workdir::Layout;

/// The QEMU system emulator the harness runs.
pub const QEMU: &str = "qemu-system-aarch64";
/// The disk image tool.
pub const QEMU_IMG: &str = "qemu-img";
/// The name of the guest's test shell port (`/dev/hvc0`, `/dev/virtio-ports/<this>`).
pub const SHELL_PORT_NAME: &str = "org.vinyl.shell";

/// Checks what QEMU would refuse or what the harness cannot do, with a clear message.
pub fn validate(config: &MachineConfig) -> Result<()> {
    let virt_only = |what: &str| {
        Err(Error::Config(format!(
            "{what} needs Machine::Virt, not {:?}",
            config.machine
        )))
    };
    if config.machine != Machine::Virt {
        if let Boot::Firmware(_) = config.boot {
            return virt_only(
                "Boot::Firmware (-bios); on the Pi machines pass U-Boot as Boot::Kernel",
            );
        }
        if config.shell {
            return virt_only("the test shell (virtio console)");
        }
        if config.network != Network::None {
            return virt_only("Network::Tap (virtio-net)");
        }
        if config.write_image {
            return virt_only("write_image (an SD card must be resized in an overlay)");
        }
    }
    if let Network::Tap { netns, tap, mac } = &config.network {
        for (what, value) in [("netns", netns), ("tap", tap)] {
            if value.is_empty() || value.len() > 15 || !value.chars().all(is_plain_char) {
                return Err(Error::Config(format!(
                    "Network::Tap {what} {value:?}: use 1 to 15 letters, digits, '.', '_' or '-'"
                )));
            }
        }
        if !is_mac(mac) {
            return Err(Error::Config(format!(
                "Network::Tap mac {mac:?} is not a MAC address like 52:54:00:12:34:56"
            )));
        }
    }
    for file in config.input_files() {
        if !file.is_absolute() {
            return Err(Error::Config(format!(
                "{} must be an absolute path (the harness makes them absolute in Vm::start)",
                file.display()
            )));
        }
    }
    Ok(())
}

fn is_plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn is_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A value inside a QEMU option list (`-drive file=...,format=...`): commas doubled.
pub fn opt_value(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// QEMU's arguments (without the program name) for `config` in `layout`.
///
/// The disk is `layout.overlay` (qcow2). The serial console goes to
/// `layout.console_log`; there is no display and no human monitor, but a
/// QMP socket (`layout.qmp_socket`, see [`crate::Vm::qmp`]).
pub fn qemu_args(config: &MachineConfig, layout: &Layout) -> Result<Vec<String>> {
    validate(config)?;
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));

    push(&["-M", config.machine.qemu_name()]);
    let (memory, smp) = match config.machine {
        Machine::Virt => {
            push(&["-cpu", "cortex-a72"]);
            (
                Some(config.memory_mib.unwrap_or(1024)),
                Some(config.smp.unwrap_or(2)),
            )
        }
        Machine::Raspi3b | Machine::Raspi4b => (config.memory_mib, config.smp),
    };
    if let Some(smp) = smp {
        push(&["-smp", &smp.to_string()]);
    }
    if let Some(memory) = memory {
        push(&["-m", &memory.to_string()]);
    }
    push(&["-display", "none", "-monitor", "none"]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", opt_value(&layout.qmp_socket)),
    ]);
    match config.machine {
        Machine::Virt => push(&[
            "-chardev",
            &format!("file,id=con,path={}", opt_value(&layout.console_log)),
            "-serial",
            "chardev:con",
        ]),
        // A Pi has two UARTs: the PL011 and the mini UART, which Debian's
        // device trees make the console (U-Boot switches to it early). Both
        // go into the one log.
        Machine::Raspi3b | Machine::Raspi4b => push(&[
            "-chardev",
            &format!("file,id=con,path={},mux=on", opt_value(&layout.console_log)),
            "-serial",
            "chardev:con",
            "-serial",
            "chardev:con",
        ]),
    }
    if config.no_reboot {
        push(&["-no-reboot"]);
    }

    match &config.boot {
        Boot::Firmware(firmware) => push(&["-bios", &firmware.display().to_string()]),
        Boot::Kernel {
            kernel,
            initrd,
            dtb,
            append,
        } => {
            push(&["-kernel", &kernel.display().to_string()]);
            if let Some(initrd) = initrd {
                push(&["-initrd", &initrd.display().to_string()]);
            }
            if let Some(dtb) = dtb {
                push(&["-dtb", &dtb.display().to_string()]);
            }
            if !append.is_empty() {
                push(&["-append", append]);
            }
        }
    }

    let overlay = opt_value(&layout.overlay);
    let image = opt_value(&config.image);
    let disk = match config.write_image {
        true => format!("file={image},format=raw"),
        false => format!("file={overlay},format=qcow2"),
    };
    match config.machine {
        Machine::Virt => push(&[
            "-drive",
            &format!("if=none,id=disk0,{disk}"),
            "-device",
            "virtio-blk-pci,drive=disk0",
        ]),
        Machine::Raspi3b | Machine::Raspi4b => push(&["-drive", &format!("if=sd,{disk}")]),
    }

    match &config.network {
        Network::None => push(&["-nic", "none"]),
        Network::Tap { tap, mac, .. } => push(&[
            "-netdev",
            &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device",
            // romfile= : no PXE option ROM (U-Boot and Linux have their own
            // virtio-net drivers; the ROM file is not always installed).
            &format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
        ]),
    }

    if config.shell {
        push(&[
            "-device",
            "virtio-serial-pci",
            "-chardev",
            &format!(
                "socket,id=shell,path={},server=on,wait=off",
                opt_value(&layout.shell_socket)
            ),
            "-device",
            &format!("virtconsole,chardev=shell,name={SHELL_PORT_NAME}"),
        ]);
    }

    args.extend(config.extra_args.iter().cloned());
    Ok(args)
}

/// Where QEMU runs: the program and arguments that precede QEMU's own
/// arguments. `Network::Tap` runs QEMU inside the named network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetnsEntry {
    /// `ip netns exec NS` (on the host).
    IpNetnsExec,
    /// `nsenter --net=/run/netns/NS --` (in a container that has the
    /// namespace file bind-mounted and CAP_SYS_ADMIN).
    Nsenter,
}

/// The full argv: QEMU, its arguments, and the namespace wrapper if any.
pub fn qemu_argv(
    config: &MachineConfig,
    layout: &Layout,
    entry: NetnsEntry,
) -> Result<Vec<String>> {
    let mut argv = Vec::new();
    if let Network::Tap { netns, .. } = &config.network {
        match entry {
            NetnsEntry::IpNetnsExec => {
                argv.extend(["ip", "netns", "exec", netns].map(String::from))
            }
            NetnsEntry::Nsenter => {
                argv.push("nsenter".into());
                argv.push(format!("--net={}", netns_path(netns).display()));
                argv.push("--".into());
            }
        }
    }
    argv.push(QEMU.into());
    argv.extend(qemu_args(config, layout)?);
    Ok(argv)
}

/// The qemu-img commands that make the overlay: `create` backed by the
/// image, and for SD cards a `resize` to the next power of two (QEMU refuses
/// other SD sizes; only the overlay grows, never the image). None when the
/// machine writes the image itself.
pub fn overlay_commands(
    config: &MachineConfig,
    image_len: u64,
    overlay: &Path,
) -> Vec<Vec<String>> {
    if config.write_image {
        return Vec::new();
    }
    let (image, machine) = (&config.image, config.machine);
    let mut commands = vec![vec![
        QEMU_IMG.to_string(),
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-F".into(),
        "raw".into(),
        "-b".into(),
        image.display().to_string(),
        overlay.display().to_string(),
    ]];
    if machine.disk_is_sd() {
        let size = sd_size(image_len);
        if size != image_len {
            commands.push(vec![
                QEMU_IMG.to_string(),
                "resize".into(),
                "-q".into(),
                "-f".into(),
                "qcow2".into(),
                overlay.display().to_string(),
                size.to_string(),
            ]);
        }
    }
    commands
}

/// The SD card size QEMU accepts for an image of `len` bytes: the next power of two.
pub fn sd_size(len: u64) -> u64 {
    len.max(1).next_power_of_two()
}

/// Quotes `word` for a POSIX shell.
pub fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=,:@%+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// One command line, quoted for a POSIX shell.
pub fn sh_command(argv: &[String]) -> String {
    argv.iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The script a docker container runs (`/bin/sh -c SCRIPT`): make the
/// overlay, run QEMU with its output in `qemu_log`, and kill it as soon as
/// the test process releases `layout.lock` (it holds it while the machine
/// lives, so QEMU dies with the test process even if that is SIGKILLed).
/// QEMU's exit status goes to `layout.exit_file`, then is the container's.
pub fn container_script(prepare: &[Vec<String>], qemu: &[String], layout: &Layout) -> String {
    let q = |p: &Path| sh_quote(&p.display().to_string());
    let mut script = String::new();
    script.push_str(&format!("exec >>{} 2>&1\n", q(&layout.qemu_log)));
    for command in prepare {
        script.push_str(&format!(
            "{} || {{ echo $? >{}; exit 1; }}\n",
            sh_command(command),
            q(&layout.exit_file)
        ));
    }
    script.push_str(&format!("{} &\n", sh_command(qemu)));
    script.push_str("qemu=$!\n");
    script.push_str(&format!(
        "flock {} kill -KILL \"$qemu\" &\n",
        q(&layout.lock)
    ));
    script.push_str("wait \"$qemu\"\nstatus=$?\n");
    script.push_str(&format!("echo \"$status\" >{}\n", q(&layout.exit_file)));
    script.push_str("exit \"$status\"\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new("/t/qemu-tests/m-1-0")
    }

    fn firmware_config() -> MachineConfig {
        MachineConfig::new("m", "/img/disk.img", "/fw/u-boot.bin")
    }

    fn joined(config: &MachineConfig) -> String {
        qemu_args(config, &layout()).unwrap().join(" ")
    }

    #[test]
    fn virt_with_firmware() {
        assert_eq!(
            joined(&firmware_config()),
            "-M virt -cpu cortex-a72 -smp 2 -m 1024 -display none -monitor none \
             -qmp unix:/t/qemu-tests/m-1-0/qmp.sock,server=on,wait=off \
             -chardev file,id=con,path=/t/qemu-tests/m-1-0/console.log -serial chardev:con \
             -bios /fw/u-boot.bin \
             -drive if=none,id=disk0,file=/t/qemu-tests/m-1-0/disk.qcow2,format=qcow2 \
             -device virtio-blk-pci,drive=disk0 -nic none"
        );
    }

    #[test]
    fn virt_with_kernel_shell_no_reboot_and_extra_args() {
        let mut config = firmware_config().with_shell();
        config.boot = Boot::Kernel {
            kernel: "/k/vmlinuz".into(),
            initrd: Some("/k/initrd".into()),
            dtb: None,
            append: "console=ttyAMA0 root=/dev/vda2".into(),
        };
        config.memory_mib = Some(2048);
        config.smp = Some(4);
        config.no_reboot = true;
        config.extra_args = vec!["-rtc".into(), "base=utc".into()];
        let args = qemu_args(&config, &layout()).unwrap();
        let text = args.join(" ");
        assert!(
            text.starts_with("-M virt -cpu cortex-a72 -smp 4 -m 2048 "),
            "{text}"
        );
        assert!(text.contains(" -no-reboot "), "{text}");
        assert!(
            text.contains("-kernel /k/vmlinuz -initrd /k/initrd -append "),
            "{text}"
        );
        assert!(!text.contains("-dtb"), "{text}");
        // the command line is one argument
        assert!(args.contains(&"console=ttyAMA0 root=/dev/vda2".to_string()));
        assert!(
            text.contains(
                "-device virtio-serial-pci \
                 -chardev socket,id=shell,path=/t/qemu-tests/m-1-0/shell.sock,server=on,wait=off \
                 -device virtconsole,chardev=shell,name=org.vinyl.shell"
            ),
            "{text}"
        );
        assert!(text.ends_with(" -rtc base=utc"), "{text}");
    }

    #[test]
    fn no_reboot_is_off_by_default() {
        assert!(!joined(&firmware_config()).contains("-no-reboot"));
    }

    #[test]
    fn raspi_machines_use_an_sd_card_and_their_fixed_sizes() {
        for (machine, name) in [(Machine::Raspi3b, "raspi3b"), (Machine::Raspi4b, "raspi4b")] {
            let config = MachineConfig::raspi(
                "pi",
                machine,
                "/img/disk.img",
                "/fw/u-boot.bin",
                Some("/fw/bcm.dtb".into()),
            );
            assert_eq!(
                joined(&config),
                format!(
                    "-M {name} -display none -monitor none \
                     -qmp unix:/t/qemu-tests/m-1-0/qmp.sock,server=on,wait=off \
                     -chardev file,id=con,path=/t/qemu-tests/m-1-0/console.log,mux=on \
                     -serial chardev:con -serial chardev:con \
                     -kernel /fw/u-boot.bin -dtb /fw/bcm.dtb \
                     -drive if=sd,file=/t/qemu-tests/m-1-0/disk.qcow2,format=qcow2 -nic none"
                )
            );
        }
    }

    #[test]
    fn raspi_takes_explicit_memory_and_cpus() {
        let mut config = MachineConfig::raspi("pi", Machine::Raspi3b, "/i", "/k", None);
        config.memory_mib = Some(1024);
        config.smp = Some(4);
        assert!(joined(&config).starts_with("-M raspi3b -smp 4 -m 1024 -display"));
    }

    #[test]
    fn virt_only_features_are_refused_elsewhere() {
        let pi = MachineConfig::raspi("pi", Machine::Raspi4b, "/i", "/k", None);
        let mut firmware = pi.clone();
        firmware.boot = Boot::Firmware("/fw".into());
        let error = qemu_args(&firmware, &layout()).unwrap_err().to_string();
        assert!(
            error.contains("Boot::Firmware") && error.contains("Raspi4b"),
            "{error}"
        );
        let error = qemu_args(&pi.clone().with_shell(), &layout())
            .unwrap_err()
            .to_string();
        assert!(error.contains("test shell"), "{error}");
        let tap = Network::Tap {
            netns: "n".into(),
            tap: "t".into(),
            mac: "52:54:00:00:00:01".into(),
        };
        let error = qemu_args(&pi.with_network(tap), &layout())
            .unwrap_err()
            .to_string();
        assert!(error.contains("Network::Tap"), "{error}");
    }

    #[test]
    fn tap_network_in_a_namespace() {
        let config = firmware_config().with_network(Network::Tap {
            netns: "vinyl-net".into(),
            tap: "tap0".into(),
            mac: "52:54:00:12:34:56".into(),
        });
        let argv = qemu_argv(&config, &layout(), NetnsEntry::IpNetnsExec).unwrap();
        assert_eq!(argv[..5], ["ip", "netns", "exec", "vinyl-net", QEMU]);
        let text = argv.join(" ");
        assert!(
            text.contains(
                "-netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
                 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile="
            ),
            "{text}"
        );
        assert!(!text.contains("-nic none"), "{text}");

        let argv = qemu_argv(&config, &layout(), NetnsEntry::Nsenter).unwrap();
        assert_eq!(
            argv[..4],
            ["nsenter", "--net=/run/netns/vinyl-net", "--", QEMU]
        );
    }

    #[test]
    fn no_network_runs_qemu_directly() {
        let argv = qemu_argv(&firmware_config(), &layout(), NetnsEntry::Nsenter).unwrap();
        assert_eq!(argv[0], QEMU);
        assert!(argv.join(" ").ends_with("-nic none"));
    }

    #[test]
    fn bad_tap_settings_are_refused() {
        for (netns, tap, mac) in [
            ("", "t", "52:54:00:00:00:01"),
            ("n", "tap with space", "52:54:00:00:00:01"),
            ("n", "a-very-long-tap-name", "52:54:00:00:00:01"),
            ("n", "t", "52:54:00:00:01"),
            ("n", "t", "52:54:00:00:00:0g"),
        ] {
            let config = firmware_config().with_network(Network::Tap {
                netns: netns.into(),
                tap: tap.into(),
                mac: mac.into(),
            });
            let error = qemu_args(&config, &layout()).unwrap_err();
            assert!(
                matches!(error, Error::Config(_)),
                "{netns} {tap} {mac}: {error}"
            );
        }
    }

    #[test]
    fn relative_inputs_are_refused() {
        let config = MachineConfig::new("m", "disk.img", "/fw");
        assert!(matches!(
            qemu_args(&config, &layout()),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn commas_in_paths_are_doubled_in_option_lists() {
        let layout = Layout::new("/t/a,b");
        let args = qemu_args(&firmware_config(), &layout).unwrap();
        assert!(args.contains(&"file,id=con,path=/t/a,,b/console.log".to_string()));
        assert!(
            args.contains(&"if=none,id=disk0,file=/t/a,,b/disk.qcow2,format=qcow2".to_string())
        );
    }

    #[test]
    fn overlay_is_created_and_sd_cards_are_resized_to_a_power_of_two() {
        let overlay = Path::new("/w/disk.qcow2");
        let virt = overlay_commands(&firmware_config(), 1_000_000_000, overlay);
        assert_eq!(virt.len(), 1);
        assert_eq!(
            virt[0].join(" "),
            "qemu-img create -q -f qcow2 -F raw -b /img/disk.img /w/disk.qcow2"
        );
        let pi = |machine| MachineConfig {
            machine,
            ..firmware_config()
        };
        let sd = overlay_commands(&pi(Machine::Raspi3b), 1_000_000_000, overlay);
        assert_eq!(sd.len(), 2);
        assert_eq!(
            sd[1].join(" "),
            "qemu-img resize -q -f qcow2 /w/disk.qcow2 1073741824"
        );
        let exact = overlay_commands(&pi(Machine::Raspi4b), 1 << 30, overlay);
        assert_eq!(exact.len(), 1);
    }

    #[test]
    fn a_machine_writing_its_image_has_no_overlay() {
        let config = firmware_config().writing_the_image();
        assert!(overlay_commands(&config, 1 << 30, Path::new("/w/disk.qcow2")).is_empty());
        let args = qemu_args(&config, &layout()).unwrap();
        assert!(args.contains(&"if=none,id=disk0,file=/img/disk.img,format=raw".to_string()));
        let pi = MachineConfig {
            machine: Machine::Raspi4b,
            boot: Boot::Kernel {
                kernel: "/k".into(),
                initrd: None,
                dtb: None,
                append: String::new(),
            },
            ..config
        };
        assert!(validate(&pi).is_err());
    }

    #[test]
    fn sd_sizes() {
        assert_eq!(sd_size(0), 1);
        assert_eq!(sd_size(64 << 20), 64 << 20);
        assert_eq!(sd_size((64 << 20) + 1), 128 << 20);
        assert_eq!(sd_size(1_232_000_000), 2 << 30);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("plain/path-1.img"), "plain/path-1.img");
        assert_eq!(sh_quote("file,id=con,path=/x"), "file,id=con,path=/x");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME;rm"), "'$HOME;rm'");
    }

    #[test]
    fn container_script_prepares_runs_and_watches_the_lock() {
        let layout = layout();
        let config = MachineConfig::new("m", "/img/d.img", "/fw/u-boot.bin");
        let prepare = overlay_commands(&config, 4096, &layout.overlay);
        let qemu = qemu_argv(&firmware_config(), &layout, NetnsEntry::Nsenter).unwrap();
        let script = container_script(&prepare, &qemu, &layout);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "exec >>/t/qemu-tests/m-1-0/qemu.log 2>&1");
        assert!(lines[1].starts_with("qemu-img create -q -f qcow2 -F raw -b /img/d.img "));
        assert!(lines[1].ends_with("|| { echo $? >/t/qemu-tests/m-1-0/qemu.exit; exit 1; }"));
        assert!(lines[2].starts_with("qemu-system-aarch64 -M virt "));
        assert!(lines[2].ends_with(" &"));
        assert_eq!(
            lines[4],
            "flock /t/qemu-tests/m-1-0/alive.lock kill -KILL \"$qemu\" &"
        );
        assert_eq!(lines.last(), Some(&"exit \"$status\""));
    }
}
