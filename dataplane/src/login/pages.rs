//! The few HTML pages of the browser login: who is logged in, logged out, and why a login
//! failed. Every value shown is HTML-escaped; nothing secret is ever shown.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::auth::Principal;

/// `text` with `& < > " '` escaped for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · Phoenix Guardian</title></head>\n<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title)
    )
}

/// When the credential of a page's principal ends, for display.
#[derive(Clone, Copy, Debug)]
pub enum Ends {
    /// A session ending at the latest at this Unix time.
    Session(i64),
    /// A bearer token (its expiry is the token's).
    Bearer,
}

/// The who-am-I page.
pub fn whoami(principal: &Principal, ends: Ends) -> Response {
    let identity = &principal.identity;
    let optional = |value: &Option<String>| {
        value
            .as_deref()
            .map_or_else(|| "<em>not given</em>".to_owned(), escape)
    };
    let roles = if identity.roles.is_empty() {
        "<em>none</em>".to_owned()
    } else {
        identity
            .roles
            .iter()
            .map(|r| format!("<li class=\"role\">{}</li>", escape(r)))
            .collect::<Vec<_>>()
            .join("")
    };
    let ends = match ends {
        Ends::Session(at) => jiff::Timestamp::from_second(at)
            .map(|t| {
                format!(
                    "session, ends at the latest at {}",
                    t.strftime("%Y-%m-%d %H:%M:%S UTC")
                )
            })
            .unwrap_or_else(|_| "session".to_owned()),
        Ends::Bearer => "bearer token".to_owned(),
    };
    let body = format!(
        "<dl>\n<dt>Organisation</dt><dd id=\"tenant\">{tenant}</dd>\n\
         <dt>Name</dt><dd id=\"name\">{name}</dd>\n\
         <dt>Email</dt><dd id=\"email\">{email}</dd>\n\
         <dt>Subject</dt><dd id=\"subject\">{subject}</dd>\n\
         <dt>Roles</dt><dd><ul id=\"roles\">{roles}</ul></dd>\n\
         <dt>Signed in with</dt><dd id=\"expires\">{ends}</dd>\n</dl>\n\
         <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form>",
        tenant = escape(&principal.tenant.display_name),
        name = optional(&identity.name),
        email = optional(&identity.email),
        subject = escape(&identity.subject),
        ends = escape(&ends),
    );
    Html(page("Signed in", &body)).into_response()
}

/// The page after logout when the provider offers no end-session endpoint.
pub fn logged_out() -> Response {
    Html(page(
        "Signed out",
        "<p id=\"message\">You are signed out.</p>\n<p><a href=\"/login\">Sign in again</a></p>",
    ))
    .into_response()
}

/// A login that did not succeed: `status` with a message the user can act on.
pub fn login_failed(status: StatusCode, message: &str) -> Response {
    let title = if status == StatusCode::FORBIDDEN {
        "Sign-in refused"
    } else {
        "Sign-in failed"
    };
    let body = format!(
        "<p id=\"message\">{}</p>\n<p><a href=\"/login\">Try again</a></p>",
        escape(message)
    );
    (status, Html(page(title, &body))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
