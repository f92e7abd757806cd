//! Logging set-up: the runtime's subscriber honours `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG` and
//! switches to JSON when the function's log format is JSON (as the template configures).

pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
}
