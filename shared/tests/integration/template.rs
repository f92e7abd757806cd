//! `template.yaml`: the settings correctness depends on, read from the template itself.
//! Deleting `ReportBatchItemFailures` or the redrive policy breaks nothing locally (the bridge
//! does not read the template) but loses or loops events on AWS; these tests catch that.

use serde_yaml_ng::Value;

use plexsync::metrics;

/// The parsed template. CloudFormation's short tags (`!Ref X`, `!GetAtt X.Arn`, `!If [...]`)
/// stay tagged values, so a test can tell a reference from a literal.
pub struct Template(Value);

/// A CloudFormation intrinsic, as far as these tests need them.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Intrinsic {
    Ref(String),
    GetAtt(String, String),
}

impl Template {
    pub fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
        let text = std::fs::read_to_string(path).expect("template.yaml is readable");
        Self(serde_yaml_ng::from_str(&text).expect("template.yaml is valid YAML"))
    }

    pub fn resource(&self, name: &str) -> &Value {
        let r = &self.0["Resources"][name];
        assert!(!r.is_null(), "template.yaml has no resource {name}");
        r
    }

    pub fn props(&self, name: &str) -> &Value {
        &self.resource(name)["Properties"]
    }

    pub fn parameter(&self, name: &str) -> &Value {
        let p = &self.0["Parameters"][name];
        assert!(!p.is_null(), "template.yaml has no parameter {name}");
        p
    }

    /// Names of the resources of one type, in template order.
    pub fn resources_of_type(&self, kind: &str) -> Vec<String> {
        self.0["Resources"]
            .as_mapping()
            .expect("Resources is a mapping")
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(kind))
            .map(|(k, _)| k.as_str().expect("resource names are strings").to_string())
            .collect()
    }

    /// A function's timeout in seconds: its own, else the Globals one.
    pub fn function_timeout(&self, name: &str) -> u64 {
        let own = &self.props(name)["Timeout"];
        let timeout = if own.is_null() {
            &self.0["Globals"]["Function"]["Timeout"]
        } else {
            own
        };
        timeout.as_u64().expect("Timeout is a number")
    }

    /// A number that is either literal or a `!Ref` to a parameter: the parameter's default.
    pub fn number(&self, v: &Value) -> u64 {
        match intrinsic(v) {
            Some(Intrinsic::Ref(p)) => self.parameter(&p)["Default"]
                .as_u64()
                .unwrap_or_else(|| panic!("parameter {p} has a numeric default")),
            _ => v
                .as_u64()
                .unwrap_or_else(|| panic!("{v:?} is a number or a !Ref")),
        }
    }
}

/// `!Ref X`, `!GetAtt X.Attr` (either form) or `{Ref: X}` / `{"Fn::GetAtt": [X, Attr]}`.
pub fn intrinsic(v: &Value) -> Option<Intrinsic> {
    if let Value::Tagged(t) = v {
        let tag = t.tag.to_string();
        let tag = tag.trim_start_matches('!');
        return match (tag, &t.value) {
            ("Ref", Value::String(s)) => Some(Intrinsic::Ref(s.clone())),
            ("GetAtt", Value::String(s)) => {
                let (r, a) = s.split_once('.')?;
                Some(Intrinsic::GetAtt(r.into(), a.into()))
            }
            ("GetAtt", Value::Sequence(seq)) => Some(Intrinsic::GetAtt(
                seq.first()?.as_str()?.into(),
                seq.get(1)?.as_str()?.into(),
            )),
            _ => None,
        };
    }
    if let Some(r) = v["Ref"].as_str() {
        return Some(Intrinsic::Ref(r.into()));
    }
    None
}

/// The tag name of a tagged value (`If`, `Sub`, ...).
pub fn tag_of(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => Some(t.tag.to_string().trim_start_matches('!').to_string()),
        _ => None,
    }
}

fn reference(name: &str) -> Intrinsic {
    Intrinsic::Ref(name.into())
}

fn arn_of(name: &str) -> Intrinsic {
    Intrinsic::GetAtt(name.into(), "Arn".into())
}

/// `x` or `[x, y]` as a list.
fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(s) => s.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Every IAM statement of a function's inline policies, `!If [cond, policy, NoValue]` unwrapped.
fn statements(t: &Template, function: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for policy in list(&t.props(function)["Policies"]) {
        let policy = match policy {
            Value::Tagged(tagged) if tag_of(policy).as_deref() == Some("If") => &tagged.value[1],
            p => p,
        };
        for s in list(&policy["Statement"]) {
            out.push(s.clone());
        }
    }
    out
}

/// Whether some statement allows `action` on exactly `resource`.
fn allows(t: &Template, function: &str, action: &str, resource: &Intrinsic) -> bool {
    statements(t, function).iter().any(|s| {
        s["Effect"].as_str() == Some("Allow")
            && list(&s["Action"])
                .iter()
                .any(|a| a.as_str() == Some(action))
            && list(&s["Resource"])
                .iter()
                .any(|r| intrinsic(r).as_ref() == Some(resource))
    })
}

fn functions(t: &Template) -> Vec<String> {
    t.resources_of_type("AWS::Serverless::Function")
}

/// The processor's queue trigger.
fn queue_event(t: &Template) -> Value {
    let events = t.props("ProcessorFunction")["Events"]
        .as_mapping()
        .expect("the processor has events");
    let sqs: Vec<_> = events
        .values()
        .filter(|e| e["Type"].as_str() == Some("SQS"))
        .collect();
    assert_eq!(
        sqs.len(),
        1,
        "the processor has exactly one SQS event source"
    );
    sqs[0]["Properties"].clone()
}

#[test]
fn the_processor_consumes_the_events_queue_reporting_item_failures() {
    let t = Template::load();
    let source = queue_event(&t);
    assert_eq!(intrinsic(&source["Queue"]), Some(arn_of("EventsQueue")));
    // Without it Lambda deletes the whole batch as processed when the handler returns, failed
    // records included.
    let response_types: Vec<_> = list(&source["FunctionResponseTypes"])
        .into_iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(response_types, ["ReportBatchItemFailures"]);
    // FIFO queues allow at most 10 per batch; the handler's time budget assumes it too.
    let batch = t.number(&source["BatchSize"]);
    assert!((1..=10).contains(&batch), "BatchSize {batch}");
    // No batching window: FIFO event sources do not support one.
    assert!(source["MaximumBatchingWindowInSeconds"].is_null());
    // The connection budget: a bounded number of processor instances.
    let max = &source["ScalingConfig"]["MaximumConcurrency"];
    assert_eq!(
        intrinsic(max),
        Some(reference("ProcessorMaxConcurrency")),
        "MaximumConcurrency comes from the parameter"
    );
    let param = t.parameter("ProcessorMaxConcurrency");
    assert!(param["MinValue"].as_u64() >= Some(2), "SQS needs >= 2");
    assert!(t.number(max) >= 2);
}

#[test]
fn the_queue_is_fifo_with_a_fifo_dlq_and_bounded_retries() {
    let t = Template::load();
    let queue = t.props("EventsQueue");
    let dlq = t.props("EventsDlq");
    assert_eq!(queue["FifoQueue"].as_bool(), Some(true));
    assert_eq!(
        dlq["FifoQueue"].as_bool(),
        Some(true),
        "a FIFO queue needs a FIFO DLQ"
    );
    // Deduplication ids come from the event, not the body (the body has a receive time).
    assert_eq!(queue["ContentBasedDeduplication"].as_bool(), Some(false));
    let redrive = &queue["RedrivePolicy"];
    assert_eq!(
        intrinsic(&redrive["deadLetterTargetArn"]),
        Some(arn_of("EventsDlq"))
    );
    let max_receive = t.number(&redrive["maxReceiveCount"]);
    assert!(
        (3..=10).contains(&max_receive),
        "maxReceiveCount {max_receive}: enough retries to outlast a short outage, few enough to stop a poison message"
    );
    // A message keeps its first enqueue time in the DLQ: the DLQ must keep it at least as long.
    assert!(t.number(&dlq["MessageRetentionPeriod"]) >= t.number(&queue["MessageRetentionPeriod"]));
    assert!(queue["RedrivePolicy"].is_mapping() && dlq["RedrivePolicy"].is_null());
    // The processor logs a failure on the last receive: it must know which receive that is.
    let told = &t.props("ProcessorFunction")["Environment"]["Variables"]["MAX_RECEIVE_COUNT"];
    assert_eq!(
        told.as_str().and_then(|v| v.parse::<u64>().ok()),
        Some(max_receive),
        "the processor's MAX_RECEIVE_COUNT is the redrive policy's maxReceiveCount"
    );
}

/// SQS actions granted on the DLQ, by function: only the logs function (the dead-letters API)
/// touches it, and the processor only ever sees the queue (through its event source).
#[test]
fn only_the_dead_letters_api_may_touch_the_dlq() {
    let t = Template::load();
    for f in functions(&t) {
        let on_dlq: Vec<String> = statements(&t, &f)
            .iter()
            .filter(|s| {
                list(&s["Resource"])
                    .iter()
                    .any(|r| intrinsic(r) == Some(arn_of("EventsDlq")))
            })
            .flat_map(|s| {
                list(&s["Action"])
                    .into_iter()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect::<Vec<_>>()
            })
            .collect();
        if f == "LogsFunction" {
            assert!(!on_dlq.is_empty());
            assert!(
                !on_dlq
                    .iter()
                    .any(|a| a.ends_with('*') || a == "sqs:SendMessage"),
                "{on_dlq:?}"
            );
        } else {
            assert!(on_dlq.is_empty(), "{f} may touch the DLQ: {on_dlq:?}");
        }
    }
}

#[test]
fn visibility_timeout_is_at_least_six_processor_timeouts() {
    let t = Template::load();
    let visibility = t.number(&t.props("EventsQueue")["VisibilityTimeout"]);
    let timeout = t.function_timeout("ProcessorFunction");
    // AWS's rule for event source mappings: otherwise a record still being processed (or
    // retried by the poller after a throttle) becomes visible again and runs twice.
    assert!(
        visibility >= 6 * timeout,
        "VisibilityTimeout {visibility} < 6 x processor Timeout {timeout}"
    );
}

#[test]
fn http_functions_answer_before_api_gateways_30_second_cap() {
    let t = Template::load();
    for f in functions(&t) {
        let events = &t.props(&f)["Events"];
        let behind_api = events
            .as_mapping()
            .is_some_and(|m| m.values().any(|e| e["Type"].as_str() == Some("HttpApi")));
        if behind_api {
            let timeout = t.function_timeout(&f);
            assert!(
                timeout < 30,
                "{f} has Timeout {timeout}, behind a 30 s API Gateway cap"
            );
        }
    }
}

#[test]
fn every_secret_and_queue_a_function_names_is_granted_by_exact_arn() {
    let t = Template::load();
    for f in functions(&t) {
        for s in statements(&t, &f) {
            for r in list(&s["Resource"]) {
                assert!(
                    intrinsic(r).is_some(),
                    "{f}: policy resource {r:?} is not a reference to one resource"
                );
            }
        }
        let vars = &t.props(&f)["Environment"]["Variables"];
        let Some(vars) = vars.as_mapping() else {
            continue;
        };
        for (name, value) in vars {
            let name = name.as_str().unwrap_or_default();
            if name.ends_with("_SECRET_ID") {
                let secret = intrinsic(value)
                    .unwrap_or_else(|| panic!("{f}: {name} is a !Ref to a secret (ARN)"));
                assert!(
                    allows(&t, &f, "secretsmanager:GetSecretValue", &secret),
                    "{f} reads {name} but may not GetSecretValue on {secret:?}"
                );
            }
            if name == "QUEUE_URL" {
                assert_eq!(intrinsic(value), Some(reference("EventsQueue")));
                assert!(
                    allows(&t, &f, "sqs:SendMessage", &arn_of("EventsQueue")),
                    "{f} sends to the queue without sqs:SendMessage on its ARN"
                );
            }
            if name == "DLQ_URL" {
                assert_eq!(intrinsic(value), Some(reference("EventsDlq")));
                for action in [
                    "sqs:ReceiveMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                ] {
                    assert!(
                        allows(&t, &f, action, &arn_of("EventsDlq")),
                        "{f} reads the DLQ without {action} on its ARN"
                    );
                }
            }
        }
    }
    // Only the config function writes a secret, and only the webhook secret.
    for f in functions(&t) {
        for s in statements(&t, &f) {
            if list(&s["Action"])
                .iter()
                .any(|a| a.as_str() == Some("secretsmanager:PutSecretValue"))
            {
                assert_eq!(f, "ConfigFunction");
                let resources: Vec<_> = list(&s["Resource"]).into_iter().map(intrinsic).collect();
                assert_eq!(resources, [Some(reference("WebhookSecret"))]);
            }
        }
    }
}

#[test]
fn webhook_throttling_leaves_room_for_plex_and_caps_concurrency() {
    let t = Template::load();
    let route = &t.props("HttpApi")["RouteSettings"]["POST /api/plex/webhook"];
    let rate = t.number(&route["ThrottlingRateLimit"]);
    let burst = t.number(&route["ThrottlingBurstLimit"]);
    // A household sends a few events per play; the route limit is for floods, not for Plex.
    assert!(rate >= 50, "webhook route rate {rate}/s");
    assert!(burst >= rate);
    // Concurrency is capped where it costs money or connections (0 = unreserved, for accounts
    // with the default limit of 10).
    let capped = |f: &str, param: &str| {
        let v = &t.props(f)["ReservedConcurrentExecutions"];
        assert_eq!(
            tag_of(v).as_deref(),
            Some("If"),
            "{f}: conditional reservation"
        );
        let Value::Tagged(tagged) = v else {
            unreachable!()
        };
        assert_eq!(intrinsic(&tagged.value[1]), Some(reference(param)), "{f}");
        assert!(t.number(&tagged.value[1]) > 0, "{f}: reserved by default");
    };
    capped("WebhookFunction", "WebhookReservedConcurrency");
    for f in [
        "ConfigFunction",
        "MappingsFunction",
        "ConflictsFunction",
        "LogsFunction",
        "ImportFunction",
    ] {
        capped(f, "ApiReservedConcurrency");
    }
}

/// Alarm name -> (namespace, metric) it watches.
fn alarm_metric(t: &Template, alarm: &str) -> (String, String) {
    let p = t.props(alarm);
    (
        p["Namespace"].as_str().unwrap_or_default().to_string(),
        p["MetricName"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn alarms_watch_the_queue_dlq_webhook_and_the_metrics_the_code_emits() {
    let t = Template::load();
    let dlq = t.props("DlqNotEmptyAlarm");
    assert_eq!(
        alarm_metric(&t, "DlqNotEmptyAlarm"),
        (
            "AWS/SQS".into(),
            "ApproximateNumberOfMessagesVisible".into()
        )
    );
    assert_eq!(
        intrinsic(&dlq["Dimensions"][0]["Value"]),
        Some(Intrinsic::GetAtt("EventsDlq".into(), "QueueName".into()))
    );
    assert_eq!(
        alarm_metric(&t, "QueueAgeAlarm"),
        ("AWS/SQS".into(), "ApproximateAgeOfOldestMessage".into())
    );
    assert_eq!(
        intrinsic(&t.props("QueueAgeAlarm")["Dimensions"][0]["Value"]),
        Some(Intrinsic::GetAtt("EventsQueue".into(), "QueueName".into()))
    );
    // The EMF metric the processor emits is the one the alarm reads.
    assert_eq!(
        alarm_metric(&t, "OpenConflictsAlarm"),
        (metrics::NAMESPACE.into(), metrics::OPEN_CONFLICTS.into())
    );
    assert_eq!(
        alarm_metric(&t, "EnqueueFailedAlarm"),
        (metrics::NAMESPACE.into(), metrics::ENQUEUE_FAILURES.into())
    );
    // The TMDB error rate: errors over calls, both as the client emits them.
    let queries = &t.props("TmdbErrorRateAlarm")["Metrics"];
    let stat = |id: &str| {
        let q = list(queries)
            .into_iter()
            .find(|q| q["Id"].as_str() == Some(id))
            .unwrap_or_else(|| panic!("TmdbErrorRateAlarm has a query {id}"));
        let m = &q["MetricStat"]["Metric"];
        (
            m["Namespace"].as_str().unwrap_or_default().to_string(),
            m["MetricName"].as_str().unwrap_or_default().to_string(),
            q["MetricStat"]["Period"].as_u64(),
        )
    };
    assert_eq!(
        stat("errors"),
        (
            metrics::NAMESPACE.into(),
            metrics::TMDB_ERRORS.into(),
            Some(600)
        )
    );
    assert_eq!(
        stat("requests"),
        (
            metrics::NAMESPACE.into(),
            metrics::TMDB_REQUESTS.into(),
            Some(600)
        )
    );
    let rate = list(queries)
        .into_iter()
        .find(|q| q["ReturnData"].as_bool() == Some(true))
        .expect("one query is the alarm's");
    assert!(rate["Expression"]
        .as_str()
        .unwrap_or_default()
        .contains("100 * errors / requests"));
    assert_eq!(
        t.props("TmdbErrorRateAlarm")["Threshold"].as_u64(),
        Some(20)
    );
    // Webhook outcomes are counted from the access log, for every sender's webhook route only.
    for (filter, alarm, status) in [
        ("Webhook4xxMetric", "Webhook4xxAlarm", "4*"),
        ("Webhook5xxMetric", "Webhook5xxAlarm", "5*"),
    ] {
        let p = t.props(filter);
        assert_eq!(
            intrinsic(&p["LogGroupName"]),
            Some(reference("HttpApiAccessLogs"))
        );
        let pattern = p["FilterPattern"].as_str().unwrap_or_default();
        for sender in ["plex", "jellyfin", "emby"] {
            assert!(
                pattern.contains(&format!(r#"$.routeKey = "POST /api/{sender}/webhook""#)),
                "{pattern}"
            );
        }
        assert!(
            pattern.contains(&format!(r#"$.status = "{status}""#)),
            "{pattern}"
        );
        let m = &p["MetricTransformations"][0];
        assert_eq!(
            alarm_metric(&t, alarm),
            (
                m["MetricNamespace"].as_str().unwrap_or_default().into(),
                m["MetricName"].as_str().unwrap_or_default().into()
            )
        );
    }
    // The access log carries the fields those filters read.
    let format = t.props("HttpApi")["AccessLogSettings"]["Format"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let fields: serde_json::Value =
        serde_json::from_str(&format).expect("access log format is JSON");
    assert_eq!(fields["routeKey"], "$context.routeKey");
    assert_eq!(fields["status"], "$context.status");
}

#[test]
fn database_functions_keep_small_pools() {
    let t = Template::load();
    for f in [
        "ProcessorFunction",
        "ConfigFunction",
        "MappingsFunction",
        "ConflictsFunction",
        "LogsFunction",
        "ImportFunction",
    ] {
        let size = &t.props(f)["Environment"]["Variables"]["DATABASE_POOL_SIZE"];
        let size: u64 = size
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{f} sets DATABASE_POOL_SIZE"));
        assert!((1..=2).contains(&size), "{f}: pool of {size}");
    }
}

#[test]
fn functions_get_secret_arns_never_secret_values() {
    let t = Template::load();
    for f in functions(&t) {
        let Some(vars) = t.props(&f)["Environment"]["Variables"].as_mapping() else {
            continue;
        };
        for (name, value) in vars {
            let name = name.as_str().unwrap_or_default();
            assert!(
                !matches!(name, "DATABASE_URL" | "TMDB_API_TOKEN" | "RUNTIME_DATABASE_URL"),
                "{f}: {name} would put the value in the function's configuration; pass {name}_SECRET_ID"
            );
            let text = format!("{value:?}");
            assert!(
                !text.contains("{{resolve:"),
                "{f}: {name} resolves a secret into the environment"
            );
            assert!(
                intrinsic(value) != Some(reference("TmdbApiToken")),
                "{f}: {name}"
            );
        }
    }
}

#[test]
fn only_the_migrate_function_gets_the_owner_database_url() {
    let t = Template::load();
    let owner = reference("DatabaseUrlSecretArn");
    let runtime = reference("RuntimeDatabaseUrlSecretArn");
    for f in functions(&t) {
        let vars = &t.props(&f)["Environment"]["Variables"];
        let reads_owner = vars
            .as_mapping()
            .is_some_and(|m| m.values().any(|v| intrinsic(v).as_ref() == Some(&owner)));
        let may_read_owner = allows(&t, &f, "secretsmanager:GetSecretValue", &owner);
        if f == "MigrateFunction" {
            assert_eq!(
                intrinsic(&vars["OWNER_DATABASE_URL_SECRET_ID"]),
                Some(owner.clone())
            );
            assert_eq!(
                intrinsic(&vars["DATABASE_URL_SECRET_ID"]),
                Some(runtime.clone())
            );
        } else {
            assert!(
                !reads_owner && !may_read_owner,
                "{f} may read the owner's database URL"
            );
            if !vars["DATABASE_URL_SECRET_ID"].is_null() {
                assert_eq!(
                    intrinsic(&vars["DATABASE_URL_SECRET_ID"]),
                    Some(runtime.clone()),
                    "{f}"
                );
            }
        }
    }
    // A changed runtime secret re-runs the grants.
    assert_eq!(
        intrinsic(&t.props("Migrations")["RuntimeDatabaseUrlSecretArn"]),
        Some(runtime)
    );
}

#[test]
fn management_routes_take_any_method_so_cors_preflight_reaches_the_function() {
    // With a method-specific route, API Gateway itself answers a browser's OPTIONS preflight
    // with 404 and the admin page (or any allowed origin) cannot call the route.
    let t = Template::load();
    let mut checked = 0;
    for function in functions(&t) {
        let events = t.props(&function)["Events"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        for (_, event) in events {
            let props = &event["Properties"];
            let path = props["Path"].as_str().unwrap_or_default();
            if event["Type"].as_str() != Some("HttpApi")
                || !path.starts_with("/api/")
                || path.ends_with("/webhook")
            {
                continue;
            }
            assert_eq!(props["Method"].as_str(), Some("ANY"), "{function} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} management routes found");
}

#[test]
fn every_served_route_reaches_its_function_through_api_gateway() {
    // A route added to a function's table but not under one of its API Gateway paths (exact
    // or `{proxy+}`) would work in the handler tests and be a 404 on AWS.
    let t = Template::load();
    for (binary, routes) in plexsync::api::routes::ALL {
        let function = functions(&t)
            .into_iter()
            .find(|f| {
                t.resource(f)["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary)
            })
            .unwrap_or_else(|| panic!("no function builds {binary}"));
        let paths: Vec<String> = t.props(&function)["Events"]
            .as_mapping()
            .cloned()
            .unwrap_or_default()
            .values()
            .filter(|e| e["Type"].as_str() == Some("HttpApi"))
            .filter_map(|e| e["Properties"]["Path"].as_str().map(str::to_string))
            .collect();
        for (method, route) in *routes {
            let reached = paths.iter().any(|p| match p.strip_suffix("{proxy+}") {
                Some(prefix) => route.starts_with(prefix) && route.len() > prefix.len(),
                None => p == route,
            });
            assert!(
                reached,
                "{method} {route} is not routed to {function}: {paths:?}"
            );
        }
    }
}

#[test]
fn a_daily_schedule_runs_the_retention_on_the_processor() {
    let t = Template::load();
    let events = t.props("ProcessorFunction")["Events"]
        .as_mapping()
        .expect("the processor has events");
    let schedules: Vec<_> = events
        .values()
        .filter(|e| e["Type"].as_str() == Some("Schedule"))
        .collect();
    assert_eq!(schedules.len(), 1, "one schedule on the processor");
    let schedule = &schedules[0]["Properties"];
    assert_eq!(schedule["Schedule"].as_str(), Some("rate(1 day)"));
    // The exact task the processor recognises (processor::Invocation::Retention).
    let input: serde_json::Value =
        serde_json::from_str(schedule["Input"].as_str().expect("Input is a JSON string")).unwrap();
    assert_eq!(input, serde_json::json!({"task": "retention"}));
    assert_ne!(schedule["Enabled"].as_bool(), Some(false));
    // No other function is scheduled: the cleanup needs no server and no new Lambda.
    for f in functions(&t) {
        if f != "ProcessorFunction" {
            let scheduled = t.props(&f)["Events"]
                .as_mapping()
                .is_some_and(|e| e.values().any(|e| e["Type"].as_str() == Some("Schedule")));
            assert!(!scheduled, "{f} has a schedule");
        }
    }

    // Days from the parameter, default 90.
    let vars = &t.props("ProcessorFunction")["Environment"]["Variables"];
    assert_eq!(
        intrinsic(&vars["RETENTION_DAYS"]),
        Some(reference("DataRetentionDays"))
    );
    assert_eq!(t.number(&vars["RETENTION_DAYS"]), 90);
    assert!(t.parameter("DataRetentionDays")["MinValue"].as_u64() >= Some(1));

    // Processed keys outlive every message SQS may still deliver: the queue's retention, then
    // the DLQ's (a redrive brings a dead letter back).
    let retention_days = |queue: &str| t.number(&t.props(queue)["MessageRetentionPeriod"]) / 86_400;
    let sqs_days = retention_days("EventsQueue") + retention_days("EventsDlq");
    assert!(
        u64::from(plexsync::store::processed::MIN_KEEP_DAYS) >= sqs_days,
        "processed keys kept {} days, SQS can hold a message {sqs_days} days",
        plexsync::store::processed::MIN_KEEP_DAYS
    );
}
