"""The one scaffold of resumable per-rank work that extract, detect and recognize share.

:mod:`~lfbtool.runs.naming` (the mode rule, part names), :mod:`~lfbtool.runs.settings` (the settings
fingerprint and the "what differs" message), :mod:`~lfbtool.runs.records` (attempt records, rank
manifests), :mod:`~lfbtool.runs.parts` (prepare, write, list finished parts; torch-free) and
:mod:`~lfbtool.runs.scaffold` (the choreography over torchrun ranks). Import from the modules.
"""
