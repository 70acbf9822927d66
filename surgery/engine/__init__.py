"""The rule engine: patterns matched, actions applied, rule order and fixpoint, provenance."""
