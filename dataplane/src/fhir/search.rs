//! FHIR search requests: the table of search parameters a resource serves (the handlers
//! and the CapabilityStatement both read it, so they cannot drift), and the parsing of a
//! query string against it. Pure.
//!
//! Values: comma-separated alternatives are ORed, repeated parameters ANDed; `\,` `\|`
//! `\\` escape. Strings match case-insensitively at the start of a name (`name` also at
//! the start of any given name). Tokens are `value`, `system|value`, `|value` (no system)
//! or `system|`. Dates are `YYYY`, `YYYY-MM` or `YYYY-MM-DD` with an optional prefix `eq`
//! (default), `gt`, `lt`, `ge`, `le`, compared as the range of days the value covers.
//!
//! Unknown parameters (and unsupported modifiers or `_summary` modes) follow the `Prefer:
//! handling=` preference: `strict` refuses them (400), `lenient` (the default) ignores
//! them, and the Bundle's self link lists only the parameters applied.

use jiff::civil::Date;

use super::date::date_range;
use super::error::FhirError;
use super::kind::{IdentifierTable, IncludeParam, ResourceKind, SortParam};

/// Kinds of search parameter served (FHIR `SearchParamType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// A code or identifier (`system|value`).
    Token,
    /// A string, matched case-insensitively at its start.
    String,
    /// A date, with comparison prefixes.
    Date,
    /// A reference to another resource (`Patient/<id>` or `<id>`).
    Reference,
}

impl ParamType {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::String => "string",
            Self::Date => "date",
            Self::Reference => "reference",
        }
    }
}

/// One search parameter a resource type serves.
#[derive(Debug, PartialEq, Eq)]
pub struct SearchParam {
    /// Its name in the query string.
    pub name: &'static str,
    /// Its kind.
    pub kind: ParamType,
    /// What it matches, for the CapabilityStatement.
    pub documentation: &'static str,
    /// How it is matched in SQL.
    pub sql: Sql,
}

/// How a search parameter is matched: the columns it reads. The store turns each into SQL
/// (values are always bound, never spliced into the text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sql {
    /// Patient `family`: the start of `family_name`.
    FamilyName,
    /// Patient `name`: the start of `family_name` or of any given name.
    AnyName,
    /// An `identifier` token: the rows of the kind's identifier side table.
    Identifier(IdentifierTable),
    /// A `date` column.
    Day(&'static str),
    /// A `timestamptz` column holding one instant.
    Instant(&'static str),
    /// A period in two `timestamptz` columns (inclusive bounds); a NULL end is ongoing.
    Period {
        /// The column of the start.
        start: &'static str,
        /// The column of the end.
        end: &'static str,
    },
    /// A `text` column holding a code (a token's system is not compared).
    Code(&'static str),
    /// A `uuid` column holding the id of a `target` of this server.
    Id {
        /// The column.
        column: &'static str,
        /// The resource type referenced.
        target: &'static str,
    },
    /// A `text` column holding a reference `target/<id>` to a resource served elsewhere.
    Reference {
        /// The column.
        column: &'static str,
        /// The resource type referenced.
        target: &'static str,
    },
}

impl Sql {
    /// The resource type a reference parameter points at.
    pub fn target(self) -> Option<&'static str> {
        match self {
            Self::Id { target, .. } | Self::Reference { target, .. } => Some(target),
            _ => None,
        }
    }
}

/// Page size when `_count` is not given.
pub const DEFAULT_COUNT: usize = 20;
/// The largest page served; a larger `_count` is lowered to it.
pub const MAX_COUNT: usize = 100;
/// The query parameter carrying the paging cursor.
pub const CURSOR_PARAM: &str = "_cursor";

/// A date comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// Within the range.
    Eq,
    /// After the range.
    Gt,
    /// Before the range.
    Lt,
    /// Within or after.
    Ge,
    /// Within or before.
    Le,
}

/// One alternative of a parameter's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// A token: `system` and `value` when given; `no_system` for `|value`.
    Token {
        /// The identifier system, when constrained.
        system: Option<String>,
        /// The value, when constrained.
        value: Option<String>,
        /// Only identifiers without a system match.
        no_system: bool,
    },
    /// A string prefix, lowercased.
    Prefix(String),
    /// A reference: the id of the resource referenced.
    Reference(String),
    /// The days `[first, next)` compared with `prefix`.
    Date {
        /// How to compare.
        prefix: Prefix,
        /// First day covered.
        first: Date,
        /// First day after.
        next: Date,
    },
}

/// One parameter of the search: any of its alternatives matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The parameter.
    pub param: &'static SearchParam,
    /// Its alternatives (never empty).
    pub any_of: Vec<Criterion>,
}

/// The `handling` preference of the `Prefer` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Refuse what is not understood.
    Strict,
    /// Ignore what is not understood (the default).
    Lenient,
}

impl Handling {
    /// The preference in a `Prefer` header value (`handling=strict`); lenient by default.
    pub fn from_prefer(prefer: Option<&str>) -> Self {
        let strict = prefer
            .into_iter()
            .flat_map(|p| p.split([',', ';']))
            .any(|part| {
                part.trim()
                    .strip_prefix("handling=")
                    .is_some_and(|v| v.trim_matches('"').eq_ignore_ascii_case("strict"))
            });
        if strict { Self::Strict } else { Self::Lenient }
    }
}

/// A parsed search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// The filters, ANDed.
    pub filters: Vec<Filter>,
    /// Page size.
    pub count: usize,
    /// Only the number of matches is asked for (`_summary=count` or `_count=0`).
    pub summary_count: bool,
    /// The paging cursor, as sent.
    pub cursor: Option<String>,
    /// The sort key and whether it descends; by id when none.
    pub sort: Option<(&'static SortParam, bool)>,
    /// The referenced resources to include.
    pub includes: Vec<&'static IncludeParam>,
    /// The parameters applied, in order, as sent (not the cursor): the self link's query.
    pub applied: Vec<(String, String)>,
}

impl Search {
    /// The applied parameters as a query string (form-encoded).
    pub fn applied_query(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.applied)
            .finish()
    }
}

/// Parses `query` (a raw query string) against the search parameters, sorts and includes
/// of `kind`.
pub fn parse(
    query: &str,
    kind: &'static ResourceKind,
    handling: Handling,
) -> Result<Search, FhirError> {
    let table = kind.search;
    let mut search = Search {
        filters: Vec::new(),
        count: DEFAULT_COUNT,
        summary_count: false,
        cursor: None,
        sort: None,
        includes: Vec::new(),
        applied: Vec::new(),
    };
    let ignore = |name: &str| match handling {
        Handling::Strict => Err(FhirError::UnknownSearchParameter(name.to_owned())),
        Handling::Lenient => Ok(()),
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let (name, value) = (name.into_owned(), value.into_owned());
        let bad = |message: &str| FhirError::BadSearch {
            parameter: name.clone(),
            message: message.to_owned(),
        };
        match name.as_str() {
            CURSOR_PARAM => {
                search.cursor = Some(value);
                continue;
            }
            "_count" => {
                let count: usize = value
                    .parse()
                    .map_err(|_| bad("_count must be a whole number"))?;
                if count == 0 {
                    search.summary_count = true;
                }
                search.count = count.clamp(1, MAX_COUNT);
                let applied = if count == 0 { 0 } else { search.count };
                search.applied.push((name, applied.to_string()));
                continue;
            }
            "_sort" => {
                let (descending, key) = match value.strip_prefix('-') {
                    Some(key) => (true, key),
                    None => (false, value.as_str()),
                };
                match kind.sorts.iter().find(|s| s.name == key) {
                    Some(sort) if search.sort.is_none() => search.sort = Some((sort, descending)),
                    Some(_) => return Err(bad("only one _sort key is served")),
                    None => {
                        ignore(&format!("_sort={value}"))?;
                        continue;
                    }
                }
            }
            "_include" => match kind.include(&value) {
                Some(include) => {
                    if !search.includes.iter().any(|i| i.name == include.name) {
                        search.includes.push(include);
                    }
                }
                None => {
                    ignore(&format!("_include={value}"))?;
                    continue;
                }
            },
            "_summary" if value == "count" => search.summary_count = true,
            "_summary" if value == "false" => {}
            _ => match table.iter().find(|p| p.name == name) {
                None => {
                    ignore(&name)?;
                    continue;
                }
                Some(param) => {
                    let any_of = split_unescaped(&value, ',')
                        .iter()
                        .map(|alternative| criterion(param, alternative))
                        .collect::<Option<Vec<_>>>()
                        .filter(|any_of| !any_of.is_empty())
                        .ok_or_else(|| bad(expected(param.kind)))?;
                    search.filters.push(Filter { param, any_of });
                }
            },
        }
        search.applied.push((name, value));
    }
    Ok(search)
}

fn expected(kind: ParamType) -> &'static str {
    match kind {
        ParamType::Token => "expected value, system|value, |value or system|",
        ParamType::String => "expected a non-empty string",
        ParamType::Date => "expected [eq|gt|lt|ge|le]YYYY[-MM[-DD]], e.g. ge1980-01-01",
        ParamType::Reference => "expected Type/id or id, of the type the parameter references",
    }
}

fn criterion(param: &SearchParam, raw: &str) -> Option<Criterion> {
    match param.kind {
        ParamType::Reference => {
            let text = unescape(raw);
            let id = match (text.split_once('/'), param.sql.target()) {
                (Some((kind, id)), Some(target)) if kind == target => id,
                (Some(_), _) => return None,
                (None, _) => text.as_str(),
            };
            (!id.is_empty() && !id.contains('/')).then(|| Criterion::Reference(id.to_owned()))
        }
        ParamType::String => {
            let text = unescape(raw).trim().to_lowercase();
            (!text.is_empty()).then_some(Criterion::Prefix(text))
        }
        ParamType::Token => {
            let parts = split_unescaped(raw, '|');
            let non_empty = |s: &String| (!s.is_empty()).then(|| unescape(s));
            match parts.as_slice() {
                [value] => Some(Criterion::Token {
                    system: None,
                    value: Some(non_empty(value)?),
                    no_system: false,
                }),
                [system, value] => {
                    let (system, value) = (non_empty(system), non_empty(value));
                    (system.is_some() || value.is_some()).then(|| Criterion::Token {
                        no_system: system.is_none(),
                        system,
                        value,
                    })
                }
                _ => None,
            }
        }
        ParamType::Date => {
            let (prefix, date) = match raw.get(..2) {
                Some(p) if p.bytes().all(|b| b.is_ascii_alphabetic()) => (p, &raw[2..]),
                _ => ("eq", raw),
            };
            let prefix = match prefix {
                "eq" => Prefix::Eq,
                "gt" => Prefix::Gt,
                "lt" => Prefix::Lt,
                "ge" => Prefix::Ge,
                "le" => Prefix::Le,
                _ => return None,
            };
            let (first, next) = date_range(date)?;
            Some(Criterion::Date {
                prefix,
                first,
                next,
            })
        }
    }
}

// Splits at `separator` where it is not escaped by a backslash; the parts keep escapes.
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let current = parts.last_mut();
        match (c, current) {
            ('\\', Some(part)) => {
                part.push('\\');
                if let Some(next) = chars.next() {
                    part.push(next);
                }
            }
            (c, _) if c == separator => parts.push(String::new()),
            (c, Some(part)) => part.push(c),
            (_, None) => {}
        }
    }
    parts
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
