//! The `sql/` and `seeds/` files built into the binary (see build.rs).

// SEEDS is read by the seed module once it exists.
#![allow(dead_code)]

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
