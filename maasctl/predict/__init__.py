"""`maasctl predict` as a library: schema, inputs, encoding, the wire format, writers, targets and the client."""
