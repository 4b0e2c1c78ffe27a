"""Moving render files to farm storage and results back.

:mod:`.local` copies over a shared filesystem.
"""
