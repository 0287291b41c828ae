//! The SQL of search parameters: each parameter's criteria as a `WHERE` condition over the
//! columns its [`Sql`] names, values appended to the statement's parameters (always bound,
//! never spliced into the text). Pure.

use tokio_postgres::types::ToSql;

use super::cursor::is_uuid;
use super::kind::IdentifierTable;
use super::search::{Criterion, Filter, Prefix, Sql};

/// A bound value of a statement.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// Appends `value` to `params`; its placeholder (`$n`).
pub fn bind(params: &mut Vec<Param>, value: impl ToSql + Sync + Send + 'static) -> String {
    params.push(Box::new(value));
    format!("${}", params.len())
}

/// The SQL of `filters` (each ` AND (..)`), their values appended to `params`, which
/// already hold the tenant's id as `$1` (the store's statements bind it first): side-table
/// conditions name it so that their tenant-leading index is used.
pub fn conditions(filters: &[Filter], params: &mut Vec<Param>) -> String {
    let mut sql = String::new();
    for filter in filters {
        let any: Vec<String> = filter
            .any_of
            .iter()
            .map(|criterion| condition(filter.param.sql, criterion, params))
            .collect();
        sql.push_str(&format!(" AND ({})", any.join(" OR ")));
    }
    sql
}

fn like_prefix(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}%")
}

// A date criterion over `[start, end]` (inclusive; `open_end`: a NULL end is ongoing),
// FHIR's semantics for ranges: `eq` the value's range contains the target's, `gt`/`ge`
// the target reaches after / into it, `lt`/`le` the target starts before / within it.
fn date_condition(
    start: &str,
    end: &str,
    open_end: bool,
    cast: &str,
    bounds: (String, String),
    prefix: Prefix,
    params: &mut Vec<Param>,
) -> String {
    let (first, next) = bounds;
    let reaches = |bound: String, params: &mut Vec<Param>| {
        let p = bind(params, bound);
        if open_end {
            format!("({end} IS NULL OR {end} >= {p}::text::{cast})")
        } else {
            format!("{end} >= {p}::text::{cast}")
        }
    };
    match prefix {
        Prefix::Eq => {
            let (a, b) = (bind(params, first), bind(params, next));
            format!("({start} >= {a}::text::{cast} AND {end} < {b}::text::{cast})")
        }
        Prefix::Gt => reaches(next, params),
        Prefix::Ge => reaches(first, params),
        Prefix::Lt => format!("{start} < {}::text::{cast}", bind(params, first)),
        Prefix::Le => format!("{start} < {}::text::{cast}", bind(params, next)),
    }
}

fn condition(sql: Sql, criterion: &Criterion, params: &mut Vec<Param>) -> String {
    match (sql, criterion) {
        (Sql::FamilyName, Criterion::Prefix(text)) => {
            let p = bind(params, like_prefix(text));
            format!("lower(family_name) LIKE {p}")
        }
        (Sql::AnyName, Criterion::Prefix(text)) => {
            let p = bind(params, like_prefix(text));
            let word = bind(params, format!("% {}", like_prefix(text)));
            format!(
                "(lower(family_name) LIKE {p} OR lower(given_name) LIKE {p} OR lower(given_name) LIKE {word})"
            )
        }
        (
            sql @ (Sql::Day(_) | Sql::Instant(_) | Sql::Period { .. }),
            Criterion::Date {
                prefix,
                first,
                next,
            },
        ) => {
            let (start, end, open_end, cast, bounds) = match sql {
                Sql::Day(column) => (
                    column,
                    column,
                    false,
                    "date",
                    (first.to_string(), next.to_string()),
                ),
                Sql::Instant(column) => (column, column, false, "timestamptz", utc(*first, *next)),
                Sql::Period { start, end } => (start, end, true, "timestamptz", utc(*first, *next)),
                _ => unreachable!("matched above"),
            };
            date_condition(start, end, open_end, cast, bounds, *prefix, params)
        }
        (Sql::Code(column), Criterion::Token { value, .. }) => match value {
            Some(value) => format!("{column} = {}", bind(params, value.clone())),
            None => format!("{column} IS NOT NULL"),
        },
        (Sql::Id { column, .. }, Criterion::Reference(id)) => {
            if is_uuid(id) {
                format!("{column} = {}::text::uuid", bind(params, id.clone()))
            } else {
                // Ids here are UUIDs: any other id references nothing.
                "false".to_owned()
            }
        }
        (Sql::Reference { column, target }, Criterion::Reference(id)) => {
            format!("{column} = {}", bind(params, format!("{target}/{id}")))
        }
        (
            Sql::Identifier(IdentifierTable { table, owner }),
            Criterion::Token {
                system,
                value,
                no_system,
            },
        ) => {
            // FHIR token semantics: `system|value`, `value` (any system), `|value` (no
            // system), `system|` (any value). The side table's (tenant_id, value, system)
            // index serves every form with a value; `system|` reads the tenant's range of
            // the side table (its key leads with tenant_id), never another tenant's rows.
            let matched = match (system, value, no_system) {
                (Some(s), Some(v), _) => format!(
                    "value = {} AND system = {}",
                    bind(params, v.clone()),
                    bind(params, s.clone())
                ),
                (Some(s), None, _) => format!("system = {}", bind(params, s.clone())),
                (None, Some(v), true) => {
                    format!("value = {} AND system IS NULL", bind(params, v.clone()))
                }
                (None, Some(v), false) => format!("value = {}", bind(params, v.clone())),
                (None, None, _) => return "false".to_owned(),
            };
            format!("id IN (SELECT {owner} FROM {table} WHERE tenant_id = $1 AND {matched})")
        }
        // The parser builds the criterion of each parameter's kind, and the tables pair
        // kinds with SQL (a unit test checks every served parameter); a mismatch matches
        // nothing rather than everything.
        (sql, _) => {
            tracing::error!(?sql, "search parameter has no SQL for its criterion");
            "false".to_owned()
        }
    }
}

// The days [first, next) as UTC instants, for timestamp columns.
fn utc(first: jiff::civil::Date, next: jiff::civil::Date) -> (String, String) {
    (format!("{first}T00:00:00Z"), format!("{next}T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::search::{Handling, ParamType, parse};

    #[test]
    fn every_served_parameter_has_sql() {
        for kind in crate::fhir::KINDS {
            for param in kind.search {
                let value = match param.kind {
                    ParamType::Token => "s|v",
                    ParamType::String => "a",
                    ParamType::Date => "2000",
                    ParamType::Reference => "00000000-0000-4000-8000-000000000000",
                };
                let query = format!("{}={value}", param.name);
                let search = parse(&query, kind, Handling::Strict).expect("parses");
                let mut params = Vec::new();
                let sql = conditions(&search.filters, &mut params);
                assert!(!sql.contains("false"), "{query}: {sql}");
                assert!(!params.is_empty(), "{query}");
            }
        }
    }

    #[test]
    fn like_wildcards_in_values_are_escaped() {
        assert_eq!(like_prefix("o'_%\\"), "o'\\_\\%\\\\%");
    }
}
