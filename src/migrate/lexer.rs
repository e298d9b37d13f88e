//! Split a SQL script into statements, understanding quotes, comments and dollar-quoted bodies,
//! and map byte offsets back to file lines and columns.

/// One statement of a script: byte ranges into the script text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Start of the statement's text (after the previous `;`).
    pub start: usize,
    /// End of the statement's text, excluding the terminating `;`.
    pub end: usize,
    /// Byte offset of the statement's first token (for error messages without a position).
    pub first_token: usize,
}

impl Statement {
    /// The statement's text in `script`, from its first token (leading comments and blank lines
    /// are not sent to the server).
    #[must_use]
    pub fn text<'a>(&self, script: &'a str) -> &'a str {
        &script[self.first_token..self.end]
    }
}

/// Why a script cannot be split the way psql would run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexError {
    /// A quote, identifier, dollar quote or comment that never ends (psql rejects these too).
    Unterminated { offset: usize, what: &'static str },
    /// A psql meta-command other than the two pg_dump writes (`\restrict`, `\unrestrict`).
    MetaCommand { offset: usize, command: String },
}

impl LexError {
    /// Byte offset in the script.
    #[must_use]
    pub fn offset(&self) -> usize {
        match self {
            LexError::Unterminated { offset, .. } | LexError::MetaCommand { offset, .. } => *offset,
        }
    }

    /// The problem in words (without the position).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            LexError::Unterminated { what, .. } => format!(
                "unterminated {what}: it runs to the end of the file, so the rest of the script would be lost; close it"
            ),
            LexError::MetaCommand { command, .. } => format!(
                "psql meta-command `\\{command}` is not SQL and cannot be sent to the server; remove it (only pg_dump's `\\restrict` and `\\unrestrict` lines are skipped)"
            ),
        }
    }
}

/// A script split into statements, and the psql meta-commands that were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub statements: Vec<Statement>,
    /// Byte offsets of skipped `\restrict` / `\unrestrict` lines, with the command.
    pub skipped: Vec<(usize, String)>,
    /// The script's own `BEGIN` ... `COMMIT` around all of it, left out (offsets of the two).
    pub unwrapped: Option<(usize, usize)>,
}

/// Split `sql` at top-level semicolons, as psql does: not inside quotes, comments, dollar-quoted
/// bodies, parentheses (`CREATE RULE ... DO ALSO (a; b)`) or SQL-standard `BEGIN ATOMIC` bodies.
/// Statements holding only whitespace and comments are dropped.
///
/// # Errors
/// An unterminated quote, identifier, dollar quote or comment, or a psql meta-command.
pub fn split(sql: &str) -> Result<Split, LexError> {
    let bytes = sql.as_bytes();
    let mut out = Split::default();
    let mut start = 0;
    let mut first_token: Option<usize> = None;
    // Inside a SQL-standard body (`BEGIN ATOMIC ... END`, PostgreSQL 14+) semicolons do not end
    // the statement; BEGIN and CASE nest until their END, as psql counts them.
    let mut atomic_depth = 0usize;
    let mut paren_depth = 0usize;
    let mut previous_word = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match b {
            b'-' if next == Some(b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if next == Some(b'*') => {
                i = skip_block_comment(bytes, i)?;
                continue;
            }
            b'\\' => {
                // psql reads a backslash outside quotes as a meta-command up to the line's end.
                let end = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
                let command: String = sql[i + 1..end]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if command == "restrict" || command == "unrestrict" {
                    out.skipped.push((i, command));
                    i = end;
                    continue;
                }
                return Err(LexError::MetaCommand { offset: i, command });
            }
            _ => {}
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b == b';' && atomic_depth == 0 && paren_depth == 0 {
            previous_word.clear();
            if let Some(token) = first_token.take() {
                out.statements.push(Statement {
                    start,
                    end: i,
                    first_token: token,
                });
            }
            i += 1;
            start = i;
            continue;
        }
        first_token.get_or_insert(i);
        i = match b {
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i < 2 || !is_ident_byte(bytes[i - 2]));
                skip_quoted(bytes, i, b'\'', escapes)?
            }
            b'"' => skip_quoted(bytes, i, b'"', false)?,
            b'$' => skip_dollar(sql, i)?,
            b'(' => {
                paren_depth += 1;
                i + 1
            }
            b')' => {
                paren_depth = paren_depth.saturating_sub(1);
                i + 1
            }
            _ if is_ident_byte(b) => {
                let mut j = i;
                while j < bytes.len() && (is_ident_byte(bytes[j]) || bytes[j] == b'$') {
                    j += 1;
                }
                let word = sql[i..j].to_ascii_uppercase();
                match word.as_str() {
                    "ATOMIC" if atomic_depth == 0 && previous_word == "BEGIN" => atomic_depth = 1,
                    "BEGIN" | "CASE" if atomic_depth > 0 => atomic_depth += 1,
                    "END" if atomic_depth > 0 => atomic_depth -= 1,
                    _ => {}
                }
                previous_word = word;
                j
            }
            _ => i + 1,
        };
    }
    if let Some(token) = first_token {
        out.statements.push(Statement {
            start,
            end: bytes.len(),
            first_token: token,
        });
    }
    Ok(out)
}

/// The transaction-control command a statement is, if any (`BEGIN`, `COMMIT`, ...): a script
/// that ends or opens transactions itself would escape the run's one transaction.
#[must_use]
pub fn transaction_control(statement: &Statement, sql: &str) -> Option<String> {
    let words = leading_words(statement.text(sql), 3);
    let first = words.first()?.as_str();
    let second = words.get(1).map_or("", String::as_str);
    let control = match first {
        "BEGIN" | "COMMIT" | "END" | "ABORT" => true,
        // ROLLBACK TO [SAVEPOINT] x stays inside the transaction.
        "ROLLBACK" => second != "TO",
        "START" | "PREPARE" => second == "TRANSACTION",
        _ => false,
    };
    control.then(|| words.join(" ").trim().to_string())
}

/// `BEGIN`, `BEGIN WORK`, `BEGIN TRANSACTION` or `START TRANSACTION`, with nothing more (no
/// isolation level or access mode, which would mean something inside the run's transaction).
#[must_use]
pub fn plain_begin(statement: &Statement, sql: &str) -> bool {
    let words = leading_words(statement.text(sql), 4);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        words.as_slice(),
        ["BEGIN"] | ["BEGIN", "WORK" | "TRANSACTION"] | ["START", "TRANSACTION"]
    )
}

/// `COMMIT` or `END` (`WORK` / `TRANSACTION` allowed), with nothing more (not `AND CHAIN`).
#[must_use]
pub fn plain_commit(statement: &Statement, sql: &str) -> bool {
    let words = leading_words(statement.text(sql), 4);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        words.as_slice(),
        ["COMMIT" | "END"] | ["COMMIT" | "END", "WORK" | "TRANSACTION"]
    )
}

/// The first `n` words of a statement, upper-cased, skipping comments.
fn leading_words(text: &str, n: usize) -> Vec<String> {
    let mut words = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && words.len() < n {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..].find('\n').map_or(bytes.len(), |k| i + k + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i).unwrap_or(bytes.len());
            }
            b if is_ident_byte(b) => {
                let mut j = i;
                while j < bytes.len() && is_ident_byte(bytes[j]) {
                    j += 1;
                }
                words.push(text[i..j].to_ascii_uppercase());
                i = j;
            }
            b if b.is_ascii_whitespace() => i += 1,
            _ => break,
        }
    }
    words
}

/// One token of a statement, for reading the names in it: comments, string literals (also
/// `E'...'` and dollar-quoted) and numbers are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A name or key word: folded to lower case, or as written when quoted (quotes removed).
    Word { text: String, quoted: bool },
    /// `.` (between the parts of a qualified name).
    Dot,
    /// Any other punctuation.
    Other,
}

/// `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON [ONLY] table`: the index's name
/// (as the catalog holds it) and the table as written (for `to_regclass`); `None` for anything
/// else, an unnamed index among them.
#[must_use]
pub fn concurrent_index_target(statement: &str) -> Option<(String, String)> {
    let tokens = tokens(statement);
    let mut it = tokens.iter().peekable();
    let word = |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word { text, quoted: false }) if text == w);
    if !word(it.next(), "create") {
        return None;
    }
    if word(it.peek().copied(), "unique") {
        it.next();
    }
    if !word(it.next(), "index") || !word(it.next(), "concurrently") {
        return None;
    }
    if word(it.peek().copied(), "if") {
        it.next();
        if !word(it.next(), "not") || !word(it.next(), "exists") {
            return None;
        }
    }
    let Some(Token::Word { text: index, .. }) = it.next() else {
        return None;
    };
    if !word(it.next(), "on") {
        return None;
    }
    if word(it.peek().copied(), "only") {
        it.next();
    }
    let quote = |text: &str, quoted: bool| {
        if quoted
            || text
                .chars()
                .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_string()
        }
    };
    let Some(Token::Word { text, quoted }) = it.next() else {
        return None;
    };
    let mut table = quote(text, *quoted);
    if matches!(it.peek(), Some(Token::Dot)) {
        it.next();
        let Some(Token::Word { text, quoted }) = it.next() else {
            return None;
        };
        table = format!("{table}.{}", quote(text, *quoted));
    }
    Some((index.clone(), table))
}

/// The tokens of one statement (see [`Token`]). Unterminated quotes end the list.
#[must_use]
pub fn tokens(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let end = match b {
            b'-' if next == Some(b'-') => text[i..].find('\n').map_or(bytes.len(), |n| i + n + 1),
            b'/' if next == Some(b'*') => skip_block_comment(bytes, i).unwrap_or(bytes.len()),
            b'\'' => {
                let escapes = out.last().is_some_and(
                    |t| matches!(t, Token::Word { text, quoted: false } if text == "e"),
                ) && i > 0
                    && matches!(bytes[i - 1], b'e' | b'E');
                if escapes {
                    out.pop();
                }
                skip_quoted(bytes, i, b'\'', escapes).unwrap_or(bytes.len())
            }
            b'$' => skip_dollar(text, i).unwrap_or(bytes.len()),
            b'"' => {
                let end = skip_quoted(bytes, i, b'"', false).unwrap_or(bytes.len());
                let inner = &text[i + 1..end.saturating_sub(1).max(i + 1)];
                out.push(Token::Word {
                    text: inner.replace("\"\"", "\""),
                    quoted: true,
                });
                end
            }
            b'.' => {
                out.push(Token::Dot);
                i + 1
            }
            _ if b.is_ascii_digit() => {
                let mut j = i;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                j
            }
            _ if is_ident_byte(b) => {
                let mut j = i;
                while j < bytes.len() && (is_ident_byte(bytes[j]) || bytes[j] == b'$') {
                    j += 1;
                }
                out.push(Token::Word {
                    text: text[i..j].to_ascii_lowercase(),
                    quoted: false,
                });
                j
            }
            _ if b.is_ascii_whitespace() => i + 1,
            _ => {
                out.push(Token::Other);
                i + 1
            }
        };
        i = end.max(i + 1);
    }
    out
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Past a `/* ... */` comment, which nests in PostgreSQL.
fn skip_block_comment(bytes: &[u8], start: usize) -> Result<usize, LexError> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Ok(i);
            }
        } else {
            i += 1;
        }
    }
    Err(LexError::Unterminated {
        offset: start,
        what: "/* comment",
    })
}

/// Past a quoted string or identifier; a doubled quote is an escaped quote.
fn skip_quoted(
    bytes: &[u8],
    start: usize,
    quote: u8,
    backslash_escapes: bool,
) -> Result<usize, LexError> {
    let mut i = start + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash_escapes && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(LexError::Unterminated {
        offset: start,
        what: if quote == b'"' {
            "quoted identifier"
        } else {
            "string literal"
        },
    })
}

/// Past a `$tag$ ... $tag$` body; a `$` that does not open one (e.g. `$1`) is one byte.
fn skip_dollar(sql: &str, i: usize) -> Result<usize, LexError> {
    let bytes = sql.as_bytes();
    let mut j = i + 1;
    if j < bytes.len() && bytes[j].is_ascii_digit() {
        return Ok(i + 1);
    }
    while j < bytes.len() && is_ident_byte(bytes[j]) {
        j += 1;
    }
    if bytes.get(j) != Some(&b'$') {
        return Ok(i + 1);
    }
    let tag = &sql[i..=j];
    match sql[j + 1..].find(tag) {
        Some(n) => Ok(j + 1 + n + tag.len()),
        None => Err(LexError::Unterminated {
            offset: i,
            what: "dollar-quoted string",
        }),
    }
}

/// 1-based line and column (in characters) of a byte offset.
#[must_use]
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

/// The byte offset of the `position`-th character (1-based, as the server reports it).
#[must_use]
pub fn char_position_to_byte(text: &str, position: usize) -> usize {
    text.char_indices()
        .nth(position.saturating_sub(1))
        .map_or(text.len(), |(b, _)| b)
}

/// Whether `sql` is a plain-text pg_dump file (its header says so in the first lines).
#[must_use]
pub fn is_pg_dump_file(sql: &str) -> bool {
    sql.lines()
        .take(12)
        .any(|l| l.starts_with("-- Dumped by pg_dump version"))
}

/// The setting a plain `SET name = value` / `SET name TO value` of a pg_dump header sets (a
/// built-in, dotless name; not `SET LOCAL`, `SET SESSION AUTHORIZATION` or a placeholder).
/// pg_dump writes one such line for every session setting its own version knows, so a dump from
/// a newer pg_dump (17's `transaction_timeout`) names settings an older server lacks.
#[must_use]
pub fn session_setting_name(statement: &str) -> Option<&str> {
    let rest = statement.strip_prefix("SET ")?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(end);
    let after = after.trim_start();
    let assigns = after.starts_with('=') || after.starts_with("TO ");
    (!name.is_empty() && assigns && !matches!(name, "local" | "session")).then_some(name)
}

#[cfg(test)]
mod tests {

    #[test]
    fn concurrent_index_targets() {
        assert_eq!(
            concurrent_index_target(
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_users_phone ON public.users (phone)"
            ),
            Some(("ix_users_phone".into(), "public.users".into()))
        );
        assert_eq!(
            concurrent_index_target("create index concurrently \"Ix\" on only \"My Table\" (a)"),
            Some(("Ix".into(), "\"My Table\"".into()))
        );
        assert_eq!(
            concurrent_index_target("CREATE INDEX CONCURRENTLY ON users (a)"),
            None,
            "an unnamed index"
        );
        assert_eq!(
            concurrent_index_target("CREATE INDEX ix ON users (a)"),
            None
        );
    }

    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql)
            .expect("splits")
            .statements
            .iter()
            .map(|s| s.text(sql).trim())
            .collect()
    }

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let sql =
            "SELECT 'a;b'; SELECT \"x;y\" FROM t; -- c;\nSELECT 1 /* ; /* nested ; */ ; */ + 2;";
        assert_eq!(
            texts(sql),
            [
                "SELECT 'a;b'",
                "SELECT \"x;y\" FROM t",
                "SELECT 1 /* ; /* nested ; */ ; */ + 2"
            ]
        );
    }

    #[test]
    fn dollar_quoted_bodies_are_one_statement() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END; $$;\n\
                   DO $body$ BEGIN PERFORM 'x;'; END $body$;\nSELECT $1, a$b FROM t";
        let parts = texts(sql);
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts[0].ends_with("END; $$"));
        assert!(parts[1].starts_with("DO $body$"));
        assert_eq!(parts[2], "SELECT $1, a$b FROM t");
    }

    #[test]
    fn sql_standard_bodies_keep_their_semicolons() {
        let sql = "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql\n\
                   BEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN a ELSE 0 END + b;\n  SELECT 1;\nEND;\n\
                   CREATE TABLE after_it (id int);\nBEGIN; COMMIT;";
        let parts = texts(sql);
        assert_eq!(parts.len(), 4, "{parts:?}");
        assert!(parts[0].ends_with("SELECT 1;\nEND"), "{parts:?}");
        assert_eq!(parts[1], "CREATE TABLE after_it (id int)");
        assert_eq!(parts[2], "BEGIN");
        assert_eq!(parts[3], "COMMIT");
    }

    #[test]
    fn escape_strings_and_doubled_quotes() {
        let sql = "SELECT E'it\\'s;', 'it''s;'; SELECT 2";
        assert_eq!(texts(sql), ["SELECT E'it\\'s;', 'it''s;'", "SELECT 2"]);
        // A plain string ending in a backslash does not escape its quote.
        let sql = "SELECT 'C:\\'; SELECT 3";
        assert_eq!(texts(sql), ["SELECT 'C:\\'", "SELECT 3"]);
    }

    #[test]
    fn comment_only_statements_are_dropped() {
        assert!(
            split("-- nothing\n/* here */ ;\n  ")
                .expect("splits")
                .statements
                .is_empty()
        );
        let s = split("-- lead\n  CREATE TABLE t ()")
            .expect("splits")
            .statements;
        assert_eq!(s.len(), 1);
        assert_eq!(
            line_col("-- lead\n  CREATE TABLE t ()", s[0].first_token),
            (2, 3)
        );
    }

    #[test]
    fn positions_map_to_lines_and_columns() {
        let text = "a\nbé c\nd";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, text.find('c').expect("c")), (2, 4));
        assert_eq!(char_position_to_byte(text, 6), text.find('c').expect("c"));
    }

    #[test]
    fn rule_actions_in_parentheses_stay_one_statement() {
        let sql = "CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (1); INSERT INTO c VALUES (2));\nSELECT 1";
        let parts = texts(sql);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("VALUES (2))"), "{parts:?}");
    }

    #[test]
    fn unterminated_tokens_are_errors_with_their_position() {
        for (sql, what) in [
            ("SELECT 1;\n/* open\nCREATE TABLE t ();", "/* comment"),
            ("SELECT 'open;\nSELECT 2;", "string literal"),
            ("SELECT \"open;", "quoted identifier"),
            ("DO $x$ BEGIN END $y$;", "dollar-quoted string"),
            ("SELECT E'it\\';", "string literal"),
        ] {
            match split(sql) {
                Err(LexError::Unterminated { what: w, offset }) => {
                    assert_eq!(w, what, "{sql}");
                    assert!(offset < sql.len());
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        let err = split("SELECT 1;\n/* open").expect_err("open comment");
        assert_eq!(line_col("SELECT 1;\n/* open", err.offset()), (2, 1));
    }

    #[test]
    fn pg_dump_restrict_lines_are_skipped_other_meta_commands_refused() {
        let sql = "\\restrict abc123\nSET x = 1;\nSELECT '\\not_meta';\n\\unrestrict abc123\n";
        let split_ = split(sql).expect("splits");
        assert_eq!(split_.statements.len(), 2);
        assert_eq!(split_.skipped.len(), 2);
        assert_eq!(split_.skipped[0].1, "restrict");
        let err = split("SELECT 1;\n\\connect other\n").expect_err("meta");
        assert_eq!(
            err,
            LexError::MetaCommand {
                offset: 10,
                command: "connect".into()
            }
        );
    }

    #[test]
    fn only_plain_wrappers_are_wrappers() {
        let first = |sql: &str| split(sql).expect("split").statements[0].clone();
        for begin in [
            "BEGIN;",
            "begin work;",
            "BEGIN TRANSACTION; -- wrap, please",
            "START TRANSACTION;",
        ] {
            assert!(plain_begin(&first(begin), begin), "{begin}");
        }
        for not in [
            "BEGIN ISOLATION LEVEL SERIALIZABLE;",
            "START TRANSACTION READ ONLY;",
            "COMMIT;",
        ] {
            assert!(!plain_begin(&first(not), not), "{not}");
        }
        for commit in ["COMMIT;", "end;", "COMMIT WORK;", "END TRANSACTION;"] {
            assert!(plain_commit(&first(commit), commit), "{commit}");
        }
        for not in ["COMMIT AND CHAIN;", "ROLLBACK;", "COMMIT PREPARED 'x';"] {
            assert!(!plain_commit(&first(not), not), "{not}");
        }
    }

    #[test]
    fn transaction_control_is_recognised() {
        let sql = "BEGIN; START TRANSACTION; COMMIT; END; ROLLBACK; ABORT; PREPARE TRANSACTION 'x'; \
                   commit and chain; /* c */ Begin Work; ROLLBACK TO SAVEPOINT s; SAVEPOINT s; \
                   START x; END_X(); CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END; \
                   PREPARE p AS SELECT 1";
        let split_ = split(sql).expect("splits");
        let found: Vec<Option<String>> = split_
            .statements
            .iter()
            .map(|s| transaction_control(s, sql))
            .collect();
        let control: Vec<&str> = found.iter().flatten().map(String::as_str).collect();
        assert_eq!(
            control,
            [
                "BEGIN",
                "START TRANSACTION",
                "COMMIT",
                "END",
                "ROLLBACK",
                "ABORT",
                "PREPARE TRANSACTION",
                "COMMIT AND CHAIN",
                "BEGIN WORK"
            ]
        );
        assert_eq!(found.iter().filter(|f| f.is_none()).count(), 6, "{found:?}");
    }

    #[test]
    fn pg_dump_header_settings_are_recognised_and_nothing_else() {
        assert_eq!(
            session_setting_name("SET transaction_timeout = 0"),
            Some("transaction_timeout")
        );
        assert_eq!(
            session_setting_name("SET default_table_access_method TO heap"),
            Some("default_table_access_method")
        );
        for other in [
            "SET LOCAL lock_timeout = 0",
            "SET SESSION AUTHORIZATION app",
            "SET app.tenant = 'x'",
            "SELECT pg_catalog.set_config('search_path', '', false)",
            "SETOF",
        ] {
            assert_eq!(session_setting_name(other), None, "{other}");
        }
        assert!(is_pg_dump_file(
            "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 13.23\n-- Dumped by pg_dump version 18.6\n"
        ));
        assert!(!is_pg_dump_file("SET transaction_timeout = 0;\n"));
    }
}
