"""Main content of an HTML page in reading order: text blocks and images with their alt text.

Two paths, chosen per page:
- Pages that mark their content (``<main>``, ``role=main``, ``<article>``) are walked with lxml after
  boilerplate (navigation, headers, footers, asides, forms, share/ad/cookie blocks) is pruned. Walking
  the DOM ourselves keeps every image at its place, including SVG figures, which trafilatura drops.
- Pages without such markup go through trafilatura (well kept, benchmarked main-content extraction with
  readability and jusText fallbacks); its XML output keeps raster images in place as ``<graphic>``.

An item is ``{"type": "text", "text", "tag"}`` or ``{"type": "image", "src", "alt"}``; ``src`` is absolute
(resolved against ``<base href>`` or the page's own URL, ``file://`` for local pages).
"""

from __future__ import annotations

import re
import urllib.parse

BLOCK_TAGS = {"p", "div", "section", "li", "ul", "ol", "pre", "blockquote", "table", "tr", "td", "th", "dl", "dt",
              "dd", "figure", "figcaption", "caption", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "main", "article",
              "details", "summary", "address", "center"}
DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "form", "button", "select", "input", "textarea",
             "svg", "canvas", "object", "embed", "nav", "header", "footer", "aside", "menu", "dialog", "video",
             "audio", "map", "link", "meta")
DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "toolbar",
              "dialog", "alert"}
BOILERPLATE_RE = re.compile(
    r"(^|[\s_-])(nav|navbar|menu|sidebar|breadcrumbs?|share|sharing|social|advert\w*|ads?|adsbygoogle|sponsor\w*|"
    r"promo\w*|cookie\w*|consent|banner|comments?|related|footer|newsletter|subscribe|pagination|skip-link|"
    r"visually-hidden|sr-only|popup|modal|toolbar|print-only)($|[\s_-])", re.IGNORECASE)
MAIN_XPATHS = ("//main", "//*[@role='main']", "//article", "//*[@id='main-content']", "//*[@id='content']")
WS_RE = re.compile(r"\s+")


def _absolute(src: str, base: str) -> str:
    src = src.strip()
    if src.startswith("data:"):
        return src
    return urllib.parse.urljoin(base, src) if base else src


def _img_src(el) -> str:
    for attr in ("src", "data-src", "data-lazy-src", "data-original"):
        v = (el.get(attr) or "").strip()
        if v and not (attr == "src" and v.startswith("data:") and len(v) < 200 and el.get("data-src")):
            return v
    srcset = el.get("srcset") or el.get("data-srcset") or ""
    best, best_w = "", -1.0
    for cand in srcset.split(","):
        parts = cand.strip().split()
        if not parts:
            continue
        w = parts[1] if len(parts) > 1 else "1x"
        try:
            score = float(w[:-1]) if w[-1] in "wx" else 0.0
        except ValueError:
            score = 0.0
        if score > best_w:
            best, best_w = parts[0], score
    return best


def _prune(root) -> None:
    for el in list(root.iter(*DROP_TAGS)):
        if el.getparent() is not None:
            el.drop_tree()
    for el in list(root.iter()):
        if not isinstance(el.tag, str) or el.getparent() is None or el.tag in ("main", "article", "body", "html"):
            continue
        role = (el.get("role") or "").lower()
        marks = f"{el.get('class') or ''} {el.get('id') or ''}"
        hidden = el.get("aria-hidden") == "true" or el.get("hidden") is not None
        if role in DROP_ROLES or hidden or (el.tag != "img" and BOILERPLATE_RE.search(marks)):
            el.drop_tree()


def _walk(container, base: str) -> list[dict]:
    items: list[dict] = []
    buf: list[str] = []
    state = {"tag": "p"}

    def flush():
        text = "".join(buf)
        text = text.strip("\n ") if state["tag"] == "pre" else WS_RE.sub(" ", text).strip()
        if text:
            items.append({"type": "text", "text": text, "tag": state["tag"]})
        buf.clear()

    def visit(el, pre: bool):
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag == "img":
            src = _img_src(el)
            if src:
                flush()
                items.append({"type": "image", "src": _absolute(src, base), "alt": WS_RE.sub(" ", el.get("alt") or "").strip(),
                              "title": el.get("title") or ""})
        elif tag == "br":
            buf.append("\n")
        elif tag:
            block = tag in BLOCK_TAGS
            if block:
                flush()
                state["tag"] = tag if tag in ("pre", "li", "h1", "h2", "h3", "h4", "h5", "h6", "figcaption", "td") else "p"
            inner_pre = pre or tag == "pre"
            if el.text:
                buf.append(el.text)
            for child in el:
                visit(child, inner_pre)
            if block:
                flush()
                state["tag"] = "p"
        if el.tail:
            buf.append(el.tail)

    if container.text:
        buf.append(container.text)
    for child in container:
        visit(child, False)
    flush()
    return items


def _trafilatura(html: str, base: str) -> list[dict]:
    import trafilatura
    from lxml import etree

    xml = trafilatura.extract(html, output_format="xml", include_images=True, include_comments=False,
                              include_tables=True, favor_recall=True, url=base or None)
    if not xml:
        return []
    root = etree.fromstring(xml.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
    items: list[dict] = []
    for el in root.iter():
        if el.tag == "graphic" and el.get("src"):
            items.append({"type": "image", "src": _absolute(el.get("src"), base), "alt": el.get("alt") or "", "title": ""})
        elif el.tag in ("p", "head", "item", "code", "quote", "cell"):
            text = WS_RE.sub(" ", "".join(t for t in el.itertext())).strip() if el.tag != "code" else \
                "".join(el.itertext()).strip()
            if text and not any(a.tag in ("p", "head", "item", "code", "quote", "cell") for a in el.iterancestors()):
                items.append({"type": "text", "text": text, "tag": {"head": "h2", "item": "li", "code": "pre"}.get(el.tag, "p")})
    return items


def extract_page(html: str | bytes, url: str) -> dict:
    """``{"title", "items", "method"}`` of a page; ``url`` is where the page lives (http(s) or file://)."""
    import lxml.html

    if isinstance(html, bytes):
        doc = lxml.html.document_fromstring(html)
        text = lxml.html.tostring(doc, encoding="unicode")
    else:
        text = html
        doc = lxml.html.document_fromstring(html)
    title = WS_RE.sub(" ", doc.findtext(".//title") or "").strip()
    base_el = doc.find(".//base[@href]")
    base = urllib.parse.urljoin(url, base_el.get("href")) if base_el is not None else url
    container = None
    for xp in MAIN_XPATHS:
        found = doc.xpath(xp)
        if found:
            container = found[0]
            break
    if container is None:
        return {"title": title, "items": _trafilatura(text, base), "method": "trafilatura"}
    _prune(container)
    return {"title": title, "items": _walk(container, base), "method": "dom"}
