//! The dashboard (issue 18, contract §9): served at `/`, assets under `/ui/`, data from the
//! same `/api/v1` every other client uses, live through `GET /api/v1/events`.
//!
//! - **No build step, no CDN.** One HTML page, one stylesheet and one plain JavaScript file,
//!   embedded in the binary (`include_str!`); nothing is fetched from elsewhere.
//! - **Headers.** Every dashboard response carries a strict Content-Security-Policy (scripts,
//!   styles and connections from this origin only, no inline script, `frame-ancestors 'none'`),
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`.
//! - **Token.** With `server.auth_token` set, `/` sends a browser without a valid session to
//!   `/ui/login`, a form that posts the token once. The answer sets the cookie
//!   `driftguard_session` — `HttpOnly; SameSite=Strict; Path=/` — holding an HMAC of the token
//!   (never the token itself, never in a URL). The API accepts that cookie like the bearer
//!   header, so the page's requests and its event stream need no script access to a secret.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::api::ApiState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "driftguard_session";

const INDEX: &str = include_str!("../../ui/index.html");
const LOGIN: &str = include_str!("../../ui/login.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");

/// The policy of every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The dashboard's routes, merged into the API router (they share its state and layers).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
}

/// The session value for `token`: `hex(HMAC-SHA256(token, "driftguard-dashboard-session"))`.
pub fn session_value(token: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token.as_bytes()) else {
        return String::new();
    };
    mac.update(b"driftguard-dashboard-session");
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `headers` carry the session cookie of `token`.
pub fn has_session(headers: &HeaderMap, token: &str) -> bool {
    let expected = session_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == SESSION_COOKIE)
        .any(|(_, value)| bool::from(value.as_bytes().ct_eq(expected.as_bytes())))
}

fn page(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(headers);
    response
}

/// The security headers of every dashboard response.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

fn redirect(to: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    secure(response.headers_mut());
    response
}

async fn index(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(token) = state.auth_token.as_deref().filter(|t| !t.is_empty())
        && !has_session(&headers, token)
    {
        return redirect("/ui/login");
    }
    let web = state
        .source_web
        .as_deref()
        .map(attribute)
        .unwrap_or_default();
    let mut response = page(StatusCode::OK, "text/html; charset=utf-8", "");
    *response.body_mut() = axum::body::Body::from(INDEX.replace("{{SOURCE_WEB}}", &web));
    response
}

/// `text` escaped for an HTML attribute value.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The web address of a repository from its clone URL, for links to files
/// (`<base>/blob/<commit>/<path>#L<line>`, the form GitHub, Gitea and Forgejo serve and GitLab
/// redirects): `https://[user@]host/org/repo(.git)` and `git@host:org/repo(.git)` become
/// `https://host/org/repo` (user info, where tokens live, is dropped; `http://` stays http).
/// `None` for `file://`, local paths, `git://` and anything else.
pub fn web_base(repository_url: &str) -> Option<String> {
    let url = repository_url.trim();
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        ("http", rest)
    } else if let Some(rest) = url.strip_prefix("ssh://") {
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        let (host, path) = rest.split_once('/')?;
        let host = host.split(':').next()?;
        return finish("https", host, path);
    } else if let Some((user_host, path)) = url.split_once(':')
        && !url.contains("://")
        && user_host.contains('@')
    {
        let host = user_host.rsplit_once('@').map(|(_, h)| h)?;
        return finish("https", host, path);
    } else {
        return None;
    };
    let rest = rest.split(['?', '#']).next()?;
    let (authority, path) = rest.split_once('/')?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    finish(scheme, host, path)
}

fn finish(scheme: &str, host: &str, path: &str) -> Option<String> {
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let safe = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~/:[]".contains(c))
    };
    (safe(host) && safe(path)).then(|| format!("{scheme}://{host}/{path}"))
}

async fn login_page() -> Response {
    page(StatusCode::OK, "text/html; charset=utf-8", LOGIN)
}

async fn app_js() -> Response {
    page(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    page(StatusCode::OK, "text/css; charset=utf-8", APP_CSS)
}

/// `POST /ui/login` with the form field `token`: sets the session cookie and goes to `/`, or
/// shows the form again (401) when the token is wrong. Without a configured token there is
/// nothing to log in to: straight to `/`.
async fn login(State(state): State<ApiState>, body: String) -> Response {
    let Some(expected) = state.auth_token.as_deref().filter(|t| !t.is_empty()) else {
        return redirect("/");
    };
    let given = form_field(&body, "token").unwrap_or_default();
    let matches = bool::from(
        session_value(&given)
            .as_bytes()
            .ct_eq(session_value(expected).as_bytes()),
    );
    if !matches {
        return page(StatusCode::UNAUTHORIZED, "text/html; charset=utf-8", LOGIN);
    }
    let mut response = redirect("/");
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        session_value(expected)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (decode(key) == name).then(|| decode(value))
    })
}

fn decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_addresses_come_from_clone_urls_without_credentials() {
        for (url, web) in [
            (
                "https://github.com/org/repo.git",
                Some("https://github.com/org/repo"),
            ),
            (
                "https://x-access-token:s3cret@github.com/org/repo",
                Some("https://github.com/org/repo"),
            ),
            (
                "https://gitlab.example.com/group/sub/repo.git/",
                Some("https://gitlab.example.com/group/sub/repo"),
            ),
            (
                "http://127.0.0.1:3000/org/repo.git?x=1",
                Some("http://127.0.0.1:3000/org/repo"),
            ),
            (
                "git@github.com:org/repo.git",
                Some("https://github.com/org/repo"),
            ),
            (
                "ssh://git@git.example.com:2222/org/repo.git",
                Some("https://git.example.com/org/repo"),
            ),
            ("file:///srv/git/repo.git", None),
            ("/srv/git/repo", None),
            ("git://git.example.com/repo.git", None),
            ("https://github.com/org/re\"po", None),
            ("https://github.com", None),
        ] {
            assert_eq!(web_base(url).as_deref(), web, "{url}");
        }
        assert_eq!(attribute("a\"<b>&"), "a&quot;&lt;b&gt;&amp;");
    }

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field("a=1&token=s3%2Fcr+t%21", "token").as_deref(),
            Some("s3/cr t!")
        );
        assert_eq!(form_field("token=", "token").as_deref(), Some(""));
        assert_eq!(form_field("other=1", "token"), None);
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn the_session_is_a_keyed_digest_checked_among_other_cookies() {
        let value = session_value("tok");
        assert_eq!(value.len(), 64);
        assert!(!value.contains("tok"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {SESSION_COOKIE}={value}"))
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        );
        assert!(has_session(&headers, "tok"));
        assert!(!has_session(&headers, "other"));
    }
}
