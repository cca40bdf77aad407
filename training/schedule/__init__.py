"""When and where the stages run: the wall-clock budget shared between them (budget.py) and the side
process that takes the stages the teacher does not feed onto a spare core (side.py)."""
