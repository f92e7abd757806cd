//! The cold-start and memory baseline of `make bench`: a `lambda_runtime` function that answers
//! every event with a fixed JSON object. Nothing else, so the difference to a real function is
//! what that function does before and during its first invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({ "hello": "world" }))
    }))
    .await
}
