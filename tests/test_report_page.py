"""The leaderboard page: its contents and files, and (where Chromium is installed; `.ci/run` installs it)
that it renders in headless Chromium and that its tables sort, driven by `?sort=COL&dir=...`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import run_atax
from store_fixtures import EXPERIMENT, build_store

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = build_store(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("site") / "report"
    result = run_atax("report", "--results", str(results), "--out", str(out), "--experiment", EXPERIMENT,
                      "--include-reference", "fu2024")
    assert result.returncode == 0, result.stderr
    return out


class _Rows(HTMLParser):
    """Row names and per-column data-values of one table's method rows, in document order."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.in_methods = table_id, False, False
        self.headers: list[str] = []
        self.rows: list[tuple[str, list[str]]] = []
        self.sorted_attr: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id") == self.table_id:
            self.inside, self.sorted_attr = True, a.get("data-sorted")
        elif self.inside and tag == "th" and "data-col" in a:
            self.headers.append(a["data-col"] or "")
        elif self.inside and tag == "tbody":
            self.in_methods = a.get("class") == "methods"
        elif self.inside and self.in_methods and tag == "tr":
            self.rows.append((a.get("data-row") or "", []))
        elif self.inside and self.in_methods and tag == "td":
            self.rows[-1][1].append(a.get("data-value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False


def parse_rows(page: str, table_id: str) -> _Rows:
    parser = _Rows(table_id)
    parser.feed(page)
    assert parser.rows, f"no method rows in #{table_id}"
    return parser


def column(parser: _Rows, name: str) -> list[float | None]:
    index = parser.headers.index(name) - 1  # the first header is the row-name column
    return [float(v) if v else None for _, v in ((n, vals[index]) for n, vals in parser.rows)]


def test_report_writes_a_self_contained_page_and_files(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert not re.search(r'<(script|img|link)[^>]+(src|href)="(https?:)?//', page)  # nothing fetched
    assert page.count('src="data:image/png;base64,') >= 5  # bars x2, frontier, Figure 8, Figure 9
    knowledge = parse_rows(page, "table-knowledge")
    assert [n for n, _ in knowledge.rows][:2] == ["base", "vanilla"]  # paper order before any sorting
    assert "<h3>MMLU</h3>" in page and "<h3>Vicuna-bench</h3>" in page  # significance matrices
    assert "meta-llama/Llama-2-7b-hf@main" in page and "atax 0.1.0, engine 3" in page  # provenance
    assert "dispersal=random; k=4" in page  # dtm's options, readable
    assert "Dominated (below it)" in page and "[Fu et al. 2024]" in page
    for name in ("figures/frontier", "figures/submodels-0-overlap", "figures/scores-knowledge-0"):
        assert (report_dir / f"{name}.png").is_file() and (report_dir / f"{name}.pdf").is_file()
    for suffix in ("md", "tex", "csv", "html"):
        assert (report_dir / "tables" / f"knowledge.{suffix}").is_file()


def test_report_refuses_to_replace_a_foreign_directory(tmp_path: Path, report_dir: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    results = report_dir.parent.parent / "nothing"
    result = run_atax("report", "--results", str(results), "--out", str(foreign))
    assert result.returncode == 2 and "no results.sqlite" in result.stderr
    store = build_store(tmp_path / "results", {"vanilla": {"mmlu": 0.5}})
    result = run_atax("report", "--results", str(store), "--out", str(foreign))
    assert result.returncode == 2 and "not an atax report directory" in result.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    command = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


@needs_chromium
def test_page_renders_in_headless_chromium(tmp_path: Path, report_dir: Path) -> None:
    import matplotlib.image as mpimg

    shot = tmp_path / "page.png"
    result = chromium(tmp_path, "--window-size=1280,2000", f"--screenshot={shot}", (report_dir / "index.html").as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 0.05 and (pixels[:, :, :3] < 0.3).mean() > 0.005  # text and figures, not a blank page


@needs_chromium
@pytest.mark.parametrize("query,name,descending", [("?sort=MMLU&dir=desc", "MMLU", True),
                                                    ("?sort=GSM8K&dir=asc", "GSM8K", False),
                                                    ("#sort=MT-bench&dir=desc", "MT-bench", True)])
def test_tables_sort_from_the_url(tmp_path: Path, report_dir: Path, query: str, name: str, descending: bool) -> None:
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    table_id = "table-instruction" if name == "MT-bench" else "table-knowledge"
    before = parse_rows(page, table_id)
    values = dict(zip([n for n, _ in before.rows], column(before, name), strict=True))
    result = chromium(tmp_path, "--dump-dom", (report_dir / "index.html").as_uri() + query)
    assert result.returncode == 0, result.stderr[-2000:]
    after = parse_rows(result.stdout, table_id)
    assert after.sorted_attr == f"{name}:{'desc' if descending else 'asc'}"
    order = [n for n, _ in after.rows]
    assert sorted(order) == sorted(values) and order != [n for n, _ in before.rows]
    shown = [values[n] for n in order]
    present = [v for v in shown if v is not None]
    assert present == sorted(present, reverse=descending)
    assert shown[len(present):] == [None] * (len(shown) - len(present))  # missing cells ("–") last
    # Reference rows stay in their own block, below, in their order.
    assert re.findall(r'data-row="([^"]*\[Fu et al\. 2024\])"', result.stdout) == \
        re.findall(r'data-row="([^"]*\[Fu et al\. 2024\])"', page)


@needs_chromium
def test_page_fits_1400_px_and_significance_is_compact(tmp_path: Path, report_dir: Path) -> None:
    """Nothing on the page is wider than a 1400 px window (wide tables scroll in their own box), and
    the significance section lists the pairs that differ, with each full matrix folded away."""
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert page.count("<details><summary>all ") >= 2 and "<ul class=\"pairs\">" in page
    assert page.index('<table class="matrix"') > page.index("<details>")  # no matrix shown unfolded
    probe = tmp_path / "probe.html"  # the page plus a line that records its layout width after rendering
    probe.write_text(page.replace("</body>", "<script>document.body.setAttribute('data-width', "
                                             "document.documentElement.scrollWidth)</script></body>"))
    result = chromium(tmp_path, "--window-size=1400,1000", "--dump-dom", probe.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    width = int(re.search(r'data-width="(\d+)"', result.stdout).group(1))
    assert width <= 1400
    shot = tmp_path / "page-1400.png"
    result = chromium(tmp_path, "--window-size=1400,3000", f"--screenshot={shot}", (report_dir / "index.html").as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
