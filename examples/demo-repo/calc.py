"""A tiny calculator used by Inspect's demo session."""


def add(a, b):
    return a + b


def average(numbers):
    """The mean of `numbers`; 0 for an empty list."""
    return sum(numbers) / len(numbers)
