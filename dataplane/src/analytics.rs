//! Encounter analytics: a tenant's encounters over a date range, grouped by UTC day,
//! department or provider — how many, their average duration, the notes completed in them.
//!
//! The parameters are parsed and checked without I/O ([`params`]); the figures come from
//! one SQL statement on the tenant's indexes, run in the request's tenant transaction
//! ([`query`]); they are answered as plain JSON or as a FHIR `MeasureReport` ([`report`]).
//! The HTTP layer is `routes/analytics.rs`.

pub mod params;
pub mod query;
pub mod report;

pub use params::{AnalyticsParams, GroupBy, ParamError, ResponseFormat};
pub use query::{Bucket, encounters};
pub use report::{EncounterAnalytics, measure_report};
