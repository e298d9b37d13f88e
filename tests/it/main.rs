//! The one integration-test binary: every test drives real PostgreSQL.

mod alembic;
mod baseline;
mod cli;
mod diff;
mod doctor;
mod first_hour;
mod guards;
mod ha;
mod hostile;
mod init;
mod integrity;
mod json;
mod layering;
mod lint;
mod local;
mod local_root;
mod migrate;
mod pgbouncer;
mod reset;
mod seed;
mod settings;
mod support;
mod template;
mod tls;
mod verify;
mod verify_kinds;
