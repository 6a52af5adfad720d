//! Rill client library: connection, producer, consumer, group consumer and admin. Built in the broker-and-client issue.
