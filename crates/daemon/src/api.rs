//! The HTTP API (actix-web). Every `/v1` route authenticates a principal by
//! bearer token, checks its roles, and talks to the Coordinator only by
//! message; refusals of commands on a deployment are journaled with who
//! tried. `docs/api.md` documents the routes; `/v1/openapi.json` serves the
//! OpenAPI description.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::Addr;
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use agents::messages::{self as msg, CommandError};
use agents::ports::HumanDecision;
use agents::{Coordinator, JournalEntry};
use client::wire::{EntryBody, EntryKind, EventEntry, ProductionState};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use workflow::record::{Record, Request, WindowOverride};
use workflow::settings::WindowRule;
use workflow::types::{DeploymentId, DeploymentType, Role, ServiceName, Status, Strategy, Version};
use workflow::{Effect, Event, Settings};

use crate::auth::LivePrincipals;
use crate::config::{Principal, PrincipalRole};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Most `changes` entries a submission may list.
pub const MAX_CHANGES: usize = 100;

/// Longest `changes` entry, in characters.
pub const MAX_CHANGE_CHARS: usize = 500;

/// Longest free text (a reason, a note), in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub struct AppState {
    pub coordinator: Addr<Coordinator>,
    /// Replaced whole when the daemon reloads its principals (SIGHUP).
    pub principals: LivePrincipals,
    pub settings: Arc<Settings>,
    /// The services a submission may name (`[server] unknown_services =
    /// "refuse"`); `None`: any, the unknown ones simulated.
    pub accepted_services: Option<Vec<String>>,
}

/// An error answer: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Invalid(m) => ApiError::invalid(m),
            CommandError::NotFound(id) => {
                ApiError::not_found(format!("no deployment {id}; list them with `stagecoach list`"))
            }
            CommandError::Refused(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            CommandError::Forbidden(m) => ApiError::forbidden(m),
            CommandError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
        }
    }
}

fn mailbox(e: actix::MailboxError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("the coordinator is not running ({e}); the daemon is shutting down, retry after it restarts"),
    )
}

type ApiResult = Result<HttpResponse, ApiError>;

// ---- authentication ----------------------------------------------------------

fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization header; send `Authorization: Bearer TOKEN`"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    state.principals.current().find(token).cloned().ok_or_else(|| {
        unauthorized("unknown token: no principal of this daemon has it (`stagecoach principal list` shows them)")
    })
}

fn need(p: &Principal, roles: &[PrincipalRole], what: &str) -> Result<(), ApiError> {
    if roles.iter().any(|r| p.has(*r)) {
        return Ok(());
    }
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Err(ApiError::forbidden(format!(
        "{} may not {what}: it needs the {} role",
        p.name,
        names.join(" or ")
    )))
}

/// Like [`need`] for a command on a deployment: a refusal is journaled.
async fn need_on(
    state: &AppState,
    id: DeploymentId,
    p: &Principal,
    roles: &[PrincipalRole],
    approval: Option<Role>,
    what: &str,
) -> Result<(), ApiError> {
    let Err(e) = need(p, roles, what) else {
        return Ok(());
    };
    let refusal = msg::Refuse {
        id,
        by: p.name.clone(),
        role: approval,
        what: what.to_string(),
        reason: e.message.clone(),
    };
    match state.coordinator.send(refusal).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(deployment = %id, error = %err, "could not journal a refused command"),
        Err(err) => tracing::error!(deployment = %id, error = %err, "could not journal a refused command"),
    }
    Err(e)
}

// ---- request parsing -------------------------------------------------------------

async fn body(payload: web::Payload) -> Result<Bytes, ApiError> {
    match payload.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(ApiError::bad_request(format!("cannot read the request body: {e}"))),
        Err(_) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over {MAX_BODY} bytes"),
        )),
    }
}

/// Parses a JSON body; an empty body is `{}`. An error that belongs to a field (an unknown one,
/// a wrong type) starts with the field's path, e.g. `changes[2]: invalid type: …`.
fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        bytes
    };
    // Every body is an object (serde would also take an array for a struct, by position).
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let message = match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(_) => "expected a JSON object, such as {\"reason\": \"…\"}".to_string(),
            Err(e) => e.to_string(),
        };
        return Err(ApiError::bad_request(format!("invalid JSON body: {message}")));
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut path = e.path().to_string();
        if e.inner().to_string().starts_with("unknown field") {
            // The path ends with the unknown field, which the message names already.
            path = path
                .rsplit_once('.')
                .map(|(parent, _)| parent.to_string())
                .unwrap_or_default();
        }
        // Only a data error (unknown field, wrong type) belongs to a field; a syntax error's
        // path is wherever the parser stopped.
        let at = if !e.inner().is_data() || path == "." || path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::bad_request(format!("invalid JSON body: {at}{}", e.inner()))
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// An optional field of a body: left out it is `None`; given, it must be a value of its type.
/// An explicit `null` is a wrong type (400 naming the field), as the document has no null.
fn present<'de, D, T>(field: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(field).map(Some)
}

/// Checks a free-text field: at most `max` characters, and no control characters other than
/// line breaks and tabs (`one_line`: no line breaks either).
fn check_text(field: &str, text: &str, max: usize, one_line: bool) -> Result<(), ApiError> {
    let chars = text.chars().count();
    if chars > max {
        return Err(ApiError::invalid(format!(
            "{field}: {chars} characters; at most {max} are accepted"
        )));
    }
    let allowed = |c: char| !one_line && matches!(c, '\n' | '\r' | '\t');
    if let Some(c) = text.chars().find(|c| c.is_control() && !allowed(*c)) {
        let what = if one_line {
            "control characters (such as line breaks) are not allowed; write one change per entry"
        } else {
            "control characters other than line breaks and tabs are not allowed"
        };
        return Err(ApiError::invalid(format!("{field}: {what} (found {c:?})")));
    }
    Ok(())
}

fn check_reason(field: &str, reason: Option<&str>) -> Result<(), ApiError> {
    reason.map_or(Ok(()), |r| check_text(field, r, MAX_REASON_CHARS, false))
}

fn parse_enum<T: DeserializeOwned + Copy>(
    field: &str,
    value: &str,
    all: &[T],
    show: fn(T) -> &'static str,
) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
        let names: Vec<&str> = all.iter().map(|t| show(*t)).collect();
        ApiError::invalid(format!("{field}: {value:?} is not one of {}", names.join(", ")))
    })
}

/// Longest number of a deployment id the API takes, in digits (the document's pattern).
const ID_DIGITS: usize = 18;

/// `digits` as a number when it is 1 to `max` ASCII digits (no sign, no spaces).
fn number(digits: &str, max: usize) -> Option<u64> {
    if !(1..=max).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A deployment id as a path or query takes it: `d-000001` or `1`.
fn deployment_id(raw: &str) -> Result<DeploymentId, ApiError> {
    number(raw.strip_prefix("d-").unwrap_or(raw), ID_DIGITS)
        .map(DeploymentId)
        .ok_or_else(|| ApiError::not_found(format!("{raw:?} is not a deployment id such as d-000001")))
}

async fn record(state: &AppState, id: DeploymentId) -> Result<Record, ApiError> {
    state
        .coordinator
        .send(msg::GetRecord(id))
        .await
        .map_err(mailbox)?
        .ok_or_else(|| ApiError::from(CommandError::NotFound(id)))
}

// ---- routes ------------------------------------------------------------------------

/// The query string as `T`; a malformed one is a 400 in the API's format.
fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", &[Method::GET]).route(web::get().to(healthz)))
        .service(resource("/metrics", &[Method::GET]).route(web::get().to(metrics)))
        .service(
            web::scope("/v1")
                .service(resource("/openapi.json", &[Method::GET]).route(web::get().to(openapi)))
                .service(
                    resource("/deployments", &[Method::GET, Method::POST])
                        .route(web::post().to(submit))
                        .route(web::get().to(list)),
                )
                .service(resource("/deployments/{id}", &[Method::GET]).route(web::get().to(get)))
                .service(resource("/deployments/{id}/record.md", &[Method::GET]).route(web::get().to(markdown)))
                .service(resource("/deployments/{id}/verify", &[Method::GET]).route(web::get().to(verify)))
                .service(resource("/deployments/{id}/approvals", &[Method::POST]).route(web::post().to(approve)))
                .service(resource("/deployments/{id}/rollback", &[Method::POST]).route(web::post().to(rollback)))
                .service(resource("/deployments/{id}/cancel", &[Method::POST]).route(web::post().to(cancel)))
                .service(resource("/escalations/{id}/ack", &[Method::POST]).route(web::post().to(ack)))
                .service(
                    resource("/services/{service}/versions/{version}/unblock", &[Method::POST])
                        .route(web::post().to(unblock)),
                )
                .service(resource("/events", &[Method::GET]).route(web::get().to(events)))
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}

/// A route's resource: a request with a method it does not serve is
/// answered 405 with `Allow` naming the methods it does.
fn resource(path: &str, methods: &'static [Method]) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move { method_not_allowed(methods) }))
}

fn method_not_allowed(methods: &[Method]) -> HttpResponse {
    let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
    let allow = allow.join(", ");
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route answers {allow} only"),
    )
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

async fn not_found() -> HttpResponse {
    ApiError::not_found("no such route; see /v1/openapi.json").error_response()
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn openapi(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    principal(&req, &state)?;
    Ok(HttpResponse::Ok().content_type("application/json").body(OPENAPI))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    service: String,
    #[serde(default, deserialize_with = "present")]
    version: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "present")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "present")]
    strategy: Option<String>,
    #[serde(default)]
    changes: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, deserialize_with = "present")]
    target_version: Option<String>,
    #[serde(default, deserialize_with = "present")]
    override_window_reason: Option<String>,
    #[serde(default)]
    attest: Vec<String>,
}

async fn submit(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> ApiResult {
    let p = principal(&req, &state)?;
    let b: SubmitBody = parse(&body(payload).await?)?;
    need(&p, &[PrincipalRole::Deployer], "submit deployments")?;
    let service = ServiceName::parse(&b.service).map_err(|e| ApiError::invalid(format!("service: {e}")))?;
    if let Some(refused) = state
        .accepted_services
        .as_deref()
        .and_then(|known| crate::config::unknown_service(service.as_str(), known))
    {
        return Err(ApiError::invalid(refused));
    }
    if b.changes.len() > MAX_CHANGES {
        return Err(ApiError::invalid(format!(
            "changes: {} entries; at most {MAX_CHANGES} are accepted",
            b.changes.len()
        )));
    }
    for (i, change) in b.changes.iter().enumerate() {
        check_text(&format!("changes[{i}]"), change, MAX_CHANGE_CHARS, true)?;
    }
    let checklist = workflow::checklist::ItemKey::ALL.len();
    if b.attest.len() > checklist {
        return Err(ApiError::invalid(format!(
            "attest: {} entries; the checklist has {checklist} items",
            b.attest.len()
        )));
    }
    check_reason("override_window_reason", b.override_window_reason.as_deref())?;
    let kind = match &b.kind {
        Some(k) => parse_enum("type", k, DeploymentType::ALL, DeploymentType::as_str)?,
        None => DeploymentType::Standard,
    };
    let strategy = b
        .strategy
        .as_deref()
        .map(|s| parse_enum("strategy", s, Strategy::ALL, Strategy::as_str))
        .transpose()?;
    let version = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(Version::parse)
            .transpose()
            .map_err(|e| ApiError::invalid(format!("{field}: {e}")))
    };
    let mut v = version("version", &b.version)?;
    let target = version("target_version", &b.target_version)?;
    if target.is_some() {
        if kind != DeploymentType::Rollback {
            return Err(ApiError::invalid(
                "target_version: only a rollback deployment takes a target_version",
            ));
        }
        if v.is_some() {
            return Err(ApiError::invalid(
                "target_version: give only target_version for a rollback, not version beside it",
            ));
        }
        v = target;
    }
    let attest = b
        .attest
        .iter()
        .map(|a| {
            serde_json::from_value(serde_json::Value::String(a.clone()))
                .map_err(|e| ApiError::invalid(format!("attest: {a:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let window_override = match b.override_window_reason {
        None => None,
        Some(reason) => {
            need(&p, &[PrincipalRole::Manager], "override the deployment windows")?;
            if reason.trim().is_empty() {
                return Err(ApiError::invalid(
                    "override_window_reason: write why the windows are overridden",
                ));
            }
            Some(WindowOverride {
                by: p.name.clone(),
                reason,
            })
        }
    };
    if kind == DeploymentType::Scheduled && window_override.is_none() {
        if let (Some(at), WindowRule::Scheduled) = (b.scheduled_for, state.settings.types.get(kind).windows) {
            if let Err(why) = workflow::windows::Calendar::new(&state.settings.windows).check(at) {
                // Well formed, but the configured windows do not allow it: a conflict, not a bad request.
                return Err(ApiError::from(CommandError::Refused(format!(
                    "scheduled_for: {} is outside the allowed deployment windows ({why}); pick a time inside a window, or ask a manager to override with override_window_reason",
                    at.to_rfc3339()
                ))));
            }
        }
    }
    let request = Request {
        service,
        version: v,
        kind,
        strategy,
        submitted_by: p.name.clone(),
        changes: b.changes,
        scheduled_for: b.scheduled_for,
        attest,
        window_override,
    };
    let id = state.coordinator.send(msg::Submit(request)).await.map_err(mailbox)??;
    let r = record(&state, id).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/deployments/{id}")))
        .json(r))
}

#[derive(Deserialize)]
struct ListQuery {
    service: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Deployments per page of `GET /v1/deployments` unless `limit` says otherwise.
pub const LIST_DEFAULT_LIMIT: usize = 100;
/// The largest `limit` of `GET /v1/deployments`.
pub const LIST_MAX_LIMIT: usize = 1000;

/// `limit`: a whole number from 1 to [`LIST_MAX_LIMIT`].
fn list_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(LIST_DEFAULT_LIMIT);
    };
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=LIST_MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "limit: {raw:?} is not a whole number from 1 to {LIST_MAX_LIMIT} (default {LIST_DEFAULT_LIMIT})"
            ))
        })
}

/// `cursor`: the `next_cursor` of a previous page (the last deployment it listed).
fn list_cursor(raw: Option<&str>) -> Result<Option<DeploymentId>, ApiError> {
    raw.map(|raw| {
        // Exactly the form the API gives out (and the document's pattern): d- and the digits.
        raw.strip_prefix("d-")
            .and_then(|d| number(d, ID_DIGITS))
            .map(DeploymentId)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "cursor: {raw:?} is not a cursor this API gave out; pass the next_cursor of the previous page"
                ))
            })
    })
    .transpose()
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    principal(&req, &state)?;
    let q: ListQuery = query(&req)?;
    let service = q
        .service
        .as_deref()
        .map(ServiceName::parse)
        .transpose()
        .map_err(|e| ApiError::invalid(format!("service: {e}")))?;
    let status = q
        .status
        .as_deref()
        .map(|s| parse_enum("status", s, Status::ALL, Status::as_str))
        .transpose()?;
    let limit = list_limit(q.limit.as_deref())?;
    let after = list_cursor(q.cursor.as_deref())?;
    let page = state
        .coordinator
        .send(msg::List {
            service,
            status,
            after,
            limit,
        })
        .await
        .map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(json!({
        "deployments": page.records,
        "next_cursor": page.next.map(|id| id.to_string()),
    })))
}

async fn get(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    principal(&req, &state)?;
    let id = deployment_id(&id)?;
    Ok(HttpResponse::Ok().json(record(&state, id).await?))
}

async fn markdown(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    principal(&req, &state)?;
    let id = deployment_id(&id)?;
    let r = record(&state, id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/markdown; charset=utf-8")
        .body(r.markdown))
}

async fn verify(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    principal(&req, &state)?;
    let id = deployment_id(&id)?;
    let v = state.coordinator.send(msg::Verify(id)).await.map_err(mailbox)??;
    Ok(HttpResponse::Ok().json(verification_json(id, &v)))
}

/// The JSON form of a chain check, shared with the offline `stagecoach verify`.
pub fn verification_json(id: DeploymentId, v: &journal::Verification) -> serde_json::Value {
    json!({
        "deployment": id.to_string(),
        "entries": v.entries,
        "intact": v.intact,
        "problems": v.problems,
        "head": v.head,
    })
}

/// The start of every command on a deployment: who asks, the body, and the
/// deployment (which must exist).
async fn command<T: DeserializeOwned>(
    req: &HttpRequest,
    state: &AppState,
    raw_id: &str,
    payload: web::Payload,
) -> Result<(Principal, DeploymentId, T), ApiError> {
    let p = principal(req, state)?;
    let id = deployment_id(raw_id)?;
    let b: T = parse(&body(payload).await?)?;
    record(state, id).await?;
    Ok((p, id, b))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalBody {
    role: String,
    decision: String,
    #[serde(default, deserialize_with = "present")]
    reason: Option<String>,
}

async fn approve(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let (p, id, b) = command::<ApprovalBody>(&req, &state, &id, payload).await?;
    let role = parse_enum("role", &b.role, Role::ALL, Role::as_str)?;
    check_reason("reason", b.reason.as_deref())?;
    let approve = match b.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::invalid(format!(
                "decision: {other:?} is not one of approve, reject"
            )))
        }
    };
    let reason = b.reason.unwrap_or_default();
    if !approve && reason.trim().is_empty() {
        return Err(ApiError::invalid("reason: say why the deployment is rejected"));
    }
    let what = format!("decide the {role} approval");
    need_on(&state, id, &p, &[PrincipalRole::for_approval(role)], Some(role), &what).await?;
    let decision = HumanDecision {
        id,
        role,
        approve,
        by: p.name.clone(),
        reason: if reason.trim().is_empty() {
            "approved".into()
        } else {
            reason
        },
    };
    state.coordinator.send(msg::Decide(decision)).await.map_err(mailbox)??;
    Ok(HttpResponse::Ok().json(record(&state, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default, deserialize_with = "present")]
    reason: Option<String>,
}

async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let (p, id, b) = command::<ReasonBody>(&req, &state, &id, payload).await?;
    check_reason("reason", b.reason.as_deref())?;
    let reason = b.reason.unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(ApiError::invalid("reason: say why the deployment is rolled back"));
    }
    let roles = [PrincipalRole::Deployer, PrincipalRole::Devops, PrincipalRole::Manager];
    need_on(&state, id, &p, &roles, None, "roll back deployments").await?;
    state
        .coordinator
        .send(msg::RequestRollback {
            id,
            by: p.name.clone(),
            reason,
        })
        .await
        .map_err(mailbox)??;
    Ok(HttpResponse::Accepted().json(record(&state, id).await?))
}

async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let (p, id, b) = command::<ReasonBody>(&req, &state, &id, payload).await?;
    check_reason("reason", b.reason.as_deref())?;
    let roles = [PrincipalRole::Deployer, PrincipalRole::Manager];
    need_on(&state, id, &p, &roles, None, "cancel deployments").await?;
    let reason = b
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "no reason given".into());
    state
        .coordinator
        .send(msg::Cancel {
            id,
            by: p.name.clone(),
            reason,
        })
        .await
        .map_err(mailbox)??;
    Ok(HttpResponse::Ok().json(record(&state, id).await?))
}

/// `POST /v1/services/{service}/versions/{version}/unblock`: a manager lifts
/// the block a rollback put on a version; answers the record of the
/// deployment that blocked it, which now records who unblocked it and why.
async fn unblock(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> ApiResult {
    let p = principal(&req, &state)?;
    let (service, version) = path.into_inner();
    let b: ReasonBody = parse(&body(payload).await?)?;
    let service = ServiceName::parse(&service).map_err(|e| ApiError::invalid(format!("service: {e}")))?;
    let version = Version::parse(&version).map_err(|e| ApiError::invalid(format!("version: {e}")))?;
    check_reason("reason", b.reason.as_deref())?;
    let Some(reason) = b.reason.filter(|r| !r.trim().is_empty()) else {
        return Err(ApiError::invalid("reason: say why the version may go out again"));
    };
    let Some(id) = state
        .coordinator
        .send(msg::BlockedBy(service.clone(), version.clone()))
        .await
        .map_err(mailbox)?
    else {
        need(&p, &[PrincipalRole::Manager], "unblock versions")?;
        return Err(ApiError::from(CommandError::Refused(format!(
            "{service} {version} is not blocked"
        ))));
    };
    need_on(&state, id, &p, &[PrincipalRole::Manager], None, "unblock versions").await?;
    state
        .coordinator
        .send(msg::Unblock {
            service,
            version,
            by: p.name.clone(),
            reason,
        })
        .await
        .map_err(mailbox)??;
    Ok(HttpResponse::Ok().json(record(&state, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default, deserialize_with = "present")]
    note: Option<String>,
}

/// Longest escalation number of an escalation id, in digits (the document's pattern).
const ESCALATION_DIGITS: usize = 9;

/// `d-000001-e2` → (d-000001, 2).
fn escalation_id(raw: &str) -> Result<(DeploymentId, usize), ApiError> {
    let bad = || ApiError::not_found(format!("{raw:?} is not an escalation id such as d-000001-e1"));
    let (d, e) = raw.rsplit_once("-e").ok_or_else(bad)?;
    let index = number(e, ESCALATION_DIGITS).ok_or_else(bad)? as usize;
    Ok((deployment_id(d)?, index))
}

async fn ack(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>, payload: web::Payload) -> ApiResult {
    let p = principal(&req, &state)?;
    let (id, index) = escalation_id(&id)?;
    let b: AckBody = parse(&body(payload).await?)?;
    check_reason("note", b.note.as_deref())?;
    let r = record(&state, id).await?;
    // The role first: a caller who may not acknowledge learns nothing about escalations.
    let roles = [PrincipalRole::Manager, PrincipalRole::Devops];
    need_on(&state, id, &p, &roles, None, "acknowledge escalations").await?;
    if index == 0 || index > r.escalations.len() {
        return Err(ApiError::not_found(format!(
            "{id} has no escalation e{index} (it has {})",
            r.escalations.len()
        )));
    }
    state
        .coordinator
        .send(msg::Acknowledge {
            id,
            index,
            by: p.name.clone(),
            note: b.note,
        })
        .await
        .map_err(mailbox)??;
    Ok(HttpResponse::Ok().json(record(&state, id).await?))
}

// ---- events ------------------------------------------------------------------------

#[derive(Deserialize)]
struct EventsQuery {
    deployment: Option<String>,
    after: Option<u64>,
}

/// One journal entry as the event stream sends it: the documented wire
/// type, built from the stored entry and every fact it produced (stored or
/// derived on replay, as the Coordinator hands them over). The stored body
/// is decoded as replay decodes it, whatever its journal format; the
/// settings snapshot of a submission and the machine's raw inputs stay in
/// the journal. A body that cannot be decoded (the journal was changed by
/// hand) is sent as `unknown`, so the stream goes on.
pub fn stream_entry(streamed: &msg::Streamed) -> EventEntry {
    let e = &streamed.entry;
    let facts = streamed.facts.clone();
    let (kind, body) = match JournalEntry::decode(&e.body) {
        Ok(JournalEntry::Submitted {
            request,
            production,
            held,
            // The settings snapshot and anything else kept only to replay.
            ..
        }) => (
            EntryKind::Submitted,
            EntryBody::Submitted {
                request: Box::new(request),
                production: ProductionState {
                    current_version: production.current_version,
                    previous_version: production.previous_version,
                    active_colour: production.active_colour,
                },
                held,
                facts,
            },
        ),
        Ok(JournalEntry::Event { event, .. }) => (
            EntryKind::Event,
            EntryBody::Event {
                input: input_name(&event).to_string(),
                facts,
            },
        ),
        Ok(JournalEntry::Resumed { effects }) => (
            EntryKind::Resumed,
            EntryBody::Resumed {
                effects: effects.iter().map(|e| effect_name(e).to_string()).collect(),
            },
        ),
        Err(err) => {
            tracing::warn!(
                seq = e.seq,
                "journal entry {} cannot be decoded for the event stream: {err}",
                e.seq
            );
            (EntryKind::Unknown, EntryBody::Unknown)
        }
    };
    EventEntry {
        seq: e.seq,
        deployment: DeploymentId(e.deployment),
        index: e.index,
        at: e.at,
        kind,
        hash: e.hash.clone(),
        prev_hash: e.prev_hash.clone(),
        body,
    }
}

/// The name of a machine input on the wire, as the journal names it.
fn input_name(event: &Event) -> &'static str {
    match event {
        Event::Start => "Start",
        Event::Prepared(_) => "Prepared",
        Event::Scanned(_) => "Scanned",
        Event::Staged(_) => "Staged",
        Event::Validated(_) => "Validated",
        Event::Notified { .. } => "Notified",
        Event::Reviewed { .. } => "Reviewed",
        Event::HumanDecision { .. } => "HumanDecision",
        Event::BaselineMeasured(_) => "BaselineMeasured",
        Event::StepDone { .. } => "StepDone",
        Event::Observed(_) => "Observed",
        Event::RolledBack(_) => "RolledBack",
        Event::Timer(_) => "Timer",
        Event::ManualRollback { .. } => "ManualRollback",
        Event::Cancel { .. } => "Cancel",
        Event::RepeatedFailures { .. } => "RepeatedFailures",
        Event::SlotGranted { .. } => "SlotGranted",
        Event::Acknowledge { .. } => "Acknowledge",
        Event::Unblock { .. } => "Unblock",
        Event::Refused { .. } => "Refused",
    }
}

/// The name of a piece of work on the wire, as the journal names it.
fn effect_name(effect: &Effect) -> &'static str {
    match effect {
        Effect::Prepare => "Prepare",
        Effect::Scan => "Scan",
        Effect::DeployStaging => "DeployStaging",
        Effect::Validate { .. } => "Validate",
        Effect::Notify(_) => "Notify",
        Effect::Review { .. } => "Review",
        Effect::AwaitDecision { .. } => "AwaitDecision",
        Effect::MeasureBaseline => "MeasureBaseline",
        Effect::Step { .. } => "Step",
        Effect::Observe { .. } => "Observe",
        Effect::Rollback(_) => "Rollback",
        Effect::Timer { .. } => "Timer",
        Effect::AcquireSlot => "AcquireSlot",
        Effect::Finished => "Finished",
    }
}

fn sse(s: &msg::Streamed) -> Bytes {
    let seq = s.entry.seq;
    let data = serde_json::to_string(&stream_entry(s)).unwrap_or_else(|err| {
        tracing::error!(seq, "journal entry {seq} cannot be sent: {err}");
        "null".into()
    });
    Bytes::from(format!("id: {seq}\nevent: entry\ndata: {data}\n\n"))
}

struct Stream {
    backlog: VecDeque<msg::Streamed>,
    rx: tokio::sync::broadcast::Receiver<msg::Streamed>,
    deployment: Option<u64>,
    last: u64,
    done: bool,
}

async fn events(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    principal(&req, &state)?;
    let q: EventsQuery = query(&req)?;
    let deployment = q.deployment.as_deref().map(deployment_id).transpose()?;
    let resume = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let after = q.after.or(resume);
    let (backlog, rx) = state
        .coordinator
        .send(msg::WatchJournal { deployment, after })
        .await
        .map_err(mailbox)??;
    let start = Stream {
        last: backlog.last().map(|e| e.entry.seq).or(after).unwrap_or(0),
        backlog: backlog.into(),
        rx,
        deployment: deployment.map(|d| d.0),
        done: false,
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(e) = s.backlog.pop_front() {
            let chunk = sse(&e);
            return Some((Ok::<_, actix_web::Error>(chunk), s));
        }
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(15), s.rx.recv()).await {
                Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), s)),
                Ok(Ok(e)) => {
                    if e.entry.seq <= s.last || s.deployment.is_some_and(|d| d != e.entry.deployment) {
                        continue;
                    }
                    s.last = e.entry.seq;
                    let chunk = sse(&e);
                    return Some((Ok(chunk), s));
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    // The client reconnects with Last-Event-ID and catches up from the journal.
                    s.done = true;
                    return Some((Ok(Bytes::from_static(b": lagged, reconnect with Last-Event-ID\n\n")), s));
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
            }
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream))
}

// ---- metrics -----------------------------------------------------------------------

async fn metrics(state: web::Data<AppState>) -> ApiResult {
    let s = state.coordinator.send(msg::GetStats).await.map_err(mailbox)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus_text(&s)))
}

/// A sample value of the Prometheus text format: `NaN`, `+Inf`, `-Inf`, or
/// the decimal of the number; zero is `0` whatever its sign (a sum of no
/// floats is `-0.0` in Rust, and `-0` in a scrape reads as a bug).
pub fn sample_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v == 0.0 {
        "0".into()
    } else {
        format!("{v}")
    }
}

/// Renders the daemon's counters in the Prometheus text format.
pub fn prometheus_text(s: &msg::Stats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP stagecoach_deployments Deployments known to the daemon, by status."
    );
    let _ = writeln!(out, "# TYPE stagecoach_deployments gauge");
    for status in Status::ALL {
        let n = s.by_status.get(status.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "stagecoach_deployments{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP stagecoach_stage_duration_seconds Duration of finished stages."
    );
    let _ = writeln!(out, "# TYPE stagecoach_stage_duration_seconds summary");
    for stage in workflow::types::Stage::ALL {
        let secs: Vec<f64> = s
            .stage_seconds
            .iter()
            .filter(|(st, _)| st == stage.as_str())
            .map(|(_, v)| *v)
            .collect();
        let _ = writeln!(
            out,
            "stagecoach_stage_duration_seconds_sum{{stage=\"{stage}\"}} {}",
            sample_value(secs.iter().sum::<f64>())
        );
        let _ = writeln!(
            out,
            "stagecoach_stage_duration_seconds_count{{stage=\"{stage}\"}} {}",
            secs.len()
        );
    }
    let _ = writeln!(
        out,
        "# HELP stagecoach_queue_depth Approved deployments waiting for their service's slot."
    );
    let _ = writeln!(out, "# TYPE stagecoach_queue_depth gauge");
    let _ = writeln!(out, "stagecoach_queue_depth {}", s.queue_depth);
    let _ = writeln!(
        out,
        "# HELP stagecoach_journal_write_seconds Latency of durable journal appends."
    );
    let _ = writeln!(out, "# TYPE stagecoach_journal_write_seconds histogram");
    for (le, n) in &s.journal_write_buckets {
        let _ = writeln!(
            out,
            "stagecoach_journal_write_seconds_bucket{{le=\"{}\"}} {n}",
            sample_value(*le)
        );
    }
    let _ = writeln!(
        out,
        "stagecoach_journal_write_seconds_bucket{{le=\"+Inf\"}} {}",
        s.journal_writes
    );
    let _ = writeln!(
        out,
        "stagecoach_journal_write_seconds_sum {}",
        sample_value(s.journal_write_seconds_sum)
    );
    let _ = writeln!(out, "stagecoach_journal_write_seconds_count {}", s.journal_writes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_values_never_read_minus_zero() {
        assert_eq!(sample_value(-0.0), "0");
        assert_eq!(sample_value(0.0), "0");
        assert_eq!(sample_value(std::iter::empty::<f64>().sum()), "0");
        assert_eq!(sample_value(1.5), "1.5");
        assert_eq!(sample_value(-2.25), "-2.25");
        assert_eq!(sample_value(0.0025), "0.0025");
        assert_eq!(sample_value(f64::NAN), "NaN");
        assert_eq!(sample_value(f64::INFINITY), "+Inf");
        assert_eq!(sample_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn an_idle_daemon_exposes_no_minus_zero() {
        let stats = msg::Stats {
            journal_write_seconds_sum: -0.0,
            journal_write_buckets: vec![(0.001, 0), (0.5, 0)],
            ..msg::Stats::default()
        };
        let text = prometheus_text(&stats);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(!value.starts_with("-0"), "{line}\n{text}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(
            text.contains("stagecoach_stage_duration_seconds_sum{stage=\"prepare\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("stagecoach_journal_write_seconds_sum 0\n"), "{text}");
        assert!(
            text.contains("stagecoach_journal_write_seconds_bucket{le=\"0.001\"} 0\n"),
            "{text}"
        );
    }
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod openapi_tests;
