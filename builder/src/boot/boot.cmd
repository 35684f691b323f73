# A/B boot script shared by every board (written into boot.scr by the
# builder from builder/src/boot/boot.cmd; @CMDLINE@ is the board's console).
#
# The console can be moved to another serial port without rebuilding: a
# file vinyl-console.env on this partition holding one line such as
# "vinyl_console=ttyAMA0,115200" replaces the board's console= arguments.
# No image carries it; the QEMU tests write it (QEMU's raspi4b hangs when
# the Pi 4's mini UART, the board's console, is opened as a terminal).
#
# State: ab-state-0.env and ab-state-1.env on this FAT partition, U-Boot
# environment files (CRC-protected) holding ab_seq (a hex sequence number),
# ab_active (the slot that is known to work: a or b), ab_trial (a slot being
# tried, or nothing) and ab_tries (hex count of trial boots left). The copy
# with the higher ab_seq and a good CRC wins; a write goes to the other copy,
# so a torn write leaves the previous state readable.
#
# Normal boots read the state and write nothing. A trial boot consumes one
# try; with none left the trial is dropped and the active slot boots. If a
# slot can't be loaded at all, the other slot boots: something always does.

echo "vinyl: A/B boot script on ${devtype} ${devnum}:${distro_bootpart}"
setenv ab_state_addr ${kernel_addr_r}
setenv ab_found 0
for ab_copy in 0 1; do
    setenv ab_seq
    setenv ab_active
    setenv ab_trial
    setenv ab_tries
    if load ${devtype} ${devnum}:${distro_bootpart} ${ab_state_addr} ab-state-${ab_copy}.env && env import -c ${ab_state_addr} ${filesize} ab_seq ab_active ab_trial ab_tries && test -n "${ab_seq}"; then
        if test ${ab_found} = 0 || itest ${ab_seq} -gt ${ab_cur_seq}; then
            setenv ab_found 1
            setenv ab_cur_copy ${ab_copy}
            setenv ab_cur_seq ${ab_seq}
            setenv ab_cur_active ${ab_active}
            setenv ab_cur_trial ${ab_trial}
            setenv ab_cur_tries ${ab_tries}
        fi
    else
        echo "vinyl: boot state copy ${ab_copy} is missing or corrupted; ignoring it"
    fi
done

if test ${ab_found} = 0; then
    echo "vinyl: no readable boot state; booting slot a"
    setenv ab_cur_active a
    setenv ab_cur_trial
fi
if test "${ab_cur_active}" != b; then
    setenv ab_cur_active a
fi

setenv ab_slot ${ab_cur_active}
setenv ab_is_trial 0
if test -n "${ab_cur_trial}"; then
    if itest ${ab_cur_tries} -gt 0; then
        setexpr ab_cur_tries ${ab_cur_tries} - 1
        setenv ab_slot ${ab_cur_trial}
        setenv ab_is_trial 1
        echo "vinyl: trial boot of slot ${ab_slot} (tries left after this one: ${ab_cur_tries})"
    else
        echo "vinyl: slot ${ab_cur_trial} used up its trial boots; returning to slot ${ab_cur_active}"
        setenv ab_cur_trial
    fi
    # Record the consumed try (or the rollback) in the older copy.
    setexpr ab_seq ${ab_cur_seq} + 1
    setenv ab_active ${ab_cur_active}
    setenv ab_trial ${ab_cur_trial}
    setenv ab_tries ${ab_cur_tries}
    if test ${ab_cur_copy} = 0; then
        setenv ab_target 1
    else
        setenv ab_target 0
    fi
    env export -c -s 0x1000 ${ab_state_addr} ab_active ab_seq ab_trial ab_tries
    if fatwrite ${devtype} ${devnum}:${distro_bootpart} ${ab_state_addr} ab-state-${ab_target}.env 0x1000; then
        echo "vinyl: boot state ${ab_seq} written to copy ${ab_target}"
    else
        echo "vinyl: could not write the boot state"
    fi
fi

part uuid ${devtype} ${devnum}:4 ab_data_uuid
setenv ab_console "@CMDLINE@"
setenv vinyl_console
if test -e ${devtype} ${devnum}:${distro_bootpart} vinyl-console.env; then
    if load ${devtype} ${devnum}:${distro_bootpart} ${ab_state_addr} vinyl-console.env && env import -t ${ab_state_addr} ${filesize} vinyl_console && test -n "${vinyl_console}"; then
        setenv ab_console "console=${vinyl_console}"
        echo "vinyl: console ${vinyl_console}, from vinyl-console.env"
    fi
fi
for ab_attempt in first fallback; do
    if test ${ab_attempt} = fallback; then
        if test ${ab_slot} = a; then
            setenv ab_slot b
        else
            setenv ab_slot a
        fi
        setenv ab_is_trial 0
        echo "vinyl: falling back to slot ${ab_slot}"
    fi
    if test ${ab_slot} = a; then
        setenv ab_part 2
    else
        setenv ab_part 3
    fi
    part uuid ${devtype} ${devnum}:${ab_part} ab_root_uuid
    setexpr ab_ramdisk_addr ${kernel_addr_r} + 0x4000000
    setexpr kernel_comp_addr_r ${kernel_addr_r} + 0x6000000
    setenv kernel_comp_size 0x2000000
    if test -n "${fdt_addr}"; then
        setenv ab_fdt ${fdt_addr}
    else
        setenv ab_fdt ${fdtcontroladdr}
    fi
    setenv bootargs "${ab_console} root=PARTUUID=${ab_root_uuid} ro rootwait panic=10 vinyl.slot=${ab_slot} vinyl.trial=${ab_is_trial} vinyl.data=PARTUUID=${ab_data_uuid}"
    echo "vinyl: booting slot ${ab_slot} from ${devtype} ${devnum}:${ab_part}"
    if load ${devtype} ${devnum}:${ab_part} ${kernel_addr_r} /boot/vmlinuz && load ${devtype} ${devnum}:${ab_part} ${ab_ramdisk_addr} /boot/initrd.img; then
        booti ${kernel_addr_r} ${ab_ramdisk_addr}:${filesize} ${ab_fdt}
    fi
    echo "vinyl: slot ${ab_slot} did not boot"
done
echo "vinyl: no slot could be booted"
