"""Graph passes around the rules: layout, input pinning and folding, shapes, freezing, weights,
and the graph prepared for the rules."""
