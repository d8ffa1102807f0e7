"""Main content of an HTML page in reading order: text blocks and images with their alt text.

Two paths, chosen per page:
- Pages that mark their content (``<main>``, ``role=main``, ``<article>``) are walked with lxml after
  boilerplate (navigation, headers, footers, asides, forms, share/ad/cookie blocks) is pruned. Walking
  the DOM ourselves keeps every image at its place wherever it sits (list items, tables, figures, links),
  including SVG figures (files and inline ``<svg>``), which trafilatura drops.
- Pages without such markup go through trafilatura (well kept, benchmarked main-content extraction with
  readability and jusText fallbacks) for the text; the images are the body's images, placed after the
  text block they follow in the page, unless trafilatura's text leaves out the block they sit in.

An item is ``{"type": "text", "text", "tag"}`` or ``{"type": "image", "src", "alt", "title"}``; ``src`` is
absolute (resolved against ``<base href>`` or the page's own URL, ``file://`` for local pages). An image's
URL is its best candidate: lazy-load attributes (``data-src``, ``data-srcset``, ...) over a placeholder
``src``, and the largest ``srcset`` / ``<picture><source>`` candidate whose width is within ``max_width``.

Every ``<img>`` (and inline SVG) the page holds that does not become an item is listed in ``dropped`` as
``{"src", "alt", "reason"}``, one of:

| reason          | meaning                                                                     |
|-----------------|-----------------------------------------------------------------------------|
| outside_main    | outside the main content (site header, navigation, sidebar, footer)         |
| boilerplate     | inside a pruned block within the main content (nav, share, ads, comments)   |
| hidden          | hidden (``hidden``, ``aria-hidden``, ``display:none``, hidden classes)      |
| duplicate_url   | the same URL as an earlier image of the page (``<noscript>`` fallbacks too) |
| tracking_pixel  | declared 1-2 px wide or high                                                |
| no_src          | no usable URL (only a placeholder, or nothing)                              |
| inline_svg_icon | an inline ``<svg>`` that is an icon (not a figure)                          |
"""

from __future__ import annotations

import base64
import re
import urllib.parse

BLOCK_TAGS = {"p", "div", "section", "li", "ul", "ol", "pre", "blockquote", "table", "tr", "td", "th", "dl", "dt",
              "dd", "figure", "figcaption", "caption", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "main", "article",
              "details", "summary", "address", "center"}
DROP_TAGS = ("script", "style", "template", "iframe", "form", "button", "select", "input", "textarea",
             "canvas", "object", "embed", "nav", "header", "footer", "aside", "menu", "dialog", "video",
             "audio", "map", "link", "meta")
DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "toolbar",
              "dialog", "alert"}
BOILER_WORDS = (r"nav|navbar|menu|sidebar|breadcrumbs?|share|sharing|social|advert\w*|ads?|adsbygoogle|sponsor\w*|"
                r"promo\w*|cookie\w*|consent|banner|comments?|related|footer|newsletter|subscribe|pagination|skip-link|"
                r"popup|modal|toolbar|print-only|headerlink|widget\w*")
# a class name or id that starts or ends with a boilerplate word ("share-buttons", "post-comments"), not one
# that merely holds it ("s-adding-related-objects", a section id made from its heading)
BOILERPLATE_RE = re.compile(rf"^({BOILER_WORDS})([-_].*)?$|[-_]({BOILER_WORDS})$", re.IGNORECASE)
HIDDEN_CLASS_RE = re.compile(r"(^|\s)(hidden|d-none|invisible|visually-hidden|sr-only|screen-reader-text)($|\s)",
                             re.IGNORECASE)
HIDDEN_STYLE_RE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
PLACEHOLDER_RE = re.compile(r"(^|/)([\w-]*placeholder[\w-]*|blank|spacer|transparent|pixel|1x1|lazy[\w-]*|loading|"
                            r"grey|gray)\.(gif|png|svg)$", re.IGNORECASE)
MAIN_XPATHS = ("//main", "//*[@role='main']", "//article", "//*[@id='main-content']", "//*[@id='content']")
LAZY_SRC = ("data-src", "data-lazy-src", "data-original", "data-lazy", "data-url")
LAZY_SRCSET = ("data-srcset", "data-lazy-srcset")
RASTER_TYPES = ("", "image/jpeg", "image/jpg", "image/png", "image/webp", "image/gif", "image/svg+xml")
MAX_WIDTH = 4096  # srcset candidates wider than this are skipped when a narrower one exists
SVG_CASE = {a.lower(): a for a in ("viewBox", "preserveAspectRatio", "gradientUnits", "gradientTransform",
                                   "patternUnits", "clipPathUnits", "markerWidth", "markerHeight", "refX", "refY",
                                   "textLength", "stdDeviation", "linearGradient", "radialGradient", "clipPath",
                                   "foreignObject", "textPath")}
WS_RE = re.compile(r"\s+")


def _absolute(src: str, base: str) -> str:
    src = src.strip()
    if src.startswith("data:"):
        return src
    return urllib.parse.urljoin(base, src) if base else src


def _placeholder(src: str, lazy: bool = True) -> bool:
    """A stand-in that a lazy-loading script replaces: a tiny data: URI, or (when the image has lazy
    attributes) a file named like one (``blank.gif``, ``placeholder.svg``)."""
    return (src.startswith("data:") and len(src) < 400) or (lazy and bool(PLACEHOLDER_RE.search(src.split("?", 1)[0])))


def _srcset_best(srcset: str, max_width: int) -> tuple[str, float]:
    """The largest candidate within ``max_width`` (by ``w``, or ``x`` density), else the smallest one."""
    cands = []
    for cand in re.split(r",\s+|,(?=\S+\s+\d)", srcset.strip()):
        parts = cand.strip().split()
        if not parts or parts[0].startswith(","):
            continue
        desc = parts[1].lower() if len(parts) > 1 else "1x"
        try:
            size = float(desc[:-1]) if desc[-1] in "wx" else 1.0
        except ValueError:
            size = 1.0
        width = size if desc.endswith("w") else size * 1000  # density: 1x ~ a normal-width image
        cands.append((width, parts[0].rstrip(",")))
    if not cands:
        return "", 0.0
    within = [c for c in cands if c[0] <= max_width]
    best = max(within) if within else min(cands)
    return best[1], best[0]


def _img_src(el, max_width: int) -> str:
    """The URL to fetch for an ``<img>``: srcset (and its ``<picture>`` sources), lazy attributes, then src."""
    src = (el.get("src") or "").strip()
    lazy = next((el.get(a).strip() for a in LAZY_SRC if (el.get(a) or "").strip()), "")
    sets = [el.get(a) for a in ("srcset", *LAZY_SRCSET) if (el.get(a) or "").strip()]
    picture = next((a for a in el.iterancestors() if a.tag in ("picture", "p", "div", "figure", "a", "li", "td")), None)
    if picture is not None and picture.tag == "picture":
        for s in picture.iter("source"):
            if (s.get("type") or "").lower() in RASTER_TYPES:
                sets += [s.get(a) for a in ("srcset", *LAZY_SRCSET) if (s.get(a) or "").strip()]
    best, best_w = "", -1.0
    for srcset in sets:
        url, w = _srcset_best(srcset, max_width)
        if url and not _placeholder(url) and (best_w > max_width >= w or w > best_w):
            best, best_w = url, w
    has_lazy = bool(lazy or sets)
    for cand in (best, lazy, src):
        if cand and not _placeholder(cand, has_lazy):
            return cand
    return ""


def _hidden(el) -> bool:
    return (el.get("hidden") is not None or el.get("aria-hidden") == "true"
            or bool(HIDDEN_STYLE_RE.search(el.get("style") or "")) or bool(HIDDEN_CLASS_RE.search(el.get("class") or "")))


def _tiny(el) -> bool:
    def px(v):
        m = re.match(r"\s*(\d+)(px)?\s*$", v or "")
        return int(m.group(1)) if m else None

    w, h = px(el.get("width")), px(el.get("height"))
    return (w is not None and w <= 2) or (h is not None and h <= 2)


def _svg_figure(el) -> bool:
    """An inline SVG worth keeping: inside a figure, labelled as an image, or declared at least 100 px."""
    def px(v):
        m = re.match(r"\s*(\d+(\.\d+)?)(px)?\s*$", v or "")
        return float(m.group(1)) if m else 0.0

    if any(a.tag == "figure" for a in el.iterancestors()) or (el.get("role") == "img" and el.get("aria-label")):
        return True
    w, h = px(el.get("width")), px(el.get("height"))
    if not (w and h):
        vb = (el.get("viewbox") or "").replace(",", " ").split()
        w, h = (float(vb[2]), float(vb[3])) if len(vb) == 4 and all(re.match(r"^-?[\d.]+$", v) for v in vb) else (0, 0)
    return min(w, h) >= 100


def _svg_data_uri(el) -> str:
    from lxml import etree

    markup = etree.tostring(el, encoding="unicode", with_tail=False)
    markup = re.sub(r"(?<=[\s<])(" + "|".join(SVG_CASE) + r")(?=[\s=>/])", lambda m: SVG_CASE[m.group(1)], markup)
    if "xmlns=" not in markup[:300]:
        markup = markup.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
    if "xmlns:xlink" not in markup[:300] and "xlink:" in markup:
        markup = markup.replace("<svg", '<svg xmlns:xlink="http://www.w3.org/1999/xlink"', 1)
    return "data:image/svg+xml;base64," + base64.b64encode(markup.encode()).decode()


def _svg_alt(el) -> str:
    title = el.find("title")
    return WS_RE.sub(" ", el.get("aria-label") or (title.text_content() if title is not None else "")).strip()


class _Images:
    """The page's images as they are met: kept once per URL, every other one recorded with its reason."""

    def __init__(self, base: str, max_width: int):
        self.base, self.max_width = base, max_width
        self.seen: set[str] = set()
        self.dropped: list[dict] = []

    def raw(self, el) -> tuple[str, str]:
        if el.tag == "svg":
            return _svg_data_uri(el), _svg_alt(el)
        src = _img_src(el, self.max_width)
        return (_absolute(src, self.base) if src else ""), WS_RE.sub(" ", el.get("alt") or "").strip()

    def drop(self, el, reason: str) -> None:
        if el.tag == "svg" and reason != "inline_svg_icon" and not _svg_figure(el):
            return  # icons outside the content are not worth a line each
        src, alt = self.raw(el)
        if el.tag == "svg":
            src = "inline-svg"
        else:
            src = src or (el.get("src") or "")[:200]
        self.dropped.append({"src": src[:300], "alt": alt[:200], "reason": reason})

    def keep(self, el) -> dict | None:
        """The item for ``el``, or None (recorded) when it does not count."""
        if el.tag == "svg" and not _svg_figure(el):
            self.drop(el, "inline_svg_icon")
            return None
        if el.tag == "img" and _tiny(el):
            self.drop(el, "tracking_pixel")
            return None
        src, alt = self.raw(el)
        if not src:
            self.drop(el, "no_src")
            return None
        if src in self.seen:
            self.drop(el, "duplicate_url")
            return None
        self.seen.add(src)
        return {"type": "image", "src": src, "alt": alt, "title": el.get("title") or ""}


def _images_in(el) -> list:
    return [e for e in el.iter("img", "svg") if not any(a.tag == "svg" for a in e.iterancestors())] \
        if isinstance(el.tag, str) else []


def _marks(el) -> list[str]:
    return (el.get("class") or "").split() + ([el.get("id").strip()] if el.get("id") else [])


def _prune_reason(el) -> str | None:
    if el.tag in DROP_TAGS:
        return "boilerplate"
    if _hidden(el) and el.tag != "img":
        return "hidden"
    if (el.get("role") or "").lower() in DROP_ROLES or \
            (el.tag not in ("img", "svg") and any(BOILERPLATE_RE.match(t) for t in _marks(el))):
        return "boilerplate"
    return None


def _prune(root, images: _Images) -> None:
    """Remove boilerplate and hidden blocks under ``root``, recording the images they held."""
    stack = [c for c in root if isinstance(c.tag, str)]
    while stack:
        el = stack.pop()
        reason = None if el.tag in ("main", "article", "body", "html") else _prune_reason(el)
        if reason:
            for im in _images_in(el):
                images.drop(im, reason)
            el.drop_tree()
        else:
            stack.extend(c for c in el if isinstance(c.tag, str))


def _walk(container, images: _Images) -> list[dict]:
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
        if tag in ("img", "svg"):
            if tag == "img" and _hidden(el):
                images.drop(el, "hidden")
            else:
                item = images.keep(el)
                if item:
                    flush()
                    items.append(item)
        elif tag == "br":
            buf.append("\n")
        elif tag == "noscript":  # the fallback of a lazy-loading script: its images only (often duplicates)
            for im in _images_in(el):
                visit_image_only(im)
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

    def visit_image_only(im):
        item = images.keep(im)
        if item:
            flush()
            items.append(item)

    if container.text:
        buf.append(container.text)
    for child in container:
        visit(child, False)
    flush()
    return items


def _noscript_children(doc) -> None:
    """Parse ``<noscript>`` bodies that the parser kept as text into elements (lazy-load fallbacks)."""
    import lxml.html

    for ns in list(doc.iter("noscript")):
        if len(ns) == 0 and ns.text and "<img" in ns.text:
            try:
                frag = lxml.html.fragment_fromstring(ns.text, create_parent="div")
            except (ValueError, TypeError):
                continue
            ns.text = None
            ns.append(frag)


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


def _norm(text: str) -> str:
    return WS_RE.sub(" ", text).strip().lower()


def _content_root(body, text_items: list[dict], share: float = 0.9):
    """The deepest element holding ``share`` of the text blocks trafilatura judged main content."""
    keys = [k for k in (_norm(it["text"])[:60] for it in text_items) if len(k) >= 20]
    node = body
    if not keys:
        return node
    total = sum(k in _norm(body.text_content()) for k in keys)
    while total:
        best = None
        for child in node:
            if isinstance(child.tag, str) and child.tag not in ("p", "li", "pre", "table", "ul", "ol"):
                text = _norm(child.text_content())
                if sum(k in text for k in keys) >= share * total:
                    best = child
                    break
        if best is None:
            return node
        node = best
    return node


def extract_page(html: str | bytes, url: str, max_width: int = MAX_WIDTH) -> dict:
    """``{"title", "items", "method", "dropped"}`` of a page; ``url`` is where the page lives (http(s) or file://).

    ``dropped`` lists every image of the page that is not an item, with its reason (see the module doc).
    """
    import lxml.html

    doc = lxml.html.document_fromstring(html)
    title = WS_RE.sub(" ", doc.findtext(".//title") or "").strip()
    base_el = doc.find(".//base[@href]")
    base = urllib.parse.urljoin(url, base_el.get("href")) if base_el is not None else url
    _noscript_children(doc)
    images = _Images(base, max_width)
    container = None
    for xp in MAIN_XPATHS:
        found = doc.xpath(xp)
        if found:
            container = found[0]
            break
    if container is None:  # trafilatura finds the main text; the element holding it is walked as above
        text = html if isinstance(html, str) else lxml.html.tostring(doc, encoding="unicode")
        text_items = [it for it in _trafilatura(text, base) if it["type"] == "text"]
        body = doc.find("body")
        if body is None:
            return {"title": title, "items": text_items, "method": "trafilatura", "dropped": []}
        _prune(body, images)
        container = _content_root(body, text_items)
        method = "trafilatura"
    else:
        method = "dom"
    inside = set(_images_in(container))
    outside = [im for im in _images_in(doc) if im not in inside]
    _prune(container, images)
    items = _walk(container, images)
    for im in outside:
        images.drop(im, "outside_main")
    return {"title": title, "items": items, "method": method, "dropped": images.dropped}
