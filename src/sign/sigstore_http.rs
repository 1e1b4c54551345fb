//! HTTP to the Sigstore services (Fulcio, Rekor, a timestamp authority):
//! one request at a time on a thread of its own (callers may or may not be
//! inside an async runtime), bounded by a deadline, the answer capped on the
//! bytes actually received, no redirects. HTTPS with the system roots;
//! plain HTTP only to loopback (the tests' local Sigstore), since the
//! identity token goes to Fulcio in a header.
//!
//! Why not the `sigstore` crate's clients: its Fulcio client needs the
//! `fulcio` feature (openidconnect, webbrowser, an OAuth flow we never use),
//! builds `reqwest::Client::new()` without timeouts and reads answers
//! without a size cap; its Rekor client is generated code without the
//! deadline and caps every other network call of provenant keeps.
use std::time::{Duration, Instant};

use super::remote::{blocking, reqwest_chain};

/// A service's base URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl(reqwest::Url);

impl ServiceUrl {
    /// `flag` names the option in messages.
    pub fn parse(flag: &str, url: &str) -> Result<ServiceUrl, String> {
        let trimmed = url.trim_end_matches('/');
        let u =
            reqwest::Url::parse(trimmed).map_err(|e| format!("{flag} {url}: not a URL: {e}"))?;
        match u.scheme() {
            "https" => {}
            "http" if super::service::is_loopback_url(&u) => {}
            "http" => {
                return Err(format!(
                    "{flag} {url}: plain HTTP is accepted only to loopback; use https://"
                ))
            }
            other => return Err(format!("{flag} {url}: unsupported scheme {other}")),
        }
        if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
            return Err(format!(
                "{flag} {url}: give the service's base URL (no query, fragment or user)"
            ));
        }
        Ok(ServiceUrl(u))
    }

    /// `BASE/path` (path without a leading `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}/{path}", self.0.as_str().trim_end_matches('/'))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }
}

impl std::fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service's answer.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as one line of text for an error message, shortened: a
    /// service's error text, not content of ours.
    pub fn reason(&self) -> String {
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]);
        let one: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        one.trim().to_string()
    }

    /// Worth trying again: the service is there but busy or failing.
    pub fn transient(&self) -> bool {
        self.status == 429 || self.status >= 500
    }
}

/// What went wrong with one request.
#[derive(Debug)]
pub enum Failure {
    /// No answer (connect, TLS, timeout): worth trying again.
    Transport(String),
    /// An answer larger than the cap.
    TooLarge(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(s) | Failure::TooLarge(s) => f.write_str(s),
        }
    }
}

/// One request. `headers` may carry a bearer token: it is never part of
/// an error message.
pub fn request(
    method: reqwest::Method,
    url: String,
    body: Option<(Vec<u8>, &'static str)>,
    headers: Vec<(&'static str, String)>,
    max: usize,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::Transport(format!("{url}: the deadline passed")));
    }
    let client = reqwest::Client::builder()
        .connect_timeout(left.min(Duration::from_secs(10)))
        .timeout(left)
        .redirect(reqwest::redirect::Policy::none())
        .tls_version_min(reqwest::tls::Version::TLS_1_2)
        .build()
        .map_err(|e| Failure::Transport(format!("HTTP client: {}", reqwest_chain(e))))?;
    let u = url.clone();
    let answer = blocking(move || {
        Box::pin(async move {
            let transport =
                |e: reqwest::Error| Failure::Transport(format!("{u}: {}", reqwest_chain(e)));
            let mut req = client.request(method, &u);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if let Some((b, ctype)) = body {
                req = req.header("content-type", ctype).body(b);
            }
            let mut r = match req.send().await {
                Ok(r) => r,
                Err(e) => return Ok(Err(transport(e))),
            };
            let status = r.status().as_u16();
            let mut out = Vec::new();
            loop {
                match r.chunk().await {
                    Ok(Some(chunk)) => {
                        if out.len() + chunk.len() > max {
                            return Ok(Err(Failure::TooLarge(format!(
                                "{u}: answer larger than {max} bytes"
                            ))));
                        }
                        out.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) => return Ok(Err(transport(e))),
                }
            }
            Ok(Ok(Answer { status, body: out }))
        })
    });
    answer.map_err(|e| Failure::Transport(format!("{url}: {e}")))?
}

/// [`request`] again after transport failures and 429/5xx answers, with
/// backoff (0.25 s doubling), until `deadline`.
pub fn request_with_retry(
    what: &str,
    mut attempt: impl FnMut() -> Result<Answer, Failure>,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let mut delay = Duration::from_millis(250);
    loop {
        let r = attempt();
        let again = match &r {
            Ok(a) => a.transient(),
            Err(Failure::Transport(_)) => true,
            Err(Failure::TooLarge(_)) => false,
        };
        if !again || deadline.saturating_duration_since(Instant::now()) <= delay {
            return r;
        }
        match &r {
            Ok(a) => tracing::warn!(
                status = a.status,
                retry_in_ms = delay.as_millis() as u64,
                "{what}: {}",
                a.reason()
            ),
            Err(e) => tracing::warn!(retry_in_ms = delay.as_millis() as u64, "{what}: {e}"),
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(4));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(ServiceUrl::parse("--fulcio-url", "https://fulcio.sigstore.dev").is_ok());
        assert!(ServiceUrl::parse("--fulcio-url", "http://127.0.0.1:8080/").is_ok());
        assert!(ServiceUrl::parse("--fulcio-url", "http://localhost:1").is_ok());
        let e = ServiceUrl::parse("--fulcio-url", "http://fulcio.example.com").unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        assert!(ServiceUrl::parse("--rekor-url", "ftp://x").is_err());
        assert!(ServiceUrl::parse("--rekor-url", "https://x/?a=b").is_err());
        assert!(ServiceUrl::parse("--rekor-url", "not a url").is_err());
        let u = ServiceUrl::parse("--rekor-url", "https://rekor.example/").unwrap();
        assert_eq!(
            u.join("api/v1/log/entries"),
            "https://rekor.example/api/v1/log/entries"
        );
    }
}
