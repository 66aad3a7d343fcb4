"""mtl-attack: multi-task adversarial attacks on branched multi-task vision models."""
__version__ = "0.1.0"
