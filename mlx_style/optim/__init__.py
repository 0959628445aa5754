"""Optimising an image instead of a network: L-BFGS, Gatys et al.'s method, the report's layer studies."""
