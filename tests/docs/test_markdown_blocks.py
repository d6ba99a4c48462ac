"""The block reader of the documentation tests, on a page written here."""

import pytest

from tests.docs.markdown_blocks import code_blocks


def test_blocks_languages_and_skip_reasons(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nx = 1\n```\n\n<!-- skip: takes an hour -->\n```bash\nsleep 3600\n```\n\n"
        "- item\n\n    ```text\n    output\n    ```\n"
    )
    blocks = code_blocks(page)
    assert [(b.line, b.language, b.skip) for b in blocks] == [(3, "python", None), (8, "bash", "takes an hour"), (14, "text", None)]
    assert blocks[0].code == "x = 1\n" and blocks[2].code == "output\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("```\nx = 1\n```\n", "needs a language"),
        ("```python\nx = 1\n", "never closed"),
        ("<!-- skip: -->\n```bash\nls\n```\n", "must say why"),
    ],
)
def test_malformed_pages_are_refused(tmp_path, text, message):
    page = tmp_path / "page.md"
    page.write_text(text)
    with pytest.raises(ValueError, match=message):
        code_blocks(page)
