"""web_search and scrape_webpage, including the SSRF guard."""

from __future__ import annotations

import json

import httpx
import pytest

from shoal.config import Settings
from shoal.tools import ToolContext, ToolRegistry, build_tool_registry
from shoal.tools.builtin.web import ScrapeWebpageTool, WebSearchTool, html_to_text
from tests.tools.conftest import Site

CTX = ToolContext(thread_id="t")


async def scrape(tool: ScrapeWebpageTool, url: str) -> tuple[bool, str]:
    result = await ToolRegistry([tool]).execute("scrape_webpage", {"url": url}, CTX)
    return result.success, result.output


async def test_scrapes_an_allowed_local_page(site: Site) -> None:
    ok, output = await scrape(ScrapeWebpageTool(allowed_targets=[site.target]), site.url + "/page")
    assert ok, output
    assert "Title: Test Page" in output and "Paragraph & text." in output
    assert "evil()" not in output and "p{}" not in output


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/page",
        "http://localhost:{port}/page",
        "http://[::1]:{port}/page",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://224.0.0.1/",
        "file:///etc/passwd",
    ],
)
async def test_refuses_private_targets_by_default(site: Site, url: str) -> None:
    ok, output = await scrape(ScrapeWebpageTool(timeout=3), url.format(port=site.port))
    assert not ok
    assert output.startswith("Refused")


async def test_refuses_a_redirect_to_loopback(site: Site, other_site: Site) -> None:
    site.redirect_to = other_site.url + "/page"
    tool = ScrapeWebpageTool(allowed_targets=[site.target])
    ok, output = await scrape(tool, site.url + "/redirect")
    assert not ok and "Refused" in output and "loopback" in output


async def test_refuses_a_redirect_to_metadata(site: Site) -> None:
    site.redirect_to = "http://169.254.169.254/latest/meta-data/"
    ok, output = await scrape(
        ScrapeWebpageTool(allowed_targets=[site.target]), site.url + "/redirect"
    )
    assert not ok and "link-local" in output


async def test_follows_allowed_redirects(site: Site) -> None:
    site.redirect_to = "/page"
    ok, output = await scrape(
        ScrapeWebpageTool(allowed_targets=[site.target]), site.url + "/redirect"
    )
    assert ok and f"URL: {site.url}/page" in output


async def test_redirect_loops_are_bounded(site: Site) -> None:
    site.redirect_to = "/redirect"
    tool = ScrapeWebpageTool(allowed_targets=[site.target], max_redirects=3)
    ok, output = await scrape(tool, site.url + "/redirect")
    assert not ok and "redirects" in output


async def test_size_and_time_limits(site: Site) -> None:
    tool = ScrapeWebpageTool(allowed_targets=[site.target], max_bytes=10_000, timeout=10)
    ok, output = await scrape(tool, site.url + "/big")
    assert ok and "[truncated at 10000 bytes]" in output and len(output) < 11_000
    ok, output = await scrape(tool, site.url + "/image")
    assert not ok and "Unsupported content type" in output
    impatient = ScrapeWebpageTool(allowed_targets=[site.target], timeout=0.3)
    ok, output = await scrape(impatient, site.url + "/slow")
    assert not ok and "Timed out" in output


def test_html_to_text() -> None:
    assert html_to_text("<p>a</p><p>b&nbsp;c</p>") == "a\nb c"


async def test_web_search_via_tavily() -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        results = [{"title": "Shoal", "url": "https://example.com", "content": "fish"}]
        return httpx.Response(200, json={"answer": "42", "results": results})

    tool = WebSearchTool("tvly-key", transport=httpx.MockTransport(handler))
    result = await ToolRegistry([tool]).execute("web_search", {"query": "shoal"}, CTX)
    assert result.success
    assert "Answer: 42" in result.output and "https://example.com" in result.output
    assert seen["api_key"] == "tvly-key" and seen["max_results"] == 5


def test_web_search_offered_only_with_a_key() -> None:
    assert "web_search" not in build_tool_registry(Settings(tavily_api_key=None))
    assert "web_search" in build_tool_registry(Settings(tavily_api_key="tvly-x"))
    assert build_tool_registry(Settings(), enabled=["ask", "nope"]).names == ["ask"]
