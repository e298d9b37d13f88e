//! The `sql/` and `seeds/` files built into the binary (see build.rs).

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
