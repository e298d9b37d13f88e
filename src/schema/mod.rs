//! A database's schema as data: [`catalog`] reads it from `pg_catalog` (the server normalises
//! every definition), [`diff`] compares two of them without I/O. `migrate verify` builds on both;
//! `verify --fix`, `migrate diff` and `migrate baseline` are meant to as well.

pub mod catalog;
pub mod ddl;
pub mod diff;
pub mod scope;
