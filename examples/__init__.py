"""Models written with other packages, attacked through `model=custom` (see examples/README.md)."""
