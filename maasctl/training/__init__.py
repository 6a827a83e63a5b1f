"""Training without TensorFlow: the config, the data readers and the run records (TensorFlow is in maasctl.tf)."""
