//! The `searchset` Bundle a search answers with. Pure.

use serde::Serialize;
use serde_json::value::RawValue;

/// A FHIR `Bundle` of type `searchset`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchSet {
    resource_type: &'static str,
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: Vec<Link>,
    // FHIR JSON forbids empty arrays.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry>,
}

/// A link of a Bundle (`self`, `next`).
#[derive(Debug, Serialize)]
pub struct Link {
    relation: &'static str,
    url: String,
}

/// One match of a search, its stored JSON passed through unparsed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    full_url: String,
    resource: Box<RawValue>,
    search: EntrySearch,
}

#[derive(Debug, Serialize)]
struct EntrySearch {
    mode: &'static str,
}

impl Entry {
    /// A match at `full_url` whose stored JSON is `resource`.
    pub fn matched(full_url: String, resource: Box<RawValue>) -> Self {
        Self {
            full_url,
            resource,
            search: EntrySearch { mode: "match" },
        }
    }

    /// A resource at `full_url` included because a match references it (`_include`).
    pub fn included(full_url: String, resource: Box<RawValue>) -> Self {
        Self {
            full_url,
            resource,
            search: EntrySearch { mode: "include" },
        }
    }
}

impl SearchSet {
    /// A page of `entries`; `self_url` is the search as applied, `next_url` the next page.
    pub fn page(
        entries: Vec<Entry>,
        total: Option<u64>,
        self_url: String,
        next_url: Option<String>,
    ) -> Self {
        let mut link = vec![Link {
            relation: "self",
            url: self_url,
        }];
        if let Some(url) = next_url {
            link.push(Link {
                relation: "next",
                url,
            });
        }
        Self {
            resource_type: "Bundle",
            r#type: "searchset",
            total,
            link,
            entry: entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_page_has_no_entry_array_and_a_count_has_a_total() {
        let bundle = SearchSet::page(Vec::new(), Some(0), "https://h/fhir/Patient".into(), None);
        let json = serde_json::to_value(&bundle).expect("serializes");
        assert_eq!(json["type"], "searchset");
        assert_eq!(json["total"], 0);
        assert!(json.get("entry").is_none());
        assert_eq!(json["link"][0]["relation"], "self");
    }

    #[test]
    fn entries_carry_their_resource_unchanged() {
        let raw = RawValue::from_string(r#"{"resourceType":"Patient","id":"a"}"#.into())
            .expect("raw json");
        let bundle = SearchSet::page(
            vec![Entry::matched("https://h/fhir/Patient/a".into(), raw)],
            None,
            "s".into(),
            Some("n".into()),
        );
        let json = serde_json::to_value(&bundle).expect("serializes");
        assert_eq!(json["entry"][0]["resource"]["id"], "a");
        assert_eq!(json["entry"][0]["search"]["mode"], "match");
        assert_eq!(json["link"][1]["relation"], "next");
        assert!(json.get("total").is_none());
    }
}
