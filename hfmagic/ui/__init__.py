"""The dashboard: its rows and cells computed in Python, and the anywidget that shows them."""
