"""One module per `panopticdepth` subcommand: each defines `register(parser)` and `run(args)` and keeps its
imports lazy."""
