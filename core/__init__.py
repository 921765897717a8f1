"""The bottom layer: errors, config loading, paths, lifecycle, logging and task supervision.

Nothing here imports any other package of Ferry's; every other package may import this one.
"""
