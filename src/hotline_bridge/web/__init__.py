"""The HTTP edge of every capability's resource: JSON errors, bearer auth, bodies, OpenAPI."""
