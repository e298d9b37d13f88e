//! Settings precedence and error messages, without touching the process environment.

use aidock_provision::cli::{Cli, Global};
use aidock_provision::settings::Settings;
use clap::CommandFactory as _;

use crate::support::{bin, env_map, expect_exit, scratch_dir, stderr, write_files};

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

fn global(config_dir: &std::path::Path) -> Global {
    Global {
        config_dir: Some(config_dir.to_path_buf()),
        ..Global::default()
    }
}

#[test]
fn precedence_is_default_then_profile_then_env_then_flag() {
    let dir = scratch_dir("settings");
    write_files(
        &dir,
        &[
            (
                "default.toml",
                "[database]\nname = \"from_default\"\nowner = \"owner_default\"\n[local]\nport = 1111\n",
            ),
            (
                "dev.toml",
                "[database]\nname = \"from_profile\"\n[server]\nadmin_url = \"postgres://profile@h/db\"\n",
            ),
        ],
    );
    let g = global(&dir);

    let s = Settings::load_with(&g, &env_map(&[])).expect("settings");
    assert_eq!(s.profile, "dev");
    assert_eq!(
        s.database.name, "from_profile",
        "profile file beats default.toml"
    );
    assert_eq!(
        s.database.owner, "owner_default",
        "default.toml beats built-ins"
    );
    assert_eq!(s.local.port, 1111);
    assert_eq!(s.database.password.expose(), "aidock", "built-in default");
    assert_eq!(
        s.server.admin_url.as_deref(),
        Some("postgres://profile@h/db")
    );

    let env = env_map(&[
        ("AIDOCK__DATABASE__NAME", "from_env"),
        ("AIDOCK_ADMIN_URL", "postgres://env@h/db"),
        ("AIDOCK__LOCAL__PORT", "2222"),
    ]);
    let s = Settings::load_with(&g, &env).expect("settings");
    assert_eq!(s.database.name, "from_env", "env beats the profile file");
    assert_eq!(s.local.port, 2222);
    assert_eq!(s.server.admin_url.as_deref(), Some("postgres://env@h/db"));

    let flagged = Global {
        admin_url: Some("postgres://flag@h/db".into()),
        ..g.clone()
    };
    let s = Settings::load_with(&flagged, &env).expect("settings");
    assert_eq!(
        s.server.admin_url.as_deref(),
        Some("postgres://flag@h/db"),
        "flag beats env"
    );

    // An empty admin URL means the local cluster.
    let env = env_map(&[("AIDOCK_ADMIN_URL", "")]);
    let s = Settings::load_with(&g, &env).expect("settings");
    assert_eq!(s.server.admin_url, None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profile_comes_from_flag_then_env() {
    let dir = scratch_dir("profiles");
    write_files(
        &dir,
        &[
            ("staging.toml", "[database]\nname = \"staging\"\n"),
            ("qa.toml", "[database]\nname = \"qa\"\n"),
        ],
    );
    let env = env_map(&[("AIDOCK_PROFILE", "staging")]);
    let s = Settings::load_with(&global(&dir), &env).expect("settings");
    assert_eq!(
        (s.profile.as_str(), s.database.name.as_str()),
        ("staging", "staging")
    );
    let g = Global {
        profile: Some("qa".into()),
        ..global(&dir)
    };
    let s = Settings::load_with(&g, &env).expect("settings");
    assert_eq!(s.database.name, "qa");

    let g = Global {
        profile: Some("nope".into()),
        ..global(&dir)
    };
    let err = Settings::load_with(&g, &env).expect_err("unknown profile");
    assert!(format!("{err:#}").contains("nope.toml"), "{err:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn builtin_profiles_work_without_a_config_dir() {
    // Outside the repository there is no ./config: the embedded files are used.
    let out = expect_exit(
        bin()
            .current_dir("/")
            .env("AIDOCK_PROFILE", "production")
            .env("AIDOCK_ADMIN_URL", "postgres://x@127.0.0.1:1/x")
            .args(["local", "status", "--json"]),
        // The settings loaded; the (absent) cluster does not run, which `local status` says with 3.
        3,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"state\""));
}

#[test]
fn bad_values_name_the_key_and_source() {
    let dir = scratch_dir("badvalues");
    write_files(&dir, &[("dev.toml", "[local]\nport = \"high\"\n")]);
    let err = Settings::load_with(&global(&dir), &env_map(&[])).expect_err("bad port");
    let msg = format!("{err:#}");
    assert!(msg.contains("local.port"), "{msg}");
    assert!(msg.contains("dev.toml"), "{msg}");

    let env = env_map(&[("AIDOCK__DATABASE__NAME", "x;drop")]);
    let err = Settings::load_with(&global(&dir.join("..")), &env).expect_err("bad name");
    let msg = format!("{err:#}");
    assert!(msg.contains("database.name"), "{msg}");
    assert!(msg.contains("AIDOCK__DATABASE__NAME"), "{msg}");

    let env = env_map(&[("AIDOCK__DATABASE__NAMEE", "typo")]);
    let err = Settings::load_with(&Global::default(), &env).expect_err("unknown key");
    let msg = format!("{err:#}");
    assert!(msg.contains("database.namee"), "{msg}");
    assert!(msg.contains("AIDOCK__DATABASE__NAMEE"), "{msg}");

    let env = env_map(&[("AIDOCK__TLS__MODE", "sometimes")]);
    let err = Settings::load_with(&Global::default(), &env).expect_err("bad tls mode");
    assert!(format!("{err:#}").contains("tls.mode"), "{err:#}");

    // Issue #40: a timeout PostgreSQL would refuse half-way through init is refused up front.
    let env = env_map(&[("AIDOCK__MIGRATE__STATEMENT_TIMEOUT", "99999999h")]);
    let err = Settings::load_with(&Global::default(), &env).expect_err("too long");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("migrate.statement_timeout") && msg.contains("at most 2147483647ms"),
        "{msg}"
    );

    // Through the binary: exit 2 and the same message.
    let out = expect_exit(
        bin()
            .env("AIDOCK__MIGRATE__LOCK_TIMEOUT", "forever")
            .args(["local", "status"]),
        2,
    );
    let err = stderr(&out);
    assert!(err.contains("migrate.lock_timeout"), "{err}");
    assert!(err.contains("AIDOCK__MIGRATE__LOCK_TIMEOUT"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn production_requires_a_real_password_tls_and_an_explicit_server() {
    let closed = format!(
        "postgres://admin@127.0.0.1:{}/postgres",
        crate::support::free_port()
    );
    let out = expect_exit(
        bin()
            .env("AIDOCK_ADMIN_URL", &closed)
            .args(["--profile", "production", "init"]),
        2,
    );
    assert!(
        stderr(&out).contains("AIDOCK__DATABASE__PASSWORD"),
        "{}",
        stderr(&out)
    );
    let out = expect_exit(
        bin()
            .env("AIDOCK_ADMIN_URL", &closed)
            .env("AIDOCK__DATABASE__PASSWORD", "a-real-secret")
            .env("AIDOCK__TLS__MODE", "prefer")
            .args(["--profile", "production", "init"]),
        2,
    );
    let err = stderr(&out);
    assert!(
        err.contains("tls.mode") && err.contains("AIDOCK__TLS__MODE"),
        "{err}"
    );
    assert!(!err.contains("a-real-secret"), "{err}");
    let out = expect_exit(
        bin()
            .env("AIDOCK__DATABASE__PASSWORD", "a-real-secret")
            .args(["--profile", "production", "init"]),
        2,
    );
    assert!(
        stderr(&out).contains("server.admin_url"),
        "{}",
        stderr(&out)
    );
}
