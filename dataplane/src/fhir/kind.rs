//! The resource-kind abstraction: what the API needs to know of a resource type to store,
//! search and describe it — its table, the search columns its validation extracts, the
//! search parameters (read by the search parser, the SQL and the CapabilityStatement
//! alike), its sort keys and `_include`s. One generic set of handlers and one generic
//! store serve every kind. Pure.

use serde_json::{Map, Value};

use super::error::FhirError;
use super::search::SearchParam;

/// A resource type served by the API.
#[derive(Debug)]
pub struct ResourceKind {
    /// The FHIR resource type (`Encounter`).
    pub resource_type: &'static str,
    /// The table holding the current versions (`clinical.encounters`); it has `tenant_id`,
    /// `id uuid`, `resource jsonb`, `version`, `created_at`, `updated_at` and `columns`.
    pub table: &'static str,
    /// The search columns, in the order [`Validated::values`] gives their values.
    pub columns: &'static [Column],
    /// The search parameters served.
    pub search: &'static [SearchParam],
    /// The `_sort` keys served (besides the default order, by id).
    pub sorts: &'static [SortParam],
    /// The `_include`s served.
    pub includes: &'static [IncludeParam],
    /// The side table its identifiers are indexed in, if they are searched.
    pub identifiers: Option<IdentifierTable>,
    /// Validates a request body as this kind.
    pub validate: fn(Value) -> Result<Validated, FhirError>,
}

/// A search column: its name and SQL type (values are bound as text and cast to it).
#[derive(Debug, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: &'static str,
    /// Its SQL type (`text`, `date`, `uuid`, `timestamptz`).
    pub sql_type: &'static str,
}

/// The side table of a kind's `identifier`s, one row per identifier: `(tenant_id,
/// {owner}, position, system, value)`, its key `(tenant_id, {owner}, position)`, an index
/// on `(tenant_id, value, system)`, and a foreign key to the kind's table that cascades
/// its deletion. The store keeps it equal to the resource's identifiers in the statement
/// after each write, in the same transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentifierTable {
    /// The table (`clinical.patient_identifiers`).
    pub table: &'static str,
    /// The column holding the resource's id (`patient_id`).
    pub owner: &'static str,
}

/// One identifier of a resource as its side table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identifier {
    /// Its index in the resource's `identifier` array.
    pub position: i32,
    /// `Identifier.system`.
    pub system: Option<String>,
    /// `Identifier.value`.
    pub value: Option<String>,
}

/// A `_sort` key: a `timestamptz` column that validation always fills (`NOT NULL` in
/// practice), ordered with the id as tie-breaker so that keyset paging is total.
#[derive(Debug, PartialEq, Eq)]
pub struct SortParam {
    /// Its name in `_sort` (`date`; `-date` descends).
    pub name: &'static str,
    /// The column.
    pub column: &'static str,
}

/// An `_include` of a referenced resource (`Encounter:patient`).
#[derive(Debug)]
pub struct IncludeParam {
    /// The search parameter named after the colon (`patient`, `subject`).
    pub name: &'static str,
    /// The `uuid` column holding the referenced id.
    pub column: &'static str,
    /// The kind referenced.
    pub target: &'static ResourceKind,
}

impl PartialEq for IncludeParam {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.column == other.column
            && self.target.resource_type == other.target.resource_type
    }
}

impl Eq for IncludeParam {}

/// A reference to a resource of this server that must exist in the same tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReference {
    /// The element holding it (`Encounter.subject`).
    pub expression: String,
    /// The type it must point at.
    pub target: &'static str,
    /// The table of that type.
    pub table: &'static str,
    /// The id as written.
    pub id: String,
}

/// A validated resource: the object, its search columns' values, and the references the
/// store must resolve in the tenant before writing it.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// The resource.
    pub resource: Map<String, Value>,
    /// One value per [`ResourceKind::columns`], as text.
    pub values: Vec<Option<String>>,
    /// References to resources that must exist in the tenant.
    pub references: Vec<LocalReference>,
    /// The identifiers its [`ResourceKind::identifiers`] table indexes (empty for a kind
    /// without one). Those with neither a system nor a value are left out.
    pub identifiers: Vec<Identifier>,
}

impl LocalReference {
    /// A reference at `expression` to `target`'s resource `id`.
    pub fn to(expression: impl Into<String>, target: &ResourceKind, id: String) -> Self {
        Self {
            expression: expression.into(),
            target: target.resource_type,
            table: target.table,
            id,
        }
    }
}

impl ResourceKind {
    /// The `_include` named `include` (`Encounter:patient`), if this kind serves it.
    pub fn include(&self, include: &str) -> Option<&'static IncludeParam> {
        let (kind, name) = include.split_once(':')?;
        if kind != self.resource_type {
            return None;
        }
        self.includes.iter().find(|i| i.name == name)
    }
}
