"""In a kernel %benchmark streams into one dashboard; --no-widget shows the table instead."""



from hfmagic.ui.widget import Dashboard


def test_no_widget_through_the_magic(shell, tiny_bert, kernel_display):
    """In a kernel %benchmark streams into one dashboard; --no-widget shows the table instead."""
    shown = kernel_display
    line = f"{tiny_bert} --variants torch --batch-sizes 1 --seq-lens 8 --threads 1 --warmup 1 " \
           "--min-runs 3 --min-time 0.01 --inline"
    shell.run_line_magic("benchmark", line)
    assert len(shown) == 1 and isinstance(shown[0], Dashboard) and len(shown[0].rows) == 1
    shell.run_line_magic("benchmark", line + " --no-widget")
    assert len(shown) == 2 and type(shown[1]).__name__ == "BenchmarkResult"
    shell.run_line_magic("benchmark", line + " -q")
    assert len(shown) == 2
