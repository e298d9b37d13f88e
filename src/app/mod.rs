//! The application layer: the only code that knows settings, flags and the terminal. It resolves
//! [`settings::Settings`], produces each engine module's own options ([`targets`]), applies every
//! guard ([`policy`]) and prints ([`output`]); the engine modules below take their own small
//! option structs and return data.

pub mod commands;
pub mod output;
pub mod policy;
pub mod settings;
pub mod targets;
