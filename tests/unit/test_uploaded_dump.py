"""What an uploaded dump's script is read as: rows per table, and psql's own commands."""

from __future__ import annotations

import pytest

from adapters.pg_dump import DumpError
from adapters.uploaded_dump import copy_rows

SCRIPT = [
    b"\\restrict Abc123\n",
    b"SET statement_timeout = 0;\n",
    b"COPY public.items (id, name) FROM stdin;\n",
    b"1\tone\n",
    b"2\ttwo\\nlines\n",
    b"\\.\n",
    b'COPY public."Odd ""Name""" (k) FROM stdin;\n',
    b"a\n",
    b"\\.\n",
    b'COPY "my schema".empty FROM stdin;\n',
    b"\\.\n",
    b"SELECT pg_catalog.setval('public.items_id_seq', 2, true);\n",
    b"\\unrestrict Abc123\n",
]


def test_rows_are_counted_per_table_under_the_names_the_row_counts_use() -> None:
    expected = {"public.items": 2, 'public.Odd "Name"': 1, "my schema.empty": 0}
    assert copy_rows(SCRIPT) == expected
    assert copy_rows(SCRIPT, plain=True) == expected


@pytest.mark.parametrize(
    "line", [b"\\! touch /tmp/x", b"  \\o | sh", b"\\copy t from program 'id'", b"\\c other"]
)
def test_a_plain_script_line_that_is_a_psql_command_is_refused(line: bytes) -> None:
    script = [b"SELECT 1;\n", line + b"\n", b"SELECT 2;\n"]
    assert copy_rows(script) == {}  # pg_restore's script: only counted
    with pytest.raises(DumpError, match="line 2 of the uploaded dump is the psql command"):
        copy_rows(script, plain=True)


def test_a_backslash_inside_copy_data_is_data() -> None:
    script = [b"COPY public.t (v) FROM stdin;\n", b"\\\\! not a command\n", b"\\.\n"]
    assert copy_rows(script, plain=True) == {"public.t": 1}


def test_a_plain_script_cut_inside_copy_data_is_refused() -> None:
    with pytest.raises(DumpError, match=r"ends inside the data of table public\.t"):
        copy_rows([b"COPY public.t (v) FROM stdin;\n", b"1\n"], plain=True)
