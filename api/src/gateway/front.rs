//! The gateway's front: the service each worker's HTTP dispatcher calls with every request. A call
//! under `/v1/gst/` goes straight to the enforcement ([`super::enforce::gateway`]); anything else to
//! the routed application (actix-web's `App`).
//!
//! Every GSP call is of the first kind, so this is where the hot path leaves out actix-web's
//! per-request machinery: no `HttpRequest` is built, no router or middleware chain walked, no extractor
//! run. What the application's middleware does for every request (the request id, the metrics, the
//! access line) is done here by the same code, [`Served`].

use std::borrow::Cow;
use std::rc::Rc;

use actix_http::Request;
use actix_service::IntoServiceFactory;
use actix_web::body::BoxBody;
use actix_web::dev::{AppConfig, Response, Service, ServiceFactory, ServiceResponse, forward_ready};
use actix_web::{Error, web};
use futures_util::future::{LocalBoxFuture, TryFutureExt};

use super::forward::UpstreamClient;
use super::tokens_cache::ConnectionToken;
use crate::metrics::GATEWAY_ROUTE;
use crate::request_id::Served;
use crate::state::AppState;

/// True for the paths the gateway serves: `/v1/gst` and everything under `/v1/gst/`.
pub fn is_gateway_path(path: &str) -> bool {
    path.strip_prefix("/v1/gst")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What a gateway call is served with: the shared state and this worker's upstream client.
struct Gateway {
    state: web::Data<AppState>,
    upstream: web::Data<UpstreamClient>,
}

/// The factory of each worker's [`FrontService`], around the application's factory.
pub struct Front<A> {
    app: A,
    gateway: Rc<Gateway>,
}

impl<A> Front<A> {
    /// The front of `app`, serving gateway calls with `state` and `upstream` (the client the
    /// application's dialect face uses too).
    pub fn new<I>(app: I, state: web::Data<AppState>, upstream: web::Data<UpstreamClient>) -> Self
    where
        I: IntoServiceFactory<A, Request>,
        A: ServiceFactory<Request>,
    {
        Self {
            app: app.into_factory(),
            gateway: Rc::new(Gateway { state, upstream }),
        }
    }
}

impl<A> ServiceFactory<Request> for Front<A>
where
    A: ServiceFactory<
            Request,
            Config = AppConfig,
            Response = ServiceResponse<BoxBody>,
            Error = Error,
            InitError = (),
        >,
    A::Future: 'static,
    <A::Service as Service<Request>>::Future: 'static,
{
    type Response = Response<BoxBody>;
    type Error = Error;
    type Config = AppConfig;
    type Service = FrontService<A::Service>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Service, ()>>;

    fn new_service(&self, config: AppConfig) -> Self::Future {
        let app = self.app.new_service(config);
        let gateway = self.gateway.clone();
        Box::pin(async move {
            Ok(FrontService {
                app: app.await?,
                gateway,
            })
        })
    }
}

/// One worker's front: gateway calls to the enforcement, the rest to the application.
pub struct FrontService<S> {
    app: S,
    gateway: Rc<Gateway>,
}

impl<S> Service<Request> for FrontService<S>
where
    S: Service<Request, Response = ServiceResponse<BoxBody>, Error = Error>,
    S::Future: 'static,
{
    type Response = Response<BoxBody>;
    type Error = Error;
    /// Boxed on both paths: the dispatcher moves the future a few times, and a pointer is cheaper to
    /// move than either path's state.
    type Future = LocalBoxFuture<'static, Result<Response<BoxBody>, Error>>;

    forward_ready!(app);

    fn call(&self, req: Request) -> Self::Future {
        if is_gateway_path(req.path()) {
            Box::pin(serve(self.gateway.clone(), req))
        } else {
            Box::pin(self.app.call(req).map_ok(Response::from))
        }
    }
}

/// One gateway call, served as the application serves its requests ([`Served`]).
async fn serve(gateway: Rc<Gateway>, mut req: Request) -> Result<Response<BoxBody>, Error> {
    let served = Served::begin(req.head(), Cow::Borrowed(GATEWAY_ROUTE));
    let payload = req.take_payload();
    let connection = req.conn_data::<ConnectionToken>();
    // Boxed, so that the scope and the span wrap a pointer rather than copying the call's state.
    let answer = Box::pin(super::enforce::gateway(
        &gateway.state,
        &gateway.upstream,
        req.head(),
        connection,
        payload,
    ));
    let mut response = Response::from(served.scope(answer).await);
    served.end(response.status(), response.headers_mut());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::is_gateway_path;

    #[test]
    fn the_gateway_serves_its_prefix_on_a_segment_boundary() {
        for path in ["/v1/gst", "/v1/gst/", "/v1/gst/taxpayer", "/v1/gst/returns/x"] {
            assert!(is_gateway_path(path), "{path}");
        }
        for path in ["/v1/gstx", "/v1/gs", "/v1/gsp/token", "/", "/v1/GST/taxpayer"] {
            assert!(!is_gateway_path(path), "{path}");
        }
    }
}
