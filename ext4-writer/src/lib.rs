//! Reproducible ext4 writer (in progress).
