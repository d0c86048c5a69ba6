"""evaluate(): every variant's accuracy on labelled data, with intervals, gate and flips."""
