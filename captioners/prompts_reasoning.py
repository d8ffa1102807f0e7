"""Reasoning-augmentation prompts (t2i, free-form edit, conceptual edit), registered into ``captioners.prompts``."""
