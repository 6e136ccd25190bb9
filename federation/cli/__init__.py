"""fedseg subcommands of the federation layer."""
