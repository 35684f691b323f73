//! Assembling the root filesystem tree from unpacked packages and recipes.

pub mod tree;
