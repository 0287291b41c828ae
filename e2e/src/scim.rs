//! SCIM against a running data plane: the tenant's generated token read from the Secret the
//! operator writes, and users provisioned the way an identity provider does it.

use serde_json::{Value, json};

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The PATCH request schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The SCIM token of IdPConnection `idp`, from Secret `phoenix-scim-<idp>`; `None` while
/// the operator has not written it.
pub async fn scim_token(idp: &str) -> Option<String> {
    crate::secret_value(&format!("phoenix-scim-{idp}"), "token").await
}

/// A SCIM client of one tenant at one data plane.
#[derive(Clone, Debug)]
pub struct ScimClient {
    http: reqwest::Client,
    /// The data plane's `host:port`.
    pub addr: String,
    /// The tenant's host name, sent as Host.
    pub host: String,
    token: String,
}

impl ScimClient {
    /// A client of the tenant at `host`, through the data plane at `addr`, with `token`.
    pub fn new(addr: &str, host: &str, token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            addr: addr.to_owned(),
            host: host.to_owned(),
            token: token.to_owned(),
        }
    }

    /// Sends `method` to `/scim/v2{path}` with `body`; returns status and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}/scim/v2{path}", self.addr))
            .header("Host", &self.host)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the data plane answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a user as an IdP does; returns its id. Panics unless 201.
    pub async fn create_user(&self, user_name: &str, external_id: Option<&str>) -> String {
        let mut user = json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true,
            "emails": [{"value": user_name, "type": "work", "primary": true}]});
        if let Some(external_id) = external_id {
            user["externalId"] = json!(external_id);
        }
        let (status, body) = self.send(reqwest::Method::POST, "/Users", Some(user)).await;
        assert_eq!(status, 201, "creating SCIM user {user_name}: {body}");
        body["id"]
            .as_str()
            .expect("the created user's id")
            .to_owned()
    }

    /// Sets `active` of user `id` with PATCH. Panics unless 200.
    pub async fn set_active(&self, id: &str, active: bool) {
        let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": active}]});
        let (status, body) = self
            .send(reqwest::Method::PATCH, &format!("/Users/{id}"), Some(patch))
            .await;
        assert_eq!(status, 200, "PATCH active={active}: {body}");
        assert_eq!(body["active"], active, "{body}");
    }
}

/// The SCIM client of IdPConnection `idp`'s tenant at `host` through the data plane at
/// `addr`, once the operator wrote its token and the data plane accepts it.
pub async fn client_when_ready(addr: &str, host: &str, idp: &str) -> ScimClient {
    crate::eventually(
        &format!("the SCIM token of {idp} opens /scim/v2 at {host}"),
        std::time::Duration::from_secs(90),
        || async move {
            let token = scim_token(idp).await?;
            let client = ScimClient::new(addr, host, &token);
            let (status, _) = client
                .send(reqwest::Method::GET, "/ServiceProviderConfig", None)
                .await;
            (status == 200).then_some(client)
        },
    )
    .await
}

/// Provisions `emails` (userName = email) as active users of the tenant at `host`, as the
/// tenant's IdP would, so that their tokens are admitted; a user already there is kept.
pub async fn provision_users(addr: &str, host: &str, idp: &str, emails: &[&str]) {
    let client = client_when_ready(addr, host, idp).await;
    for email in emails {
        let user = json!({"schemas": [USER_SCHEMA], "userName": email, "active": true,
            "emails": [{"value": email, "type": "work", "primary": true}]});
        let (status, body) = client
            .send(reqwest::Method::POST, "/Users", Some(user))
            .await;
        assert!(
            status == 201 || status == 409,
            "provisioning {email}: {status} {body}"
        );
    }
}
