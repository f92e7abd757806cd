//! Integration tests of the webhook function against moto (SQS FIFO and Secrets Manager).
//! Run with `make test`, or with DATABASE_URL unset but AWS_ENDPOINT_URL pointing at moto_server.

mod accepted;
mod guards;
mod rejected;
mod senders;
mod support;
