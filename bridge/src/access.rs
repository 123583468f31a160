//! Who may ask what: from the caller's credentials (a verified client
//! certificate's certname, a bearer token) and what the request asks, allow
//! or refuse with 401 (no usable credential) or 403 (a known caller that
//! may not do this). Pure: `http` reads the credentials off the request and
//! renders the refusal.
//!
//! The matrix (see `docs/security.md`):
//! - `/healthz`, `/readyz`, `/metrics`, the status page `/` and its
//!   `/stats`: open.
//! - `/host`, `/facts`, `/report` of a certname: with client certificates,
//!   only the certificate of that very certname; without them, open
//!   (nothing binds a caller to a host).
//! - `/node`, Foreman's uploads (`/api/…`), `/ppm`: an allowlisted
//!   puppetserver certificate or the server token; open only when neither
//!   can exist (no client certificates and no server token).
//! - `/admin/…` and any path not listed above: the admin token or an
//!   allowlisted admin certificate, always.
//!
//! A bearer token that is neither of the configured ones is refused (401)
//! everywhere but the open endpoints: a wrong credential is never ignored.

use std::collections::BTreeSet;
use std::fmt;

use crate::certname::Certname;

/// A bearer token read from a file: compared in constant time, never
/// printed.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Shorter tokens are refused by the configuration.
    pub const MIN_LEN: usize = 16;

    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }

    /// The token itself, for a client that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token. The time taken depends on the
    /// token's length only, not on where the first difference is.
    pub fn matches(&self, presented: &str) -> bool {
        let secret = self.0.as_bytes();
        let presented = presented.as_bytes();
        let mut diff = u8::from(secret.len() != presented.len());
        for (i, byte) in secret.iter().enumerate() {
            diff |= byte ^ presented.get(i).copied().unwrap_or(!*byte);
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        self.matches(&other.0)
    }
}

/// The `[access]` settings, validated, and whether client certificates are
/// verified (`tls.client_ca_file`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Client certificates are verified, so a caller can be a node.
    pub client_certs: bool,
    pub server_certnames: BTreeSet<Certname>,
    pub admin_certnames: BTreeSet<Certname>,
    pub admin_token: Option<Token>,
    pub server_token: Option<Token>,
}

/// What a request path asks for, before its certname is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Health, readiness, metrics, the status page.
    Open,
    /// A node's own endpoint; the certname is the path's last segment, or
    /// `fqdn=` in the query when `None`.
    Own { name_in_path: Option<&'a str> },
    /// Puppetserver endpoints: the ENC, Foreman's uploads, `/ppm`.
    Server,
    /// The management API, and every path not known here.
    Admin,
}

impl<'a> Route<'a> {
    /// Classifies a request path (as the router matches it). Unknown paths
    /// need the admin credential, so a new endpoint is never open by
    /// mistake.
    pub fn of(path: &'a str) -> Route<'a> {
        match path {
            // The status page and its document show what /metrics does.
            "/healthz" | "/readyz" | "/metrics" | "/" | "/stats" => return Route::Open,
            "/host" | "/facts" | "/report" => return Route::Own { name_in_path: None },
            "/ppm"
            | "/api/hosts/facts"
            | "/api/v2/hosts/facts"
            | "/api/config_reports"
            | "/api/v2/config_reports" => return Route::Server,
            _ => {}
        }
        for own in ["/host/", "/facts/", "/report/"] {
            if let Some(name) = path.strip_prefix(own) {
                return Route::Own {
                    name_in_path: Some(name),
                };
            }
        }
        if path.starts_with("/node/") {
            return Route::Server;
        }
        Route::Admin
    }
}

/// What a request asks for, with its certname read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Open,
    /// A node's own endpoint for this certname; `Err` says why there is
    /// none (missing, given twice, not a certname).
    Own(Result<Certname, String>),
    Server,
    Admin,
}

/// The credentials a request carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The verified client certificate's certname.
    pub certname: Option<&'a Certname>,
    /// The token of an `Authorization: Bearer …` header.
    pub bearer: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// The token of an `Authorization` header value, when its scheme is
    /// `Bearer` (any case); other schemes (Basic) carry no bearer token.
    pub fn bearer_of(authorization: &str) -> Option<&str> {
        let (scheme, token) = authorization.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }
}

/// Which bearer token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenUse {
    None,
    Admin,
    Server,
    Invalid,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: a node endpoint without a usable certname to check.
    BadRequest,
    /// 401: no usable credential (none, or a wrong token).
    Unauthorized,
    /// 403: a known caller that may not do this.
    Forbidden,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
        }
    }
}

/// A refusal: its status, a one-line reason for the caller, and who asked
/// for whom (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub reason: String,
    /// The caller's certificate certname, if any.
    pub caller: Option<Certname>,
    /// The certname the request was for (node endpoints).
    pub requested: Option<Certname>,
}

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Refuse(Refusal),
}

impl Policy {
    /// Whether a puppetserver endpoint can require a credential: some
    /// server credential can exist.
    pub fn servers_authenticated(&self) -> bool {
        self.client_certs || self.server_token.is_some()
    }

    /// Whether any admin credential is configured.
    pub fn admin_configured(&self) -> bool {
        self.admin_token.is_some() || !self.admin_certnames.is_empty()
    }

    fn token_use(&self, bearer: Option<&str>) -> TokenUse {
        let Some(bearer) = bearer else {
            return TokenUse::None;
        };
        // Both compared, so the time does not tell which one it was.
        let admin = self.admin_token.as_ref().is_some_and(|t| t.matches(bearer));
        let server = self
            .server_token
            .as_ref()
            .is_some_and(|t| t.matches(bearer));
        match (admin, server) {
            (true, _) => TokenUse::Admin,
            (false, true) => TokenUse::Server,
            (false, false) => TokenUse::Invalid,
        }
    }

    /// Allow, or refuse with the status and reason.
    pub fn decide(&self, credentials: &Credentials<'_>, target: &Target) -> Decision {
        if *target == Target::Open {
            return Decision::Allow;
        }
        let cert = credentials.certname;
        let token = self.token_use(credentials.bearer);
        let requested = match target {
            Target::Own(Ok(name)) => Some(name.clone()),
            _ => None,
        };
        let refuse = |status: Status, reason: String| {
            Decision::Refuse(Refusal {
                status,
                reason,
                caller: cert.cloned(),
                requested: requested.clone(),
            })
        };
        if token == TokenUse::Invalid {
            return refuse(Status::Unauthorized, "the bearer token is not valid".into());
        }
        let is_admin =
            token == TokenUse::Admin || cert.is_some_and(|c| self.admin_certnames.contains(c));
        let is_server =
            token == TokenUse::Server || cert.is_some_and(|c| self.server_certnames.contains(c));
        let who = || match (cert, token) {
            (Some(c), _) => format!("certificate {c}"),
            (None, TokenUse::Admin) => "the admin token".to_owned(),
            (None, TokenUse::Server) => "the server token".to_owned(),
            (None, _) => "an anonymous caller".to_owned(),
        };
        match target {
            Target::Open => Decision::Allow,
            Target::Admin if is_admin => Decision::Allow,
            Target::Admin if !self.admin_configured() => refuse(
                Status::Unauthorized,
                "the admin API needs a credential and none is configured: set \
                 access.admin_token_file (then send Authorization: Bearer <token>) \
                 or access.admin_certnames"
                    .into(),
            ),
            Target::Admin => refuse(
                Status::Unauthorized,
                format!(
                    "the admin API needs the admin token (Authorization: Bearer) or an \
                     access.admin_certnames certificate; {} is neither",
                    who()
                ),
            ),
            Target::Server if is_server || !self.servers_authenticated() => Decision::Allow,
            Target::Server if cert.is_none() && token == TokenUse::None => refuse(
                Status::Unauthorized,
                "puppetserver endpoint: needs an access.server_certnames certificate or \
                 the server token (Authorization: Bearer)"
                    .into(),
            ),
            Target::Server => refuse(
                Status::Forbidden,
                format!(
                    "puppetserver endpoint: {} is not a puppetserver (access.server_certnames)",
                    who()
                ),
            ),
            // Without client certificates no caller can prove to be a node.
            Target::Own(_) if !self.client_certs => Decision::Allow,
            Target::Own(Err(why)) => refuse(Status::BadRequest, why.clone()),
            Target::Own(Ok(name)) => match cert {
                Some(c) if c == name => Decision::Allow,
                Some(c) => refuse(
                    Status::Forbidden,
                    format!("certificate {c} may not act for {name}"),
                ),
                None if token == TokenUse::None => refuse(
                    Status::Unauthorized,
                    format!("{name}: needs the node's own certificate"),
                ),
                None => refuse(
                    Status::Forbidden,
                    format!(
                        "{} may not act for {name}: only its own certificate may",
                        who()
                    ),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-token-0123456789abcdef";
    const SERVER: &str = "server-token-0123456789abcdef";

    fn name(s: &str) -> Certname {
        s.parse().unwrap()
    }

    fn policy(client_certs: bool, tokens: bool) -> Policy {
        Policy {
            client_certs,
            server_certnames: [name("puppet01.example.com")].into(),
            admin_certnames: if client_certs {
                [name("ops.example.com")].into()
            } else {
                BTreeSet::new()
            },
            admin_token: tokens.then(|| Token::new(ADMIN)),
            server_token: tokens.then(|| Token::new(SERVER)),
        }
    }

    fn status(policy: &Policy, cert: Option<&str>, bearer: Option<&str>, target: &Target) -> u16 {
        let cert = cert.map(name);
        let credentials = Credentials {
            certname: cert.as_ref(),
            bearer,
        };
        match policy.decide(&credentials, target) {
            Decision::Allow => 200,
            Decision::Refuse(refusal) => refusal.status.code(),
        }
    }

    fn own(s: &str) -> Target {
        Target::Own(Ok(name(s)))
    }

    /// Every caller against every target, with client certificates and
    /// both tokens configured.
    #[test]
    fn the_matrix_with_client_certificates() {
        let p = policy(true, true);
        let web = Some("web01.example.com");
        let other = Some("db01.example.com");
        let server = Some("puppet01.example.com");
        let ops = Some("ops.example.com");
        // (cert, bearer, [open, own web01, server, admin])
        let rows: [(Option<&str>, Option<&str>, [u16; 4]); 10] = [
            (None, None, [200, 401, 401, 401]),
            (web, None, [200, 200, 403, 401]),
            (other, None, [200, 403, 403, 401]),
            (server, None, [200, 403, 200, 401]),
            (ops, None, [200, 403, 403, 200]),
            (None, Some(SERVER), [200, 403, 200, 401]),
            (None, Some(ADMIN), [200, 403, 403, 200]),
            (web, Some(ADMIN), [200, 200, 403, 200]),
            (None, Some("wrong-token-0123456789"), [200, 401, 401, 401]),
            (web, Some("wrong-token-0123456789"), [200, 401, 401, 401]),
        ];
        for (cert, bearer, expected) in rows {
            let got = [
                Target::Open,
                own("web01.example.com"),
                Target::Server,
                Target::Admin,
            ]
            .map(|t| status(&p, cert, bearer, &t));
            assert_eq!(got, expected, "cert {cert:?}, bearer {bearer:?}");
        }
    }

    #[test]
    fn without_client_certificates_the_server_token_guards_server_endpoints() {
        let p = policy(false, true);
        assert_eq!(status(&p, None, None, &Target::Server), 401);
        assert_eq!(status(&p, None, Some(SERVER), &Target::Server), 200);
        // Node endpoints cannot be bound to a host: open.
        assert_eq!(status(&p, None, None, &own("web01.example.com")), 200);
        assert_eq!(status(&p, None, None, &Target::Admin), 401);
        assert_eq!(status(&p, None, Some(ADMIN), &Target::Admin), 200);
        assert_eq!(status(&p, None, Some(SERVER), &Target::Admin), 401);
    }

    #[test]
    fn plain_http_without_tokens_keeps_node_and_server_endpoints_open() {
        let p = policy(false, false);
        assert_eq!(status(&p, None, None, &Target::Server), 200);
        assert_eq!(status(&p, None, None, &own("web01.example.com")), 200);
        assert_eq!(status(&p, None, None, &Target::Open), 200);
        let Decision::Refuse(refusal) = p.decide(&Credentials::default(), &Target::Admin) else {
            panic!("admin API open without a credential");
        };
        assert_eq!(refusal.status, Status::Unauthorized);
        assert!(
            refusal.reason.contains("access.admin_token_file"),
            "{}",
            refusal.reason
        );
    }

    #[test]
    fn a_refusal_names_both_certnames() {
        let p = policy(true, false);
        let caller = name("db01.example.com");
        let credentials = Credentials {
            certname: Some(&caller),
            bearer: None,
        };
        let Decision::Refuse(refusal) = p.decide(&credentials, &own("web01.example.com")) else {
            panic!("allowed");
        };
        assert_eq!(refusal.status, Status::Forbidden);
        assert_eq!(refusal.caller, Some(caller));
        assert_eq!(refusal.requested, Some(name("web01.example.com")));
        assert!(
            refusal.reason.contains("db01.example.com")
                && refusal.reason.contains("web01.example.com")
        );
    }

    #[test]
    fn a_node_endpoint_without_a_certname_is_a_bad_request_with_certificates() {
        let p = policy(true, false);
        let target = Target::Own(Err("fqdn=<certname> is required".into()));
        assert_eq!(status(&p, Some("web01.example.com"), None, &target), 400);
        assert_eq!(status(&policy(false, false), None, None, &target), 200);
    }

    #[test]
    fn routes_are_classified_and_unknown_paths_need_the_admin_credential() {
        let cases = [
            ("/healthz", Route::Open),
            ("/readyz", Route::Open),
            ("/metrics", Route::Open),
            ("/host", Route::Own { name_in_path: None }),
            ("/facts", Route::Own { name_in_path: None }),
            ("/report", Route::Own { name_in_path: None }),
            (
                "/host/web01.example.com",
                Route::Own {
                    name_in_path: Some("web01.example.com"),
                },
            ),
            (
                "/facts/a",
                Route::Own {
                    name_in_path: Some("a"),
                },
            ),
            (
                "/report/a/b",
                Route::Own {
                    name_in_path: Some("a/b"),
                },
            ),
            ("/node/web01.example.com", Route::Server),
            ("/ppm", Route::Server),
            ("/api/hosts/facts", Route::Server),
            ("/api/v2/hosts/facts", Route::Server),
            ("/api/config_reports", Route::Server),
            ("/api/v2/config_reports", Route::Server),
            ("/admin/cache/invalidate", Route::Admin),
            ("/admin/explain/web01.example.com", Route::Admin),
            ("/admin/converge/7", Route::Admin),
            ("/", Route::Open),
            ("/stats", Route::Open),
            ("/stats/", Route::Admin),
            ("//", Route::Admin),
            ("/healthz/", Route::Admin),
            ("/api/v2/hosts/1/enc", Route::Admin),
            ("/%61dmin/converge", Route::Admin),
        ];
        for (path, route) in cases {
            assert_eq!(Route::of(path), route, "{path}");
        }
    }

    #[test]
    fn bearer_tokens_are_read_from_the_bearer_scheme_only() {
        assert_eq!(Credentials::bearer_of("Bearer abc"), Some("abc"));
        assert_eq!(Credentials::bearer_of("bearer  abc "), Some("abc"));
        assert_eq!(Credentials::bearer_of("Basic dXNlcjpwYXNz"), None);
        assert_eq!(Credentials::bearer_of("Bearer"), None);
    }

    #[test]
    fn tokens_match_exactly_and_never_print() {
        let token = Token::new(ADMIN);
        assert!(token.matches(ADMIN));
        assert!(!token.matches(&ADMIN[..ADMIN.len() - 1]));
        assert!(!token.matches(&format!("{ADMIN}x")));
        assert!(!token.matches(""));
        assert!(!token.matches(&ADMIN.replace('0', "1")));
        assert!(!format!("{token:?}").contains(ADMIN));
    }
}
