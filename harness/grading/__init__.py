"""Grading one submission: the session every command shares, check / grade / write-up, the rubric, results."""
