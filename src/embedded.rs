//! The `sql/`, `seeds/` and `config/` files built into the binary (see build.rs); `project
//! init` writes them out as a project of its own.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
