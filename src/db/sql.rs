//! Every statement the engine sends with parameters, or whose rows it reads, goes through [`Sql`],
//! and none is a named prepared statement: parameters travel with their types in one unnamed
//! Parse / Bind / Execute (tokio-postgres's `*_typed` calls), and statements without parameters
//! may use the simple protocol (`batch_execute`, `simple_query`). Behind PgBouncer in transaction
//! pooling mode the server connection can change between transactions, so a named statement
//! prepared by one run could be executed, replaced or closed by another; unnamed ones cannot.
//! `tests/it/pgbouncer.rs` reads `src/` and fails if anything else calls the driver's preparing
//! methods.
//!
//! Result columns must be of built-in types (cast to text where not): a column of a type the
//! driver does not know would make it look the type up with a named statement of its own.
//!
//! `COPY ... FROM STDIN` is the one exception the driver forces (it prepares the COPY statement
//! under a name): [`copy_in`] takes a transaction, so the statement is prepared, used and closed
//! on the one server connection a pooler pins for that transaction, and never outlives it.

use std::future::Future;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{CopyInSink, Error, GenericClient, Row, Transaction};

/// A parameter with its PostgreSQL type.
pub type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// Unnamed statements on any client or transaction.
pub trait Sql: GenericClient + Sync {
    /// Every row.
    fn rows<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send + 'a;

    /// Exactly one row (an error otherwise).
    fn one<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Row, Error>> + Send + 'a;

    /// At most one row (an error for more).
    fn opt<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a;

    /// The number of rows a statement affected.
    fn exec<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;
}

impl<C: GenericClient + Sync> Sql for C {
    fn rows<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send + 'a {
        self.query_typed(sql, params)
    }

    fn one<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Row, Error>> + Send + 'a {
        self.query_typed_one(sql, params)
    }

    fn opt<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a {
        self.query_typed_opt(sql, params)
    }

    fn exec<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a {
        self.execute_typed(sql, params)
    }
}

/// Start `COPY ... FROM STDIN` inside `tx` (see the module documentation for why a transaction).
///
/// # Errors
/// The server's error.
pub async fn copy_in<U>(tx: &Transaction<'_>, sql: &str) -> Result<CopyInSink<U>, Error>
where
    U: bytes::Buf + 'static + Send,
{
    tx.copy_in(sql).await
}
