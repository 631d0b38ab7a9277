"""Data classes, from least to most sensitive."""

from typing import Literal

DataClass = Literal["public", "internal", "confidential", "restricted"]
DATA_CLASSES: tuple[str, ...] = DataClass.__args__  # type: ignore[attr-defined]  # Literal keeps its members in __args__


def rank(data_class: str) -> int:
    """0 for public up to 3 for restricted; ValueError for anything else."""
    return DATA_CLASSES.index(data_class)


def highest(*classes: str) -> str:
    """The most sensitive of the classes given."""
    return max(classes, key=rank)
