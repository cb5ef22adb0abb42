// The page: polls /api/state, builds each camera's card with textContent only (OCR text is never HTML),
// and reloads a camera's drawn frame only when its frame_seq changed.
"use strict";
const refreshMs = Number(document.body.dataset.refreshMs) || 1000;
const cards = new Map();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function time(epochS) {
  return epochS ? new Date(epochS * 1000).toLocaleTimeString([], {hour12: false}) : "";
}
function enc(s) { return encodeURIComponent(s); }
function bytes(n) {
  if (n === undefined || n === null) return "?";
  return n >= 1048576 ? (n / 1048576).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(0) + " KiB" : n + " B";
}
function textsCell(texts, cropUrl, why, extra) {
  // One row per line: its crop from the evidence store (when kept), its text, its confidence; under them, for a
  // fail, why it failed in plain words (textContent: it quotes printed text from a camera).
  const td = el("td");
  texts.forEach((t, k) => {
    const div = el("div", null, "line");
    const url = cropUrl ? cropUrl(k) : null;
    if (url) {
      const crop = el("img", null, "crop");
      crop.src = url;
      crop.alt = `line ${k}`;
      crop.loading = "lazy";
      div.appendChild(crop);
    }
    div.appendChild(el("span", t.text, "text"));
    div.appendChild(el("span", t.confidence.toFixed(2), "conf"));
    td.appendChild(div);
  });
  if (why && why.words) td.appendChild(el("div", why.words, "why"));
  // crops numbered after the lines: lines the verification checked that the filter kept out of the message
  (extra || []).forEach(k => {
    const div = el("div", null, "line refused");
    const crop = el("img", null, "crop");
    crop.src = cropUrl(k);
    crop.alt = `checked line ${k}`;
    crop.loading = "lazy";
    div.append(crop, el("span", "checked, not in the message", "text"));
    td.appendChild(div);
  });
  return td;
}

function card(name) {
  let c = cards.get(name);
  if (c) return c;
  const node = document.getElementById("camera-template").content.firstElementChild.cloneNode(true);
  node.dataset.camera = name;
  node.querySelector(".name").textContent = name;
  const saveBtn = node.querySelector("button.save");
  saveBtn.addEventListener("click", async () => {
    const out = node.querySelector(".saved");
    out.textContent = "saving…";
    try {
      const r = await fetch(`/api/cameras/${enc(name)}/save`, {method: "POST", headers: {"X-OCR-Page": "1"}});
      const j = await r.json();
      out.textContent = r.ok ? `saved ${j.file}` : (j.error || `error ${r.status}`);
    } catch (e) { out.textContent = "not saved: " + e; }
  });
  document.getElementById("cameras").appendChild(node);
  c = {node, seq: -1, keys: {}};
  cards.set(name, c);
  return c;
}

function renderCamera(name, cam) {
  const c = card(name), n = c.node;
  n.querySelector(".source").textContent = `${cam.kind}: ${cam.source}` + (cam.roi.length ? `, ROI [${cam.roi.join(", ")}]` : "");
  n.querySelector(".stats").textContent =
    `${cam.state}${cam.error ? ` (${cam.error})` : ""} · ${Number(cam.fps || 0).toFixed(1)} fps · ` +
    `${cam.frames || 0} frames · ${cam.dropped || 0} dropped · ${cam.stored || 0} stored · ${cam.publish_mode}`;
  const img = n.querySelector("img.frame");
  if (cam.frame_seq && cam.frame_seq !== c.seq) {
    c.seq = cam.frame_seq;
    img.src = `/api/cameras/${enc(name)}/frame.jpg?seq=${cam.frame_seq}`;
    img.dataset.seq = String(cam.frame_seq);
  }
  // Each list is rebuilt only when it changed: a reader's selection survives the polls in between.
  const changed = (name, value) => {
    const key = JSON.stringify(value);
    if (c.keys[name] === key) return false;
    c.keys[name] = key;
    return true;
  };
  if (changed("lines", [cam.frame_seq, cam.lines, cam.codes])) renderLines(n, cam);
  if (changed("readings", cam.readings)) renderReadings(n.querySelector("table.readings tbody"), cam.readings);
  if (changed("fails", cam.fails)) renderReadings(n.querySelector("table.fails tbody"), cam.fails || []);
  if (changed("cycles", cam.cycles)) renderCycles(n, cam.cycles);
  if (changed("rejects", cam.rejects)) renderRejects(n, cam);
}

function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %"; }

function renderCycles(n, cy) {
  // Results with a status (read cycles, consensus labels): counts, read rate, yield, the active recipe.
  const p = n.querySelector(".cycles");
  n.querySelector(".fails-block").hidden = !cy;
  p.hidden = !cy;
  if (!cy) return;
  const counts = Object.entries(cy.by_status).map(([k, v]) => `${k} ${v}`).join(" · ") || "no results yet";
  p.textContent = `${counts} · read rate ${pct(cy.read_rate)} · yield ${pct(cy.yield)}` +
    (cy.triggered ? ` · ${cy.missed || 0} missed triggers · recipe ${cy.recipe || "none"} · ${cy.busy ? "busy" : "ready"}` : "");
}

function renderLines(n, cam) {
  const lines = n.querySelector("ul.lines");
  lines.replaceChildren(...cam.lines.map(l => el("li", `${l.text}  ${l.confidence.toFixed(2)}  (${l.state})`, l.state)));
  if (!cam.lines.length) lines.replaceChildren(el("li", "none"));
  for (const code of cam.codes) lines.appendChild(el("li", `${code.format}: ${code.text}`, "code"));
}

function renderReadings(rb, readings) {
  rb.replaceChildren(...readings.map(r => {
    const tr = el("tr");
    tr.dataset.id = r.id;
    if (r.review) tr.className = "review";
    if (r.status && r.status !== "good_read") tr.classList.add("fail");
    const when = el("td", time(r.at));
    when.title = r.id;
    tr.appendChild(when);
    tr.appendChild(el("td", r.status || "", "status"));
    const kept = Array.isArray(r.evidence_crops);   // the lines with a crop there is: no broken image for the rest
    const extra = kept ? r.evidence_crops.filter(k => k >= r.texts.length) : [];
    tr.appendChild(textsCell(r.texts, kept ? (k => r.evidence_crops.includes(k) ? `/evidence/${enc(r.id)}/line${k}.jpg` : null) : null, r.why, extra));
    const ev = el("td");
    if (kept) {
      const a = el("a", "frame");
      a.href = `/evidence/${enc(r.id)}.jpg`;
      a.target = "_blank";
      ev.appendChild(a);
      if (r.why) {   // a fail kept why beside its frame
        const j = el("a", "why", "why-json");
        j.href = `/evidence/${enc(r.id)}.json`;
        j.target = "_blank";
        ev.append(" ", j);
      }
    } else {
      ev.textContent = "–";
    }
    tr.appendChild(ev);
    return tr;
  }));
}

function renderRejects(n, cam) {
  const jb = n.querySelector("table.rejects tbody");
  jb.replaceChildren(...cam.rejects.map(r => {
    const tr = el("tr");
    tr.appendChild(el("td", time(r.at)));
    tr.appendChild(el("td", Object.entries(r.reasons).map(([k, v]) => `${k} ×${v}`).join(", ") +
      (r.repeats > 1 ? ` (${r.repeats} frames)` : "")));
    tr.appendChild(textsCell(r.texts));
    return tr;
  }));
}

function renderSummary(s) {
  const b = s.backend;
  const be = document.getElementById("backend");
  be.textContent = `${b.backend} ${b.precision}` + (b.degraded ? " (degraded)" : "");
  be.classList.toggle("bad", !!b.degraded);
  const why = document.getElementById("backend-reason");
  why.hidden = !b.reason;
  why.textContent = b.reason ? `not the configured ${b.configured.backend} ${b.configured.precision}: ${b.reason}` : "";
  const br = document.getElementById("broker");
  br.textContent = s.broker.enabled ? (s.broker.connected ? "connected" : "disconnected") : "off";
  br.classList.toggle("bad", s.broker.enabled && !s.broker.connected);
  document.getElementById("outbox").textContent = `${s.outbox.rows} rows (${bytes(s.outbox.bytes)})`;
  const ev = s.evidence;
  document.getElementById("evidence").textContent = ev.enabled
    ? `${ev.readings} readings (${bytes(ev.bytes)} of ${bytes(ev.max_bytes)}), ${ev.dropped_queue_full + ev.dropped_disk_low + ev.write_errors} dropped`
    : "off";
  const h = document.getElementById("health");
  h.textContent = s.health.healthy ? "ok" : s.health.reasons.join("; ");
  h.classList.toggle("bad", !s.health.healthy);
}

async function poll() {
  try {
    const r = await fetch("/api/state", {cache: "no-store"});
    const stale = document.getElementById("stale");
    if (r.status === 401) {   // the daemon answers: this page's token is no longer the one it takes
      stale.textContent = "the access token is no longer valid: open the page again with /?token=… (showing the last state)";
      stale.hidden = false;
      setTimeout(poll, refreshMs);
      return;
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const s = await r.json();
    stale.hidden = true;
    renderSummary(s);
    for (const [name, cam] of Object.entries(s.cameras)) renderCamera(name, cam);
    for (const name of [...cards.keys()]) {
      if (!(name in s.cameras)) { cards.get(name).node.remove(); cards.delete(name); }
    }
    document.body.dataset.ready = "1";
  } catch (e) {
    const stale = document.getElementById("stale");
    stale.textContent = "no answer from the daemon: showing the last state";
    stale.hidden = false;
  }
  setTimeout(poll, refreshMs);
}
poll();
