"""``web_search`` (Tavily) and ``scrape_webpage`` (guarded httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Annotated, Any

import httpx
from pydantic import Field

from shoal.tools.base import Tool, ToolContext, ToolResult, tool_function
from shoal.tools.net_guard import BlockedTarget, GuardedTransport, check_url

TAVILY_API_BASE = "https://api.tavily.com"
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"}
)


class WebSearchTool(Tool):
    """Web search through Tavily. Not offered without an API key."""

    def __init__(
        self,
        api_key: str | None,
        *,
        api_base: str = TAVILY_API_BASE,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_key = api_key
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    def is_available(self) -> bool:
        return bool(self.api_key)

    @tool_function
    async def web_search(
        self,
        query: str,
        num_results: Annotated[int, Field(ge=1, le=20)] = 5,
    ) -> ToolResult:
        """Search the web and return the most relevant results with short extracts.

        Args:
            query: what to search for
            num_results: how many results to return (1-20)
        """
        payload = {
            "api_key": self.api_key,
            "query": query,
            "max_results": num_results,
            "include_answer": True,
        }
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            response = await client.post(f"{self.api_base}/search", json=payload)
        if response.status_code != 200:
            return ToolResult.fail(f"Search failed: HTTP {response.status_code}")
        return ToolResult.ok(_format_results(response.json()))


def _format_results(data: Any) -> str:
    if not isinstance(data, dict):
        return "No results."
    lines: list[str] = []
    if data.get("answer"):
        lines.append(f"Answer: {data['answer']}\n")
    for index, item in enumerate(data.get("results") or [], 1):
        if not isinstance(item, dict):
            continue
        lines.append(f"{index}. {item.get('title', '')}\n   {item.get('url', '')}")
        if item.get("content"):
            lines.append(f"   {str(item['content']).strip()[:1000]}")
    return "\n".join(lines) or "No results."


class ScrapeWebpageTool(Tool):
    """Fetches a public web page as text, refusing private, loopback and link-local targets.

    ``allowed_targets`` (``"ip:port"``) is a test-only allow-list; it is empty by default.
    """

    def __init__(
        self,
        *,
        max_bytes: int = 5 * 1024 * 1024,
        timeout: float = 20.0,
        max_redirects: int = 5,
        allowed_targets: Iterable[str] = (),
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.allowed_targets = frozenset(allowed_targets)

    @tool_function
    async def scrape_webpage(self, ctx: ToolContext, url: str) -> ToolResult:
        """Fetch a web page and return its title and readable text.

        Args:
            url: the http(s) URL of the page
        """
        try:
            async with asyncio.timeout(self.timeout):
                final_url, content_type, body, truncated = await self._fetch(url)
        except BlockedTarget as exc:
            return ToolResult.fail(f"Refused: {exc}.")
        except TimeoutError:
            return ToolResult.fail(f"Timed out after {self.timeout:g} s fetching {url}.")
        except httpx.HTTPError as exc:
            return ToolResult.fail(f"Could not fetch {url}: {type(exc).__name__}: {exc}")
        text = _to_text(content_type, body)
        if text is None:
            return ToolResult.fail(f"Unsupported content type {content_type!r} at {final_url}.")
        note = f"\n\n[truncated at {self.max_bytes} bytes]" if truncated else ""
        return ToolResult.ok(f"URL: {final_url}\n{text}{note}", url=final_url)

    async def _fetch(self, url: str) -> tuple[str, str, bytes, bool]:
        transport = GuardedTransport(self.allowed_targets)
        headers = {"User-Agent": "shoal-scraper/0.1", "Accept": "text/html,text/*;q=0.9,*/*;q=0.5"}
        async with httpx.AsyncClient(
            transport=transport, trust_env=False, timeout=self.timeout, headers=headers
        ) as client:
            current = httpx.URL(url)
            for _ in range(self.max_redirects + 1):
                check_url(current, self.allowed_targets)
                request = client.build_request("GET", current)
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    if response.is_redirect and "location" in response.headers:
                        current = current.join(response.headers["location"])
                        continue
                    response.raise_for_status()
                    body, truncated = await self._read(response)
                    content_type = response.headers.get("content-type", "")
                    return str(current), content_type, body, truncated
                finally:
                    await response.aclose()
        raise httpx.TooManyRedirects(f"more than {self.max_redirects} redirects")

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= self.max_bytes:
                return b"".join(chunks)[: self.max_bytes], True
        return b"".join(chunks), False


def _to_text(content_type: str, body: bytes) -> str | None:
    kind = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", errors="replace")
    if kind in ("text/html", "application/xhtml+xml") or (not kind and "<html" in text[:500]):
        return html_to_text(text)
    if kind.startswith("text/") or kind in ("application/json", "application/xml", ""):
        return text
    return None


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML page: title line, then paragraphs."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    body = "\n".join(line for line in lines if line)
    title = " ".join("".join(parser.title).split())
    return f"Title: {title}\n\n{body}" if title else body
