"""The rule language: syntax tree, grammar and parser, linting, parameters, and the
expressions `where` clauses and fields evaluate."""
