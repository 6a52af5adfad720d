//! The Rill broker: listener, connections, one handler per API, topic registry, group coordinator, metrics and config. Built in the broker-and-client issue.
