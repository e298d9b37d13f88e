//! Command-line types (clap derive) and nothing else: no I/O, no settings logic.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Take a PostgreSQL server from nothing to a ready, seeded AI Dock database.
///
/// With no server configured, a project-local PostgreSQL cluster is started from the
/// system's PostgreSQL binaries, so `aidock-provision init` works on a fresh machine.
#[derive(Debug, Parser)]
#[command(name = "aidock-provision", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage or configuration error, \
3 refused by a safety guard, 4 server unreachable (or lost mid-run, or a commit the cluster \
could not confirm), 130 interrupted (Ctrl-C; what was in flight was rolled back)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after any subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// Settings profile: dev, test, production, or any config/<NAME>.toml [env: AIDOCK_PROFILE]
    /// [default: dev]
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        value_hint = clap::ValueHint::Other,
        help_heading = "Global options"
    )]
    pub profile: Option<String>,

    /// The project to work on: its config/, sql/, seeds/ and local cluster, from anywhere
    /// (a test suite in another repository) [default: the nearest directory upward holding
    /// .aidock/, config/ or sql/]. [env: AIDOCK_PROJECT_DIR]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub project: Option<PathBuf>,

    /// Directory holding default.toml and <profile>.toml [default: the project's config/, else
    /// built-in].
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub config_dir: Option<PathBuf>,

    /// Admin connection URL (a role that can create roles and databases).
    /// Empty means the project-local cluster. [env: AIDOCK_ADMIN_URL]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub admin_url: Option<String>,

    /// App connection URL for migrate and seed when no admin connection is needed.
    /// [env: DATABASE_URL]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub database_url: Option<String>,

    /// Read migrations from this directory [default: the project's sql/, found from the project
    /// root; outside a project, the copy built into the binary].
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub migrations_dir: Option<PathBuf>,

    /// Read seed files from this directory [default: the project's seeds/, else the ones built
    /// into the binary].
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub seeds_dir: Option<PathBuf>,

    /// Print more detail (statements, timings); repeatable (-vv).
    #[arg(
        short,
        long,
        global = true,
        action = clap::ArgAction::Count,
        conflicts_with = "quiet",
        help_heading = "Global options"
    )]
    pub verbose: u8,

    /// Print only errors.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// Machine-readable JSON output for status-style commands.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Answer yes to confirmation prompts.
    #[arg(short = 'y', long, global = true, help_heading = "Global options")]
    pub yes: bool,

    /// Keep retrying while the server refuses connections, is starting up or has no free slot,
    /// up to this long (e.g. 30s, 2m); for init containers. [env: AIDOCK__SERVER__WAIT]
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Global options"
    )]
    pub wait: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create the login role and the database (or reconcile them), then migrate to head.
    Init(InitArgs),
    /// Load reference data (roles, departments, LLM configurations, quotas); --dev adds test data.
    Seed(SeedArgs),
    /// Apply, revert and inspect versioned schema migrations.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Drop the database (terminating its sessions) and the role. Asks for confirmation.
    Reset(ResetArgs),
    /// Check settings, server, rights, role, database, migrations and schema; print a fix for each
    /// problem.
    Doctor,
    /// Manage the project-local PostgreSQL cluster.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Databases per test, made ahead: the pytest plugin's (one per test session or worker).
    ///
    /// Checks the template once (current, and unchanged since it was built), makes one login
    /// role for the session, and keeps --ahead clones of the template ready. Reads commands on
    /// stdin, one per line: `clone` answers one JSON line (name, owner, password, url with the
    /// password masked) or {"error": ...}; `drop NAME` drops that clone in the background. When
    /// stdin closes (or on Ctrl-C/SIGTERM) every clone of the session and its role are dropped;
    /// what a killed pool left is dropped by the next one. Refused in production.
    Pool(PoolArgs),
    /// Start a project of your own from what is built into this binary.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(
        after_help = "Install (one of):\n  mkdir -p ~/.local/share/bash-completion/completions && aidock-provision completions bash > ~/.local/share/bash-completion/completions/aidock-provision\n  mkdir -p ~/.zfunc && aidock-provision completions zsh > ~/.zfunc/_aidock-provision   # with fpath+=(~/.zfunc) before compinit\n  mkdir -p ~/.config/fish/completions && aidock-provision completions fish > ~/.config/fish/completions/aidock-provision.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout, or write one page per command into a directory.
    #[command(
        after_help = "Examples:\n  aidock-provision man > aidock-provision.1   # then: man ./aidock-provision.1\n  aidock-provision man --dir ~/.local/share/man/man1   # every page; then: man aidock-provision-migrate-up"
    )]
    Man {
        /// Write aidock-provision.1 and a page per subcommand (aidock-provision-init.1 ...) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Build or refresh the template database <database.name>_template: schema at head and
    /// reference data (with --dev also the dev data), closed to connections; a no-op when it is
    /// current. `init --from-template` then clones it in one statement.
    #[command(after_help = "Example: a fresh seeded database per test\n  \
aidock-provision template --dev --users 10 --usage-logs 500\n  \
AIDOCK__DATABASE__NAME=test_42 AIDOCK__DATABASE__OWNER=test_42 aidock-provision init --from-template aidock_template")]
    Template(TemplateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// The template to clone (built by `template`) [default: <database.name>_template].
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// How many clones to keep ready ahead of requests (made side by side).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub ahead: u16,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ProjectCommand {
    /// Write config/, sql/ and seeds/ (the settings, migrations and seeds built into this binary)
    /// into DIR, so `migrate new`, `diff` and `capture` have a migrations directory to write to
    /// (a team that adopted a database with the binary alone has none). Files already there
    /// with the same content are left; other content is refused, nothing written. Commands run
    /// in DIR (or with --project DIR) then use it.
    #[command(after_help = "Example: in the backend's repository
          aidock-provision project init db   # then: cd db && aidock-provision migrate status")]
    Init {
        /// Where the project goes [default: the current directory].
        dir: Option<PathBuf>,
    },
}

/// The flags of `seed --dev`, shared by `seed` and `template`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Also add the test accounts, fake users and fake usage logs (refused in production).
    #[arg(long)]
    pub dev: bool,
    /// Number of fake users [default: seed.dev_users].
    #[arg(long, value_name = "N", requires = "dev")]
    pub users: Option<u32>,
    /// Number of fake usage logs [default: seed.dev_usage_logs].
    #[arg(long, value_name = "N", requires = "dev")]
    pub usage_logs: Option<u64>,
    /// Seed for the fake data generator: the same seed gives the same users [default: seed.rng_seed].
    #[arg(long, value_name = "S", requires = "dev")]
    pub rng_seed: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    /// The template database's name [default: <database.name>_template].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Drop the template instead of building it (only one aidock-provision built; clones are
    /// not touched). A template that is not there is not an error.
    #[arg(long, conflicts_with = "dev")]
    pub drop: bool,
    #[command(flatten)]
    pub dev: DevArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Exit 1 when migrations are pending too (by default only problems make it fail), as
    /// dbmate's `status --exit-code`.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Create the role and database only; do not apply migrations.
    #[arg(long)]
    pub no_migrate: bool,
    /// Print every statement that would run (password redacted) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Create the database by cloning this template (built by `template`) instead of migrating
    /// and seeding; the role is made as usual and owns everything in the clone.
    #[arg(long, value_name = "TEMPLATE", conflicts_with_all = ["no_migrate", "dry_run"])]
    pub from_template: Option<String>,
    /// Set the role's password to database.password when it does not log in. Without it init
    /// does so anyway outside production, with a warning (clients using the old password stop
    /// working); in production it refuses.
    #[arg(long)]
    pub reset_password: bool,
    /// Take over an existing database another login role owns (it becomes database.owner's,
    /// closed to PUBLIC); refused without it, since it may be someone's own.
    #[arg(long)]
    pub take_over_database: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LocalCommand {
    /// Create (if needed) and start the cluster; a running cluster is left as it is.
    Start,
    /// Stop the cluster (fast shutdown); a stopped cluster is left as it is.
    Stop,
    /// Say whether the cluster exists and runs, where, and on which port.
    Status,
    /// Print the app's connection URL (role database.owner on database.name) on one line, for
    /// DATABASE_URL or psql; --admin prints the superuser's.
    Url {
        /// The superuser's URL instead of the app's.
        #[arg(long)]
        admin: bool,
    },
    /// Stop the cluster and delete its data directory (asks for confirmation, or --yes).
    Destroy,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MigrateCommand {
    /// Apply pending migrations (to head, or up to --to).
    Up {
        /// Stop after this version.
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
    },
    /// Revert applied migrations, newest first (needs --to, --steps or --base).
    Down(DownArgs),
    /// Show the current version, applied and pending migrations, and checksum problems.
    Status(StatusArgs),
    /// List every applied migration: version, name, applied at, duration, applied by.
    History,
    /// Print the exact SQL that `up` (or `down` with --down) would run; changes nothing.
    Plan(PlanArgs),
    /// Compare the live schema with what the applied migrations make; exit 1 on any drift.
    #[command(after_help = "Examples:\n  \
        aidock-provision migrate verify                       # the live database against the migrations\n  \
        aidock-provision migrate verify --models app.models:Base   # the backend's models against them (CI)")]
    Verify {
        /// Also print (never run) the SQL that turns the live schema back into the migrations' result.
        #[arg(long, conflicts_with = "models")]
        fix: bool,
        /// Compare the backend's SQLAlchemy models (MODULE:ATTR, a declarative base or a
        /// MetaData) with what the migrations make, instead of the live database: each
        /// difference with the model declaration that would agree; exit 1 on any. The check a
        /// backend's CI runs instead of `alembic check`. Run from where the module imports.
        #[arg(long, value_name = "MODULE:ATTR")]
        models: Option<String>,
        /// The Python that imports the models [default: $VIRTUAL_ENV/bin/python, else python3].
        #[arg(long, value_name = "PATH", requires = "models")]
        python: Option<std::path::PathBuf>,
    },
    /// Write the next migration pair from a desired schema (an edited `pg_dump -s`, or any SQL).
    ///
    /// Both schemas are built in scratch databases and compared by the server; the pair is
    /// tested (up, then down) before it is written. Indexes on existing tables get a
    /// `-- aidock:no-transaction` pair of their own (CREATE INDEX CONCURRENTLY); new enum values
    /// one before the main pair.
    #[command(after_help = "Examples:\n  \
        pg_dump -s \"$(aidock-provision local url)\" > desired.sql   # then edit desired.sql\n  \
        aidock-provision migrate diff add_avatar --to desired.sql --print\n  \
        aidock-provision migrate diff initial_tables --to-models app.models:Base   # from the backend's models")]
    Diff(DiffArgs),
    /// Adopt a database whose schema other tools made (the backend's Alembic or create_all),
    /// keeping every row.
    ///
    /// Compares it with the schema migrations 1..V make (built in a scratch database).
    /// Identical: records 1..V as baselined and stamps alembic_version. Different: lists every
    /// difference (safe, blocked by data with the rows, lossy) and exits 1, changing nothing.
    /// --dry-run prints the transaction --reconcile would run; --reconcile runs it.
    #[command(after_help = "Examples:\n  \
        aidock-provision migrate baseline                     # compare; identical: record and stamp\n  \
        aidock-provision migrate baseline --dry-run           # the exact transaction\n  \
        aidock-provision migrate baseline --reconcile --yes   # run it")]
    Baseline(BaselineArgs),
    /// Make what the live database has beyond its migrations the next migration of ours.
    ///
    /// For an Alembic revision of the backend's own applied after adoption (or a change made by
    /// hand): the pair from what the applied migrations make to the live schema is written into
    /// the project's migrations directory, tested first in a scratch database (replay + up =
    /// the live schema; down comes back), recorded as applied (`migrate history` says captured,
    /// and from which revision) and `alembic_version` stamped at the new head, in one
    /// transaction. With --alembic-dir, the backend's revision files it replaces are removed
    /// and our revision files exported there, so the backend's history is one line. A revision
    /// that changed no schema (a data migration) is recorded as such. Asks for confirmation (or
    /// --yes).
    #[command(after_help = "Examples:
          aidock-provision migrate capture add_phone_number --alembic-dir ../Back/alembic/versions --yes
          aidock-provision migrate capture hotfix_index --yes   # a change made by hand")]
    Capture(CaptureArgs),
    /// Check migrations for DDL that locks or rewrites busy tables (the squawk rule set).
    ///
    /// Offline: the given files, else every up script (--pending: only those the database has
    /// not applied). Each finding names the rule, file:line and the safer form; exit 1 on
    /// findings. In the production profile `migrate up` and `init` refuse a migration with
    /// findings unless the statement carries `-- squawk-ignore RULE` (say why after it).
    #[command(after_help = "Examples:\n  \
        aidock-provision migrate lint                      # every up script\n  \
        aidock-provision migrate lint --pending            # what `migrate up` would run\n  \
        aidock-provision migrate lint sql/0001_initial_tables.up.sql  # one file")]
    Lint(LintArgs),
    /// Create the next NNNN_NAME.up.sql / .down.sql pair in the migrations directory.
    New {
        /// Lower-case letters, digits and underscores, e.g. add_user_avatar.
        name: String,
    },
    /// Write one Alembic revision file per migration into DIR (the backend's alembic/versions),
    /// so its `alembic current` and `alembic upgrade head` keep working. The files change no
    /// schema: upgrade() checks that aidock-provision applied the migration, downgrade() refuses.
    /// The first revises the backend's own last revision in DIR (the one an adopted database's
    /// alembic_version held), so the history is one line and `alembic upgrade head` is a no-op.
    #[command(name = "alembic-export")]
    AlembicExport {
        /// The Alembic versions directory, e.g. Back/alembic/versions.
        dir: std::path::PathBuf,
        /// Overwrite files with one of our revision ids but other content.
        #[arg(long)]
        force: bool,
        /// The revision our first one follows [default: the backend's own head in DIR, found from
        /// its files' revision / down_revision; none when it has none]. `none`: start a history
        /// of our own.
        #[arg(long, value_name = "REV")]
        down_revision: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("down_target").required(true).multiple(false))]
pub struct DownArgs {
    /// Revert every migration above this version.
    #[arg(long, value_name = "VERSION", group = "down_target")]
    pub to: Option<i64>,
    /// Revert this many of the newest migrations.
    #[arg(long, value_name = "N", group = "down_target")]
    pub steps: Option<u32>,
    /// Revert everything (the ledger tables stay).
    #[arg(long, group = "down_target")]
    pub base: bool,
    /// Allow this in the production profile (it still asks for confirmation unless --yes).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// The new migration's name: lower-case letters, digits and underscores.
    pub name: String,
    /// The backend's Alembic versions directory (e.g. Back/alembic/versions): the revision
    /// files the capture replaces are removed from it and ours exported into it.
    #[arg(long, value_name = "DIR")]
    pub alembic_dir: Option<std::path::PathBuf>,
    /// Write steps that lose data (a dropped column the live database no longer has) instead of
    /// refusing them.
    #[arg(long)]
    pub allow_data_loss: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// Adopt as this version (default: the newest migration).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i64>,
    /// Run the DDL, the ledger rows and the stamp in one transaction.
    #[arg(long, conflicts_with = "dry_run")]
    pub reconcile: bool,
    /// Print the exact transaction --reconcile would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Let --reconcile drop columns or tables, or narrow types (each is named first).
    #[arg(long)]
    pub allow_data_loss: bool,
    /// Allow --allow-data-loss in the production profile.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LintArgs {
    /// Files to check (default: every up script of the migrations).
    pub files: Vec<std::path::PathBuf>,
    /// Only the migrations the database has not applied (connects to it).
    #[arg(long, conflicts_with = "files")]
    pub pending: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The new migration's name: lower-case letters, digits and underscores.
    pub name: String,
    /// The desired schema: a .sql file or a directory of them (applied in name order).
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "to_models",
        conflicts_with = "to_models"
    )]
    pub to: Option<std::path::PathBuf>,
    /// The desired schema is what SQLAlchemy's `create_all` makes of these models (MODULE:ATTR,
    /// a declarative base or a MetaData), run by the backend's own Python from the current
    /// directory (as `alembic revision --autogenerate` would, but compared by the server).
    #[arg(long, value_name = "MODULE:ATTR")]
    pub to_models: Option<String>,
    /// The Python that imports the models [default: $VIRTUAL_ENV/bin/python, else python3].
    #[arg(long, value_name = "PATH", requires = "to_models")]
    pub python: Option<std::path::PathBuf>,
    /// Print the files to stdout instead of writing them.
    #[arg(long)]
    pub print: bool,
    /// Write the pair even though it drops tables or columns or narrows types (they are named).
    #[arg(long)]
    pub allow_data_loss: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Plan a downgrade instead (with --to, --steps or --base).
    #[arg(long)]
    pub down: bool,
    /// Target version (up: stop after it; down: revert everything above it).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i64>,
    /// With --down: revert this many migrations.
    #[arg(long, value_name = "N", requires = "down")]
    pub steps: Option<u32>,
    /// With --down: revert everything.
    #[arg(long, requires = "down")]
    pub base: bool,
    /// Do not connect: plan as if no migration were applied.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub dev: DevArgs,
    /// Reset existing reference rows (and test users) to the seed files' values.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// Allow this in the production profile (it still asks for confirmation unless --yes).
    #[arg(long)]
    pub force: bool,
}
