"""One module per rubric concern: each turns a unit's observations into an item's points and evidence."""
