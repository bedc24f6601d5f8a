"""`tsk.reformat` on random documents with comments in every legal place: they keep their data and
every comment, comments stay on (or directly above) the line of what they belong to, and
formatting twice changes nothing more."""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from config_service import tsk

from .test_format import comments


class Builder:
    """Writes a random legal document, noting what each comment must stay beside."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.lines: list[str] = []
        self.numbers = count(1)
        # comment -> the start of the output line it must end, or stand directly above
        self.trailing: dict[str, tuple[str, ...]] = {}
        self.above: dict[str, tuple[str, ...]] = {}
        self.pending: list[str] = []  # comment lines directly above the next statement

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def comment(self) -> str:
        return f"# c{next(self.numbers)}"

    def name(self) -> tuple[str, str]:
        """(as written in the source, as the output writes it)"""
        number = next(self.numbers)
        if self.draw(st.booleans()) and self.draw(st.booleans()):
            return f'"q {number}"', f'"q {number}"'
        return f"k{number}", f"k{number}"

    def gap(self, indent: str) -> None:
        """Blank lines and comment lines between statements."""
        for _ in range(self.draw(st.integers(0, 3))):
            if self.draw(st.booleans()):
                self.lines.append("")
                self.pending = []
            else:
                text = self.comment()
                self.lines.append(indent + text)
                self.pending.append(text)

    def statement(self, line: str, anchors: tuple[str, ...]) -> None:
        for text in self.pending:
            self.above[text] = anchors
        self.pending = []
        if self.draw(st.booleans()):
            text = self.comment()
            self.trailing[text] = anchors
            line += "  " + text
        self.lines.append(line)

    def value(self) -> tuple[str, bool]:
        """A value's text, and whether the output writes it as a table."""
        choice = self.draw(st.integers(0, 5))
        if choice == 0:
            return '"""\nhash # inside\n"""', False
        if choice == 1:
            return "{ a: 1, b: { c: 2 } }", True
        if choice == 2:
            return '"x # y"', False
        if choice == 3:
            return "[1, 2]", False
        if choice == 4:
            return "{}", True
        return str(self.draw(st.integers(-5, 5))), False

    def table_body(self, indent: str, depth: int) -> None:
        for _ in range(self.draw(st.integers(0, 3))):
            self.gap(indent)
            source, written = self.name()
            if depth < 3 and self.draw(st.integers(0, 3)) == 0:
                opener, closer = self.draw(st.sampled_from([("{", "}"), (">", "<")]))
                anchors = (f"{written} {{", f"[{written}]")
                self.statement(f"{indent}{source} {opener}", anchors)
                self.table_body(indent + "  ", depth + 1)
                self.gap(indent + "  ")
                self.pending = []
                line = indent + closer
                if self.draw(st.booleans()):
                    line += "  " + self.comment()
                self.lines.append(line)
            else:
                text, table = self.value()
                separator = self.draw(st.sampled_from([": ", " = ", ":"]))
                anchors = (f"{written} {{", f"[{written}]") if table else (f"{written}:",)
                self.statement(f"{indent}{source}{separator}{text}", anchors)

    def document(self) -> str:
        self.table_body("", 0)
        sections: list[str] = []
        implicit: list[str] = []  # tables created by a dotted header, not yet opened
        for _ in range(self.draw(st.integers(0, 4))):
            self.gap("")
            number = next(self.numbers)
            kind = self.draw(st.integers(0, 3))
            if kind == 0 and sections:
                parent = self.draw(st.sampled_from(sections))
                header = f"{parent}.s{number}"
                anchors: tuple[str, ...] = (f"s{number} {{",)
            elif kind == 1:
                # `[pN.sM]` creates pN implicitly; it may be opened by its own header later.
                header = f"p{number}.s{number}"
                anchors = (f"s{number} {{",)
                implicit.append(f"p{number}")
            elif kind == 2 and implicit:
                header = implicit.pop()
                anchors = (f"[{header}]",)
            else:
                header = f"s{number}"
                anchors = (f"[s{number}]",)
            sections.append(header)
            self.statement(f"[{header}]", anchors)
            self.table_body("", 1)
        self.gap("")
        return "\n".join(self.lines) + "\n"


def check_places(output: str, builder: Builder) -> None:
    lines = [line.strip() for line in output.splitlines()]
    for text, anchors in builder.trailing.items():
        holding = [index for index, line in enumerate(lines) if line.endswith("  " + text)]
        assert len(holding) == 1, (text, output)
        index = holding[0]
        if lines[index].startswith('"""'):  # the end of a multi-line string
            index -= 2
        assert lines[index].startswith(anchors), (text, anchors, output)
    for text, anchors in builder.above.items():
        index = lines.index(text)
        while lines[index].startswith("#"):
            index += 1
        assert lines[index].startswith(anchors), (text, anchors, output)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_documents_keep_data_comments_and_places_and_format_once(data: st.DataObject) -> None:
    builder = Builder(data)
    source = builder.document()
    if data.draw(st.booleans()):
        source = source.replace("\n", "\r\n")
    if data.draw(st.booleans()):
        source = "\ufeff" + source
    note(source)
    output = tsk.reformat(source)
    assert tsk.loads(output) == tsk.loads(source)
    assert comments(output) == comments(source)
    check_places(output, builder)
    assert tsk.reformat(output) == output


@pytest.mark.parametrize("closer", ["}", "<"])
def test_the_closer_comment_of_a_top_level_block_written_as_a_section_is_kept(closer: str) -> None:
    opener = "{" if closer == "}" else ">"
    source = f"a {opener}  # opens a\n    x: 1\n{closer}  # closes a\n[s]\ny: 2\n"
    output = tsk.reformat(source)
    assert comments(output) == comments(source)
    assert output == "[a]  # opens a\nx: 1\n# closes a\n\n[s]\ny: 2\n"
    assert tsk.reformat(output) == output


def test_a_comment_kept_at_the_end_of_an_empty_section_stays_there() -> None:
    source = "a {\n    # end of a\n}\n[s]\nx: 1\n"
    output = tsk.reformat(source)
    assert output == "[a]\n# end of a\n\n[s]\nx: 1\n"
    assert tsk.reformat(output) == output
    set_apart = "[a]\n# end of a\n\n[s]\nx: 1\n"
    assert tsk.reformat(set_apart) == set_apart


def test_a_comment_below_a_block_that_ends_the_file_is_formatted_once() -> None:
    source = "a {\n  x: 1\n}\n# after a\n\nb: 2\n"
    output = tsk.reformat(source)
    assert output == "b: 2\n\n[a]\nx: 1\n\n# after a\n"
    assert tsk.reformat(output) == output
    assert tsk.reformat("a: 1\n# the end\n") == "a: 1\n\n# the end\n"


def test_comment_runs_split_by_a_blank_line_keep_their_places() -> None:
    # `# a` is set apart from `y` by a blank line: it stays below `x` (it used to join `# b`).
    source = "[s]\nx: 1\n# a\n\n# b\ny: 2\n"
    assert tsk.reformat(source) == source
    first_in_table = "[s]\n# c1\n\n# c2\nx: 1\n"
    assert tsk.reformat(first_in_table) == first_in_table
    in_block = "[s]\nb {\n    x: 1\n\n    # e1\n\n    # e2\n}\n"
    assert tsk.reformat(in_block) == in_block
    head = "# h1\n\n# h2\n\nx: 1\n"
    assert tsk.reformat(head) == head
