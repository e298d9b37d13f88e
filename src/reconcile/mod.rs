//! Reconciliation: comparing a schema with what the migrations make, on one floor above the
//! engine (`migrate`, `schema`) that it uses. Every tool here builds the migrations' schema in a
//! [`scratch`] database (made as the admin's own, furnished with what the live database has that
//! the migrations do not make, handed to the app role, who replays the migrations there, and
//! dropped on every way out), reads catalogs, and compares: [`verify`] (live against the
//! migrations), [`diff`] (the migrations against a desired schema: the next pair),
//! [`baseline`] (adopting a database other tools made); [`models`] makes the backend's
//! SQLAlchemy models a desired schema for `diff` and `verify --models`. `migrate` and `schema` never import
//! this module (`tests/it/layering.rs`).

pub mod baseline;
pub mod capture;
mod checks;
pub mod diff;
pub mod models;
pub mod scratch;
pub mod verify;
