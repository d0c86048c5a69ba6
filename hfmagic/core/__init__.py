"""The bottom layer: errors, settings, the environment card, tables, shapes, hashing, timing and
the statistics every figure is computed with. It imports nothing else of hfmagic's."""
