"""One module per `panopticdepth` subcommand: each defines `register(subparsers)` and keeps its imports lazy."""
