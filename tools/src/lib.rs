//! The `rill` command line and `rill bench`. Built in the command-line issue.
