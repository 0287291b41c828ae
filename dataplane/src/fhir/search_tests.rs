use super::*;

fn strict(query: &str) -> Result<Search, FhirError> {
    parse(query, &crate::fhir::patient::KIND, Handling::Strict)
}

fn day(text: &str) -> Date {
    text.parse().expect("a date")
}

#[test]
fn date_prefixes_and_precisions_become_ranges_of_days() {
    let search = strict("birthdate=ge1980-02&birthdate=lt1990").expect("parses");
    assert_eq!(
        search.filters[0].any_of,
        vec![Criterion::Date {
            prefix: Prefix::Ge,
            first: day("1980-02-01"),
            next: day("1980-03-01"),
        }]
    );
    assert_eq!(
        search.filters[1].any_of,
        vec![Criterion::Date {
            prefix: Prefix::Lt,
            first: day("1990-01-01"),
            next: day("1991-01-01"),
        }]
    );
    let eq = strict("birthdate=2024-02-29").expect("parses");
    assert_eq!(
        eq.filters[0].any_of,
        vec![Criterion::Date {
            prefix: Prefix::Eq,
            first: day("2024-02-29"),
            next: day("2024-03-01"),
        }]
    );
}

#[test]
fn garbage_dates_and_prefixes_are_refused_naming_the_parameter() {
    for query in [
        "birthdate=2023-02-29",
        "birthdate=ne2000",
        "birthdate=sa2000",
        "birthdate=19800101",
        "birthdate=1980-1-1",
        "birthdate=2000-01-01T00:00:00Z",
        "birthdate=",
        "birthdate=ge",
        "birthdate=0000",
        "birthdate=%FF%FE",
        "birthdate=２０００",
    ] {
        match strict(query) {
            Err(FhirError::BadSearch { parameter, .. }) => assert_eq!(parameter, "birthdate"),
            other => panic!("{query}: {other:?}"),
        }
    }
}

#[test]
fn tokens_take_every_fhir_form_and_commas_are_alternatives() {
    let search = strict("identifier=urn:mrn|123,|456,urn:ssn|,789").expect("parses");
    assert_eq!(
        search.filters[0].any_of,
        vec![
            Criterion::Token {
                system: Some("urn:mrn".into()),
                value: Some("123".into()),
                no_system: false
            },
            Criterion::Token {
                system: None,
                value: Some("456".into()),
                no_system: true
            },
            Criterion::Token {
                system: Some("urn:ssn".into()),
                value: None,
                no_system: false
            },
            Criterion::Token {
                system: None,
                value: Some("789".into()),
                no_system: false
            },
        ]
    );
    assert!(strict("identifier=|").is_err());
    assert!(strict("identifier=a|b|c").is_err());
    let escaped = strict("identifier=a\\|b").expect("escaped bar");
    assert_eq!(
        escaped.filters[0].any_of[0],
        Criterion::Token {
            system: None,
            value: Some("a|b".into()),
            no_system: false
        }
    );
}

#[test]
fn strings_are_lowercased_prefixes() {
    let search = strict("name=ChalMers,Peter%5C%2C&family=O%27Brien").expect("parses");
    assert_eq!(
        search.filters[0].any_of,
        vec![
            Criterion::Prefix("chalmers".into()),
            Criterion::Prefix("peter,".into())
        ]
    );
    assert_eq!(
        search.filters[1].any_of,
        vec![Criterion::Prefix("o'brien".into())]
    );
}

#[test]
fn unknown_parameters_follow_the_handling_preference() {
    assert!(matches!(
        strict("family=a&colour=red"),
        Err(FhirError::UnknownSearchParameter(name)) if name == "colour"
    ));
    assert!(matches!(
        strict("family:exact=a"),
        Err(FhirError::UnknownSearchParameter(_))
    ));
    let lenient = parse(
        "family=a&colour=red&_sort=name",
        &crate::fhir::patient::KIND,
        Handling::Lenient,
    )
    .expect("lenient ignores");
    assert_eq!(lenient.filters.len(), 1);
    assert_eq!(lenient.applied_query(), "family=a");
}

#[test]
fn count_summary_and_cursor_are_control_parameters() {
    let search = strict("_count=500&_cursor=abc").expect("parses");
    assert_eq!(search.count, MAX_COUNT);
    assert_eq!(search.cursor.as_deref(), Some("abc"));
    assert_eq!(search.applied_query(), "_count=100");
    assert_eq!(strict("").expect("parses").count, DEFAULT_COUNT);
    assert!(strict("_summary=count").expect("parses").summary_count);
    let zero = strict("_count=0").expect("parses");
    assert!(zero.summary_count);
    assert_eq!(
        zero.applied_query(),
        "_count=0",
        "the self link says what was applied"
    );
    for bad in ["_count=-1", "_count=ten", "_count="] {
        assert!(
            matches!(strict(bad), Err(FhirError::BadSearch { .. })),
            "{bad}"
        );
    }
    assert!(strict("_summary=true").is_err());
}

#[test]
fn the_prefer_header_selects_handling() {
    assert_eq!(Handling::from_prefer(None), Handling::Lenient);
    assert_eq!(
        Handling::from_prefer(Some("handling=strict")),
        Handling::Strict
    );
    assert_eq!(
        Handling::from_prefer(Some("return=minimal, handling=strict")),
        Handling::Strict
    );
    assert_eq!(
        Handling::from_prefer(Some("handling=lenient")),
        Handling::Lenient
    );
}

#[test]
fn date_ranges_cover_years_months_and_days() {
    assert_eq!(
        date_range("2000"),
        Some((day("2000-01-01"), day("2001-01-01")))
    );
    assert_eq!(
        date_range("2000-12"),
        Some((day("2000-12-01"), day("2001-01-01")))
    );
    assert_eq!(
        date_range("2000-12-31"),
        Some((day("2000-12-31"), day("2001-01-01")))
    );
    for bad in [
        "",
        "200",
        "20000",
        "2000-13",
        "2000-00-10",
        "2000-1",
        "+200",
        "-2000",
        "2000--1",
    ] {
        assert_eq!(date_range(bad), None, "{bad}");
    }
}

#[test]
fn references_sorts_and_includes_parse_against_the_kind() {
    let kind = &crate::fhir::encounter::KIND;
    let search = parse(
        "patient=Patient/abc,def&practitioner=Practitioner/dr&_sort=-date&_include=Encounter:patient&_include=Encounter:patient",
        kind,
        Handling::Strict,
    )
    .expect("parses");
    assert_eq!(
        search.filters[0].any_of,
        [
            Criterion::Reference("abc".into()),
            Criterion::Reference("def".into())
        ]
    );
    assert_eq!(
        search.filters[1].any_of,
        [Criterion::Reference("dr".into())]
    );
    let (sort, descending) = search.sort.expect("sorted");
    assert_eq!((sort.column, descending), ("period_start", true));
    assert_eq!(
        search.includes.len(),
        1,
        "an include given twice is served once"
    );
    for bad in [
        "patient=Group/abc",
        "patient=",
        "practitioner=Patient/x",
        "_sort=date&_sort=-date",
    ] {
        assert!(
            matches!(
                parse(bad, kind, Handling::Strict),
                Err(FhirError::BadSearch { .. })
            ),
            "{bad}"
        );
    }
    for unknown in [
        "_sort=status",
        "_include=Patient:link",
        "_include=Encounter:practitioner",
    ] {
        assert!(matches!(
            parse(unknown, kind, Handling::Strict),
            Err(FhirError::UnknownSearchParameter(_))
        ));
        let lenient = parse(unknown, kind, Handling::Lenient).expect("ignored");
        assert!(
            lenient.applied.is_empty() && lenient.sort.is_none() && lenient.includes.is_empty()
        );
    }
}
