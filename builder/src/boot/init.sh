#!/bin/sh
# The initramfs's init (written by the builder from builder/src/boot/init.sh;
# busybox provides every command). It loads the storage drivers, finds the
# booted slot's root by PARTUUID, mounts it read-only and the data partition
# read-write, records which slot booted, and hands over to systemd.
/bin/busybox --install -s /bin
export PATH=/bin

mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run

say() { echo "initramfs: $*"; }

# Set by the boot script: root=PARTUUID=… vinyl.slot=a|b vinyl.trial=0|1
# vinyl.data=PARTUUID=…
root='' slot='' trial=0 data='' rootdelay=30
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root=${arg#root=} ;;
        vinyl.slot=*) slot=${arg#vinyl.slot=} ;;
        vinyl.trial=*) trial=${arg#vinyl.trial=} ;;
        vinyl.data=*) data=${arg#vinyl.data=} ;;
        rootdelay=*) rootdelay=${arg#rootdelay=} ;;
    esac
done

fail() {
    say "ERROR: $*"
    say "block devices the kernel found:"
    for dev in /sys/class/block/*; do
        [ -e "$dev" ] || continue
        echo "  /dev/${dev##*/} PARTUUID=$(partuuid_of "$dev")"
    done
    if [ "$trial" = 1 ]; then
        # A failed trial must end in a reset, so U-Boot counts the try and
        # eventually returns to the previous slot.
        say "trial boot of slot $slot failed; rebooting in 5 seconds"
        sleep 5
        reboot -f
    fi
    say "starting a shell on the console; the system reboots when it exits"
    setsid cttyhack sh
    reboot -f
}

# A partition's PARTUUID (sysfs directory in $1): from the uevent when the
# kernel puts it there, else as the kernel names MBR partitions: the disk
# signature (4 bytes at offset 440) and the partition number.
partuuid_of() {
    uuid=$(sed -n 's/^PARTUUID=//p' "$1/uevent")
    if [ -z "$uuid" ] && [ -e "$1/partition" ]; then
        disk=$(basename "$(dirname "$(readlink -f "$1")")")
        signature=$(dd if="/dev/$disk" bs=1 skip=440 count=4 2>/dev/null | od -An -tx4 | tr -d ' ')
        uuid=$(printf '%s-%02x' "$signature" "$(cat "$1/partition")")
    fi
    echo "$uuid"
}

# The device name of the partition with PARTUUID $1.
find_partuuid() {
    for dev in /sys/class/block/*; do
        # No disk yet: the pattern itself comes back.
        [ -e "$dev" ] || continue
        if [ "$(partuuid_of "$dev")" = "$(echo "$1" | tr 'A-F' 'a-f')" ]; then
            echo "${dev##*/}"
            return 0
        fi
    done
    return 1
}

# In the order the board lists them: on a Raspberry Pi the watchdog comes
# first, as it is the only way the board can reset (its device trees have no
# PSCI), and a failed trial boot must end in a reset.
say "loading storage drivers"
while read -r module; do
    insmod "/lib/modules/$module" || say "could not load $module"
done < /lib/modules/load-order

case "$root" in
    PARTUUID=*) ;;
    *) fail "the kernel command line has no root=PARTUUID=… (got '$root')" ;;
esac
say "waiting for slot ${slot:-?} root ${root}"
deadline=$(( $(cut -d. -f1 /proc/uptime) + rootdelay ))
while ! dev=$(find_partuuid "${root#PARTUUID=}"); do
    if [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ]; then
        fail "root partition ${root} did not appear within ${rootdelay} seconds"
    fi
    sleep 1
done
mount -t ext4 -o ro "/dev/$dev" /newroot || fail "cannot mount /dev/$dev (slot $slot) read-only as ext4"
[ -x /newroot/sbin/init ] || fail "slot $slot on /dev/$dev has no /sbin/init"

data_mounted=0
if [ -n "$data" ]; then
    if ddev=$(find_partuuid "${data#PARTUUID=}") &&
        mount -t ext4 -o rw,noatime,nosuid,nodev "/dev/$ddev" /newroot/data; then
        data_mounted=1
        say "data partition /dev/$ddev mounted on /data"
    else
        say "WARNING: data partition ${data} is not mounted; nothing persists this boot"
    fi
fi

# /var is the image's /var with a writable layer on top: on the data
# partition, so what services keep there survives reboots and updates of
# the root slots (in RAM when there is no data partition).
if [ "$data_mounted" = 1 ]; then
    layer=/newroot/data/var
else
    layer=/run/var-layer
    mkdir -p "$layer" && mount -t tmpfs -o mode=0755 tmpfs "$layer"
fi
mkdir -p "$layer/upper" "$layer/work"
mount -t overlay -o "lowerdir=/newroot/var,upperdir=$layer/upper,workdir=$layer/work" overlay /newroot/var ||
    say "WARNING: /var is not writable"

# The device's identity lives on /data, so it survives updates of the root
# slots: systemd's machine ID (from which networkd's DHCPv6 DUID and other
# IDs derive) is made once and bound over the root's empty /etc/machine-id.
if [ "$data_mounted" = 1 ]; then
    id_file=/newroot/data/etc/machine-id
    if ! grep -qE '^[0-9a-f]{32}$' "$id_file" 2>/dev/null; then
        mkdir -p /newroot/data/etc
        tr -d '-' < /proc/sys/kernel/random/uuid > "$id_file.new" && sync &&
            mv "$id_file.new" "$id_file" && sync
        say "new machine ID $(cat "$id_file")"
    fi
    mount --bind "$id_file" /newroot/etc/machine-id && mount -o remount,bind,ro /newroot/etc/machine-id
fi

# The boot partition (the slot's disk, partition 1) on /boot/firmware,
# read-only: the running system reads wifi.txt and authorized_keys there.
disk=$(basename "$(dirname "$(readlink -f "/sys/class/block/$dev")")")
boot_part=''
for part in /sys/class/block/"$disk"/*/partition; do
    [ "$(cat "$part" 2>/dev/null)" = 1 ] && boot_part=$(basename "$(dirname "$part")")
done
if [ -n "$boot_part" ] &&
    mount -t vfat -o ro,nosuid,nodev,noexec,umask=0022 "/dev/$boot_part" /newroot/boot/firmware; then
    say "boot partition /dev/$boot_part mounted on /boot/firmware"
else
    say "WARNING: the boot partition is not mounted on /boot/firmware"
fi

# Stable names for the booted disk's partitions, whatever the disk is called
# (mmcblk0p2, vda2, sda2): RAUC's system.conf names the slots by them, so an
# update installs onto the disk the device booted from.
mkdir -p /dev/vinyl
for part in /sys/class/block/"$disk"/*/partition; do
    [ -e "$part" ] || continue
    name=$(basename "$(dirname "$part")")
    case "$(cat "$part")" in
        1) ln -sf "../$name" /dev/vinyl/boot ;;
        2) ln -sf "../$name" /dev/vinyl/root-a ;;
        3) ln -sf "../$name" /dev/vinyl/root-b ;;
        4) ln -sf "../$name" /dev/vinyl/data ;;
    esac
done

# What booted, for the running system (the update client reads it).
mkdir -p /run/vinyl
cat > /run/vinyl/boot.env <<EOF
SLOT=$slot
TRIAL=$trial
ROOT=$root
ROOT_DEVICE=/dev/$dev
BOOT_DEVICE=${boot_part:+/dev/$boot_part}
EOF

say "switching to slot $slot (/dev/$dev, read-only)"
for fs in /dev /proc /sys /run; do
    mount --move "$fs" "/newroot$fs"
done
exec switch_root /newroot /sbin/init
