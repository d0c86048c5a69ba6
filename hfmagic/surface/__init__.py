"""What people type: the IPython magics, the command line and how results are displayed."""
