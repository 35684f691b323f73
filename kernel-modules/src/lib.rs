//! Kernel module closure and kmod index generation (in progress).
