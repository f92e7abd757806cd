//! `admin` function: the admin web page (see the library, [`admin::Site`]). No database, no
//! secrets and no AWS SDK (so not `plexsync::lambda::serve_http`, which loads the SDK's
//! configuration): nothing to load but the embedded files.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plexsync::lambda::init_logging();
    let site: &'static admin::Site = Box::leak(Box::new(admin::Site::load()));
    lambda_http::run(lambda_http::service_fn(
        move |req: lambda_http::Request| async move { Ok::<_, lambda_http::Error>(site.handle(&req)) },
    ))
    .await
}
