//! The parameters of `GET /analytics/encounters`, parsed from the query string. Pure.
//!
//! `from` and `to` are required: a date (`YYYY-MM-DD`, its UTC midnight) or an instant
//! (`YYYY-MM-DDThh:mm:ss[.fff]` with `Z` or an offset). The range is half-open — an
//! encounter counts when its `period.start` is at or after `from` and before `to` — so a
//! year is `from=2024-01-01&to=2025-01-01`; `to` must be after `from` and at most
//! [`MAX_RANGE_DAYS`] days later. `groupBy` is `day` (the default), `department` or
//! `provider`; `_format` asks for a FHIR `MeasureReport`. Anything else is refused, so a
//! typo never silently answers another question.

use jiff::{SignedDuration, Timestamp};

use crate::fhir::date::date_range;
use crate::fhir::element::instant;

/// The longest range one request may cover: a leap year.
pub const MAX_RANGE_DAYS: i64 = 366;

/// The parameters this endpoint takes, for error messages.
const KNOWN: &str = "from, to, groupBy, _format";

/// What the encounters are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The UTC day of `period.start`.
    Day,
    /// The department (`serviceType`'s first coding's code, else its text).
    Department,
    /// The provider (the first Practitioner participant, `Practitioner/<id>`).
    Provider,
}

impl GroupBy {
    /// The parameter value naming it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Department => "department",
            Self::Provider => "provider",
        }
    }

    fn parse(value: &str) -> Result<Self, ParamError> {
        match value {
            "day" => Ok(Self::Day),
            "department" => Ok(Self::Department),
            "provider" => Ok(Self::Provider),
            other => Err(ParamError::new(
                "groupBy",
                format!("groupBy must be day, department or provider, not {other:?}"),
            )),
        }
    }
}

/// How the figures are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `application/json`: [`super::EncounterAnalytics`].
    Json,
    /// `application/fhir+json`: a FHIR R4 `MeasureReport` of type `summary`.
    MeasureReport,
}

/// A valid request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyticsParams {
    /// First instant counted (inclusive).
    pub from: Timestamp,
    /// First instant no longer counted (exclusive).
    pub to: Timestamp,
    /// The grouping.
    pub group_by: GroupBy,
    /// The format `_format` asked for, if any (else the `Accept` header decides).
    pub format: Option<ResponseFormat>,
}

/// A parameter that cannot be used: which one, and what is expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The parameter at fault.
    pub parameter: String,
    /// What is wrong and what is expected; names the parameter.
    pub message: String,
}

impl ParamError {
    fn new(parameter: &str, message: impl Into<String>) -> Self {
        Self {
            parameter: parameter.to_owned(),
            message: message.into(),
        }
    }
}

impl AnalyticsParams {
    /// Parses a query string (without `?`; `None` when there is none).
    pub fn parse(query: Option<&str>) -> Result<Self, ParamError> {
        let (mut from, mut to, mut group_by, mut format) = (None, None, None, None);
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match name.as_ref() {
                "from" => &mut from,
                "to" => &mut to,
                "groupBy" => &mut group_by,
                "_format" => &mut format,
                other => {
                    return Err(ParamError::new(
                        other,
                        format!("unknown parameter {other:?}; this endpoint takes {KNOWN}"),
                    ));
                }
            };
            if slot.is_some() {
                return Err(ParamError::new(
                    &name,
                    format!("parameter {name} is given more than once"),
                ));
            }
            *slot = Some(value.into_owned());
        }
        let from = bound("from", from)?;
        let to = bound("to", to)?;
        if to <= from {
            return Err(ParamError::new(
                "to",
                format!("to ({to}) must be after from ({from}): the range is [from, to)"),
            ));
        }
        if to.duration_since(from) > SignedDuration::from_hours(24 * MAX_RANGE_DAYS) {
            return Err(ParamError::new(
                "to",
                format!(
                    "the range from {from} to {to} is longer than {MAX_RANGE_DAYS} days; \
                     ask for at most {MAX_RANGE_DAYS} days per request"
                ),
            ));
        }
        let group_by = group_by
            .as_deref()
            .map_or(Ok(GroupBy::Day), GroupBy::parse)?;
        let format = format.as_deref().map(parse_format).transpose()?;
        Ok(Self {
            from,
            to,
            group_by,
            format,
        })
    }
}

// A required `from` or `to`: a date (its UTC midnight) or an instant with a zone.
fn bound(name: &str, value: Option<String>) -> Result<Timestamp, ParamError> {
    let Some(value) = value else {
        return Err(ParamError::new(
            name,
            format!(
                "parameter {name} is required: a date YYYY-MM-DD or an instant YYYY-MM-DDThh:mm:ssZ"
            ),
        ));
    };
    let parsed = if value.contains('T') {
        instant(&value)
    } else if value.len() == 10 {
        date_range(&value)
            .and_then(|(day, _)| day.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|zoned| zoned.timestamp())
    } else {
        None
    };
    parsed.ok_or_else(|| {
        ParamError::new(
            name,
            format!(
                "{name} must be a date YYYY-MM-DD (UTC midnight) or an instant \
                 YYYY-MM-DDThh:mm:ss[.fff] with Z or an offset, not {value:?}"
            ),
        )
    })
}

fn parse_format(value: &str) -> Result<ResponseFormat, ParamError> {
    match value {
        "json" | "application/json" => Ok(ResponseFormat::Json),
        "fhir" | "application/fhir+json" => Ok(ResponseFormat::MeasureReport),
        other => {
            // An unescaped `+` arrives as a space.
            let hint = if other.contains(' ') {
                " (escape + as %2B in a query string)"
            } else {
                ""
            };
            Err(ParamError::new(
                "_format",
                format!(
                    "_format must be application/json (or json) or application/fhir+json \
                     (or fhir, a MeasureReport), not {other:?}{hint}"
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<AnalyticsParams, ParamError> {
        AnalyticsParams::parse(Some(query))
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn dates_are_utc_midnights_and_day_is_the_default_grouping() {
        let params = parse("from=2024-01-01&to=2025-01-01").expect("valid");
        assert_eq!(params.from, at("2024-01-01T00:00:00Z"));
        assert_eq!(params.to, at("2025-01-01T00:00:00Z"));
        assert_eq!(params.group_by, GroupBy::Day);
        assert_eq!(params.format, None);
    }

    #[test]
    fn instants_keep_their_offset_and_every_grouping_and_format_parses() {
        let params =
            parse("from=2024-05-01T08:00:00%2B02:00&to=2024-05-02T00:00:00.5Z&groupBy=provider&_format=fhir")
                .expect("valid");
        assert_eq!(params.from, at("2024-05-01T06:00:00Z"));
        assert_eq!(params.to, at("2024-05-02T00:00:00.5Z"));
        assert_eq!(params.group_by, GroupBy::Provider);
        assert_eq!(params.format, Some(ResponseFormat::MeasureReport));
        let params =
            parse("from=2024-05-01&to=2024-05-02&groupBy=department&_format=json").expect("valid");
        assert_eq!(params.group_by, GroupBy::Department);
        assert_eq!(params.format, Some(ResponseFormat::Json));
    }

    #[test]
    fn a_leap_year_is_the_longest_range() {
        assert!(parse("from=2024-01-01&to=2025-01-01").is_ok());
        let error = parse("from=2024-01-01&to=2025-01-01T00:00:00.000001Z").expect_err("too long");
        assert_eq!(error.parameter, "to");
        assert!(error.message.contains("longer than 366 days"), "{error}");
    }

    #[test]
    fn every_bad_parameter_is_named_with_what_is_expected() {
        let cases = [
            ("to=2024-01-02", "from", "parameter from is required"),
            ("from=2024-01-01", "to", "parameter to is required"),
            (
                "from=2024-01&to=2024-02-01",
                "from",
                "from must be a date YYYY-MM-DD",
            ),
            (
                "from=2024-02-30&to=2024-03-01",
                "from",
                "not \"2024-02-30\"",
            ),
            (
                "from=2024-01-01T10:00:00&to=2024-02-01",
                "from",
                "with Z or an offset",
            ),
            ("from=2024-01-01&to=tomorrow", "to", "to must be a date"),
            ("from=2024-01-02&to=2024-01-02", "to", "must be after from"),
            ("from=2024-01-02&to=2024-01-01", "to", "must be after from"),
            (
                "from=2024-01-01&to=2024-01-02&groupBy=week",
                "groupBy",
                "not \"week\"",
            ),
            (
                "from=2024-01-01&to=2024-01-02&groupBy=",
                "groupBy",
                "day, department or provider",
            ),
            (
                "from=2024-01-01&to=2024-01-02&_format=xml",
                "_format",
                "not \"xml\"",
            ),
            (
                "from=2024-01-01&to=2024-01-02&_format=application/fhir+json",
                "_format",
                "escape + as %2B",
            ),
            (
                "from=2024-01-01&to=2024-01-02&date=2024",
                "date",
                "unknown parameter \"date\"",
            ),
            (
                "from=2024-01-01&from=2024-01-02&to=2024-01-03",
                "from",
                "more than once",
            ),
        ];
        for (query, parameter, message) in cases {
            let error = parse(query).expect_err(query);
            assert_eq!(error.parameter, parameter, "{query}");
            assert!(error.message.contains(message), "{query}: {error}");
        }
        assert_eq!(
            AnalyticsParams::parse(None).expect_err("empty").parameter,
            "from"
        );
    }
}
