// mindsight live view: draws the stream's events as they arrive on /events (Server-Sent Events).
// The first message of every connection is a "state" snapshot, so a page opened late (or one
// that fell behind) starts from the latest prediction. No external assets.
"use strict";

const $ = (id) => document.getElementById(id);
const view = { k: 5, nCandidates: 0, start: null, maxWindow: null, problems: [], reconCount: 0 };

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Point an <img> at src; data-loaded becomes "1" once the browser has decoded it ("error" if not).
function setImage(img, src) {
  if (img.getAttribute("src") === src) return;
  img.dataset.loaded = "0";
  img.onload = () => { img.dataset.loaded = "1"; };
  img.onerror = () => { img.dataset.loaded = "error"; };
  img.setAttribute("src", src);
  img.hidden = false;
}

function clearImage(img) {
  img.removeAttribute("src");
  img.removeAttribute("data-loaded");
  img.hidden = true;
}

const ms = (seconds) => `${Math.round(seconds * 1000)} ms`;
const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
const num = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

function buildTiles(k) {
  const box = $("topk");
  box.replaceChildren();
  box.style.setProperty("--k", k);
  $("topk-title").textContent = `Top-${k} retrieved`;
  $("acc-top5-label").textContent = `top-${Math.min(k, 5)}`;
  for (let r = 0; r < k; r++) {
    const tile = el("div", "tile empty");
    tile.dataset.rank = String(r + 1);
    const frame = el("div", "frame");
    const img = el("img", "tile-img");
    img.alt = "";
    img.hidden = true;
    frame.append(img);
    const head = el("div", "tile-head");
    head.append(el("span", "tile-rank", `#${r + 1}`), el("span", "tile-mark", ""));
    const bar = el("div", "score-bar");
    bar.append(el("div"));
    tile.append(frame, head, el("div", "tile-name", "–"), el("div", "tile-score", ""), bar);
    box.append(tile);
  }
}

function showStart(start) {
  view.start = start;
  const windows = (start && start.windows) || [];
  view.maxWindow = windows.length ? Math.max(...windows) : null;
  if (start) {
    if (start.reconstruct === false) $("recon-placeholder").textContent = "off (--reconstruct)";
    if (start.n_candidates) view.nCandidates = start.n_candidates;
    const parts = [start.run, start.fold, start.encoder, start.source,
                   view.nCandidates ? `${view.nCandidates} candidates` : null];
    $("run").textContent = parts.filter((p) => p !== null && p !== undefined && p !== "").join(" · ");
  }
  const ticks = $("window-ticks");
  ticks.replaceChildren();
  if (view.maxWindow) {
    for (const w of windows.slice(0, 200)) {
      if (w >= view.maxWindow) continue;
      const t = el("span");
      t.style.left = `${((100 * w) / view.maxWindow).toFixed(2)}%`;
      ticks.append(t);
    }
  }
  $("window-max").textContent = view.maxWindow ? ms(view.maxWindow) : "";
  const n = view.nCandidates;
  $("chance-top1").textContent = n ? `chance ${pct(1 / n)}` : "";
  $("chance-top5").textContent = n ? `chance ${pct(Math.min(view.k, 5) / n)}` : "";
}

function showPrediction(p) {
  if (!p) return;
  const known = p.stimulus !== null && p.stimulus !== undefined;
  const img = $("stimulus-img");
  if (known) {
    setImage(img, `/image/${p.stimulus}`);
    $("stimulus-placeholder").hidden = true;
  } else {
    clearImage(img);
    $("stimulus-placeholder").hidden = false;
  }
  $("stimulus-name").textContent = known && p.stimulus_name ? p.stimulus_name : "unknown";
  const meta = [`event #${p.event}`];
  if (p.code !== null && p.code !== undefined) meta.push(`code ${p.code}`);
  $("stimulus-meta").textContent = meta.join(" · ");

  const topk = p.topk || [];
  const ranks = topk.map((e) => e.index);
  const verdict = $("verdict");
  if (!known) {
    verdict.textContent = "";
    verdict.className = "verdict";
  } else if (ranks[0] === p.stimulus) {
    verdict.textContent = "✓ top-1 correct";
    verdict.className = "verdict good";
  } else {
    const r = ranks.indexOf(p.stimulus);
    verdict.textContent = r >= 0 ? `✗ correct image at rank ${r + 1}` : `✗ not in the top-${topk.length}`;
    verdict.className = "verdict bad";
  }

  const best = topk.length ? Math.max(...topk.map((e) => e.score ?? 0)) : 0;
  const tiles = $("topk").children;
  for (let r = 0; r < tiles.length; r++) {
    const tile = tiles[r];
    const entry = topk[r];
    const timg = tile.querySelector("img");
    if (!entry) {
      tile.className = "tile empty";
      clearImage(timg);
      tile.querySelector(".tile-name").textContent = "–";
      tile.querySelector(".tile-score").textContent = "";
      tile.querySelector(".tile-mark").textContent = "";
      continue;
    }
    const correct = known && entry.index === p.stimulus;
    tile.className = correct ? "tile correct" : "tile";
    tile.dataset.index = String(entry.index);
    setImage(timg, `/image/${entry.index}`);
    tile.querySelector(".tile-name").textContent = entry.name ?? `#${entry.index}`;
    tile.querySelector(".tile-score").textContent = `score ${num(entry.score, 3)}`;
    tile.querySelector(".tile-mark").textContent = correct ? "✓" : "";
    const width = best > 0 ? Math.max(0, Math.min(1, (entry.score ?? 0) / best)) : 0;
    tile.querySelector(".score-bar div").style.width = `${(100 * width).toFixed(0)}%`;
  }

  const total = view.maxWindow || p.window;
  $("window-fill").style.width = `${Math.min(100, (100 * p.window) / total).toFixed(0)}%`;
  $("window-text").textContent = `window ${ms(p.window)} / ${ms(total)}`;
  if (!view.maxWindow) $("window-max").textContent = ms(total);
  $("window-final").hidden = !p.final;
  $("latency").textContent = p.latency_ms === null || p.latency_ms === undefined
    ? "–" : `${num(p.latency_ms, 1)} ms`;
}

function showAccuracy(acc) {
  if (!acc) return;
  $("acc-top1").textContent = pct(acc.top1);
  $("acc-top5").textContent = pct(acc.top5);
  $("acc-n").textContent = acc.n
    ? `${acc.n_top1} / ${acc.n} top-1 · ${acc.n_top5} / ${acc.n} top-${Math.min(view.k, 5)}`
    : "no final prediction of a known stimulus yet";
}

function showReconstruction(r) {
  const img = $("recon-img");
  if (!r || !r.url) {
    clearImage(img);
    $("recon-placeholder").hidden = false;
    $("recon-meta").textContent = "";
    return;
  }
  view.reconCount += 1;
  setImage(img, `${r.url}?n=${view.reconCount}`);
  $("recon-placeholder").hidden = true;
  const meta = [`event #${r.event}`];
  if (r.window !== null && r.window !== undefined) meta.push(ms(r.window));
  if (r.latency_ms !== null && r.latency_ms !== undefined) meta.push(`${num(r.latency_ms, 0)} ms latency`);
  $("recon-meta").textContent = meta.join(" · ");
}

function showProblems(list) {
  view.problems = list.slice(-20);
  const ul = $("problems");
  ul.replaceChildren();
  if (!view.problems.length) {
    ul.append(el("li", "muted", "none"));
    return;
  }
  for (const p of view.problems.slice().reverse()) {
    const li = el("li", "problem");
    li.append(el("b", "", p.kind || "problem"), document.createTextNode(p.message || ""));
    ul.append(li);
  }
}

function showStop(stop) {
  const box = $("stop");
  if (!stop) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const parts = [`stopped: ${stop.reason || "end of stream"}`];
  if (stop.n_events !== undefined) parts.push(`${stop.n_events} events`);
  if (stop.n_predictions !== undefined) parts.push(`${stop.n_predictions} predictions`);
  box.textContent = parts.join(" · ");
  document.body.dataset.connection = "stopped";
  $("connection").textContent = "stream stopped";
}

function applyState(s) {
  view.k = s.k || 5;
  view.nCandidates = s.n_candidates || 0;
  buildTiles(view.k);
  showStart(s.start);
  showPrediction(s.prediction);
  showAccuracy(s.accuracy);
  showReconstruction(s.reconstruction);
  showProblems(s.problems || []);
  showStop(s.stop);
}

function applyEvent(e) {
  switch (e.type) {
    case "start":
      if (document.body.dataset.connection === "stopped") {
        document.body.dataset.connection = "live";
        $("connection").textContent = "live";
      }
      applyState({ k: view.k, n_candidates: e.n_candidates || view.nCandidates, start: e,
                   accuracy: { n: 0, top1: null, top5: null }, problems: [] });
      break;
    case "prediction": showPrediction(e); break;
    case "reconstruction": showReconstruction(e); break;
    case "problem": showProblems(view.problems.concat([e])); break;
    case "stop": showStop(e); break;
    default: break;
  }
}

function count() {
  document.body.dataset.events = String(Number(document.body.dataset.events) + 1);
}

function connect() {
  const source = new EventSource("/events");
  source.onopen = () => {
    document.body.dataset.connection = "live";
    $("connection").textContent = "live";
  };
  source.onerror = () => {
    if (document.body.dataset.connection === "stopped") return;
    document.body.dataset.connection = "lost";
    $("connection").textContent = "reconnecting…";
  };
  source.addEventListener("state", (m) => { applyState(JSON.parse(m.data)); count(); });
  source.addEventListener("accuracy", (m) => showAccuracy(JSON.parse(m.data)));
  source.onmessage = (m) => { applyEvent(JSON.parse(m.data)); count(); };
}

buildTiles(view.k);
connect();
