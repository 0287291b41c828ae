use serde_json::json;

use super::*;

fn never(_: &AttrPath) -> bool {
    false
}

fn read_only(path: &AttrPath) -> bool {
    path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("groups")
}

fn request(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

fn patched(mut resource: Value, operations: Value) -> Result<Value, PatchError> {
    let ops = parse_request(&request(operations))?;
    apply(&mut resource, &ops, &read_only, &never)?;
    Ok(resource)
}

fn user() -> Value {
    json!({
        "id": "u1",
        "userName": "bjensen",
        "active": true,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "b@work.example", "type": "work", "primary": true},
            {"value": "b@home.example", "type": "home"}
        ],
        "members": [{"value": "a"}, {"value": "b"}, {"value": "c"}]
    })
}

#[test]
fn add_appends_to_multi_valued_merges_complex_and_sets_simple() {
    let out = patched(
        user(),
        json!([
            {"op": "add", "path": "emails", "value": [{"value": "x@y", "type": "other"}]},
            {"op": "Add", "path": "name", "value": {"middleName": "J"}},
            {"op": "add", "path": "nickName", "value": "Babs"},
            {"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "d"}]}
        ]),
    )
    .expect("applies");
    assert_eq!(out["emails"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        out["name"],
        json!({"givenName": "Barbara", "familyName": "Jensen", "middleName": "J"})
    );
    assert_eq!(out["nickName"], "Babs");
    assert_eq!(
        out["members"],
        json!([{"value": "a"}, {"value": "b"}, {"value": "c"}, {"value": "d"}])
    );
}

#[test]
fn replace_with_value_filters_and_sub_attributes() {
    let out = patched(user(), json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@work.example"},
        {"op": "replace", "path": "name.familyName", "value": "Smith"},
        {"op": "replace", "path": "active", "value": false}
    ])).expect("applies");
    assert_eq!(out["emails"][0]["value"], "new@work.example");
    assert_eq!(out["emails"][1]["value"], "b@home.example");
    assert_eq!(out["name"]["familyName"], "Smith");
    assert_eq!(out["active"], false);
}

#[test]
fn a_filtered_sub_attribute_with_no_match_adds_the_element_as_idps_expect() {
    let out = patched(
        json!({"userName": "x"}),
        json!([
            {"op": "add", "path": "emails[type eq \"work\"].value", "value": "w@x"}
        ]),
    )
    .expect("applies");
    assert_eq!(out["emails"], json!([{"type": "work", "value": "w@x"}]));
    let error = patched(
        user(),
        json!([
            {"op": "replace", "path": "emails[type eq \"fax\" or primary ne true].display", "value": "x"}
        ]),
    );
    assert!(error.is_ok(), "the home email has primary absent: ne holds");
    let error = patched(
        user(),
        json!([
            {"op": "replace", "path": "emails[value co \"nowhere\"]", "value": {"value": "z"}}
        ]),
    );
    assert!(matches!(error, Err(PatchError::NoTarget(_))), "{error:?}");
}

#[test]
fn remove_by_filter_by_value_and_whole_attributes() {
    let out = patched(
        user(),
        json!([
            {"op": "remove", "path": "members[value eq \"b\"]"},
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "remove", "path": "name.givenName"}
        ]),
    )
    .expect("applies");
    assert_eq!(out["members"], json!([{"value": "a"}, {"value": "c"}]));
    assert_eq!(out["emails"].as_array().map(Vec::len), Some(1));
    assert_eq!(out["name"], json!({"familyName": "Jensen"}));
    let out = patched(
        user(),
        json!([
            {"op": "remove", "path": "members", "value": [{"value": "a"}, {"value": "c"}]}
        ]),
    )
    .expect("applies");
    assert_eq!(out["members"], json!([{"value": "b"}]));
    let out = patched(
        user(),
        json!([
            {"op": "remove", "path": "members"},
            {"op": "remove", "path": "emails[type eq \"work\" or type eq \"home\"]"},
            {"op": "remove", "path": "nickName"}
        ]),
    )
    .expect("applies");
    assert!(out.get("members").is_none() && out.get("emails").is_none());
}

#[test]
fn without_a_path_the_value_names_attributes_plainly_dotted_or_by_urn() {
    let out = patched(
        user(),
        json!([{"op": "replace", "value": {
            "active": false,
            "name.givenName": "Babs",
            "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "B. Jensen",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "ICU"},
            "id": "ignored"
        }}]),
    )
    .expect("applies");
    assert_eq!(out["active"], false);
    assert_eq!(out["name"]["givenName"], "Babs");
    assert_eq!(out["displayName"], "B. Jensen");
    assert_eq!(
        out["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "ICU"
    );
    assert_eq!(out["id"], "u1");
}

#[test]
fn read_only_targets_and_bad_requests_are_refused_with_their_scim_type() {
    assert!(matches!(
        patched(
            user(),
            json!([{"op": "replace", "path": "id", "value": "x"}])
        ),
        Err(PatchError::Mutability(_))
    ));
    assert!(matches!(
        patched(
            user(),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])
        ),
        Err(PatchError::Mutability(_))
    ));
    assert!(matches!(
        patched(user(), json!([{"op": "remove"}])),
        Err(PatchError::NoTarget(_))
    ));
    assert!(matches!(
        patched(user(), json!([{"op": "move", "path": "x"}])),
        Err(PatchError::InvalidSyntax(_))
    ));
    assert!(matches!(
        patched(user(), json!([{"op": "add", "path": "x"}])),
        Err(PatchError::InvalidValue(_))
    ));
    assert!(matches!(
        patched(
            user(),
            json!([{"op": "add", "path": "emails[type eq]", "value": 1}])
        ),
        Err(PatchError::InvalidPath(_))
    ));
    assert!(matches!(
        patched(
            user(),
            json!([{"op": "add", "path": "userName[type eq \"x\"].value", "value": 1}])
        ),
        Err(PatchError::InvalidPath(_))
    ));
    assert!(matches!(
        patched(user(), json!([{"op": "replace", "value": "not an object"}])),
        Err(PatchError::InvalidValue(_))
    ));
    assert!(matches!(
        parse_request(&json!({"Operations": []})),
        Err(PatchError::InvalidSyntax(_))
    ));
    assert!(matches!(
        parse_request(&json!({"schemas": [PATCH_OP]})),
        Err(PatchError::InvalidSyntax(_))
    ));
}

#[test]
fn patch_paths_parse_and_garbage_does_not_panic() {
    let path = path::parse_patch_path("emails[type eq \"work\"].value").expect("parses");
    assert_eq!(path.attr.name, "emails");
    assert_eq!(path.sub.as_deref(), Some("value"));
    assert!(path.filter.is_some());
    let path = path::parse_patch_path("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName")
        .expect("parses");
    assert_eq!(
        (path.attr.name.as_str(), path.attr.sub.as_deref()),
        ("name", Some("familyName"))
    );
    assert!(path.attr.is_core());
    for garbage in [
        "",
        "[",
        "]",
        "a[",
        "a]",
        "a[]",
        "a[b eq 1",
        "a[b eq 1]x",
        "a[b eq 1].",
        "a[b eq 1].c.d",
        "a.b[c eq 1]",
        ".a",
        "a..b",
        "a b",
        "http://x:y",
        "é",
        "a[b eq 1]]",
        "\u{0}",
    ] {
        assert!(
            path::parse_patch_path(garbage).is_err(),
            "accepted {garbage:?}"
        );
    }
    for garbage in [
        json!(null),
        json!([]),
        json!("x"),
        json!({"schemas": [PATCH_OP], "Operations": [1, "x", null]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": 3}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": 5, "value": 1}]}),
    ] {
        assert!(parse_request(&garbage).is_err(), "accepted {garbage}");
    }
    // Applying to something that is not an object changes nothing and does not panic.
    let ops = parse_request(&request(
        json!([{"op": "add", "path": "a.b", "value": 1}, {"op": "remove", "path": "x[y eq 1].z"}]),
    ))
    .expect("parses");
    for mut odd in [json!(null), json!([1]), json!("s"), json!({"a": 5, "x": 7})] {
        let _ = apply(&mut odd, &ops, &never, &never);
    }
}
