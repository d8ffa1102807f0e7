"""Inputs of ``braid web``: HTML pages (files, folders, URLs) and files of documents (JSONL, JSON, Parquet).

A document as read, whatever it came from, is one plain dict (the read stage turns it into a ``doc.WebDoc``;
``topic.py``'s labelling tool reads these dicts directly):

| key        | meaning                                                                    |
|------------|----------------------------------------------------------------------------|
| doc_id     | the source's own id (OmniCorpus ``general_metadata.id``), else the URL or file and row |
| url        | the page URL (or ``file://`` path)                                         |
| title      | page title when known                                                      |
| format     | ``html``, ``omnicorpus``, ``obelics`` or ``mmc4``                          |
| items      | reading-order list of ``{"type": "text", "text"}`` / ``{"type": "image", "src", "alt"}``, each with ``pos`` (its original position) |
| local_root | folder local images may come from (HTML files only)                        |

Row formats: OmniCorpus (``texts`` / ``images`` aligned, null in the other modality's slot, ``metadata``,
``general_metadata`` with id and url); OBELICS (the same with ``metadata`` and ``general_metadata`` as JSON
strings); MMC4 (``text_list`` and ``image_info`` whose ``matched_text_index`` puts the image after that sentence).
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

HTML_EXTS = (".html", ".htm", ".xhtml")
TABLE_EXTS = (".jsonl", ".json", ".parquet")


class InputError(ValueError):
    """A document or row that cannot be read: ends as a failed record."""


def expand_inputs(specs: list[str], read_remote=None) -> list[dict]:
    """Input records (``pipelines.core.inputs``): one per HTML page, URL, or file of documents (folders, globs
    and list files expanded), with ``source`` (the uri), ``kind`` (``url``, ``html``, ``table`` or ``unknown``)
    and ``local_root`` (the folder named on the command line, else the file's own folder: where its local
    images may come from). A path that does not exist is a ``failed`` record."""
    from pipelines.core.inputs import is_remote, list_inputs, local_path

    out = []
    for spec in specs:
        remote = is_remote(spec)
        root = None if remote else Path(local_path(spec))
        for rec in list_inputs([spec], None if remote else HTML_EXTS + TABLE_EXTS, read_remote=read_remote):
            uri = rec.get("uri", spec)
            local = None if is_remote(uri) else Path(local_path(uri))
            kind = "url" if urllib.parse.urlparse(uri).scheme in ("http", "https") else _kind(local) if local else "unknown"
            folder = str(root.resolve()) if root is not None and root.is_dir() else str(local.parent) if local else None
            out.append({**rec, "source": uri, "kind": kind, "local_root": folder})
    seen: set[str] = set()
    return [r for r in out if not (r["id"] in seen or seen.add(r["id"]))]


def _kind(p: Path) -> str:
    low = p.name.lower()
    return "html" if low.endswith(HTML_EXTS) else "table" if low.endswith(TABLE_EXTS) else "unknown"


def number_items(items: list[dict]) -> list[dict]:
    return [{**it, "pos": i} for i, it in enumerate(items)]


def html_document(data: bytes | str, url: str, local_root: str | None) -> dict:
    from pipelines.web_interleave.extract import extract_page

    page = extract_page(data, url)
    return {"doc_id": url, "url": url, "title": page["title"], "format": "html", "extract": page["method"],
            "items": number_items(page["items"]), "local_root": local_root, "dropped": page.get("dropped", [])}


def read_rows(path: str) -> list[dict]:
    """Rows of a JSONL, JSON (one object or a list) or Parquet file; a bad line becomes a row with ``_error``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(p).to_pylist()
    if suffix == ".json":
        obj = json.loads(p.read_text(encoding="utf-8"))
        return obj if isinstance(obj, list) else [obj]
    rows = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                rows.append({"_error": f"line {n} is not JSON: {e}"})
    return rows


def _json_field(v, name: str):
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            raise InputError(f"field {name!r} is a string but not JSON") from None
    return v


def row_document(row: dict, source: str, index: int) -> dict:
    """A document from one row of any supported format; raises InputError for a row we cannot read."""
    if not isinstance(row, dict):
        raise InputError(f"row {index} is {type(row).__name__}, not an object")
    if "_error" in row:
        raise InputError(row["_error"])
    if "text_list" in row and "image_info" in row:
        return _mmc4(row, source, index)
    if "texts" in row and "images" in row:
        return _aligned(row, source, index)
    raise InputError(f"row {index} has neither texts/images (OmniCorpus, OBELICS) nor text_list/image_info (MMC4)")


def _aligned(row: dict, source: str, index: int) -> dict:
    obelics = isinstance(row.get("general_metadata"), str) or isinstance(row.get("metadata"), str)
    gm = _json_field(row.get("general_metadata"), "general_metadata") or {}
    md = _json_field(row.get("metadata"), "metadata") or []
    texts, images = row.get("texts") or [], row.get("images") or []
    if not isinstance(texts, list) or not isinstance(images, list) or len(texts) != len(images):
        raise InputError(f"row {index}: texts and images must be lists of the same length")
    url = gm.get("url") if isinstance(gm, dict) else None
    items = []
    for i, (t, im) in enumerate(zip(texts, images)):
        if im:
            meta = md[i] if isinstance(md, list) and i < len(md) and isinstance(md[i], dict) else {}
            items.append({"type": "image", "src": str(im), "alt": str(meta.get("alt_text") or meta.get("alt") or ""),
                          "title": "", "pos": i})
        elif t:
            items.append({"type": "text", "text": str(t), "tag": "p", "pos": i})
    doc_id = (gm.get("id") if isinstance(gm, dict) else None) or url or f"{source}#{index}"
    return {"doc_id": str(doc_id), "url": url or f"{Path(source).as_uri()}#{index}", "title": "",
            "format": "obelics" if obelics else "omnicorpus", "items": items, "local_root": None}


def _mmc4(row: dict, source: str, index: int) -> dict:
    sentences = row.get("text_list") or []
    infos = row.get("image_info") or []
    after: dict[int, list[dict]] = {}
    for j, info in enumerate(infos):
        if not isinstance(info, dict) or not (info.get("raw_url") or info.get("url")):
            continue
        k = info.get("matched_text_index")
        k = k if isinstance(k, int) and 0 <= k < len(sentences) else len(sentences) - 1
        after.setdefault(k, []).append({"type": "image", "src": info.get("raw_url") or info.get("url"), "alt": "",
                                        "title": "", "image_index": j})
    items = []
    for i, s in enumerate(sentences):
        items.append({"type": "text", "text": str(s), "tag": "p", "text_index": i})
        items.extend(after.get(i, []))
    url = row.get("url") or f"{Path(source).as_uri()}#{index}"
    return {"doc_id": str(url), "url": url, "title": "", "format": "mmc4", "items": number_items(items),
            "local_root": None}
