"""Core of each subcommand: a function that takes plain options and returns a result; none prints."""
