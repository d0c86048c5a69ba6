"""What the run store holds, shown: the run list, compare, rerun and the HTML report."""
