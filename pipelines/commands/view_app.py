"""The page of ``braid view``: one HTML file with its CSS and script inline; the data comes from the scripts under
``data/`` (see ``pipelines.commands.view``). Text is always escaped; nothing is fetched from elsewhere.

Samples render by kind: a video clip as one filmstrip row (frames side by side with their timestamps, the change
captions between them), a web document as text with inline thumbnails, a reasoning sample with its ``<think>``
text and system prompt folded. The state (tab, page, filters, search) lives in the address, so the back button,
bookmarks and tests drive the same code as the controls. ``body[data-renders]`` counts finished renders and
``body[data-ready-ms]`` holds the time from navigation to the first one.
"""

from __future__ import annotations

import html

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f3f3f1; color: #222; }
header.top { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid #ccc; padding: 8px 16px; }
header.top h1 { font-size: 17px; margin: 0 12px 0 0; display: inline; }
.note { color: #666; font-size: 12px; }
.tabs a { margin-right: 10px; font-weight: 600; text-decoration: none; color: #36c; }
.tabs a.on { color: #000; border-bottom: 2px solid #000; }
form.filters { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; margin-top: 6px; font-size: 13px; }
form.filters input[type=number] { width: 80px; } form.filters input[type=search] { width: 180px; }
.pager { display: flex; gap: 8px; align-items: center; margin: 6px 0 0; font-size: 13px; }
.pager input { width: 60px; }
main { padding: 12px 16px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 12px; margin: 0 0 12px; }
.card > .head { display: flex; gap: 10px; flex-wrap: wrap; align-items: baseline; font-size: 12px; color: #555; }
.key { font: 600 13px ui-monospace, monospace; color: #000; }
.badge { font-size: 11px; padding: 1px 6px; border-radius: 9px; background: #e6e6e6; }
.badge.warn { background: #ffd9a8; } .badge.err { background: #ffb3b3; }
.scores { font: 11px ui-monospace, monospace; color: #444; margin-top: 3px; }
.strip { display: flex; gap: 6px; align-items: stretch; overflow-x: auto; padding: 6px 0; }
.strip figure { margin: 0; flex: none; text-align: center; font-size: 11px; color: #555; }
.strip img, .doc img, .thumbs img { display: block; max-height: 150px; border: 1px solid #ccc; }
.strip .chg, .strip .sub { flex: none; width: 150px; font-size: 12px; align-self: center; padding: 4px 6px;
  border-left: 3px solid #6b8cff; background: #eef3ff; }
.strip .sub { border-left-color: #aaa; background: #f4f4f4; color: #555; }
.doc p { margin: 4px 0; white-space: pre-wrap; } .doc p.cap { font-style: italic; color: #345; }
.doc figure { margin: 6px 0; display: inline-block; vertical-align: top; font-size: 11px; color: #666; }
details.think, details.sys { background: #f8f6ee; border: 1px solid #e4dfc8; border-radius: 4px; padding: 3px 8px;
  margin: 4px 0; } details.sys { background: #f4f4f4; border-color: #ddd; }
details pre, pre.meta { white-space: pre-wrap; font-size: 12px; margin: 4px 0; }
.noloss { color: #777; }
.drop-group { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; margin: 0 0 14px; }
.drop-group h3 { font-size: 14px; margin: 0 0 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 8px; }
.ex { border: 1px solid #e3e3e3; border-radius: 4px; padding: 5px; font-size: 11px; overflow-wrap: anywhere; }
.ex .thumbs { display: flex; gap: 3px; flex-wrap: wrap; } .ex .thumbs img { max-height: 110px; max-width: 100%; }
.nopic { color: #999; font-style: italic; }
.problems { background: #fff0f0; border: 1px solid #e0a0a0; padding: 6px 10px; margin-bottom: 10px; font-size: 12px; }
"""

JS = r"""
let IX = null, DROPS = null, SEL = null, SELSIG = null;
const PAGES = {}, TEXTS = {}, WAIT = {};
function braidIndex(ix) { IX = ix; }
function braidPage(n, recs) { PAGES[n] = recs; }
function braidText(n, t) { TEXTS[n] = t; }
function braidDrops(d) { DROPS = d; }
const esc = s => String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
function load(src) {
  if (!WAIT[src]) WAIT[src] = new Promise((ok, bad) => {
    const s = document.createElement('script'); s.src = src; s.onload = ok;
    s.onerror = () => bad(new Error('cannot load ' + src)); document.head.appendChild(s);
  });
  return WAIT[src];
}
const pad = (n, w) => String(n).padStart(w, '0');
function state() {
  const p = new URLSearchParams(location.hash.slice(1)), o = {};
  for (const k of ['tab', 'page', 'kind', 'shard', 'cap', 'score', 'min', 'max', 'src', 'q', 'key']) o[k] = p.get(k) || '';
  o.page = Math.max(1, parseInt(o.page || '1', 10) || 1); o.tab = o.tab || 'samples';
  return o;
}
function go(changes) {
  const o = Object.assign(state(), changes), p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) if (v !== '' && v !== null && !(k === 'page' && v === 1) && !(k === 'tab' && v === 'samples')) p.set(k, v);
  location.hash = p.toString();
}
async function selection(o) {
  const sig = JSON.stringify([o.kind, o.shard, o.cap, o.score, o.min, o.max, o.src, o.q, o.key]);
  if (sig === SELSIG) return SEL;
  const c = IX.cols, n = IX.n, out = [];
  const kind = o.kind === '' ? -1 : IX.kinds.indexOf(o.kind), shard = o.shard === '' ? -1 : +o.shard;
  const capBit = o.cap === '' || o.cap === '(none)' ? 0 : 1 << IX.statuses.indexOf(o.cap);
  const sc = o.score && IX.scores[o.score], lo = o.min === '' ? -Infinity : +o.min, hi = o.max === '' ? Infinity : +o.max;
  const src = o.src.toLowerCase(), q = o.q.toLowerCase();
  if (q) {
    const chunks = Math.ceil(n / IX.text_chunk);
    for (let i = 0; i < chunks; i++) {
      await load(`data/t/${pad(i, 4)}.js`);
      status(`searching… ${i + 1} of ${chunks} text files`);
    }
  }
  for (let i = 0; i < n; i++) {
    if (kind >= 0 && c.kind[i] !== kind) continue;
    if (shard >= 0 && c.shard[i] !== shard) continue;
    if (o.cap === '(none)' ? c.cap[i] !== 0 : capBit && !(c.cap[i] & capBit)) continue;
    if (sc) { const v = sc[i]; if (v === null || v === undefined || v < lo || v > hi) continue; }
    if (src && !IX.uris[c.uri[i]].toLowerCase().includes(src)) continue;
    if (o.key && c.key[i] !== o.key) continue;
    if (q && !TEXTS[Math.floor(i / IX.text_chunk)][i % IX.text_chunk].includes(q)) continue;
    out.push(i);
  }
  SEL = out; SELSIG = sig; return out;
}
function status(text) { document.getElementById('status').textContent = text; }
function options(sel, items, cur) {
  sel.innerHTML = items.map(([v, label]) => `<option value="${esc(v)}"${String(v) === cur ? ' selected' : ''}>${esc(label)}</option>`).join('');
}
function controls(o) {
  const f = document.forms.filters;
  options(f.kind, [['', 'any kind'], ...IX.kinds.map(k => [k, k])], o.kind);
  options(f.shard, [['', 'any shard'], ...IX.shards.map((s, i) => [i, s.name])], o.shard);
  options(f.cap, [['', 'any caption status'], ...IX.statuses.map(s => [s, 'caption ' + s]), ['(none)', 'no model text']], o.cap);
  options(f.score, [['', 'no score filter'], ...Object.keys(IX.scores).map(s => [s, s])], o.score);
  f.min.value = o.min; f.max.value = o.max; f.src.value = o.src; f.q.value = o.q;
  for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('on', a.dataset.tab === o.tab);
  document.getElementById('pager').style.display = o.tab === 'samples' ? '' : 'none';
  f.style.display = o.tab === 'samples' ? '' : 'none';
}
function fmt(v) { return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(3); }
function img(seg, alt) {
  return seg[1] ? `<img src="${esc(seg[1])}" width="${seg[2] >= seg[3] ? 150 * seg[2] / seg[3] | 0 : ''}" alt="${esc(alt)}" loading="lazy" title="${esc(seg[4] + ' ' + seg[2] + '×' + seg[3] + (seg[5].includes('g') ? ' · generation target' : ''))}">`
                : `<span class="nopic">(image does not decode)</span>`;
}
function textSeg(s) {
  const [, role, text, loss, st] = s, cls = loss ? '' : ' class="noloss"';
  const badge = st && st !== 'ok' ? ` <span class="badge ${st === 'error' ? 'err' : 'warn'}">${esc(st)}</span>` : '';
  if (role === 'system') return `<details class="sys"><summary>system prompt</summary><pre>${esc(text)}</pre></details>`;
  if (role === 'think' || /<think>/.test(text)) {
    const words = text.replace(/<\/?think>/g, '').trim().split(/\s+/).filter(Boolean).length;
    return `<details class="think"><summary>think · ${words} words${badge}</summary><pre>${esc(text)}</pre></details>`;
  }
  return `<p${cls} data-role="${esc(role)}">${role === 'body' ? '' : `<span class="badge">${esc(role)}</span> `}${esc(text)}${badge}</p>`;
}
function body(r) {
  if (r.kind === 'video') {
    return '<div class="strip">' + r.segs.map((s, j) => s[0] === 'i'
      ? `<figure>${img(s, 'frame')}<figcaption>${s[6] === null ? '' : 't = ' + s[6].toFixed(2) + ' s'}</figcaption></figure>`
      : `<div class="${s[1] === 'subtitle' ? 'sub' : 'chg'}" data-role="${esc(s[1])}">${esc(s[2])}${s[4] && s[4] !== 'ok' ? ` <span class="badge warn">${esc(s[4])}</span>` : ''}</div>`).join('') + '</div>';
  }
  return '<div class="doc">' + r.segs.map(s => s[0] === 'i'
    ? `<figure>${img(s, s[4])}<figcaption>${esc(s[4])} ${s[2]}×${s[3]}</figcaption></figure>`
    : (s[1] === 'caption' ? textSeg(s).replace('<p', '<p class="cap"') : textSeg(s))).join('') + '</div>';
}
function card(i, r) {
  const sh = IX.shards[r.shard], uri = IX.uris[IX.cols.uri[i]];
  const link = /^(https?|file):/.test(uri) ? `<a href="${esc(uri)}">${esc(uri)}</a>` : esc(uri);
  const scores = Object.entries(IX.scores).filter(([, col]) => col[i] !== null && col[i] !== undefined)
    .map(([k, col]) => `${esc(k)}=${fmt(col[i])}`).join(' · ');
  const span = r.span ? ` · ${r.span[0].toFixed(2)}–${r.span[1].toFixed(2)} s` : '';
  return `<section class="card" id="s${i}" data-key="${esc(r.key)}" data-kind="${esc(r.kind)}"><div class="head">
    <a class="key" href="#key=${encodeURIComponent(r.key)}" title="this sample alone">${esc(r.key)}</a>
    <span class="badge">${esc(r.kind)}</span>
    <a class="shard" href="${esc(sh.href)}" title="the shard file; the sample's members are ${esc(r.key)}.*">${esc(sh.name)}</a> #${i + 1}
    <span>${link}${span}</span></div>${scores ? `<div class="scores">${scores}</div>` : ''}
    ${body(r)}<details><summary>metadata</summary><pre class="meta">${esc(r.meta)}</pre></details></section>`;
}
async function renderSamples(o) {
  const sel = await selection(o), ps = IX.page_size, pages = Math.max(1, Math.ceil(sel.length / ps));
  const page = Math.min(o.page, pages), idx = sel.slice((page - 1) * ps, page * ps);
  await Promise.all([...new Set(idx.map(i => Math.floor(i / ps)))].map(p => load(`data/p/${pad(p, 6)}.js`)));
  document.getElementById('main').innerHTML = idx.map(i => card(i, PAGES[Math.floor(i / ps)][i % ps])).join('')
    || '<p>No sample matches these filters.</p>';
  document.getElementById('pageno').value = page;
  document.getElementById('pages').textContent = pages;
  status(`${sel.length.toLocaleString('en')} of ${IX.n.toLocaleString('en')} samples`);
}
function example(g, e) {
  const pics = (e.pics || []).map(p => `<img src="${esc(p)}" alt="${esc(g.reason)}" loading="lazy">`).join('');
  const sc = Object.entries(e.scores || {}).filter(([, v]) => typeof v !== 'object').map(([k, v]) => `${esc(k)}=${esc(typeof v === 'number' ? fmt(v) : v)}`).join(' · ');
  const what = e.src ? `<div title="${esc(e.src)}">${esc(e.src.length > 120 ? e.src.slice(0, 117) + '…' : e.src)}${e.cut ? ' (cut in the manifest)' : ''}</div>` : '';
  return `<div class="ex"><div class="thumbs">${pics || '<span class="nopic">no thumbnail</span>'}</div>${what}
    <div><b>${esc(e.id)}</b> ${esc(e.uri)}</div>${sc ? `<div class="scores">${sc}</div>` : ''}
    ${e.detail ? `<div>${esc(e.detail.slice(0, 300))}</div>` : ''}${e.message ? `<div>${esc(e.message.slice(0, 300))}</div>` : ''}
    ${e.retryable === true ? '<span class="badge">retryable</span>' : e.retryable === false ? '<span class="badge">permanent</span>' : ''}</div>`;
}
async function renderDrops() {
  if (!DROPS) await load('data/drops.js');
  const names = {image: 'images dropped inside documents', unit: 'clips, documents and records filtered', failed: 'failed'};
  const gs = DROPS.groups;
  document.getElementById('main').innerHTML = (DROPS.manifests ? '' : '<p>No run manifest found: name the run folder to see what was dropped.</p>')
    + gs.map(g => `<div class="drop-group" data-level="${g.level}" data-reason="${esc(g.reason)}"><h3>${esc(g.reason)}
      <span class="badge">${esc(names[g.level])}</span> <span class="note">stage ${esc(g.stage)} · ${g.count.toLocaleString('en')} in all · ${g.examples.length} examples</span></h3>
      <div class="grid">${g.examples.map(e => example(g, e)).join('')}</div></div>`).join('')
    || (DROPS.manifests ? '<p>Nothing was filtered or failed.</p>' : '');
  status(`${gs.length} drop reasons`);
}
async function render() {
  const o = state();
  controls(o);
  try {
    if (o.tab === 'drops') await renderDrops(); else await renderSamples(o);
  } catch (e) { status('error: ' + e.message); }
  const b = document.body;
  b.dataset.renders = (+(b.dataset.renders || 0) + 1);
  if (!b.dataset.readyMs) b.dataset.readyMs = performance.now().toFixed(0);
}
function submit(ev) {
  if (ev) ev.preventDefault();
  const f = document.forms.filters;
  go({kind: f.kind.value, shard: f.shard.value, cap: f.cap.value, score: f.score.value, min: f.min.value,
      max: f.max.value, src: f.src.value.trim(), q: f.q.value.trim(), key: '', page: 1});
}
window.addEventListener('hashchange', render);
window.addEventListener('DOMContentLoaded', () => {
  document.getElementById('note').textContent = IX.note;
  if (IX.problems.length) document.getElementById('problems').innerHTML = '<b>Skipped:</b> ' + IX.problems.map(esc).join('<br>');
  const f = document.forms.filters;
  f.addEventListener('submit', submit);
  for (const el of f.querySelectorAll('select')) el.addEventListener('change', submit);
  document.getElementById('prev').onclick = () => go({page: Math.max(1, state().page - 1)});
  document.getElementById('next').onclick = () => go({page: state().page + 1});
  document.getElementById('pageno').onchange = ev => go({page: +ev.target.value || 1});
  render();
});
"""

BODY = """
<header class="top">
 <h1>{title}</h1><span class="tabs"><a href="#" data-tab="samples">Samples</a><a href="#tab=drops" data-tab="drops">Dropped</a></span>
 <span class="note" id="note"></span>
 <form class="filters" name="filters">
  <select name="kind"></select><select name="shard"></select><select name="cap"></select>
  <select name="score"></select><input type="number" step="any" name="min" placeholder="min">
  <input type="number" step="any" name="max" placeholder="max">
  <input type="search" name="src" placeholder="source contains"><input type="search" name="q" placeholder="search text">
  <button type="submit">apply</button>
 </form>
 <div class="pager" id="pager"><button id="prev" type="button">&laquo; prev</button> page
  <input id="pageno" type="number" min="1" value="1"> of <span id="pages">1</span>
  <button id="next" type="button">next &raquo;</button> <span id="status" class="note"></span></div>
</header>
<main><div id="problems"></div><div id="main"></div></main>
"""


def app_html(title: str) -> str:
    t = html.escape(title)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{t}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style>'
            f'<script>{JS}</script><script src="data/index.js"></script></head>'
            f"<body>{BODY.format(title=t)}</body></html>\n")
