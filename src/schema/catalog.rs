//! Read a database's schema from `pg_catalog` as data: one entry per object, keyed by kind and
//! name, valued by a definition the server itself normalises (`pg_get_*def`, `format_type`), so
//! two databases built by the same DDL read the same and no SQL parser guesses at equivalence.
//!
//! Covered: schemas, tables and partitions (attached or not, partition key, inheritance, RLS,
//! storage parameters), columns (type, collation, nullability, default, identity, generated),
//! constraints (also of domains), indexes (definition, validity), views and materialized views,
//! sequences (all parameters), functions, procedures and aggregates, triggers (definition and
//! enabled state), types (enums with value order, domains, composite and range types), RLS
//! policies, extensions (one object each, not their members), publications, comments,
//! privileges and owners, across every non-system schema. Objects that belong to an extension
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
}

/// Tables in schema `public` to leave out (the migration engine's own ledgers).
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    pub exclude: &'a [&'a str],
}

/// Every object query returns (kind, name, definition). `rels` holds the relations in scope, and
/// `name` renders `schema.object` (bare in schema public, as psql shows it).
const SCOPE: &str = "
WITH ns AS (
    SELECT n.oid, n.nspname FROM pg_namespace n
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                      AND d.objid = n.oid AND d.deptype = 'e')
), rels AS (
    SELECT c.*, CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END
                || quote_ident(c.relname) AS name
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    WHERE NOT (ns.nspname = 'public' AND c.relname = ANY($1::text[]))
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
), procs AS (
    SELECT p.*, CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END
                || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name
    FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
    WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
), types AS (
    SELECT t.*, CASE WHEN ns.nspname = 'public' THEN '' ELSE quote_ident(ns.nspname) || '.' END
                || quote_ident(t.typname) AS name
    FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'r', 'c')
      AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                      AND d.objid = t.oid AND d.deptype = 'e')
)
";

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
            || CASE WHEN a.attstorage <> t.typstorage THEN ' STORAGE ' || a.attstorage::text ELSE '' END
     FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'f')",
    // Constraints of tables and of domains.
    "SELECT 'constraint', r.name || '.' || quote_ident(con.conname), pg_get_constraintdef(con.oid)
     FROM rels r JOIN pg_constraint con ON con.conrelid = r.oid
     UNION ALL
     SELECT 'constraint', 'domain ' || t.name || '.' || quote_ident(con.conname), pg_get_constraintdef(con.oid)
     FROM types t JOIN pg_constraint con ON con.contypid = t.oid",
    // Indexes.
    "SELECT 'index', i.name, pg_get_indexdef(x.indexrelid)
     FROM pg_index x JOIN rels i ON i.oid = x.indexrelid",
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
     FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid WHERE NOT t.tgisinternal",
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
                   (SELECT string_agg(CASE WHEN x = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x)::text END, ', ' ORDER BY 1)
                    FROM unnest(p.polroles) x),
                   coalesce(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', ''),
                   coalesce(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', ''))
     FROM rels r JOIN pg_policy p ON p.polrelid = r.oid",
    // Extensions, as one object each.
    "SELECT 'extension', quote_ident(e.extname), 'VERSION ' || e.extversion || ' SCHEMA ' || quote_ident(n.nspname)
     FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql'",
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
    // Privileges (ACLs), as sorted grantee=privileges lists; NULL means the defaults.
    "SELECT 'privileges', what, (SELECT string_agg(entry, ', ' ORDER BY entry) FROM (
               SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END || '='
                      || string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',' ORDER BY a.privilege_type) AS entry
               FROM aclexplode(acl) a GROUP BY a.grantee) e)
     FROM (SELECT name AS what, relacl AS acl FROM rels WHERE relacl IS NOT NULL AND relkind <> 'i'
           UNION ALL
           SELECT r.name || '.' || quote_ident(a.attname), a.attacl FROM rels r
             JOIN pg_attribute a ON a.attrelid = r.oid WHERE a.attacl IS NOT NULL AND a.attnum > 0
           UNION ALL
           SELECT 'schema ' || quote_ident(n.nspname), p.nspacl FROM ns n JOIN pg_namespace p ON p.oid = n.oid
             WHERE p.nspacl IS NOT NULL
           UNION ALL
           SELECT name, proacl FROM procs WHERE proacl IS NOT NULL
           UNION ALL
           SELECT 'type ' || name, typacl FROM types WHERE typacl IS NOT NULL) acls",
    // Comments on anything in scope (user objects have OIDs from 16384 on; extension members
    // and the excluded tables are left out).
    "SELECT 'comment', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
     FROM pg_description d
     WHERE d.objoid >= 16384
       AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = d.classoid AND e.objid = d.objoid AND e.deptype = 'e')
       AND (d.classoid <> 'pg_class'::regclass OR d.objoid IN (SELECT oid FROM rels))
       AND (d.classoid <> 'pg_namespace'::regclass OR d.objoid IN (SELECT oid FROM ns))
       AND (d.classoid <> 'pg_proc'::regclass OR d.objoid IN (SELECT oid FROM procs))
       AND (d.classoid <> 'pg_type'::regclass OR d.objoid IN (SELECT oid FROM types))
       AND (d.classoid <> 'pg_constraint'::regclass OR d.objoid IN (
             SELECT c.oid FROM pg_constraint c WHERE c.conrelid IN (SELECT oid FROM rels)
                                                  OR c.contypid IN (SELECT oid FROM types)))
       AND (d.classoid <> 'pg_trigger'::regclass OR d.objoid IN (
             SELECT t.oid FROM pg_trigger t WHERE t.tgrelid IN (SELECT oid FROM rels)))
       AND (d.classoid <> 'pg_policy'::regclass OR d.objoid IN (
             SELECT p.oid FROM pg_policy p WHERE p.polrelid IN (SELECT oid FROM rels)))",
    // Invalid indexes (reported on their own).
    "SELECT 'invalid', i.name, '' FROM pg_index x JOIN rels i ON i.oid = x.indexrelid WHERE NOT x.indisvalid",
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
    client
        .batch_execute("SET search_path = public")
        .await
        .context("setting search_path for reading the catalog")?;
    let exclude: Vec<String> = options.exclude.iter().map(ToString::to_string).collect();
    // One round trip: the scope is planned once and the server reads every kind in one go.
    let query = format!(
        "{SCOPE}{}",
        KINDS
            .iter()
            .map(|k| format!("({k})"))
            .collect::<Vec<_>>()
            .join("\nUNION ALL\n")
    );
    let rows = client
        .query(&query, &[&exclude])
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .context("reading the catalog")?;
    let mut catalog = Catalog::default();
    for row in rows {
        let kind: Option<String> = row.get(0);
        let name: Option<String> = row.get(1);
        let definition: Option<String> = row.get(2);
        let (Some(kind), Some(name)) = (kind, name) else {
            continue;
        };
        if kind == "invalid" {
            catalog.invalid_indexes.push(name);
        } else {
            catalog
                .objects
                .insert((kind, name), definition.unwrap_or_default());
        }
    }
    client
        .batch_execute("RESET search_path")
        .await
        .context("resetting search_path")?;
    Ok(catalog)
}
