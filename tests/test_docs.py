"""README.md and the guides in docs/: what they tell a reader to type exists (tests/docs_checker.py says
how each thing is checked), the README stays a first hour's read, and the checker itself fails on a
made-up doc that names a flag, key, setting, route, file or link that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import Settings
from recdistill.cli import build_parser
from tests.docs_checker import Doc, check_markdown, documented_files, heading_anchors
from tests.docs_commands import ROOT

README = ROOT / "README.md"
README_LIMIT = 15_000  # characters: a newcomer's first hour; the rest belongs in a guide
GUIDES = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
MADE_UP = ROOT / "docs" / "made-up.md"  # links in a made-up doc resolve from docs/


@pytest.mark.parametrize("path", documented_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_key_setting_route_path_and_link_exists(path: Path) -> None:
    assert check_markdown(path, path.read_text()) == []


def test_readme_is_short_and_sets_up_with_make_demo_and_make_test() -> None:
    text = README.read_text()
    assert len(text) <= README_LIMIT, f"README.md has {len(text):,} characters; move detail into docs/"
    setup = text.split("## Set up", 1)[1]
    first_block = Doc.parse(README, setup).commands
    commands = [
        command.split("#")[0].strip() for _, command, block in first_block if block == first_block[0][2]
    ]
    assert commands == ["make demo", "make test"]


def test_at_least_four_guides_each_reachable_from_the_readme() -> None:
    assert len(GUIDES) >= 4
    index = README.read_text() + (ROOT / "docs" / "README.md").read_text()
    assert [g.name for g in GUIDES if g.name not in index] == []


def test_every_setting_of_the_service_is_documented() -> None:
    docs = "\n".join(p.read_text() for p in documented_files())
    names = [f"RECDISTILL_{name.upper()}" for name in Settings.model_fields]
    assert [n for n in names if not re.search(rf"\b{n}\b", docs)] == []


def _leaf_commands(parser, prefix: str = "recdistill") -> list[str]:  # noqa: ANN001 - argparse internals
    subparsers = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not subparsers:
        return [prefix]
    leaves = [prefix] if not any(a.required for a in subparsers) else []
    for name, child in subparsers[0].choices.items():
        leaves += _leaf_commands(child, f"{prefix} {name}")
    return leaves


def test_every_recdistill_command_is_shown_somewhere() -> None:
    docs = "\n".join(p.read_text() for p in documented_files())
    leaves = _leaf_commands(build_parser())
    assert len(leaves) > 15  # the walk found the subcommands
    assert [c for c in leaves if not re.search(rf"{re.escape(c)}(?![\w-])", docs)] == []


GOOD = """
# A made-up guide

```bash
recdistill pipeline --config configs/synthetic.toml \\
  --set teacher.epochs=5 --set "data.item_columns.extra=['title','url']"
recdistill models diff <old> <new>   # placeholders stand for a version name
recdistill data fetch ml-100k && recdistill pipeline --config configs/ml-100k.toml
RECDISTILL_SHADOW_RATE=0.05 recdistill serve --models models
python -m bench.quality --data ../shared/data/amazon-beauty --jobs 1 --set budget_minutes=30
PYTHONPATH=. .venv/bin/python scripts/ui_screenshots.py docs
make demo CONFIG=configs/ml-100k.toml
curl -s -X POST localhost:8000/admin/experiments -H 'content-type: application/json' -d '{"name": "x",
  "arms": "teacher_vs_student"}'
docker build -t recdistill .
```

```bash
RECDISTILL_HISTORY_BACKEND=redis
RECDISTILL_REDIS_URL=redis://:<password>@redis:6379/0
```

Inline: `recdistill events export` (a mention may leave out `--out`), `teacher.average_halflife_epochs = 1`,
`data.event_weights.view`, `--set budget_minutes=30`, `POST /admin/models/{v}/pin`, `/v1/shadow/report.html`,
`GET /v1/ab/report[?experiment=NAME]`, `configs/shop.toml`, `training/config.py`, `bench/results/`.
See [the service](service.md#endpoints), [the README](../README.md), [below](#a-made-up-guide).
"""


def test_the_checker_passes_a_correct_made_up_doc() -> None:
    assert check_markdown(MADE_UP, GOOD) == []


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        # a config key that does not exist, set on a command: the schema's error names the closest
        ("```bash\nrecdistill pipeline --config configs/synthetic.toml --set teacher.epochz=3\n```",
         "did you mean teacher.epochs?"),
        ("```bash\nrecdistill pipeline --nprocs 2\n```", "unrecognized arguments: --nprocs"),
        ("```bash\nrecdistill models promote\n```", "the following arguments are required: version"),
        ("```bash\nrecdistill pipeline --config configs/nope.toml\n```", "configs/nope.toml: no such file"),
        ("```bash\npython -m bench.quality --data x --jobz 1\n```", "unrecognized arguments: --jobz"),
        ("```bash\npython -m bench.own_teacher --als-fit sometimes\n```", "invalid choice: 'sometimes'"),
        ("```bash\npython -m bench.quality --data x --set teacher.epochz=3\n```", "did you mean teacher.epochs?"),
        ("```bash\npython -m bench.nope\n```", "no module bench/nope.py"),
        ("```bash\npython scripts/nope.py\n```", "scripts/nope.py: no such file"),
        ("```bash\nmake deploy\n```", "make deploy: no such target"),
        ("```bash\ncurl -s localhost:8000/v1/recomend -d '{}'\n```", "no route POST /v1/recomend"),
        ("```bash\ncurl -s localhost:8000/v1/recommend\n```", "no route GET /v1/recommend"),
        ("```bash\ncurl -s localhost:8000/v1/recommend -d '{\"k\": 5,}'\n```", "the body is not JSON"),
        ("```bash\nRECDISTILL_SHADOWRATE=0.1 recdistill serve\n```", "did you mean RECDISTILL_SHADOW_RATE?"),
        ("```bash\nRECDISTILL_SHADOW_RATE=2 recdistill serve\n```", "RECDISTILL_SHADOW_RATE: Input should be"),
        ("```bash\nRECDISTILL_HISTORY_BACKEND=redis\n```", "needs RECDISTILL_REDIS_URL"),
        ("```bash\nkubectl apply -f x.yaml\n```", "kubectl: not a program the docs check"),
        ("```bash\nrecdistill pipeline --config configs/shop.toml --set data.path=…\n```", "`…` in a bash block"),
        ("```bash\ncurl -s localhost:8000/v1/recommend -d '{\"k\": 5}\n```", "No closing quotation"),
        ("Inline `recdistill models lsit` too.", "invalid choice: 'lsit'"),
        ("Set `teacher.epochz = 3`.", "no config key teacher.epochz"),
        ("Set `--set budget_minutez=30`.", "--set budget_minutez: unknown key"),
        ("Call `POST /v1/recomend`.", "no route POST /v1/recomend"),
        ("Call `DELETE /v1/recommend`.", "no route DELETE /v1/recommend"),
        ("Read `/v1/shadow/reprot`.", "no route /v1/shadow/reprot"),
        ("Set `RECDISTILL_SHADOWRATE`.", "RECDISTILL_SHADOWRATE: not a setting"),
        ("See `training/nope.py`.", "`training/nope.py`: no such file"),
        ("See [x](nope.md).", "link nope.md: no such file"),
        ("See [x](service.md#no-such-heading).", "no heading #no-such-heading"),
        ("See ![shot](ui-nope.png).", "link ui-nope.png: no such file"),
    ],
)  # fmt: skip
def test_the_checker_fails_on_what_does_not_exist(snippet: str, expected: str) -> None:
    errors = check_markdown(MADE_UP, snippet)
    assert len(errors) == 1 and expected in errors[0], errors
    assert errors[0].startswith("docs/made-up.md:")


def test_heading_anchors_are_githubs() -> None:
    text = "# Roll out\n## 5. A/B test it\n## `make test` and Redis 7\n```bash\n# not a heading\n```\n## Roll out"
    assert heading_anchors(text) == {"roll-out", "5-ab-test-it", "make-test-and-redis-7", "roll-out-1"}
