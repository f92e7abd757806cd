//! `webhook` function: placeholder until its issue lands; answers every route with a JSON 501.

use lambda_http::{run, service_fn, Error, Request};
use plexsync::{http::respond, ApiError};

#[tokio::main]
async fn main() -> Result<(), Error> {
    plexsync::telemetry::init();
    run(service_fn(|req: Request| async move {
        Ok::<_, Error>(respond(Err(ApiError::NotImplemented(format!(
            "{} {} is not implemented yet",
            req.method(),
            req.uri().path()
        )))))
    }))
    .await
}
