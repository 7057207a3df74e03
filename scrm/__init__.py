"""The `scrm` command line: run, train, chat as a follower, inspect profiles."""
