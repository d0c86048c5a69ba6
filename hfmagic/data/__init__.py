"""Reading labelled data (tables, label maps) and scoring it (metrics with bootstrap intervals)."""
