//! A small W3C WebDriver client over reqwest for the browser tests: Debian's `chromedriver`
//! started on a free loopback port, driving headless `chromium` (both installed by the
//! stack, `e2e/lib/common.sh`). Only what the tests use: open a URL, find, type, click,
//! read text, source and cookies.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The element reference key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver, killed when dropped together with every browser it started
/// (they share its process group), whose profiles are then removed.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
    profiles: Mutex<Vec<PathBuf>>,
}

impl Driver {
    /// Starts `chromedriver` on a free port and waits until it is ready.
    pub async fn start() -> Self {
        let port = crate::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group: the browsers it starts join it, and dropping the
            // driver kills the whole group, so no Chromium outlives the test.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver ({e}): `e2e/stack up` installs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
            });
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            profiles: Mutex::new(Vec::new()),
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                && let Ok(body) = r.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless browser (a fresh profile: no cookies, no IdP session) that resolves
    /// every `*.phoenixguardian.test` host to 127.0.0.1 and accepts the test certificate.
    pub async fn browser(&self) -> Browser {
        let profile = std::env::temp_dir().join(format!("phoenix-chromium-{:016x}", rand_u64()));
        self.profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(profile.clone());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--ignore-certificate-errors",
                    "--host-resolver-rules=MAP *.phoenixguardian.test 127.0.0.1",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let res = self
            .http
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers");
        let body: Value = res.json().await.expect("JSON");
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {body}"))
            .to_owned();
        Browser {
            base: format!("{}/session/{id}", self.url),
            http: self.http.clone(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (`process_group(0)`).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for profile in self
            .profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = std::fs::remove_dir_all(profile);
        }
    }
}

fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// One browser session.
pub struct Browser {
    base: String,
    http: reqwest::Client,
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// The HttpOnly attribute.
    pub http_only: bool,
    /// The Secure attribute.
    pub secure: bool,
    /// SameSite, as reported.
    pub same_site: String,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let res = request.send().await.expect("chromedriver answers");
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {body}"
        );
        body["value"].clone()
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (up to 30 s) until the current URL satisfies `pred`; returns it.
    pub async fn wait_url(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let url = self.url().await;
            if pred(&url) {
                return url;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the browser never reached {what}; it is at {url}:\n{}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The element matching the CSS `selector`, waiting for it up to 30 s.
    pub async fn find(&self, selector: &str) -> String {
        let start = Instant::now();
        loop {
            let res = self
                .http
                .post(format!("{}/element", self.base))
                .json(&json!({"using": "css selector", "value": selector}))
                .send()
                .await
                .expect("chromedriver answers");
            if res.status().is_success() {
                let body: Value = res.json().await.expect("JSON");
                return body["value"][ELEMENT]
                    .as_str()
                    .expect("element id")
                    .to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no element {selector} at {}:\n{}",
                self.url().await,
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Types `text` into the element matching `selector`.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let element = self.find(selector).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element matching `selector`.
    pub async fn click(&self, selector: &str) {
        let element = self.find(selector).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The visible text of the element matching `selector`.
    pub async fn text(&self, selector: &str) -> String {
        let element = self.find(selector).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The cookies of the current page's origin.
    pub async fn cookies(&self) -> Vec<Cookie> {
        self.call(reqwest::Method::GET, "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| Cookie {
                name: c["name"].as_str().unwrap_or_default().to_owned(),
                value: c["value"].as_str().unwrap_or_default().to_owned(),
                http_only: c["httpOnly"] == true,
                secure: c["secure"] == true,
                same_site: c["sameSite"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Close the browser without waiting for the answer (no async in drop).
        let url = self.base.clone();
        let http = self.http.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = http.delete(url).send().await;
            });
        }
    }
}
