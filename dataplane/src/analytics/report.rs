//! The answers of the encounter analytics: plain JSON ([`EncounterAnalytics`]) or a FHIR R4
//! `MeasureReport` of type `summary` ([`measure_report`]). Pure.

use jiff::{SignedDuration, Timestamp, Unit};
use serde::Serialize;
use serde_json::{Value, json};

use super::params::{AnalyticsParams, GroupBy};
use super::query::Bucket;

/// The canonical URL the `MeasureReport`s name as their measure. No `Measure` resource is
/// served: the URL identifies what was computed.
pub const MEASURE: &str = "https://phoenix-guardian.dev/fhir/Measure/encounter-activity";

/// Code system of the group keys (`…/day`, `…/department`, `…/provider`) and of this
/// server's own population codes (`…/population`).
pub const CODE_SYSTEM: &str = "https://phoenix-guardian.dev/fhir/CodeSystem/encounter-analytics";

/// FHIR's code system of measure populations (`initial-population`).
const MEASURE_POPULATION: &str = "http://terminology.hl7.org/CodeSystem/measure-population";

/// The JSON body of `GET /analytics/encounters`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncounterAnalytics {
    /// The tenant's name.
    pub tenant: String,
    /// `day`, `department` or `provider`.
    pub group_by: &'static str,
    /// First instant counted (RFC 3339, UTC).
    pub from: String,
    /// First instant no longer counted.
    pub to: String,
    /// The time zone of the days: always `UTC`.
    pub time_zone: &'static str,
    /// One entry per key with encounters, in key order; encounters without a department
    /// or provider last, with a `null` key.
    pub groups: Vec<Group>,
    /// The same figures over the whole range.
    pub total: Figures,
}

/// The figures of one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// The day (`YYYY-MM-DD`), department or provider (`Practitioner/<id>`); `null` for
    /// encounters without one.
    pub key: Option<String>,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// What is counted per group.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Encounters whose `period.start` lies in the range (not `entered-in-error`).
    pub encounters: i64,
    /// Of them, `finished` ones with a `period.end`: those whose duration is averaged.
    pub finished_with_end: i64,
    /// Their average `period.end − period.start` in seconds; `null` without any.
    pub average_duration_seconds: Option<f64>,
    /// `current` DocumentReferences (notes) of these encounters.
    pub notes_completed: i64,
}

impl Figures {
    fn of(bucket: &Bucket) -> Self {
        Self {
            encounters: bucket.encounters,
            finished_with_end: bucket.finished,
            average_duration_seconds: bucket.average_seconds(),
            notes_completed: bucket.notes,
        }
    }
}

impl EncounterAnalytics {
    /// The answer for `params` from the statement's `buckets`.
    pub fn new(tenant: &str, params: &AnalyticsParams, buckets: &[Bucket]) -> Self {
        let sum = Bucket {
            key: None,
            encounters: buckets.iter().map(|b| b.encounters).sum(),
            finished: buckets.iter().map(|b| b.finished).sum(),
            duration_seconds: buckets.iter().map(|b| b.duration_seconds).sum(),
            notes: buckets.iter().map(|b| b.notes).sum(),
        };
        Self {
            tenant: tenant.to_owned(),
            group_by: params.group_by.as_str(),
            from: params.from.to_string(),
            to: params.to.to_string(),
            time_zone: "UTC",
            groups: buckets
                .iter()
                .map(|bucket| Group {
                    key: bucket.key.clone(),
                    figures: Figures::of(bucket),
                })
                .collect(),
            total: Figures::of(&sum),
        }
    }
}

/// The same answer as a FHIR R4 `MeasureReport` (`status` complete, `type` summary) made
/// at `now`: one `group` per bucket, its `code` the key (system [`CODE_SYSTEM`]`/<groupBy>`;
/// only a `text` for encounters without a key), populations `initial-population` (the
/// encounters), `finished-with-end` and `notes-completed` ([`CODE_SYSTEM`]`/population`),
/// and `measureScore` the average duration in seconds (absent without a finished
/// encounter). `period.end` is the last microsecond before `to` (FHIR's end is inclusive).
pub fn measure_report(params: &AnalyticsParams, buckets: &[Bucket], now: Timestamp) -> Value {
    let group_by = params.group_by.as_str();
    let population = |system: &str, code: &str, text: &str, count: i64| {
        json!({
            "code": {"coding": [{"system": system, "code": code}], "text": text},
            "count": count,
        })
    };
    let own = format!("{CODE_SYSTEM}/population");
    let groups: Vec<Value> = buckets
        .iter()
        .map(|bucket| {
            let code = match &bucket.key {
                Some(key) => json!({
                    "coding": [{"system": format!("{CODE_SYSTEM}/{group_by}"), "code": key}],
                    "text": key,
                }),
                None => json!({"text": match params.group_by {
                    GroupBy::Department => "no department",
                    GroupBy::Provider => "no provider",
                    GroupBy::Day => "no day",
                }}),
            };
            let mut group = json!({
                "code": code,
                "population": [
                    population(MEASURE_POPULATION, "initial-population",
                        "encounters starting in the period", bucket.encounters),
                    population(&own, "finished-with-end",
                        "finished encounters with an end", bucket.finished),
                    population(&own, "notes-completed",
                        "current notes of these encounters", bucket.notes),
                ],
            });
            if let Some(seconds) = bucket.average_seconds() {
                group["measureScore"] = json!({
                    "value": seconds,
                    "unit": "s",
                    "system": "http://unitsofmeasure.org",
                    "code": "s",
                });
            }
            group
        })
        .collect();
    let end = params
        .to
        .checked_sub(SignedDuration::from_micros(1))
        .unwrap_or(params.to);
    let mut report = json!({
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": MEASURE,
        "date": now.round(Unit::Second).unwrap_or(now).to_string(),
        "period": {"start": params.from.to_string(), "end": end.to_string()},
    });
    // FHIR forbids empty arrays: a range without encounters has no group.
    if !groups.is_empty() {
        report["group"] = Value::Array(groups);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::params::ResponseFormat;

    fn params(group_by: GroupBy) -> AnalyticsParams {
        AnalyticsParams {
            from: "2024-05-01T00:00:00Z".parse().expect("from"),
            to: "2024-06-01T00:00:00Z".parse().expect("to"),
            group_by,
            format: Some(ResponseFormat::Json),
        }
    }

    fn buckets() -> Vec<Bucket> {
        vec![
            Bucket {
                key: Some("cardiology".into()),
                encounters: 3,
                finished: 2,
                duration_seconds: 3_600.0,
                notes: 2,
            },
            Bucket {
                key: None,
                encounters: 1,
                finished: 1,
                duration_seconds: 600.0,
                notes: 0,
            },
        ]
    }

    #[test]
    fn the_json_has_groups_in_order_and_a_weighted_total() {
        let answer = EncounterAnalytics::new("mercy", &params(GroupBy::Department), &buckets());
        let json = serde_json::to_value(&answer).expect("json");
        assert_eq!(
            json,
            json!({
                "tenant": "mercy", "groupBy": "department",
                "from": "2024-05-01T00:00:00Z", "to": "2024-06-01T00:00:00Z", "timeZone": "UTC",
                "groups": [
                    {"key": "cardiology", "encounters": 3, "finishedWithEnd": 2,
                     "averageDurationSeconds": 1800.0, "notesCompleted": 2},
                    {"key": null, "encounters": 1, "finishedWithEnd": 1,
                     "averageDurationSeconds": 600.0, "notesCompleted": 0},
                ],
                "total": {"encounters": 4, "finishedWithEnd": 3,
                          "averageDurationSeconds": 1400.0, "notesCompleted": 2},
            })
        );
    }

    #[test]
    fn the_measure_report_has_one_group_per_bucket_and_an_inclusive_period_end() {
        let now = "2024-06-02T10:11:12.345Z".parse().expect("now");
        let report = measure_report(&params(GroupBy::Department), &buckets(), now);
        assert_eq!(report["type"], "summary");
        assert_eq!(report["date"], "2024-06-02T10:11:12Z");
        assert_eq!(report["period"]["end"], "2024-05-31T23:59:59.999999Z");
        let groups = report["group"].as_array().expect("groups");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0]["code"]["coding"][0]["code"], "cardiology");
        assert_eq!(groups[0]["population"][0]["count"], 3);
        assert_eq!(groups[0]["population"][2]["count"], 2);
        assert_eq!(groups[0]["measureScore"]["value"], 1800.0);
        assert_eq!(groups[1]["code"], json!({"text": "no department"}));
        let empty = measure_report(&params(GroupBy::Day), &[], now);
        assert!(empty.get("group").is_none(), "{empty}");
    }
}
