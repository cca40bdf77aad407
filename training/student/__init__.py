"""The student: the MLP model, the teacher's soft labels it learns from, its distillation and the
popularity calibration chosen after it.
"""
