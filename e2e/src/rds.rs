//! RDS in the stack's moto, read through the real SDK: the instances of RDS regions.

use aws_sdk_rds::Client;

use crate::stack_var;

/// A client for the stack's moto (`AWS_ENDPOINT_URL`).
pub async fn client(aws_region: &str) -> Client {
    let _ = stack_var("AWS_ENDPOINT_URL");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new(aws_region.to_owned()))
        .load()
        .await;
    Client::new(&config)
}

/// The host moto reports for instance `identifier` in `aws_region` (moto's fixed
/// pattern; a test that maps it fails visibly if moto changes it).
pub fn moto_host(identifier: &str, aws_region: &str) -> String {
    format!("{identifier}.aaaaaaaaaa.{aws_region}.rds.amazonaws.com")
}
