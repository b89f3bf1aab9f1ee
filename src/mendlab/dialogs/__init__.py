"""Scripted dialogs and their automatic grading: scenarios, call extraction, grader, feedback."""
