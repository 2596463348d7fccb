//! A page of rows and how many rows match, from one statement.
//!
//! A list page needs both, and two statements cost two checkouts: behind a transaction-mode
//! pooler each checkout is four round trips (`BEGIN`, parse, execute, `COMMIT`). So a page
//! statement counts in a one-row subquery and joins the page to it laterally:
//!
//! ```sql
//! SELECT counted.page_total, page.* FROM (SELECT count(*) AS page_total FROM … WHERE …) counted
//! LEFT JOIN LATERAL (SELECT true AS page_row, … WHERE … ORDER BY … LIMIT …) page ON true
//! ORDER BY …
//! ```
//!
//! Each side keeps its own plan (the count its scan, the page its index), and an empty page
//! is one row of nulls that still carries the count.

use sqlx::{FromRow, Row, postgres::PgRow};

/// The opening of a page statement, up to the count's `FROM` (the caller names the table).
pub const COUNT_SELECT: &str =
    "SELECT counted.page_total, page.* FROM (SELECT count(*) AS page_total";

/// Between the count's filter and the page's columns.
pub const PAGE_JOIN: &str = ") counted LEFT JOIN LATERAL (SELECT true AS page_row, ";

/// After the page's `LIMIT`/`OFFSET`, before the outer `ORDER BY` (which repeats the page's,
/// since a join keeps no order on its own).
pub const PAGE_END: &str = ") page ON true";

/// One row of a page statement: the count, and a page row unless the page is empty.
pub struct Counted<T> {
    total: i64,
    row: Option<T>,
}

impl<'r, T: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Counted<T> {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let total = row.try_get("page_total")?;
        let present: Option<bool> = row.try_get("page_row")?;
        let row = match present {
            Some(true) => Some(T::from_row(row)?),
            _ => None,
        };
        Ok(Self { total, row })
    }
}

/// The page's rows in the statement's order, and how many rows match the filter.
pub fn split<T>(counted: Vec<Counted<T>>) -> (Vec<T>, i64) {
    let total = counted.first().map_or(0, |c| c.total);
    (counted.into_iter().filter_map(|c| c.row).collect(), total)
}
