//! Read a database's schema from `pg_catalog` as data: one entry per object, keyed by kind and
//! name, valued by a definition the server itself normalises (`pg_get_*def`, `format_type`), so
//! two databases built by the same DDL read the same and no SQL parser guesses at equivalence.
//!
//! Covered: schemas, tables and partitions (attached or not, partition key, inheritance, RLS,
//! storage parameters), columns (type, collation, nullability, default, identity, generated),
//! constraints (also of domains), indexes (definition, validity, the partitioned index each is
//! attached to), views and materialized views,
//! sequences (all parameters), functions, procedures and aggregates, triggers (definition and
//! enabled state), types (enums with value order, domains, composite and range types), RLS
//! policies, extensions (one object each, not their members), publications, comments,
//! privileges and owners, the database owner's default privileges, across every non-system
//! schema. Objects that belong to an extension
//! are the extension's, and `exclude` names tables (with everything on them) to leave out.

use std::collections::BTreeMap;

use anyhow::Context as _;
use tokio_postgres::GenericClient;

/// A database's objects: `"kind name"` -> definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub objects: BTreeMap<(String, String), String>,
    /// Indexes whose `indisvalid` is false (a failed `CREATE INDEX CONCURRENTLY`).
    pub invalid_indexes: Vec<String>,
    /// With [`ReadOptions::meta`]: each object's parts as JSON (column number and pieces, a
    /// relation's partitioning, a constraint's type ...), what DDL is written from.
    pub meta: BTreeMap<(String, String), serde_json::Value>,
    /// With [`ReadOptions::meta`]: what each object needs to exist first (from `pg_depend`).
    pub deps: BTreeMap<(String, String), std::collections::BTreeSet<(String, String)>>,
}

/// Tables in schema `public` to leave out (the migration engine's own ledgers).
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    pub exclude: &'a [&'a str],
    /// Also read [`Catalog::meta`] and [`Catalog::deps`] (for writing DDL; verify needs neither).
    pub meta: bool,
    /// Read the platform's schemas (those outside `migrate.schemas`, see [`super::scope`])
    /// instead of the migrations' own.
    pub platform: bool,
}

/// What a copy of the platform's schemas leaves out ([`read_platform`]).
const PLATFORM_FILTER: &str = "
      AND /*OWNER*/ <> (SELECT oid FROM pg_roles WHERE rolname = /*APP*/)";

/// Every object query returns (kind, name, definition). `rels` holds the relations in scope, and
/// `name` renders `schema.object` (bare in schema public, as psql shows it).
const SCOPE: &str = "
WITH ns AS (
    SELECT n.oid, n.nspname FROM pg_namespace n
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      -- Our bookkeeping's own schema (the ledger, seed --dev's run records): no migration makes it.
      AND n.nspname <> 'aidock_provision'
      -- migrate.schemas: the migrations' own schemas (or, reading the platform's, the others).
      AND /*SCOPE*/
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                      AND d.objid = n.oid AND d.deptype = 'e')
      /*NSFILTER*/
), rels AS (
    SELECT c.*, CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END
                || quote_ident(c.relname) AS name
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    WHERE NOT (ns.nspname = 'public' AND c.relname = ANY($1::text[]))
      -- seed --dev's staging tables (unlogged, short-lived; a killed run's wait for the next).
      AND NOT (ns.nspname = 'public' AND c.relname LIKE 'aidock\\_seed\\_stage\\_%')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
      AND NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid
                      JOIN pg_namespace tn ON tn.oid = t.relnamespace
                      WHERE x.indexrelid = c.oid AND tn.nspname = 'public' AND t.relname = ANY($1::text[]))
      AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                      JOIN pg_namespace tn ON tn.oid = t.relnamespace
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                        AND d.refclassid = 'pg_class'::regclass
                        AND tn.nspname = 'public' AND t.relname = ANY($1::text[]))
      /*RELFILTER*/
), procs AS (
    SELECT p.*, CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END
                || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name
    FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
    WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
      /*PROCFILTER*/
), types AS (
    SELECT t.*, CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END
                || quote_ident(t.typname) AS name
    FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'r', 'c')
      AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                      AND d.objid = t.oid AND d.deptype = 'e')
      /*TYPEFILTER*/
), acls AS (
    -- ACLs that differ from the defaults (as a set: a default restored by GRANTs reads as none).
    SELECT what, acl FROM (
        SELECT name AS what, relacl AS acl,
               acldefault(CASE WHEN relkind = 'S' THEN 's' ELSE 'r' END::\"char\", relowner) AS dflt
        FROM rels WHERE relkind <> 'i'
        UNION ALL
        SELECT r.name || '.' || quote_ident(a.attname), a.attacl, acldefault('c', r.relowner) FROM rels r
          JOIN pg_attribute a ON a.attrelid = r.oid WHERE a.attnum > 0
        UNION ALL
        SELECT 'schema ' || quote_ident(n.nspname), p.nspacl, acldefault('n', p.nspowner)
        FROM ns n JOIN pg_namespace p ON p.oid = n.oid
        UNION ALL
        SELECT name, proacl, acldefault('f', proowner) FROM procs
        UNION ALL
        SELECT 'type ' || name, typacl, acldefault('T', typowner) FROM types
    ) x WHERE acl IS NOT NULL AND NOT (acl @> dflt AND acl <@ dflt)
)
";

/// The key of a default-privileges entry `a` (its schema `n`, when in one): `on tables`,
/// `on functions in schema app`.
const DEFACL_NAME: &str = "'on ' || CASE a.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                              WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' END
            || coalesce(' in schema ' || quote_ident(n.nspname), '')";

/// Which default-privileges entries are read: the database owner's, global or in a schema in
/// scope.
const DEFACL_SCOPE: &str =
    "a.defaclrole = (SELECT datdba FROM pg_database WHERE datname = current_database())
       AND (a.defaclnamespace = 0 OR n.oid IS NOT NULL)";

/// One query per kind (each after [`SCOPE`]).
const KINDS: &[&str] = &[
    // Schemas and their owners.
    "SELECT 'schema'::text, quote_ident(nspname), ''::text FROM ns
     UNION ALL
     SELECT 'owner', 'schema ' || quote_ident(n.nspname), pg_get_userbyid(p.nspowner)::text FROM ns n
       JOIN pg_namespace p ON p.oid = n.oid",
    // Tables, partitions, views, sequences ...: what they are and how they are stored.
    "SELECT CASE relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                         WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                         WHEN 'f' THEN 'foreign table' END,
            name,
            concat_ws(' ',
              CASE relkind WHEN 'p' THEN 'partitioned table' WHEN 'r' THEN 'table' WHEN 'v' THEN 'view'
                           WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' END,
              CASE relpersistence WHEN 'u' THEN 'UNLOGGED' END,
              CASE WHEN relkind IN ('r', 'p') THEN
                   CASE relreplident WHEN 'f' THEN 'REPLICA IDENTITY FULL' WHEN 'n' THEN 'REPLICA IDENTITY NOTHING'
                        WHEN 'i' THEN 'REPLICA IDENTITY USING INDEX ' ||
                             coalesce((SELECT quote_ident(ic.relname) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
                                       WHERE x.indrelid = r.oid AND x.indisreplident), '?') END END,
              CASE WHEN relkind = 'p' THEN 'PARTITION BY ' || pg_get_partkeydef(oid) END,
              CASE WHEN relispartition THEN 'PARTITION OF ' ||
                   (SELECT string_agg(p.oid::regclass::text, ', ') FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                    WHERE i.inhrelid = r.oid) || ' ' || pg_get_expr(relpartbound, oid) END,
              CASE WHEN NOT relispartition AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = r.oid)
                   THEN 'INHERITS (' || (SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno)
                                        FROM pg_inherits i WHERE i.inhrelid = r.oid) || ')' END,
              CASE WHEN relrowsecurity THEN 'ROW LEVEL SECURITY' END,
              CASE WHEN relforcerowsecurity THEN 'FORCE ROW LEVEL SECURITY' END,
              CASE WHEN reloptions IS NOT NULL THEN 'WITH (' || array_to_string(reloptions, ', ') || ')' END,
              CASE WHEN relkind IN ('v', 'm') THEN 'AS ' || pg_get_viewdef(oid) END)
     FROM rels r WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
    // Columns of tables and foreign tables.
    "SELECT 'column', r.name || '.' || quote_ident(a.attname),
            format_type(a.atttypid, a.atttypmod)
            || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                    THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
            || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
            || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS ' || pg_get_expr(d.adbin, d.adrelid) || ' STORED'
                    WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END
            || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                  WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
            -- An identity's sequence options are the column's (its sequence is internal).
            || coalesce((SELECT format(' (START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s)',
                                       sq.seqstart, sq.seqincrement, sq.seqmin, sq.seqmax, sq.seqcache,
                                       CASE WHEN sq.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END)
                         FROM pg_depend dp JOIN pg_sequence sq ON sq.seqrelid = dp.objid
                         WHERE a.attidentity <> '' AND dp.classid = 'pg_class'::regclass
                           AND dp.refclassid = 'pg_class'::regclass AND dp.refobjid = r.oid
                           AND dp.refobjsubid = a.attnum AND dp.deptype = 'i'), '')
            || CASE WHEN a.attstorage <> t.typstorage THEN ' STORAGE ' || a.attstorage::text ELSE '' END
     FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'f')",
    // Constraints of tables and of domains. Left out: the copies of a foreign key PostgreSQL
    // makes on the referencing table, one per partition of a partitioned referenced table
    // (named `..._fkey1`, `..._fkey2` in the order partitions came): they follow from the one
    // foreign key, cannot be changed or dropped, and pg_dump does not show them.
    "SELECT 'constraint', r.name || '.' || quote_ident(con.conname), pg_get_constraintdef(con.oid)
     FROM rels r JOIN pg_constraint con ON con.conrelid = r.oid
     WHERE NOT (con.contype = 'f' AND con.conparentid <> 0 AND EXISTS (
       SELECT 1 FROM pg_constraint parent WHERE parent.oid = con.conparentid AND parent.conrelid = con.conrelid))
     UNION ALL
     SELECT 'constraint', 'domain ' || t.name || '.' || quote_ident(con.conname), pg_get_constraintdef(con.oid)
     FROM types t JOIN pg_constraint con ON con.contypid = t.oid",
    // Indexes.
    "SELECT 'index', i.name, pg_get_indexdef(x.indexrelid)
     FROM pg_index x JOIN rels i ON i.oid = x.indexrelid",
    // Which partitioned index each partition's index is attached to (a partitioned index is
    // valid once every partition has one).
    "SELECT 'index attachment', i.name, p.name
     FROM rels i JOIN pg_inherits h ON h.inhrelid = i.oid JOIN rels p ON p.oid = h.inhparent
     WHERE i.relkind IN ('i', 'I')",
    // Sequences: every parameter, and the column that owns it.
    "SELECT 'sequence', r.name,
            format('AS %s START %s INCREMENT %s MINVALUE %s MAXVALUE %s CACHE %s%s%s',
                   format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
                   CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END,
                   (SELECT ' OWNED BY ' || d.refobjid::regclass::text || '.' || quote_ident(a.attname)
                    FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid AND d.deptype IN ('a', 'i')
                      AND d.refclassid = 'pg_class'::regclass LIMIT 1))
     FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid",
    // Triggers, with their enabled state.
    "SELECT 'trigger', r.name || '.' || quote_ident(t.tgname),
            pg_get_triggerdef(t.oid)
            || CASE t.tgenabled WHEN 'D' THEN ' (DISABLED)' WHEN 'R' THEN ' (ENABLED REPLICA)'
                                WHEN 'A' THEN ' (ENABLED ALWAYS)' ELSE '' END
     FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid WHERE NOT t.tgisinternal /*TRIGFILTER*/",
    // Functions and procedures (pg_get_functiondef carries volatility, security, language, body).
    "SELECT CASE prokind WHEN 'p' THEN 'procedure' ELSE 'function' END, name, pg_get_functiondef(oid)
     FROM procs WHERE prokind IN ('f', 'p', 'w')",
    // Aggregates.
    "SELECT 'aggregate', p.name,
            format('SFUNC %s STYPE %s%s%s%s%s%s', a.aggtransfn::regproc, format_type(a.aggtranstype, NULL),
                   CASE WHEN a.aggfinalfn <> 0 THEN ' FINALFUNC ' || a.aggfinalfn::regproc ELSE '' END,
                   CASE WHEN a.aggcombinefn <> 0 THEN ' COMBINEFUNC ' || a.aggcombinefn::regproc ELSE '' END,
                   CASE WHEN a.agginitval IS NOT NULL THEN ' INITCOND ' || quote_literal(a.agginitval) ELSE '' END,
                   CASE WHEN a.aggsortop <> 0 THEN ' SORTOP ' || a.aggsortop::regoperator ELSE '' END,
                   ' ' || p.provolatile::text || p.proparallel::text)
     FROM procs p JOIN pg_aggregate a ON a.aggfnoid = p.oid",
    // Types: enums (values in order), domains, composite and range types.
    "SELECT 'type', t.name,
            CASE t.typtype
              WHEN 'e' THEN 'ENUM (' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                         FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
              WHEN 'd' THEN 'DOMAIN ' || format_type(t.typbasetype, t.typtypmod)
                            || CASE WHEN t.typcollation <> 0 AND t.typcollation <>
                                         (SELECT typcollation FROM pg_type WHERE oid = t.typbasetype)
                                    THEN ' COLLATE ' || t.typcollation::regcollation::text ELSE '' END
                            || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                            || coalesce(' DEFAULT ' || t.typdefault, '')
              WHEN 'r' THEN 'RANGE (SUBTYPE ' || (SELECT format_type(rngsubtype, NULL) FROM pg_range WHERE rngtypid = t.oid) || ')'
              WHEN 'c' THEN 'COMPOSITE (' || (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                              FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) || ')'
            END
     FROM types t",
    // Row-level security policies.
    "SELECT 'policy', r.name || '.' || quote_ident(p.polname),
            format('%s FOR %s TO %s%s%s', CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                   CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                 WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                   (SELECT string_agg(CASE WHEN x = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x)) END, ', ' ORDER BY 1)
                    FROM unnest(p.polroles) x),
                   coalesce(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', ''),
                   coalesce(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', ''))
     FROM rels r JOIN pg_policy p ON p.polrelid = r.oid",
    // Collations made with CREATE COLLATION (the server's own are in pg_catalog). Fields read
    // through to_jsonb: their names change across versions (colliculocale, colllocale).
    "SELECT 'collation', CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END
                         || quote_ident(c.collname),
            concat_ws(' ', 'provider ' || c.collprovider::text, 'deterministic ' || c.collisdeterministic::text,
                      'collate ' || quote_literal(to_jsonb(c) ->> 'collcollate'),
                      'ctype ' || quote_literal(to_jsonb(c) ->> 'collctype'),
                      'locale ' || quote_literal(coalesce(to_jsonb(c) ->> 'colliculocale', to_jsonb(c) ->> 'colllocale')),
                      'rules ' || quote_literal(to_jsonb(c) ->> 'collicurules'))
     FROM pg_collation c JOIN ns ON ns.oid = c.collnamespace
     WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_collation'::regclass
                       AND d.objid = c.oid AND d.deptype = 'e')",
    // Extensions, as one object each.
    "SELECT 'extension', quote_ident(e.extname), 'VERSION ' || e.extversion || ' SCHEMA ' || quote_ident(n.nspname)
     FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' AND /*EXTSCOPE*/",
    // Publications.
    "SELECT 'publication', quote_ident(p.pubname),
            concat_ws(' ', CASE WHEN p.puballtables THEN 'FOR ALL TABLES' END,
                      'insert=' || p.pubinsert, 'update=' || p.pubupdate, 'delete=' || p.pubdelete,
                      'truncate=' || p.pubtruncate,
                      (SELECT 'TABLES ' || string_agg(pr.prrelid::regclass::text, ', ' ORDER BY 1)
                       FROM pg_publication_rel pr WHERE pr.prpubid = p.oid))
     FROM pg_publication p",
    // Owners of relations, routines and types.
    "SELECT 'owner', name, pg_get_userbyid(relowner)::text FROM rels WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
     UNION ALL
     SELECT 'owner', name, pg_get_userbyid(proowner)::text FROM procs
     UNION ALL
     SELECT 'owner', 'type ' || name, pg_get_userbyid(typowner)::text FROM types WHERE typtype <> 'c'",
    // Privileges (ACLs), as sorted grantee=privileges lists (grantees quoted as names are);
    // none means the defaults.
    "SELECT 'privileges', what, (SELECT string_agg(entry, ', ' ORDER BY entry) FROM (
               SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END || '='
                      || string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',' ORDER BY a.privilege_type) AS entry
               FROM aclexplode(acl) a GROUP BY a.grantee) e)
     FROM acls",
    // The database owner's default privileges (ALTER DEFAULT PRIVILEGES: the migrations run as
    // that role, so what it grants to tables it makes later is part of the schema), global or
    // in a schema in scope, as sorted grantee=privileges lists; not in the platform's read.
    "SELECT 'default privileges', /*DEFACLNAME*/,
            coalesce((SELECT string_agg(entry, ', ' ORDER BY entry) FROM (
               SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END || '='
                      || string_agg(x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END, ',' ORDER BY x.privilege_type) AS entry
               FROM aclexplode(a.defaclacl) x GROUP BY x.grantee) e), 'nothing')
     FROM pg_default_acl a LEFT JOIN ns n ON n.oid = a.defaclnamespace
     WHERE /*DEFACLSCOPE*/",
    // Comments on anything in scope, keyed by the commented object's own key (`comment column
    // users.email`), built from catalog parts like every other key: never description text.
    "SELECT 'comment', k.kind || ' ' || k.name, d.description
     FROM pg_description d JOIN (
        SELECT 'pg_class'::regclass::oid AS classid, r.oid AS objid, 0 AS objsubid,
               CASE r.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                              WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                              WHEN 'f' THEN 'foreign table' WHEN 'c' THEN 'type' ELSE 'index' END AS kind,
               r.name
        FROM rels r
        UNION ALL
        SELECT 'pg_class'::regclass::oid, r.oid, a.attnum, 'column', r.name || '.' || quote_ident(a.attname)
        FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid WHERE a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'pg_proc'::regclass::oid, p.oid, 0,
               CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END, p.name
        FROM procs p
        UNION ALL
        SELECT 'pg_type'::regclass::oid, t.oid, 0, 'type', t.name FROM types t
        UNION ALL
        SELECT 'pg_constraint'::regclass::oid, c.oid, 0, 'constraint', r.name || '.' || quote_ident(c.conname)
        FROM rels r JOIN pg_constraint c ON c.conrelid = r.oid
        UNION ALL
        SELECT 'pg_constraint'::regclass::oid, c.oid, 0, 'constraint', 'domain ' || t.name || '.' || quote_ident(c.conname)
        FROM types t JOIN pg_constraint c ON c.contypid = t.oid
        UNION ALL
        SELECT 'pg_trigger'::regclass::oid, g.oid, 0, 'trigger', r.name || '.' || quote_ident(g.tgname)
        FROM rels r JOIN pg_trigger g ON g.tgrelid = r.oid WHERE NOT g.tgisinternal
        UNION ALL
        SELECT 'pg_policy'::regclass::oid, p.oid, 0, 'policy', r.name || '.' || quote_ident(p.polname)
        FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
        UNION ALL
        SELECT 'pg_namespace'::regclass::oid, n.oid, 0, 'schema', quote_ident(n.nspname) FROM ns n
        UNION ALL
        SELECT 'pg_extension'::regclass::oid, e.oid, 0, 'extension', quote_ident(e.extname)
        FROM pg_extension e WHERE e.extname <> 'plpgsql'
     ) k ON k.classid = d.classoid AND k.objid = d.objoid AND k.objsubid = d.objsubid",
    // Invalid indexes (reported on their own). A partitioned index is valid once every
    // partition has an index attached to it: that is read as its attachments.
    "SELECT 'invalid', i.name, '' FROM pg_index x JOIN rels i ON i.oid = x.indexrelid
     WHERE NOT x.indisvalid AND i.relkind = 'i'",
];

/// The parts DDL is written from, as `('~kind', name, json)` rows (with `meta`).
const META: &[&str] = &[
    "SELECT '~column', r.name || '.' || quote_ident(a.attname),
            json_build_object('num', a.attnum, 'local', a.attislocal, 'table', r.name,
              'name', quote_ident(a.attname), 'type', format_type(a.atttypid, a.atttypmod),
              'collate', CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                              THEN a.attcollation::regcollation::text END,
              'notnull', a.attnotnull,
              'default', CASE WHEN a.attgenerated <> 's' THEN pg_get_expr(d.adbin, d.adrelid) END,
              'generated', CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) END,
              'identity', CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END,
              'identity_seq', (SELECT json_build_object('start', sq.seqstart::text, 'increment', sq.seqincrement::text,
                                        'min', sq.seqmin::text, 'max', sq.seqmax::text, 'cache', sq.seqcache::text,
                                        'cycle', sq.seqcycle)
                               FROM pg_depend dp JOIN pg_sequence sq ON sq.seqrelid = dp.objid
                               WHERE a.attidentity <> '' AND dp.classid = 'pg_class'::regclass
                                 AND dp.refclassid = 'pg_class'::regclass AND dp.refobjid = r.oid
                                 AND dp.refobjsubid = a.attnum AND dp.deptype = 'i'),
              'storage', CASE WHEN a.attstorage <> t.typstorage THEN
                   CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END END)::text
     FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'f')",
    "SELECT '~rel', r.name,
            json_build_object('relkind', r.relkind::text, 'unlogged', r.relpersistence = 'u',
              'partkey', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
              'parent', CASE WHEN r.relispartition AND r.relkind IN ('r', 'p', 'f') THEN
                   (SELECT p.name FROM pg_inherits i JOIN rels p ON p.oid = i.inhparent WHERE i.inhrelid = r.oid LIMIT 1) END,
              'bound', CASE WHEN r.relispartition AND r.relkind IN ('r', 'p', 'f') THEN pg_get_expr(r.relpartbound, r.oid) END,
              'inherits', CASE WHEN NOT r.relispartition AND r.relkind IN ('r', 'p') THEN
                   (SELECT json_agg(p.name ORDER BY i.inhseqno) FROM pg_inherits i JOIN rels p ON p.oid = i.inhparent
                    WHERE i.inhrelid = r.oid) END,
              'rls', r.relrowsecurity, 'force_rls', r.relforcerowsecurity, 'options', r.reloptions,
              'replident', r.relreplident::text,
              'replident_index', (SELECT ri.name FROM pg_index x JOIN rels ri ON ri.oid = x.indexrelid
                                  WHERE x.indrelid = r.oid AND x.indisreplident),
              'viewdef', CASE WHEN r.relkind IN ('v', 'm') THEN pg_get_viewdef(r.oid) END,
              'identity_seq', r.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                                         AND d.objid = r.oid AND d.deptype = 'i'),
              'index_table', (SELECT t.name FROM pg_index x JOIN rels t ON t.oid = x.indrelid WHERE x.indexrelid = r.oid),
              'index_constraint', (SELECT t.name || '.' || quote_ident(c.conname) FROM pg_constraint c JOIN rels t ON t.oid = c.conrelid
                                   WHERE c.conindid = r.oid AND c.contype IN ('p', 'u', 'x') LIMIT 1),
              'index_partition', r.relkind IN ('i', 'I') AND r.relispartition,
              'index_parent', CASE WHEN r.relkind IN ('i', 'I') AND r.relispartition THEN
                   (SELECT p.name FROM pg_inherits i JOIN rels p ON p.oid = i.inhparent WHERE i.inhrelid = r.oid LIMIT 1) END)::text
     FROM rels r",
    "SELECT '~constraint', r.name || '.' || quote_ident(con.conname),
            json_build_object('type', con.contype::text, 'on', r.name, 'name', quote_ident(con.conname),
              'inherited', con.conparentid <> 0 OR NOT con.conislocal)::text
     FROM rels r JOIN pg_constraint con ON con.conrelid = r.oid
     WHERE NOT (con.contype = 'f' AND con.conparentid <> 0 AND EXISTS (
       SELECT 1 FROM pg_constraint parent WHERE parent.oid = con.conparentid AND parent.conrelid = con.conrelid))
     UNION ALL
     SELECT '~constraint', 'domain ' || t.name || '.' || quote_ident(con.conname),
            json_build_object('type', con.contype::text, 'domain', t.name, 'name', quote_ident(con.conname),
              'inherited', false)::text
     FROM types t JOIN pg_constraint con ON con.contypid = t.oid",
    "SELECT '~trigger', r.name || '.' || quote_ident(t.tgname),
            json_build_object('on', r.name, 'name', quote_ident(t.tgname), 'inherited', t.tgparentid <> 0,
                              'enabled', t.tgenabled::text)::text
     FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid WHERE NOT t.tgisinternal",
    "SELECT '~policy', r.name || '.' || quote_ident(p.polname),
            json_build_object('on', r.name, 'name', quote_ident(p.polname),
              'permissive', p.polpermissive,
              'cmd', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                   WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
              'roles', (SELECT json_agg(CASE WHEN x = 0 THEN NULL ELSE pg_get_userbyid(x)::text END ORDER BY 1)
                        FROM unnest(p.polroles) x),
              'using', pg_get_expr(p.polqual, p.polrelid),
              'check', pg_get_expr(p.polwithcheck, p.polrelid))::text
     FROM rels r JOIN pg_policy p ON p.polrelid = r.oid",
    "SELECT '~privileges', what,
            (SELECT json_agg(json_build_object(
                      'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                      'privilege', a.privilege_type, 'grantable', a.is_grantable)
                    ORDER BY a.n)
             FROM aclexplode(acl) WITH ORDINALITY a(grantor, grantee, privilege_type, is_grantable, n))::text
     FROM acls",
    "SELECT '~default privileges', /*DEFACLNAME*/,
            json_build_object('role', pg_get_userbyid(a.defaclrole)::text, 'schema', n.nspname::text,
              'on', CASE a.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                         WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END,
              'grants', coalesce((SELECT json_agg(json_build_object(
                      'grantee', CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee)::text END,
                      'privilege', x.privilege_type, 'grantable', x.is_grantable) ORDER BY x.n)
                  FROM aclexplode(a.defaclacl) WITH ORDINALITY x(grantor, grantee, privilege_type, is_grantable, n)),
                  '[]'::json))::text
     FROM pg_default_acl a LEFT JOIN ns n ON n.oid = a.defaclnamespace
     WHERE /*DEFACLSCOPE*/",
    "SELECT '~collation', CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END
                          || quote_ident(c.collname),
            json_build_object('provider', c.collprovider::text, 'deterministic', c.collisdeterministic::text,
              'collate', to_jsonb(c) ->> 'collcollate', 'ctype', to_jsonb(c) ->> 'collctype',
              'locale', coalesce(to_jsonb(c) ->> 'colliculocale', to_jsonb(c) ->> 'colllocale'),
              'rules', to_jsonb(c) ->> 'collicurules')::text
     FROM pg_collation c JOIN ns ON ns.oid = c.collnamespace
     WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_collation'::regclass
                       AND d.objid = c.oid AND d.deptype = 'e')",
    "SELECT '~extension', quote_ident(e.extname),
            json_build_object('schema', n.nspname, 'version', e.extversion)::text
     FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' AND /*EXTSCOPE*/",
    "SELECT '~type', t.name,
            json_build_object('typtype', t.typtype::text,
              'values', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
              'base', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
              'collate', CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <>
                                   (SELECT typcollation FROM pg_type WHERE oid = t.typbasetype)
                              THEN t.typcollation::regcollation::text END,
              'notnull', t.typnotnull, 'default', t.typdefault,
              'subtype', (SELECT format_type(rngsubtype, NULL) FROM pg_range WHERE rngtypid = t.oid),
              'attributes', CASE WHEN t.typtype = 'c' THEN
                   (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
                    FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END)::text
     FROM types t",
    "SELECT '~sequence', r.name,
            json_build_object('type', format_type(s.seqtypid, NULL), 'start', s.seqstart::text,
              'increment', s.seqincrement::text, 'min', s.seqmin::text, 'max', s.seqmax::text,
              'cache', s.seqcache::text, 'cycle', s.seqcycle,
              'owned_by', (SELECT t.name || '.' || quote_ident(a.attname)
                           FROM pg_depend d JOIN rels t ON t.oid = d.refobjid
                           JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid AND d.deptype = 'a'
                             AND d.refclassid = 'pg_class'::regclass LIMIT 1))::text
     FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid",
    "SELECT '~routine', p.name,
            json_build_object('prokind', p.prokind::text, 'result', pg_get_function_result(p.oid),
              'arguments', pg_get_function_arguments(p.oid),
              'sfunc', a.aggtransfn::regproc::text, 'stype', format_type(a.aggtranstype, NULL),
              'finalfunc', CASE WHEN a.aggfinalfn <> 0 THEN a.aggfinalfn::regproc::text END,
              'combinefunc', CASE WHEN a.aggcombinefn <> 0 THEN a.aggcombinefn::regproc::text END,
              'initcond', a.agginitval,
              'sortop', CASE WHEN a.aggsortop <> 0 THEN (SELECT o.oprname::text FROM pg_operator o WHERE o.oid = a.aggsortop) END,
              'parallel', p.proparallel::text)::text
     FROM procs p LEFT JOIN pg_aggregate a ON a.aggfnoid = p.oid",
    "(WITH keys AS (
        SELECT 'pg_class'::regclass::oid AS classid, r.oid AS objid, 0 AS objsubid,
               CASE r.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                              WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                              WHEN 'f' THEN 'foreign table' ELSE 'index' END AS kind, r.name
        FROM rels r WHERE r.relkind <> 'c'
        UNION ALL
        SELECT 'pg_class'::regclass::oid, r.oid, a.attnum, 'column', r.name || '.' || quote_ident(a.attname)
        FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid
        WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'f')
        UNION ALL
        SELECT 'pg_class'::regclass::oid, r.oid, a.attnum,
               CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.name
        FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid
        WHERE a.attnum > 0 AND r.relkind IN ('v', 'm')
        UNION ALL
        SELECT 'pg_proc'::regclass::oid, p.oid, 0,
               CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END, p.name
        FROM procs p
        UNION ALL
        SELECT 'pg_type'::regclass::oid, t.oid, 0, 'type', t.name FROM types t
        UNION ALL
        SELECT 'pg_type'::regclass::oid, t.typarray, 0, 'type', t.name FROM types t WHERE t.typarray <> 0
        UNION ALL
        SELECT 'pg_type'::regclass::oid, r.reltype, 0, CASE r.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                                               WHEN 'f' THEN 'foreign table' ELSE 'table' END, r.name
        FROM rels r WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f') AND r.reltype <> 0
        UNION ALL
        SELECT 'pg_constraint'::regclass::oid, c.oid, 0, 'constraint', r.name || '.' || quote_ident(c.conname)
        FROM rels r JOIN pg_constraint c ON c.conrelid = r.oid
        UNION ALL
        SELECT 'pg_constraint'::regclass::oid, c.oid, 0, 'constraint', 'domain ' || t.name || '.' || quote_ident(c.conname)
        FROM types t JOIN pg_constraint c ON c.contypid = t.oid
        UNION ALL
        SELECT 'pg_trigger'::regclass::oid, g.oid, 0, 'trigger', r.name || '.' || quote_ident(g.tgname)
        FROM rels r JOIN pg_trigger g ON g.tgrelid = r.oid WHERE NOT g.tgisinternal
        UNION ALL
        SELECT 'pg_policy'::regclass::oid, p.oid, 0, 'policy', r.name || '.' || quote_ident(p.polname)
        FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
        UNION ALL
        SELECT 'pg_rewrite'::regclass::oid, w.oid, 0, CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.name
        FROM rels r JOIN pg_rewrite w ON w.ev_class = r.oid WHERE r.relkind IN ('v', 'm')
        UNION ALL
        SELECT 'pg_attrdef'::regclass::oid, d.oid, 0, 'column', r.name || '.' || quote_ident(a.attname)
        FROM rels r JOIN pg_attrdef d ON d.adrelid = r.oid
        JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        UNION ALL
        SELECT 'pg_namespace'::regclass::oid, n.oid, 0, 'schema', quote_ident(n.nspname) FROM ns n
        UNION ALL
        SELECT 'pg_collation'::regclass::oid, c.oid, 0, 'collation',
               CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END || quote_ident(c.collname)
        FROM pg_collation c JOIN ns ON ns.oid = c.collnamespace
        UNION ALL
        SELECT 'pg_extension'::regclass::oid, e.oid, 0, 'extension', quote_ident(e.extname) FROM pg_extension e
        UNION ALL
        -- What an extension brings (a type such as ltree, a function such as uuid_generate_v4)
        -- is needed through the extension.
        SELECT d.classid, d.objid, 0, 'extension', quote_ident(e.extname)
        FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
        WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
        UNION ALL
        SELECT 'pg_type'::regclass::oid, t.typarray, 0, 'extension', quote_ident(e.extname)
        FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid JOIN pg_type t ON t.oid = d.objid
        WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
          AND d.classid = 'pg_type'::regclass AND t.typarray <> 0
     )
     SELECT DISTINCT '~dep', a.kind || chr(31) || a.name, b.kind || chr(31) || b.name
     FROM pg_depend d
     JOIN keys a ON a.classid = d.classid AND a.objid = d.objid AND a.objsubid = d.objsubid
     JOIN keys b ON b.classid = d.refclassid AND b.objid = d.refobjid AND b.objsubid = d.refobjsubid
     WHERE d.deptype IN ('n', 'a') AND NOT (a.kind = 'sequence' AND d.deptype = 'a')
       AND (a.kind, a.name) <> (b.kind, b.name))",
];

/// Read every object in scope.
///
/// Definitions are printed with `search_path` set to `public` alone, so objects in `public`
/// appear bare and every other schema qualified, the same way on both sides of a comparison.
///
/// # Errors
/// A catalog query failing (the message names the kind).
pub async fn read(
    client: &impl GenericClient,
    options: ReadOptions<'_>,
) -> anyhow::Result<Catalog> {
    read_with_path(client, options, "public", None).await
}

/// The platform's schemas (outside `migrate.schemas`) as a scratch database copies them before
/// the migrations replay: read on the admin's catalog session (so the text is the server's own
/// deparse, `search_path` pinned: every name qualified), leaving out what is the app role's
/// (`app_role`'s schemas, relations, routines and types there: the replay makes what the
/// migrations made, and the admin never creates what the app controls, db::trust) and what uses
/// the migrations' objects (a view over them, a trigger calling their function, as Supabase's
/// `auth.users` trigger calling `public.handle_new_user()`): that does not exist before the replay,
/// and platform objects are not compared.
///
/// # Errors
/// A catalog query failing.
pub async fn read_platform(client: &impl GenericClient, app_role: &str) -> anyhow::Result<Catalog> {
    let options = ReadOptions {
        exclude: &[],
        meta: true,
        platform: true,
    };
    read_with_path(client, options, "pg_catalog, pg_temp", Some(app_role)).await
}

/// [`read`] on the admin's session in a database another role may write (a template's clone, for
/// its fingerprint): the same objects, with `search_path` left at `pg_catalog, pg_temp`
/// (`db::trust`), so every definition is printed schema-qualified.
///
/// # Errors
/// A catalog query failing.
pub async fn read_pinned(
    client: &impl GenericClient,
    options: ReadOptions<'_>,
) -> anyhow::Result<Catalog> {
    read_with_path(client, options, "pg_catalog, pg_temp", None).await
}

async fn read_with_path(
    client: &impl GenericClient,
    options: ReadOptions<'_>,
    path: &str,
    platform_copy_for: Option<&str>,
) -> anyhow::Result<Catalog> {
    // One round trip, one statement string: `search_path` is set for this transaction only (an
    // implicit one, or the caller's), so nothing of it outlives the read or reaches another
    // client's session behind a pooler; the excluded names are our own constants.
    let exclude = options
        .exclude
        .iter()
        .map(|t| crate::db::quote_literal(t))
        .collect::<Vec<_>>()
        .join(", ");
    let meta: &[&str] = if options.meta { META } else { &[] };
    // Schema names enter only as literals (scope's quote_literal); everything else is ours.
    let (scope, ext_scope) = if options.platform {
        (
            super::scope::platform_condition("n.nspname"),
            super::scope::platform_condition("n.nspname"),
        )
    } else {
        let owned = super::scope::condition("n.nspname");
        // Extensions: all of them as before, unless migrate.schemas limits the scope.
        (owned.clone(), owned)
    };
    // A platform copy's filters (the app's role name enters as a literal).
    let filters: Vec<(&str, String)> = match platform_copy_for {
        None => Vec::new(),
        Some(app) => {
            let not_app = |column: &str| {
                PLATFORM_FILTER
                    .replace("/*OWNER*/", column)
                    .replace("/*APP*/", &crate::db::quote_literal(app))
            };
            let owned_ns = super::scope::condition("o.nspname");
            vec![
                ("/*NSFILTER*/", not_app("n.nspowner")),
                (
                    "/*RELFILTER*/",
                    format!(
                        "{}\n      AND NOT EXISTS (SELECT 1 FROM pg_rewrite w JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                      LEFT JOIN pg_class rc ON d.refclassid = 'pg_class'::regclass AND rc.oid = d.refobjid
                      LEFT JOIN pg_proc rp ON d.refclassid = 'pg_proc'::regclass AND rp.oid = d.refobjid
                      JOIN pg_namespace o ON o.oid = coalesce(rc.relnamespace, rp.pronamespace)
                      WHERE w.ev_class = c.oid AND {owned_ns})",
                        not_app("c.relowner")
                    ),
                ),
                ("/*PROCFILTER*/", not_app("p.proowner")),
                ("/*TYPEFILTER*/", not_app("t.typowner")),
                (
                    "/*TRIGFILTER*/",
                    format!(
                        "AND NOT EXISTS (SELECT 1 FROM pg_proc f JOIN pg_namespace o ON o.oid = f.pronamespace WHERE f.oid = t.tgfoid AND {owned_ns})"
                    ),
                ),
            ]
        }
    };
    // Default privileges are the migrations' (the database owner's), never the platform's.
    let defacl_scope = if options.platform {
        "false"
    } else {
        DEFACL_SCOPE
    };
    let mut scope_sql = SCOPE
        .replace("$1::text[]", &format!("ARRAY[{exclude}]::text[]"))
        .replace("/*SCOPE*/", &scope);
    let mut kinds_sql = KINDS
        .iter()
        .chain(meta)
        .map(|k| {
            format!("({k})")
                .replace("/*EXTSCOPE*/", &ext_scope)
                .replace("/*DEFACLNAME*/", DEFACL_NAME)
                .replace("/*DEFACLSCOPE*/", defacl_scope)
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n");
    for (mark, sql) in &filters {
        scope_sql = scope_sql.replace(mark, sql);
        kinds_sql = kinds_sql.replace(mark, sql);
    }
    let query = format!("SET LOCAL search_path = {path};\n{scope_sql}{kinds_sql}");
    let rows: Vec<tokio_postgres::SimpleQueryRow> = client
        .simple_query(&query)
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .context("reading the catalog")?
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    let mut catalog = Catalog::default();
    for row in rows {
        let kind = row.get(0).map(str::to_string);
        let name = row.get(1).map(str::to_string);
        let definition = row.get(2).map(str::to_string);
        let (Some(kind), Some(name)) = (kind, name) else {
            continue;
        };
        if kind == "invalid" {
            catalog.invalid_indexes.push(name);
        } else if kind == "~dep" {
            let split = |s: &str| {
                s.split_once('\u{1f}')
                    .map(|(k, n)| (k.to_string(), n.to_string()))
            };
            if let (Some(from), Some(to)) = (split(&name), definition.as_deref().and_then(split)) {
                catalog.deps.entry(from).or_default().insert(to);
            }
        } else if let Some(kind) = kind.strip_prefix('~') {
            let value = serde_json::from_str(definition.as_deref().unwrap_or("null"))
                .with_context(|| format!("reading the catalog's {kind} {name}"))?;
            catalog.meta.insert((kind.to_string(), name), value);
        } else {
            catalog
                .objects
                .insert((kind, name), definition.unwrap_or_default());
        }
    }
    Ok(catalog)
}
