use std::collections::HashMap;

use serde_json::json;

use super::*;

fn never(_: &AttrPath) -> bool {
    false
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn users() -> Vec<Value> {
    ["carol", "Alice", "bob", "dave"]
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"schemas": ["s"], "id": format!("id{i}"), "userName": n, "name": {"givenName": n, "familyName": "X"}, "meta": {"version": "W/\"1\""}}))
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|u| u["userName"].as_str().unwrap_or("-").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pages_are_one_based_and_count_is_clamped() {
    let query = ListQuery::from_params(&params(&[
        ("sortBy", "userName"),
        ("startIndex", "2"),
        ("count", "2"),
    ]))
    .expect("valid");
    let list = respond(users(), &query, &never);
    assert_eq!(names(&list), ["bob", "carol"]);
    assert_eq!(
        (
            list["totalResults"].as_u64(),
            list["startIndex"].as_u64(),
            list["itemsPerPage"].as_u64()
        ),
        (Some(4), Some(2), Some(2))
    );
    assert_eq!(list["schemas"][0], LIST_RESPONSE);
    let query =
        ListQuery::from_params(&params(&[("startIndex", "-5"), ("count", "-1")])).expect("valid");
    assert_eq!((query.start_index, query.count), (1, 0));
    let list = respond(users(), &query, &never);
    assert_eq!(
        (list["totalResults"].as_u64(), list["itemsPerPage"].as_u64()),
        (Some(4), Some(0))
    );
    let query = ListQuery::from_params(&params(&[("count", "99999999999")])).expect("valid");
    assert_eq!(query.count, MAX_RESULTS);
    let beyond = respond(
        users(),
        &ListQuery::from_params(&params(&[("startIndex", "50")])).expect("valid"),
        &never,
    );
    assert_eq!(beyond["itemsPerPage"], 0);
    assert!(ListQuery::from_params(&params(&[("count", "ten")])).is_err());
    assert!(ListQuery::from_params(&params(&[("sortOrder", "sideways")])).is_err());
    assert!(matches!(
        ListQuery::from_params(&params(&[("filter", "userName eq")])),
        Err(ScimError::BadRequest {
            scim_type: "invalidFilter",
            ..
        })
    ));
}

#[test]
fn sorting_ignores_case_and_can_descend() {
    let query = ListQuery::from_params(&params(&[
        ("sortBy", "userName"),
        ("sortOrder", "descending"),
    ]))
    .expect("valid");
    assert_eq!(
        names(&respond(users(), &query, &never)),
        ["dave", "carol", "bob", "Alice"]
    );
    let query = ListQuery::from_params(&params(&[("sortBy", "nickName")])).expect("valid");
    assert_eq!(
        respond(users(), &query, &never)["totalResults"],
        4,
        "missing keys sort last, nothing lost"
    );
}

#[test]
fn filters_narrow_the_list() {
    let query = ListQuery::from_params(&params(&[(
        "filter",
        "userName sw \"a\" or userName eq \"BOB\"",
    )]))
    .expect("valid");
    assert_eq!(names(&respond(users(), &query, &never)), ["Alice", "bob"]);
}

#[test]
fn projection_keeps_id_and_schemas_and_honours_sub_attributes() {
    let user = users().remove(0);
    let only = Projection::from_params(&params(&[("attributes", "name.givenName")]))
        .expect("valid")
        .apply(user.clone());
    assert_eq!(
        only,
        json!({"schemas": ["s"], "id": "id0", "name": {"givenName": "carol"}})
    );
    let without = Projection::from_params(&params(&[("excludedAttributes", "name,meta,id")]))
        .expect("valid")
        .apply(user.clone());
    assert_eq!(
        without,
        json!({"schemas": ["s"], "id": "id0", "userName": "carol"})
    );
    let without = Projection::from_params(&params(&[("excludedAttributes", "name.familyName")]))
        .expect("valid")
        .apply(user);
    assert_eq!(without["name"], json!({"givenName": "carol"}));
    assert!(Projection::from_params(&params(&[("attributes", "a b")])).is_err());
}

#[test]
fn a_search_body_is_read_like_query_parameters() {
    let query = ListQuery::from_search(&json!({
        "schemas": [SEARCH_REQUEST], "filter": "userName pr", "startIndex": 2, "count": 1,
        "attributes": ["userName"], "sortBy": "userName"
    }))
    .expect("valid");
    let list = respond(users(), &query, &never);
    assert_eq!(names(&list), ["bob"]);
    assert_eq!(
        list["Resources"][0],
        json!({"schemas": ["s"], "id": "id2", "userName": "bob"})
    );
}
