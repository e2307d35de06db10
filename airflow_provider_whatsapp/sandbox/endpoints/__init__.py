"""Graph's endpoints as the sandbox serves them: one module per family, routed by ``routes``."""
