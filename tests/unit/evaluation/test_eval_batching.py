"""evaluate()'s batch sizes: batch dependence comes from the recipe, not the name, and a bad batch size
is refused in one line before any work."""


import pytest


def test_batch_dependence_comes_from_the_recipe_not_the_name(dyn):
    import dataclasses

    from hfmagic.evaluation.api import evaluate
    from hfmagic.models.variants import Variant, Variants

    vs = dyn["variants"]
    renamed = dataclasses.replace(vs["int8"], name="smaller")  # dynamic int8 under another name
    plain = Variant("int8", vs.model, path=vs["fp32"].path)  # a float file named int8
    ev = evaluate(Variants(vs.model, [vs["torch"], renamed, plain]), dyn["frame"], progress=False)
    rows = {r["variant"]: (r["batch_size"], r["batch_dependent"]) for r in ev.rows}
    assert rows == {"torch": (32, False), "smaller": (1, True), "int8": (32, False)}


def test_the_python_api_refuses_a_bad_batch_size_in_one_line(dyn):
    from hfmagic.core.errors import UsageProblem
    from hfmagic.evaluation.api import evaluate

    for bad in (0, [1, -8], [], True, "8"):
        with pytest.raises(UsageProblem, match="--batch-size takes positive whole numbers"):
            evaluate(dyn["variants"], dyn["frame"], batch_size=bad, progress=False)
