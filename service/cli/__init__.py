"""The ``fedseg`` command line: one command, subcommands registered by each layer."""
