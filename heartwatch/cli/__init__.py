"""The command line: `heartwatch` and its subcommands, and the client side of the ping protocol."""
