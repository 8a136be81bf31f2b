"""Timing and accuracy comparisons; each module prints a table and writes CSV."""
