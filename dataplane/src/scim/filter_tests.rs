use serde_json::json;

use super::*;

fn exact(path: &AttrPath) -> bool {
    path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("externalId")
}

fn user() -> Value {
    json!({
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "Kc-42",
        "userName": "Bjensen@Example.com",
        "name": {"familyName": "Jensen", "givenName": "Barbara"},
        "title": "",
        "active": true,
        "loginCount": 7,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {"lastModified": "2011-05-13T04:42:34Z", "resourceType": "User"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"}
    })
}

fn check(text: &str) -> bool {
    let filter = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    matches(&filter, &user(), &exact)
}

#[test]
fn every_operator_compares_as_rfc_7644_says() {
    let holds = [
        r#"userName eq "bjensen@example.com""#,
        r#"USERNAME Eq "BJENSEN@EXAMPLE.COM""#,
        r#"userName ne "other""#,
        r#"userName co "jensen""#,
        r#"userName sw "bjen""#,
        r#"userName ew ".com""#,
        r#"name.familyName eq "jensen""#,
        "name pr",
        "emails pr",
        "active eq true",
        "active ne false",
        "loginCount gt 6",
        "loginCount ge 7",
        "loginCount lt 8",
        "loginCount le 7",
        r#"meta.lastModified gt "2011-05-13T04:42:33Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"emails.type eq "home""#,
        r#"emails co "jensen.org""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "b""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
        r#"nickName eq null"#,
        r#"nickName ne "x""#,
    ];
    for text in holds {
        assert!(check(text), "should hold: {text}");
    }
    let fails = [
        r#"userName eq "someone""#,
        "title pr",
        "nickName pr",
        r#"externalId eq "kc-42""#,
        "loginCount gt 7",
        r#"active gt true"#,
        r#"userName gt 5"#,
        r#"userName eq null"#,
    ];
    for text in fails {
        assert!(!check(text), "should not hold: {text}");
    }
}

#[test]
fn logic_has_not_over_and_over_or_and_parentheses_group() {
    assert!(check(
        r#"userName eq "x" or active eq true and loginCount eq 7"#
    ));
    assert!(!check(
        r#"(userName eq "x" or active eq true) and loginCount eq 8"#
    ));
    assert!(check(r#"not (userName eq "x")"#));
    assert!(!check(r#"not(active eq true)"#));
    assert!(check(
        r#"userName eq "x" or not (loginCount lt 1) and (name.givenName sw "Bar")"#
    ));
    assert_eq!(
        parse(r#"a eq 1 or b eq 2 and c eq 3"#),
        Ok(Filter::Or(
            Box::new(Filter::Compare(AttrPath::simple("a"), Op::Eq, json!(1))),
            Box::new(Filter::And(
                Box::new(Filter::Compare(AttrPath::simple("b"), Op::Eq, json!(2))),
                Box::new(Filter::Compare(AttrPath::simple("c"), Op::Eq, json!(3))),
            )),
        ))
    );
}

#[test]
fn complex_filters_match_one_element_with_all_conditions() {
    assert!(check(
        r#"emails[type eq "work" and value co "@example.com"]"#
    ));
    assert!(!check(
        r#"emails[type eq "work" and value co "jensen.org"]"#
    ));
    assert!(check(r#"emails[type eq "home"] and userName sw "b""#));
    assert!(check(r#"emails[not (type eq "work")]"#));
    assert!(!check(r#"emails[primary eq true and type eq "home"]"#));
}

#[test]
fn strings_with_escapes_and_spaces_parse() {
    let filter = parse(r#"displayName eq "a \"quoted\" ) ] value""#).expect("parses");
    assert_eq!(
        filter,
        Filter::Compare(
            AttrPath::simple("displayName"),
            Op::Eq,
            json!("a \"quoted\" ) ] value")
        )
    );
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let garbage = [
        "",
        " ",
        "(",
        ")",
        "[",
        "]",
        "\"",
        "userName",
        "userName eq",
        "userName eq \"unterminated",
        "userName xx \"a\"",
        "userName eq \"a\" and",
        "or userName pr",
        "not userName pr",
        "not (",
        "emails[type eq \"work\"",
        "emails[]",
        "emails[type eq \"work\"].value eq \"x\"",
        "a eq 1 b eq 2",
        "a.b.c eq 1",
        "1abc eq 1",
        "userName eq bareword",
        "userName eq 1e999999",
        "é eq 1",
        "userName eq \"\\u12\"",
        "urn:x: eq 1",
        "((((a pr)))",
        "a pr)",
        "\u{0} pr",
        "userName eq \"a\" \u{1F600}",
        "emails[type eq \"a\"]extra",
    ];
    for text in garbage {
        assert!(parse(text).is_err(), "accepted: {text:?}");
    }
    let deep = format!("{}a pr{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(parse(&deep).is_err());
    let deep_not = "not (".repeat(5_000);
    assert!(parse(&deep_not).is_err());
    // Every prefix of valid filters parses or fails cleanly, at every char boundary.
    let valid = r#"emails[type eq "wörk" and value co "@x"] or not (userName sw "é") and loginCount ge 3.5"#;
    assert!(parse(valid).is_ok());
    for (i, _) in valid.char_indices() {
        let _ = parse(&valid[..i]);
        let _ = parse(&valid[i..]);
    }
}

#[test]
fn indexed_equalities_push_down_to_sql() {
    let pushed = |text: &str| {
        let filter = parse(text).expect("parses");
        pushdown(&filter, &["id", "userName", "externalId"]).map(|(n, v)| (n, v.to_owned()))
    };
    assert_eq!(
        pushed(r#"username eq "Alice""#),
        Some(("userName", "Alice".into()))
    );
    assert_eq!(
        pushed(r#"active eq true and externalId eq "k1""#),
        Some(("externalId", "k1".into()))
    );
    assert_eq!(pushed(r#"userName eq "a" or userName eq "b""#), None);
    assert_eq!(pushed(r#"userName co "a""#), None);
    assert_eq!(pushed(r#"displayName eq "a""#), None);
    assert_eq!(pushed(r#"not (userName eq "a")"#), None);
}
