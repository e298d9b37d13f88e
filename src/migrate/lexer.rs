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

/// Split `sql` at top-level semicolons. Statements holding only whitespace and comments are
/// dropped.
#[must_use]
pub fn split(sql: &str) -> Vec<Statement> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut first_token: Option<usize> = None;
    // Inside a SQL-standard body (`BEGIN ATOMIC ... END`, PostgreSQL 14+) semicolons do not end
    // the statement; BEGIN and CASE nest until their END, as psql counts them.
    let mut atomic_depth = 0usize;
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
                i = skip_block_comment(bytes, i);
                continue;
            }
            _ => {}
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b == b';' && atomic_depth == 0 {
            previous_word.clear();
            if let Some(token) = first_token.take() {
                statements.push(Statement {
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
                skip_quoted(bytes, i, b'\'', escapes)
            }
            b'"' => skip_quoted(bytes, i, b'"', false),
            b'$' => skip_dollar(sql, i),
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
        statements.push(Statement {
            start,
            end: bytes.len(),
            first_token: token,
        });
    }
    statements
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Past a `/* ... */` comment, which nests in PostgreSQL.
fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Past a quoted string or identifier; a doubled quote is an escaped quote.
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8, backslash_escapes: bool) -> usize {
    i += 1;
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
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// Past a `$tag$ ... $tag$` body; a `$` that does not open one (e.g. `$1`) is one byte.
fn skip_dollar(sql: &str, i: usize) -> usize {
    let bytes = sql.as_bytes();
    let mut j = i + 1;
    if j < bytes.len() && bytes[j].is_ascii_digit() {
        return i + 1;
    }
    while j < bytes.len() && is_ident_byte(bytes[j]) {
        j += 1;
    }
    if bytes.get(j) != Some(&b'$') {
        return i + 1;
    }
    let tag = &sql[i..=j];
    match sql[j + 1..].find(tag) {
        Some(n) => j + 1 + n + tag.len(),
        None => bytes.len(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql).iter().map(|s| s.text(sql).trim()).collect()
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
        assert!(split("-- nothing\n/* here */ ;\n  ").is_empty());
        let s = split("-- lead\n  CREATE TABLE t ()");
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
}
