"""Datasets: building token windows from MIDI files and music21 corpora, and reading them back."""

from musicbridge.data.dataset import Dataset, DatasetError, load_dataset

__all__ = ["Dataset", "DatasetError", "load_dataset"]
