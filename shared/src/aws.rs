//! AWS SDK configuration: the real endpoints on Lambda, moto locally (`AWS_ENDPOINT_URL`).

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the SDK configuration once per cold start. The SDK itself honours
/// `AWS_ENDPOINT_URL`, region and credentials from the environment; its HTTPS client trusts
/// the process-wide compiled-in roots ([`crate::tls`]) instead of reading the system store.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::tls::sdk_http_client())
        .load()
        .await
}
