"""The dataclasses that cross the Temporal boundary: workflow inputs, activity inputs and results.

Workflows and activities both import from here and never from each other, so a payload's
shape has one home and stored histories keep their meaning.
"""
