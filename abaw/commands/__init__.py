"""One module per ``abaw`` subcommand: each defines ``configure(parser)`` and ``run(args)``."""
