"""Warm starts: a run that continues from a published version's weights instead of fresh ones.

checkpoints.py  what a version carries for the next run (teacher, student, scratch checkpoints,
                named by the manifest with their sha256, never read by the service), read back checked
remap.py        id maps merged by raw id: old rows copied to their new index, new rows initialised
start.py        the warm-started models and the settings a warm run trains with
replay.py       which pairs the version trained on, and student epochs over the rest plus a share of them
"""
