//! `admin` function: the admin web page (see the library, [`admin::Site`]). No database, no
//! secrets and no AWS SDK: nothing to load but the embedded files.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let site: &'static admin::Site = Box::leak(Box::new(admin::Site::load()));
    lambda_http::run(lambda_http::service_fn(
        move |req: lambda_http::Request| async move { Ok::<_, lambda_http::Error>(site.handle(&req)) },
    ))
    .await
}
