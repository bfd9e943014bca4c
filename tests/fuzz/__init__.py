"""Fuzz targets for every parser that reads bytes from the network or a ticket (see common.py)."""
