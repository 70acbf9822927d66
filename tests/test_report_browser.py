"""Reports and views in a real headless browser (Debian chromium driven by Playwright).

Screenshots go to test_artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from surgery.views.report import write_report
from surgery.views.visualize import write_view
from viz import samples

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test_artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium is not installed (/usr/bin/chromium; `make setup` installs it)",
    ),
    pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed"),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Chromium (fresh user-data-dir) for the module; pages are opened per test."""
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


class Page:
    """A page with its console errors collected."""

    def __init__(self, context: Any, path: Path):
        self.errors: list[str] = []
        self.page = context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", self._request)
        self.page.goto(path.as_uri())

    def _request(self, request: Any) -> None:
        if not request.url.startswith(("file:", "data:", "about:")):
            self.errors.append(f"network request to {request.url}")

    def shot(self, name: str, full: bool = False) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name), full_page=full)

    def close(self) -> None:
        self.page.close()


def _names(page: Any, selector: str) -> set[str]:
    return set(
        page.eval_on_selector_all(selector, "els => els.map(e => e.getAttribute('data-name'))")
    )


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two of Playwright's bounding boxes (x, y, width, height) intersect."""
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])  # fmt: skip


RULES = Path(__file__).resolve().parent.parent / "rules"


def test_leaky_relu_report(browser: Any, tmp_path: Path) -> None:
    """The report as users get it: `surgery apply rules/leaky_relu.rules ... --report`."""
    from surgery.cli import main
    from surgery.ir import model_io

    before = samples.leaky_graph(3)
    model, out, path = tmp_path / "leaky.pb", tmp_path / "out.pb", tmp_path / "leaky.html"
    model_io.save(before, model)
    rules = str(RULES / "leaky_relu.rules")
    assert main(["apply", rules, str(model), "-o", str(out), "--report", str(path)]) == 0
    suffix = ""  # the plugin keeps the replaced node's name
    p = Page(browser, path)
    page = p.page
    sections = page.locator("details.app")
    assert sections.count() == 3
    assert page.locator("details.app[open]").count() == 0
    # a rule section expands
    page.click("#app-2 > summary")
    assert page.locator("#app-2").get_attribute("open") is not None
    assert page.locator("#app-2 .pic[data-side=before] svg").is_visible()
    # the zoom buttons sit in a bar of their own above the picture, so they cover no node
    # however wide the picture is (once they floated over its top-right corner)
    for side in ("before", "after"):
        bar = page.locator(f"#app-2 .pic[data-side={side}] .zoom").bounding_box()
        canvas = page.locator(f"#app-2 .pic[data-side={side}] .canvas").bounding_box()
        assert bar is not None and canvas is not None
        assert bar["y"] + bar["height"] <= canvas["y"] + 0.5, (side, bar, canvas)
        for node in page.locator(f"#app-2 .pic[data-side={side}] g.node").all():
            box = node.bounding_box()
            assert box is not None and not _overlap(bar, box), (side, bar, box)
    # the before/after pictures contain the expected nodes
    before_names = _names(page, "#app-2 .pic[data-side=before] g.node")
    after_names = _names(page, "#app-2 .pic[data-side=after] g.node")
    plugin = "conv1/LeakyRelu" + suffix
    assert "conv1/LeakyRelu" in before_names and plugin in after_names
    assert "conv2/Conv2D" in before_names & after_names  # the consumer
    assert page.locator(
        f"#app-2 .pic[data-side=after] g.node.cat-plugin[data-name='{plugin}']"
    ).count()
    assert page.locator("#app-2 .pic[data-side=before] g.node.cat-activation").count() == 1
    removed = page.locator("#app-2 .pic[data-side=before] g.node.st-removed").get_attribute(
        "data-name"
    )
    assert removed == "conv1/LeakyRelu"
    # hovering shows the plugin fields
    page.hover("#app-2 .pic[data-side=after] g.node.cat-plugin")
    assert "negSlope" in page.inner_text("#panel") and "float32" in page.inner_text("#panel")
    p.shot("report_leaky_section.png")
    # the search finds a node: highlights it, opens its section, filters the table
    page.fill("#search", "conv2/LeakyRelu" + suffix)
    page.press("#search", "Enter")
    assert "found" in page.inner_text("#search-result")
    assert page.locator("#app-3").get_attribute("open") is not None
    hits = _names(page, "g.node.hit")
    assert "conv2/LeakyRelu" + suffix in hits and "conv1/LeakyRelu" + suffix not in hits
    visible_rows = page.locator("#changes tbody tr:not(.filtered)")
    assert visible_rows.count() >= 1
    assert all("conv2/LeakyRelu" in t for t in visible_rows.all_inner_texts())
    p.shot("report_leaky_search.png")
    # the table sorts by a column
    page.fill("#search", "")
    page.press("#search", "Enter")
    page.click("#changes th:nth-child(5)")
    kinds = page.eval_on_selector_all(
        "#changes tbody tr td:nth-child(5)", "els => els.map(e => e.textContent)"
    )
    assert kinds == sorted(kinds)
    p.shot("report_leaky_full.png", full=True)
    assert p.errors == []
    p.close()


def test_namespace_collapse_report(browser: Any, tmp_path: Path) -> None:
    before = samples.roi_graph()
    after, changes = samples.roi_collapse(before)
    path = tmp_path / "roi.html"
    write_report(before, after, path, changes=changes, title="collapse ROI -> ProposalLayer_TRT")
    p = Page(browser, path)
    page = p.page
    page.click("#app-1 > summary")
    before_names = _names(page, "#app-1 .pic[data-side=before] g.node")
    after_names = _names(page, "#app-1 .pic[data-side=after] g.node")
    assert {"ROI/top", "ROI/nms", "ROI/packed_2", "roi_align/boxes"} <= before_names
    assert "ROI" in after_names and not any(n.startswith("ROI/") for n in after_names)
    assert {
        "rpn_class/concat",
        "rpn_bbox/concat",
        "roi_align/boxes",
        "roi_align/scores",
    } <= after_names
    text = page.inner_text("#app-1")
    assert "prenms_topk" in text and "ROI:1" in text and "ROI/top:1" in text
    # port labels on edges: the plugin's second output is drawn as ":1"
    labels = page.eval_on_selector_all(
        "#app-1 .pic[data-side=after] g.edge text", "els => els.map(e => e.textContent)"
    )
    assert ":1" in labels
    page.fill("#search", "ROI/nms")
    page.press("#search", "Enter")
    assert _names(page, "g.node.hit") == {"ROI/nms"}
    p.shot("report_roi.png", full=True)
    assert p.errors == []
    p.close()


def test_maskrcnn_collapse_report_from_apply(browser: Any, tmp_path: Path) -> None:
    """`surgery apply rules/maskrcnn.rules --report` on the real Mask R-CNN graph: the ROI
    namespace collapse into ProposalLayer_TRT is a section with before/after pictures."""
    from surgery.cli import main
    from surgery.models import fixture_path

    model = fixture_path("maskrcnn_small_nchw")
    out, path = tmp_path / "m.trt.pb", tmp_path / "maskrcnn.html"
    rules = str(RULES / "maskrcnn.rules")
    assert main(["apply", rules, str(model), "-o", str(out), "--report", str(path)]) == 0
    p = Page(browser, path)
    page = p.page
    titles = page.eval_on_selector_all(
        "details.app > summary", "els => els.map(e => e.textContent)"
    )
    index = next(i for i, t in enumerate(titles, start=1) if " proposals " in f" {t} ")
    page.click(f"#app-{index} > summary")
    after_names = _names(page, f"#app-{index} .pic[data-side=after] g.node")
    page.locator(f"#app-{index}").scroll_into_view_if_needed()
    p.shot("report_maskrcnn.png", full=False)
    assert "ROI" in after_names and not any(n.startswith("ROI/") for n in after_names)
    assert {"rpn_class/concat", "rpn_bbox/concat"} <= after_names
    before = page.inner_text(f"#app-{index} .pic[data-side=before]")
    assert "ROI" in before
    text = page.inner_text(f"#app-{index}")
    assert "ProposalLayer_TRT" in text and "prenms_topk" in text
    page.fill("#search", "roi_align_classifier")
    page.press("#search", "Enter")
    assert "found" in page.inner_text("#search-result")
    p.shot("report_maskrcnn.png", full=False)
    assert p.errors == []
    p.close()


def test_view_page_panel_and_collapsible_namespaces(browser: Any, tmp_path: Path) -> None:
    path, _ = write_view(samples.roi_graph(), tmp_path / "roi_view.html")
    p = Page(browser, path)
    page = p.page
    page.hover("g.node[data-name='ROI/top']")
    panel = page.inner_text("#panel")
    assert "TopKV2" in panel and "ROI/strided_slice" in panel
    assert page.locator("g.node[data-name='ROI/nms']").is_visible()
    p.shot("view_roi_expanded.png")
    page.click("g.cluster[data-ns='ROI'] text")
    assert not page.locator("g.node[data-name='ROI/nms']").is_visible()
    assert page.locator("g.node[data-name='roi_align/boxes']").is_visible()
    assert "8 nodes" in page.text_content("g.cluster[data-ns='ROI'] text")
    p.shot("view_roi_collapsed.png")
    page.click("g.cluster[data-ns='ROI'] text")
    assert page.locator("g.node[data-name='ROI/nms']").is_visible()
    assert p.errors == []
    p.close()
