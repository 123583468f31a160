//! Request-head limits actix does not enforce on its own: a head that
//! arrives in one read is parsed whatever its size, so a client could make
//! every request carry tens of kilobytes of headers into the handlers and
//! the logs. Refused here with 431 before access control or any handler.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

/// The largest head accepted, in bytes of header names and values.
#[derive(Debug, Clone, Copy)]
pub struct MaxHeaderBytes(pub u64);

/// Bytes of a request's header names and values (what `max_header_bytes`
/// bounds; the request line is bounded by actix).
pub fn header_bytes(headers: &actix_web::http::header::HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len()) as u64)
        .sum()
}

/// The middleware.
pub async fn limit_head(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limit = req
        .app_data::<web::Data<MaxHeaderBytes>>()
        .map(|l| l.0)
        .unwrap_or(16 * 1024);
    let size = header_bytes(req.headers());
    if size > limit {
        tracing::info!(
            path = req.path(),
            size,
            limit,
            "request refused (431): headers too large"
        );
        let response = HttpResponse::build(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            .content_type(ContentType::plaintext())
            .insert_header(("Connection", "close"))
            .body(format!(
                "request headers of {size} bytes exceed the limit of {limit} (http.max_header_bytes)\n"
            ));
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    #[test]
    fn counts_names_and_values() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("12345"),
        );
        headers.append(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        );
        assert_eq!(header_bytes(&headers), 3 + 5 + 3 + 1);
        assert_eq!(header_bytes(&HeaderMap::new()), 0);
    }
}
