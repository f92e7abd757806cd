//! A record the processor keeps failing ends in the DLQ after maxReceiveCount receives, through
//! the real local bridge (`tools/bridge.py`) and a moto queue with the template's redrive policy.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_sdk_sqs::types::QueueAttributeName as A;
use plexsync::testing;
use serde_json::{json, Value};
use wiremock::{matchers::method, Mock, MockServer, Request, ResponseTemplate};

use crate::template::Template;

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The processor's stand-in: reports every record of every batch as failed (what it does for
/// a transient failure), and remembers which message ids it was handed.
async fn always_failing_processor() -> (MockServer, Arc<Mutex<Vec<String>>>) {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    Mock::given(method("POST"))
        .respond_with(move |req: &Request| {
            let event: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let ids: Vec<String> = event["Records"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["messageId"].as_str().map(String::from))
                .collect();
            record.lock().unwrap().extend(ids.iter().cloned());
            let failures: Vec<Value> = ids.iter().map(|id| json!({"itemIdentifier": id})).collect();
            ResponseTemplate::new(200).set_body_json(json!({"batchItemFailures": failures}))
        })
        .mount(&server)
        .await;
    (server, seen)
}

/// The bridge process, stopped (by its own pid) when the test ends, passed or not.
struct Bridge(std::process::Child);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_record_failing_max_receive_count_times_lands_in_the_dlq() {
    let template = Template::load();
    let redrive = &template.props("EventsQueue")["RedrivePolicy"];
    let max_receive = template.number(&redrive["maxReceiveCount"]);

    let aws = testing::moto_config().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let suffix = testing::unique_suffix();
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("plexsync-dlqtest-dlq-{suffix}.fifo"))
        .attributes(A::FifoQueue, "true")
        .send()
        .await
        .expect("DLQ")
        .queue_url
        .expect("DLQ url");
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .expect("DLQ attributes")
        .attributes
        .and_then(|a| a.get(&A::QueueArn).cloned())
        .expect("DLQ arn");
    // The template's redrive policy; only the visibility timeout is shortened (1 s instead of
    // minutes) so the retries happen within the test.
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("plexsync-dlqtest-{suffix}.fifo"))
        .attributes(A::FifoQueue, "true")
        .attributes(A::VisibilityTimeout, "1")
        .attributes(
            A::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}).to_string(),
        )
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue url");
    let sent = sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body(r#"{"poison":true}"#)
        .message_group_id("show-1")
        .message_deduplication_id(format!("poison-{suffix}"))
        .send()
        .await
        .expect("send")
        .message_id
        .expect("message id");

    let (processor, seen) = always_failing_processor().await;
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the tests with `make test`, which creates the venv",
        python.display()
    );
    let mut bridge = Bridge(
        std::process::Command::new(python)
            .arg(repo_root().join("tools/bridge.py"))
            .args(["--queue-url", &queue_url, "--wait", "1"])
            .args(["--invoke-url", &format!("{}/invoke", processor.uri())])
            .env("AWS_REGION", "us-east-1")
            .stdout(Stdio::null())
            .spawn()
            .expect("start tools/bridge.py"),
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let dead = loop {
        let received = sqs
            .receive_message()
            .queue_url(&dlq_url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from DLQ");
        if let Some(m) = received.messages.unwrap_or_default().pop() {
            break m;
        }
        assert!(
            bridge.0.try_wait().expect("bridge status").is_none(),
            "the bridge exited early"
        );
        assert!(Instant::now() < deadline, "nothing reached the DLQ in 90 s");
    };
    drop(bridge);

    assert_eq!(dead.message_id.as_deref(), Some(sent.as_str()));
    assert_eq!(dead.body.as_deref(), Some(r#"{"poison":true}"#));
    let tries = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|id| **id == sent)
        .count();
    assert_eq!(
        tries as u64, max_receive,
        "the processor saw the record once per receive, maxReceiveCount times"
    );
    let left = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    assert_eq!(
        left.get(&A::ApproximateNumberOfMessages)
            .map(String::as_str),
        Some("0")
    );
    assert_eq!(
        left.get(&A::ApproximateNumberOfMessagesNotVisible)
            .map(String::as_str),
        Some("0")
    );
}
