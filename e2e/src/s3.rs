//! S3 in the stack's moto, read through the real SDK: the snapshot buckets.

use aws_sdk_s3::Client;

use crate::stack_var;

/// A client for the stack's moto (`AWS_ENDPOINT_URL`), path-style as moto serves buckets.
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
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    )
}

/// Creates `bucket` in us-east-1 unless it exists (the stack creates the examples' own).
pub async fn ensure_bucket(s3: &Client, bucket: &str) {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return;
    }
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket} in moto: {e:?}"));
}

/// Keys under `prefix`, sorted.
pub async fn keys(s3: &Client, bucket: &str, prefix: &str) -> Vec<String> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap_or_else(|e| panic!("list s3://{bucket}/{prefix}: {e:?}"));
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// The object's bytes.
pub async fn get(s3: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get s3://{bucket}/{key}: {e:?}"));
    out.body
        .collect()
        .await
        .expect("read the object")
        .into_bytes()
        .to_vec()
}
