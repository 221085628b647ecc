"""One module per ``qualoader`` sub-command, each exposing ``add_parser(subparsers)``."""
