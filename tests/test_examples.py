"""Every script in examples/ runs to completion."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, capsys):
    runpy.run_path(str(path), run_name="__main__")
    assert "rows in" in capsys.readouterr().out


def test_readme_quickstart_runs():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1]
    code = quickstart.split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})


def test_quickstart_doc_snippets_run():
    import re

    text = (Path(__file__).parent.parent / "docs" / "quickstart.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        code = "\n".join(line[3:] for line in block.splitlines())
        exec(compile(code, f"quickstart.rst block {i}", "exec"), {})
