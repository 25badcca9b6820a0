"""One module per ``htr`` subcommand, each with ``register(subparsers)``; TensorFlow is imported inside the handlers."""
