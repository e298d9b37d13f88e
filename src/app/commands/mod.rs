//! One file per command: each turns settings and flags into engine calls and prints the result.

pub mod doctor;
pub mod init;
pub mod local;
pub mod migrate;
mod migrate_files;
pub mod pool;
pub mod project;
pub mod reset;
pub mod seed;
pub mod shell;
pub mod template;
