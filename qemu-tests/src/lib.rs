//! QEMU test harness (grows with the boot-chain work).
