//! The gateway's front: the service each worker's HTTP dispatcher calls with every request. A call
//! under `/v1/gst/` goes straight to the enforcement ([`super::enforce::gateway`]), one under
//! `/taxpayerapi/v` to the GST System dialect's face ([`crate::gstn::dispatch`]); anything else to the
//! routed application (actix-web's `App`).
//!
//! Every GSP call is of the first two kinds, so this is where the hot path leaves out actix-web's
//! per-request machinery: no `HttpRequest` is built, no router or middleware chain walked, no extractor
//! run. What the application's middleware does for every request (the request id, the metrics, the
//! access line) is done here by the same code, [`Served`].

use std::borrow::Cow;
use std::rc::Rc;

use actix_http::Request;
use actix_service::IntoServiceFactory;
use actix_web::body::BoxBody;
use actix_web::dev::{AppConfig, Response, Service, ServiceFactory, ServiceResponse, forward_ready};
use actix_web::{Error, HttpResponse, web};
use futures_util::future::{LocalBoxFuture, TryFutureExt};

use super::forward::UpstreamClient;
use super::tokens_cache::ConnectionToken;
use crate::metrics::{DIALECT_ROUTE, GATEWAY_ROUTE};
use crate::request_id::Served;
use crate::state::AppState;

/// True for the paths the gateway serves: `/v1/gst` and everything under `/v1/gst/`.
pub fn is_gateway_path(path: &str) -> bool {
    path.strip_prefix("/v1/gst")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The faces of the gateway the front serves unrouted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
    /// `/v1/gst/…`: the enforcement, then the upstream or the sandbox.
    Gateway,
    /// `/taxpayerapi/v…`: the GST System's own dialect.
    Dialect,
}

impl Face {
    fn of(path: &str) -> Option<Self> {
        if is_gateway_path(path) {
            Some(Self::Gateway)
        } else if crate::gstn::is_dialect_call(path) {
            Some(Self::Dialect)
        } else {
            None
        }
    }

    /// The metrics' route label of its calls.
    fn route(self) -> &'static str {
        match self {
            Self::Gateway => GATEWAY_ROUTE,
            Self::Dialect => DIALECT_ROUTE,
        }
    }
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
        match Face::of(req.path()) {
            Some(face) => Box::pin(serve(self.gateway.clone(), face, req)),
            None => Box::pin(self.app.call(req).map_ok(Response::from)),
        }
    }
}

/// One call to a `face`, served as the application serves its requests ([`Served`]).
async fn serve(gateway: Rc<Gateway>, face: Face, mut req: Request) -> Result<Response<BoxBody>, Error> {
    let served = Served::begin(req.head(), Cow::Borrowed(face.route()));
    let payload = req.take_payload();
    let (state, upstream, head) = (&gateway.state, &gateway.upstream, req.head());
    // Boxed, so that the scope and the span wrap a pointer rather than copying the call's state.
    let answer: LocalBoxFuture<'_, HttpResponse> = match face {
        Face::Gateway => {
            let connection = req.conn_data::<ConnectionToken>();
            Box::pin(super::enforce::gateway(
                state, upstream, head, connection, payload,
            ))
        }
        Face::Dialect => Box::pin(crate::gstn::dispatch(state, upstream, head, payload)),
    };
    let mut response = Response::from(served.scope(answer).await);
    served.end(response.status(), response.headers_mut());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::Face;

    #[test]
    fn each_face_is_served_on_its_prefix() {
        for path in ["/v1/gst", "/v1/gst/", "/v1/gst/taxpayer", "/v1/gst/returns/x"] {
            assert_eq!(Face::of(path), Some(Face::Gateway), "{path}");
        }
        for path in [
            "/taxpayerapi/v1.0/authenticate",
            "/taxpayerapi/v1.1/returns/gstr1",
        ] {
            assert_eq!(Face::of(path), Some(Face::Dialect), "{path}");
        }
        // The certificate's routes and unknown dialect paths are the routed application's.
        for path in [
            "/v1/gstx",
            "/v1/gs",
            "/v1/gsp/token",
            "/",
            "/v1/GST/taxpayer",
            "/taxpayerapi/public-key.pem",
            "/taxpayerapi",
        ] {
            assert_eq!(Face::of(path), None, "{path}");
        }
    }
}
