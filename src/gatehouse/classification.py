"""Data classes, from least to most sensitive."""

DATA_CLASSES: tuple[str, ...] = ("public", "internal", "confidential", "restricted")


def rank(data_class: str) -> int:
    return DATA_CLASSES.index(data_class)
