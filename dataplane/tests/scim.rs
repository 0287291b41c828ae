//! The SCIM server against a real PostgreSQL provisioned by the operator's code, through a
//! running data plane that follows the catalog: CRUD, uniqueness per tenant, isolation of
//! tenants by row-level security, and token authentication (rotation expiry included).

mod support;

use std::time::Duration;

use phoenix_dataplane::catalog::token_hash;
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestDb, eventually, http, start_dataplane};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Scim {
    client: reqwest::Client,
    addr: String,
    host: String,
    token: String,
}

impl Scim {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("http://{}/scim/v2{path}", self.addr))
            .header("Host", &self.host)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("data plane answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn with_token(&self, token: &str) -> Self {
        Self {
            client: self.client.clone(),
            addr: self.addr.clone(),
            host: self.host.clone(),
            token: token.to_owned(),
        }
    }
}

/// A tenant with SCIM enabled and `token` as its SCIM token (plus `extra` SQL).
async fn scim_tenant(db: &TestDb, name: &str, token: &str) -> i64 {
    let id = db.insert_tenant(name, &format!("{name}.example.org")).await;
    db.execute(&format!(
        "INSERT INTO catalog.sso (tenant_id, idp_uid, idp_name, protocol, issuer, jwks_uri, \
         client_id, audiences, claim_subject, claim_email, claim_groups, claim_name, role_mapping, \
         allowed_email_domains, scim_enabled, generation) VALUES ({id}, 'uid-{name}', '{name}', \
         'OIDC', 'https://idp/{name}', 'https://idp/{name}/certs', 'c', '{{c}}', 'sub', 'email', \
         'groups', 'name', '[]', '{{}}', true, 1);
         INSERT INTO catalog.scim_tokens (token_sha256, tenant_id, idp_uid) VALUES ('{}', {id}, 'uid-{name}');",
        token_hash(token)
    ))
    .await;
    id
}

async fn started() -> (TestDb, phoenix_dataplane::Dataplane, Scim, Scim) {
    let db = TestDb::create().await;
    scim_tenant(&db, "mercy", "token-of-mercy").await;
    scim_tenant(&db, "lukes", "token-of-lukes").await;
    let dataplane = start_dataplane(&db).await;
    let mercy = Scim {
        client: http(),
        addr: dataplane.local_addr().to_string(),
        host: "mercy.example.org".into(),
        token: "token-of-mercy".into(),
    };
    let lukes = Scim {
        host: "lukes.example.org".into(),
        ..mercy.with_token("token-of-lukes")
    };
    for scim in [&mercy, &lukes] {
        eventually(
            "the SCIM token is loaded",
            Duration::from_secs(10),
            || async {
                let (status, body) = scim.send(Method::GET, "/ServiceProviderConfig", None).await;
                (status == 200)
                    .then_some(())
                    .ok_or(format!("{status} {body}"))
            },
        )
        .await;
    }
    (db, dataplane, mercy, lukes)
}

fn user(name: &str) -> Value {
    json!({"schemas": [USER], "userName": name, "externalId": format!("ext-{name}"),
           "emails": [{"value": format!("{name}@x.example"), "type": "work"}]})
}

#[tokio::test]
async fn users_and_groups_go_through_their_whole_life() {
    let (_db, _dp, mercy, _) = started().await;
    let (status, alice) = mercy
        .send(Method::POST, "/Users", Some(user("Alice")))
        .await;
    assert_eq!(status, 201, "{alice}");
    let id = alice["id"].as_str().expect("id").to_owned();
    assert_eq!(alice["meta"]["version"], "W/\"1\"");
    assert_eq!(
        alice["meta"]["location"],
        format!("http://mercy.example.org/scim/v2/Users/{id}")
    );

    let (status, found) = mercy
        .send(
            Method::GET,
            "/Users?filter=userName%20eq%20%22alice%22",
            None,
        )
        .await;
    assert_eq!(
        (status, found["totalResults"].as_u64()),
        (200, Some(1)),
        "{found}"
    );
    let (_, found) = mercy
        .send(
            Method::GET,
            "/Users?filter=emails%5Btype%20eq%20%22work%22%20and%20value%20co%20%22%40x.%22%5D",
            None,
        )
        .await;
    assert_eq!(found["totalResults"], 1, "{found}");

    let (status, group) = mercy
        .send(Method::POST, "/Groups", Some(json!({"schemas": [GROUP], "displayName": "physicians", "members": [{"value": id}]})))
        .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().expect("id").to_owned();
    let (_, alice_now) = mercy.send(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(alice_now["groups"][0]["value"], gid.as_str(), "{alice_now}");

    let patch = json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@new.example"},
        {"op": "replace", "path": "active", "value": false}]});
    let (status, patched) = mercy
        .send(Method::PATCH, &format!("/Users/{id}"), Some(patch))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (
            patched["active"].clone(),
            patched["emails"][0]["value"].clone()
        ),
        (json!(false), json!("a@new.example"))
    );
    assert_eq!(patched["meta"]["version"], "W/\"2\"");

    let remove = json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]});
    let (status, group) = mercy
        .send(Method::PATCH, &format!("/Groups/{gid}"), Some(remove))
        .await;
    assert_eq!(status, 200, "{group}");
    assert!(group.get("members").is_none(), "{group}");

    let (status, _) = mercy
        .send(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, gone) = mercy.send(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(
        gone["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
}

#[tokio::test]
async fn a_user_name_is_unique_per_tenant_whatever_its_case() {
    let (_db, _dp, mercy, lukes) = started().await;
    assert_eq!(
        mercy
            .send(Method::POST, "/Users", Some(user("bob")))
            .await
            .0,
        201
    );
    assert_eq!(
        lukes
            .send(Method::POST, "/Users", Some(user("bob")))
            .await
            .0,
        201,
        "another tenant may have its own bob"
    );
    let (status, body) = mercy.send(Method::POST, "/Users", Some(user("BOB"))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["scimType"], "uniqueness");
    assert_eq!(body["status"], "409");
}

#[tokio::test]
async fn a_tenant_cannot_see_or_change_another_tenants_resources() {
    let (_db, _dp, mercy, lukes) = started().await;
    let (_, carol) = mercy
        .send(Method::POST, "/Users", Some(user("carol")))
        .await;
    let id = carol["id"].as_str().expect("id").to_owned();
    let path = format!("/Users/{id}");
    assert_eq!(lukes.send(Method::GET, &path, None).await.0, 404);
    assert_eq!(
        lukes
            .send(Method::PUT, &path, Some(user("mallory")))
            .await
            .0,
        404
    );
    let patch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(lukes.send(Method::PATCH, &path, Some(patch)).await.0, 404);
    assert_eq!(lukes.send(Method::DELETE, &path, None).await.0, 404);
    let (_, listed) = lukes.send(Method::GET, "/Users", None).await;
    assert_eq!(listed["totalResults"], 0, "{listed}");
    // A member id of another tenant is refused exactly as one that does not exist.
    let group = |member: &str| json!({"schemas": [GROUP], "displayName": "g", "members": [{"value": member}]});
    let (status, theirs) = lukes.send(Method::POST, "/Groups", Some(group(&id))).await;
    let (_, missing) = lukes
        .send(
            Method::POST,
            "/Groups",
            Some(group("00000000-0000-4000-8000-000000000000")),
        )
        .await;
    assert_eq!(
        (status, theirs["scimType"].as_str()),
        (400, Some("invalidValue")),
        "{theirs}"
    );
    assert_eq!(
        theirs["detail"].as_str().map(|d| d.replace(&id, "X")),
        missing["detail"]
            .as_str()
            .map(|d| d.replace("00000000-0000-4000-8000-000000000000", "X"))
    );
    // Mercy's token is no token at lukes' host.
    let (status, body) = mercy
        .with_token("token-of-lukes")
        .send(Method::GET, "/Users", None)
        .await;
    assert_eq!(status, 401, "{body}");
    let wrong = Scim {
        host: "lukes.example.org".into(),
        ..mercy.with_token("token-of-mercy")
    };
    assert_eq!(wrong.send(Method::GET, "/Users", None).await.0, 401);
    let (_, still) = mercy.send(Method::GET, &path, None).await;
    assert_eq!(still["active"], Value::Null, "untouched: {still}");
    assert_eq!(still["userName"], "carol");
}

#[tokio::test]
async fn if_match_guards_writes_with_the_version() {
    let (_db, _dp, mercy, _) = started().await;
    let (_, dave) = mercy.send(Method::POST, "/Users", Some(user("dave"))).await;
    let url = format!(
        "http://{}/scim/v2/Users/{}",
        mercy.addr,
        dave["id"].as_str().expect("id")
    );
    let put = |tag: &'static str| {
        mercy
            .client
            .put(&url)
            .header("Host", &mercy.host)
            .bearer_auth(&mercy.token)
            .header("If-Match", tag)
            .header("Content-Type", "application/scim+json")
            .body(user("dave").to_string())
            .send()
    };
    let stale = put("W/\"7\"").await.expect("answers");
    assert_eq!(stale.status().as_u16(), 412);
    let fresh = put("W/\"1\"").await.expect("answers");
    assert_eq!(fresh.status().as_u16(), 200);
    assert_eq!(fresh.headers()["etag"], "W/\"2\"");
}

#[tokio::test]
async fn tokens_are_refused_when_unknown_expired_or_scim_is_off() {
    let (db, _dp, mercy, _) = started().await;
    let (status, body) = mercy
        .with_token("guess")
        .send(Method::GET, "/Users", None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    // A rotated-out token works until its expiry, checked per request.
    db.execute(&format!(
        "INSERT INTO catalog.scim_tokens (token_sha256, tenant_id, idp_uid, expires_at) \
         SELECT '{}', id, 'uid-mercy', now() + interval '2 seconds' FROM catalog.tenants WHERE name = 'mercy'",
        token_hash("old-token")
    ))
    .await;
    let old = mercy.with_token("old-token");
    eventually(
        "the old token is loaded",
        Duration::from_secs(10),
        || async {
            let (status, _) = old.send(Method::GET, "/Users", None).await;
            (status == 200).then_some(()).ok_or(status.to_string())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        old.send(Method::GET, "/Users", None).await.0,
        401,
        "expired"
    );
    db.execute("UPDATE catalog.sso SET scim_enabled = false")
        .await;
    eventually(
        "SCIM off refuses the token",
        Duration::from_secs(10),
        || async {
            let (status, _) = mercy.send(Method::GET, "/Users", None).await;
            (status == 401).then_some(()).ok_or(status.to_string())
        },
    )
    .await;
}

#[tokio::test]
async fn what_the_service_provider_config_disclaims_answers_501_as_a_scim_error() {
    let (_db, _dp, mercy, _) = started().await;
    let (_, config) = mercy
        .send(Method::GET, "/ServiceProviderConfig", None)
        .await;
    assert_eq!(config["bulk"]["supported"], false, "{config}");
    for (method, path) in [(Method::POST, "/Bulk"), (Method::GET, "/Me")] {
        let (status, body) = mercy.send(method.clone(), path, Some(json!({}))).await;
        assert_eq!(status, 501, "{method} {path}: {body}");
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{body}"
        );
        assert_eq!(body["status"], "501", "{body}");
    }
    // Still behind the token: a caller without one learns nothing about what is served.
    let anonymous = mercy
        .client
        .post(format!("http://{}/scim/v2/Bulk", mercy.addr))
        .header("Host", &mercy.host)
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);
}
