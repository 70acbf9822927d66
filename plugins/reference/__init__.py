"""NumPy reference implementations of the catalog's plugins, one module per plugin.

Every reference has the signature `fn(inputs: list[np.ndarray], fields: dict) -> list[np.ndarray]`
and follows what TensorRT 8.6's plugin kernels compute (quirks included, each noted where it is).
`plugins.registry` maps creator names to these functions and fills in field defaults.
"""
