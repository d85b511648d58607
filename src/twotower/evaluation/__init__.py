"""Scoring runs against qrels (ir-measures), side-by-side comparison and the charts. Imports
the top level and `data`."""
