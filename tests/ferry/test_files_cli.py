"""What ``ferry ls|mkdir|mv|rm`` take and print (the commands against a real hub and agent
are in tests/e2e/test_files.py)."""

from __future__ import annotations

from ferry.cli import build_parser
from ferry.files import line

ENTRIES = [
    {"name": "a.exr", "path": "share=projects/film/a.exr", "type": "file", "size": 1234,
     "mtime": "2026-12-05T20:01:02.345Z"},
    {"name": "shot", "path": "share=projects/film/shot", "type": "dir", "size": 0,
     "mtime": "2026-12-05T20:00:00.000Z"},
    {"name": "c.exr", "path": "share=projects/film/shot/c.exr", "type": "file", "size": 1,
     "mtime": "2026-12-05T20:00:00.000Z"},
    {"name": "out", "path": "share=projects/film/out", "type": "link", "size": 0,
     "mtime": "2026-12-05T20:00:00.000Z"},
]


def test_ls_lines_show_type_size_time_and_the_path_below_the_folder() -> None:
    shown = [line(e, "share=projects/film/") for e in ENTRIES]
    assert shown == [
        "-           1234  2026-12-05 20:01:02  a.exr",
        "d              -  2026-12-05 20:00:00  shot/",
        "-              1  2026-12-05 20:00:00  shot/c.exr",
        "l              -  2026-12-05 20:00:00  out",
    ]
    # a file listed alone shows its name
    assert line(ENTRIES[0], "share=projects/film/a.exr/").endswith("  a.exr")


def test_the_commands_take_their_arguments() -> None:
    parser = build_parser()
    args = parser.parse_args(["ls", "share=projects/film/", "-R", "--json", "--limit", "5",
                              "--hub", "prod"])
    assert (args.path, args.recursive, args.json, args.limit, args.hub) == \
        ("share=projects/film/", True, True, 5, "prod")
    args = parser.parse_args(["mv", "projects/a", "projects/b/"])
    assert (args.source, args.dest) == ("projects/a", "projects/b/")
    assert parser.parse_args(["rm", "projects/a", "-r"]).recursive is True
    assert parser.parse_args(["rm", "projects/a"]).recursive is False
    assert parser.parse_args(["mkdir", "projects/a/b"]).path == "projects/a/b"
